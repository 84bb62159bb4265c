//! Recipe errors with their location, rendered by miette as `file:line:col`, the source line and a
//! caret.

use std::ops::Range;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// One mistake in a recipe (or in a `--set` override), with where it is.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct RecipeError {
    /// What is wrong.
    pub message: String,
    /// The text the span points into: the recipe, or the `--set` argument.
    #[source_code]
    pub source_code: NamedSource<String>,
    /// The span of the offending key or value.
    #[label("{label}")]
    pub span: SourceSpan,
    /// A short caption under the caret.
    pub label: String,
    /// How to fix it, "did you mean" included.
    #[help]
    pub help: Option<String>,
    /// A plugin's code failed while the node was built (not a mistake in the recipe).
    pub plugin_fault: bool,
}

/// Every mistake found in one recipe; rendered as a list, exit code 2.
#[derive(Debug, Clone, thiserror::Error, Diagnostic)]
#[error("{file}: {} error{} in the recipe", errors.len(), if errors.len() == 1 { "" } else { "s" })]
#[diagnostic(help("nothing was fetched, computed or written"))]
pub struct Diagnostics {
    /// The recipe file.
    pub file: String,
    /// The errors, in the order of the text.
    #[related]
    pub errors: Vec<RecipeError>,
}

impl Diagnostics {
    /// True when an error is a plugin's fault rather than the recipe's: the command then exits 6
    /// (a plugin failed), not 2.
    pub fn plugin_fault(&self) -> bool {
        self.errors.iter().any(|e| e.plugin_fault)
    }
}

/// Collects errors against one source text.
#[derive(Debug, Clone)]
pub struct Collector {
    name: String,
    text: String,
    /// Errors so far.
    pub errors: Vec<RecipeError>,
}

impl Collector {
    /// A collector for the text of `name`.
    pub fn new(name: &str, text: &str) -> Self {
        Collector {
            name: name.into(),
            text: text.into(),
            errors: Vec::new(),
        }
    }

    /// Records an error at `span` of the recipe.
    pub fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        let (name, text) = (self.name.clone(), self.text.clone());
        self.error_in(&name, &text, span, message, label, help);
    }

    /// Records an error that points into another text, such as a `--set` argument.
    pub fn error_in(
        &mut self,
        source_name: &str,
        source_text: &str,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        self.errors.push(RecipeError {
            message: message.into(),
            source_code: NamedSource::new(source_name, source_text.to_string()),
            span: SourceSpan::from(span),
            label: label.into(),
            help,
            plugin_fault: false,
        });
    }

    /// Marks the last recorded error as a plugin's fault ([`RecipeError::plugin_fault`]).
    pub fn mark_plugin_fault(&mut self) {
        if let Some(e) = self.errors.last_mut() {
            e.plugin_fault = true;
        }
    }

    /// True when no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The collected errors, sorted by position (errors in other texts last, in order).
    pub fn finish(mut self) -> Diagnostics {
        let name = self.name.clone();
        self.errors
            .sort_by_key(|e| (e.source_code.name() != name, e.span.offset()));
        Diagnostics {
            file: self.name,
            errors: self.errors,
        }
    }
}

/// "did you mean `x`?" when there is a close candidate.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    flow_core::schema::suggest(name, candidates).map(|s| format!("did you mean `{s}`?"))
}
