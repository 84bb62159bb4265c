//! Recipe errors with their location, rendered by miette as `file:line:col`, the source line and a
//! caret.

use std::fmt::Display;
use std::ops::Range;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};

use crate::problem::Problem;

/// The source name of errors located in a command-line argument rather than in the recipe.
const COMMAND_LINE: &str = "command line";

/// One mistake in a recipe (or in a `--set` / `--profile` argument), with where it is.
///
/// Its message, label and help are those of its [`Problem`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{problem}")]
pub struct RecipeError {
    /// What is wrong.
    pub problem: Problem,
    /// The text the span points into: the recipe, or the command-line argument.
    pub source_code: NamedSource<String>,
    /// The span of the offending key or value.
    pub span: SourceSpan,
}

impl RecipeError {
    /// True when a plugin's code failed while the node was built (not a mistake in the recipe).
    pub fn plugin_fault(&self) -> bool {
        self.problem.is_plugin_fault()
    }
}

impl Diagnostic for RecipeError {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source_code)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = LabeledSpan::new_with_span(Some(self.problem.label()), self.span);
        Some(Box::new(std::iter::once(label)))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn Display + 'a>> {
        self.problem
            .help()
            .map(|help| Box::new(help) as Box<dyn Display>)
    }
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
        self.errors.iter().any(RecipeError::plugin_fault)
    }
}

/// Collects the problems found in one recipe, each with its location.
#[derive(Debug, Clone)]
pub(crate) struct Collector {
    name: String,
    text: String,
    errors: Vec<RecipeError>,
}

impl Collector {
    /// A collector for the recipe text of `name`.
    pub(crate) fn new(name: &str, text: &str) -> Self {
        Collector {
            name: name.into(),
            text: text.into(),
            errors: Vec::new(),
        }
    }

    /// Records `problem` at `span` of the recipe.
    pub(crate) fn report(&mut self, span: Range<usize>, problem: Problem) {
        let source = NamedSource::new(&self.name, self.text.clone());
        self.push(source, span, problem);
    }

    /// Records `problem` at `span` of the value of a command-line option: the argument is shown
    /// as `FLAG VALUE` (`--set k=x`, `--profile fast`).
    pub(crate) fn report_on_command_line(
        &mut self,
        flag: &str,
        value: &str,
        span: Range<usize>,
        problem: Problem,
    ) {
        let shift = flag.len() + 1;
        let source = NamedSource::new(COMMAND_LINE, format!("{flag} {value}"));
        self.push(source, (span.start + shift)..(span.end + shift), problem);
    }

    fn push(&mut self, source_code: NamedSource<String>, span: Range<usize>, problem: Problem) {
        self.errors.push(RecipeError {
            problem,
            source_code,
            span: SourceSpan::from(span),
        });
    }

    /// How many problems were recorded so far.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when no problem was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The collected errors, sorted by position (errors in other texts last, in order).
    pub(crate) fn finish(mut self) -> Diagnostics {
        let name = self.name.clone();
        self.errors
            .sort_by_key(|e| (e.source_code.name() != name, e.span.offset()));
        Diagnostics {
            file: self.name,
            errors: self.errors,
        }
    }
}
