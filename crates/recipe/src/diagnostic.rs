//! Recipe errors with their location, rendered by miette as `file:line:col`, the source line and a
//! caret.

use std::fmt::Display;
use std::ops::Range;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};

use crate::problem::Problem;

/// The source name of errors located in a command-line argument rather than in the recipe.
const COMMAND_LINE: &str = "command line";

/// Where command-line errors sort: after every recipe text, by their position in the argument.
const COMMAND_LINE_ORDER: usize = usize::MAX / 2;

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
///
/// A recipe that extends others has several texts; they are laid end to end (each one byte after
/// the previous one's end), so that a byte offset names the file and the position in it.
#[derive(Debug, Clone)]
pub(crate) struct Collector {
    texts: Vec<Text>,
    /// Errors with their order: position in the laid-out texts, command-line errors last.
    errors: Vec<(usize, RecipeError)>,
}

/// One recipe text and where it starts in the laid-out texts.
#[derive(Debug, Clone)]
struct Text {
    name: String,
    text: String,
    offset: usize,
}

impl Collector {
    /// A collector for the recipe text of `name`.
    pub(crate) fn new(name: &str, text: &str) -> Self {
        Collector {
            texts: vec![Text {
                name: name.into(),
                text: text.into(),
                offset: 0,
            }],
            errors: Vec::new(),
        }
    }

    /// Lays the text of another recipe file (one the recipe extends) after the others; returns
    /// the offset at which its spans start.
    pub(crate) fn add_text(&mut self, name: &str, text: &str) -> usize {
        let offset = self.texts.last().map_or(0, |t| t.offset + t.text.len() + 1);
        self.texts.push(Text {
            name: name.into(),
            text: text.into(),
            offset,
        });
        offset
    }

    /// Records `problem` at `span` of the laid-out recipe texts.
    pub(crate) fn report(&mut self, span: Range<usize>, problem: Problem) {
        let text = self
            .texts
            .iter()
            .rev()
            .find(|t| t.offset <= span.start)
            .unwrap_or(&self.texts[0]);
        let start = (span.start - text.offset).min(text.text.len());
        let end = span
            .end
            .saturating_sub(text.offset)
            .clamp(start, text.text.len());
        let source = NamedSource::new(&text.name, text.text.clone());
        self.push(span.start, source, start..end, problem);
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
        self.push(
            COMMAND_LINE_ORDER + span.start,
            source,
            (span.start + shift)..(span.end + shift),
            problem,
        );
    }

    fn push(
        &mut self,
        order: usize,
        source_code: NamedSource<String>,
        span: Range<usize>,
        problem: Problem,
    ) {
        let error = RecipeError {
            problem,
            source_code,
            span: SourceSpan::from(span),
        };
        self.errors.push((order, error));
    }

    /// How many problems were recorded so far.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when no problem was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The collected errors: the recipe's in the order of its text, then those of the recipes it
    /// extends, then those of the command line (in the order found).
    pub(crate) fn finish(mut self) -> Diagnostics {
        self.errors.sort_by_key(|(order, _)| *order);
        Diagnostics {
            file: self.texts.swap_remove(0).name,
            errors: self.errors.into_iter().map(|(_, e)| e).collect(),
        }
    }
}
