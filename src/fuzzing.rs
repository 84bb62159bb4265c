//! Recipe reading and validation as one checked function, for the fuzz target
//! (`fuzz/fuzz_targets/recipe_validate.rs`) and the test that replays its corpus.
//!
//! [`check_recipe`] takes any bytes as the content of a recipe file and does what `flow validate`
//! does with them, short of loading plugins: reads them as UTF-8, builds the [`Plan`] with the
//! built-in kinds, and renders the diagnostics the way the CLI prints them. It panics, with a
//! message that says which rule was broken, when:
//!
//! - a diagnostic's label span is not inside the text it points into (`offset + len` past the
//!   end, or either end not on a char boundary), or an error located in the recipe carries a
//!   different text than the recipe's;
//! - rendering a diagnostic fails or panics;
//! - reading and UTF-8 decoding disagree about whether the bytes are a text.
//!
//! Building the plan itself must not panic either. Nothing is run, fetched or written: this is
//! validation only, which does no I/O (a recipe may `extends = "timberlea_kmeans.toml"`, the
//! project's base recipe, which is served from memory).

use flow_recipe::{Diagnostics, Overrides, Plan};
use miette::Diagnostic;

/// The name the recipe is validated under; diagnostics in the recipe carry it.
pub const RECIPE_FILE: &str = "recipe.toml";

pub use crate::commands::MAX_DRAWN_LINE;

/// What [`check_recipe`] found, when it found no violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The bytes are not UTF-8: reading the recipe fails with this message, as `flow validate`
    /// reports it (exit 2).
    Unreadable(String),
    /// The text was validated once per set of overrides tried.
    Validated(Vec<Validation>),
}

/// One validation of the recipe text under one set of command-line overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The overrides as they would be typed (`--profile fine --set k=3`); empty for none.
    pub args: Vec<String>,
    /// The number of nodes in the plan, or the diagnostics as rendered.
    pub result: Result<usize, Rendered>,
}

/// A recipe's diagnostics as the CLI renders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// How many errors were reported.
    pub errors: usize,
    /// miette's graphical form (source lines with carets), which the CLI prints unless a line of
    /// the recipe is longer than [`MAX_DRAWN_LINE`] bytes; `None` then.
    pub graphical: Option<String>,
    /// miette's narrated form (`file:line:col` without carets), which the CLI prints for recipes
    /// with longer lines; rendered for every recipe.
    pub narrated: String,
}

/// Reads `bytes` as a recipe file, validates it with the built-in kinds (without overrides, with
/// the overrides of a first line `# args: --set NAME=VALUE --profile NAME`, as the fixtures in
/// `recipes/invalid` carry them, and with one `--set` of the first `[params]` entry plus the
/// first `[profiles.NAME]` when the text defines any), and checks every diagnostic's spans and
/// rendering.
///
/// # Panics
/// On any violation of the rules listed in the [module documentation](self); the message names
/// the rule, the validation's overrides and the offending span. A fuzzer reports the panic as a
/// crash.
pub fn check_recipe(bytes: &[u8]) -> Checked {
    let text = match read_recipe(bytes) {
        Ok(text) => text,
        Err(message) => return Checked::Unreadable(message),
    };
    let registry = crate::registry::builtin();
    let validations = overrides_to_try(&text)
        .into_iter()
        .map(|args| {
            let overrides = to_overrides(&args);
            let result = match Plan::build_with(
                RECIPE_FILE,
                &text,
                &registry,
                &overrides,
                &read_base_recipe,
            ) {
                Ok(plan) => Ok(plan.nodes.len()),
                Err(diags) => Err(check_diagnostics(&diags, &text, &args)),
            };
            Validation { args, result }
        })
        .collect();
    Checked::Validated(validations)
}

/// The recipes a fuzzed recipe may extend: the project's base recipe, from memory, so that a
/// check reads no file and gives the same answer everywhere; any other file does not exist.
fn read_base_recipe(path: &std::path::Path) -> std::io::Result<String> {
    if path == std::path::Path::new(BASE_RECIPE) {
        Ok(include_str!("../recipes/timberlea_kmeans.toml").to_string())
    } else {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

/// The one recipe a fuzzed recipe can extend (`extends = "timberlea_kmeans.toml"`).
const BASE_RECIPE: &str = "timberlea_kmeans.toml";

/// The text of the recipe, or the message `flow validate` prints when it cannot read it.
///
/// The bytes go through the same UTF-8 check as `std::fs::read_to_string`, which the CLI uses.
fn read_recipe(bytes: &[u8]) -> Result<String, String> {
    let read = std::io::read_to_string(bytes);
    assert_eq!(
        read.is_ok(),
        std::str::from_utf8(bytes).is_ok(),
        "reading the recipe and UTF-8 decoding disagree on {} bytes",
        bytes.len()
    );
    read.map_err(|e| {
        let message = format!("cannot read recipe {RECIPE_FILE}: {e}");
        assert!(
            e.kind() == std::io::ErrorKind::InvalidData,
            "reading the recipe from memory failed with something else than invalid data: {message}"
        );
        message
    })
}

/// The sets of overrides to validate the text with, each as its command-line words.
fn overrides_to_try(text: &str) -> Vec<Vec<String>> {
    let mut tries = vec![Vec::new()];
    if let Some(args) = fixture_args(text) {
        tries.push(args);
    }
    let derived = derived_args(text);
    if !derived.is_empty() {
        tries.push(derived);
    }
    tries
}

/// The words of a first line `# args: ...`, the fixtures' way of giving their command line.
fn fixture_args(text: &str) -> Option<Vec<String>> {
    let first = text.lines().next()?;
    let args = first.strip_prefix("# args:")?;
    Some(args.split_whitespace().map(String::from).collect())
}

/// `--profile` with the first profile and `--set` of the first param to its own value, when the
/// text parses and defines them.
fn derived_args(text: &str) -> Vec<String> {
    let Ok(doc) = flow_recipe::source::SpannedDoc::parse(text) else {
        return Vec::new();
    };
    let mut args = Vec::new();
    let first_key = |table: &str| {
        doc.table
            .get(table)
            .and_then(|v| v.as_table())
            .and_then(|t| t.iter().next())
    };
    if let Some((name, _)) = first_key("profiles") {
        args.extend(["--profile".to_string(), name.clone()]);
    }
    if let Some((name, value)) = first_key("params") {
        args.extend(["--set".to_string(), format!("{name}={value}")]);
    }
    args
}

/// `--set X` and `--profile X` words as [`Overrides`]; other words are ignored, a flag without a
/// value is taken with an empty one.
fn to_overrides(args: &[String]) -> Overrides {
    let mut profile = None;
    let mut sets = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--set" => sets.push(words.next().cloned().unwrap_or_default()),
            "--profile" => profile = Some(words.next().cloned().unwrap_or_default()),
            _ => {}
        }
    }
    Overrides::new(profile, &sets)
}

/// Checks the diagnostics of a recipe `text` validated with `args`: every label of every
/// diagnostic lies inside the text it points into, on char boundaries (errors located in the
/// recipe carry `text` itself), and both renderings succeed. Returns them.
///
/// # Panics
/// On a violation; the message names the error, the label and `args`.
pub fn check_diagnostics(diags: &Diagnostics, text: &str, args: &[String]) -> Rendered {
    check_spans(diags, text, args);
    render(diags, text, args)
}

/// Every label of every diagnostic lies inside the text it points into, on char boundaries.
fn check_spans(diags: &Diagnostics, text: &str, args: &[String]) {
    assert!(
        !diags.errors.is_empty(),
        "validation failed without an error (args {args:?})"
    );
    assert_eq!(
        diags.related().map_or(0, Iterator::count),
        diags.errors.len(),
        "every error is reported as a related diagnostic (args {args:?})"
    );
    check_labels(diags, text, "the summary", args);
    for error in &diags.errors {
        let source = error.source_code.inner();
        if error.source_code.name() == RECIPE_FILE {
            assert!(
                source == text,
                "an error located in the recipe carries another text ({} bytes, the recipe has {}): \
                 {error} (args {args:?})",
                source.len(),
                text.len()
            );
        }
        let what = format!(
            "error {:?} in {}",
            error.to_string(),
            error.source_code.name()
        );
        check_labels(error, source, &what, args);
        if let Some(related) = error.related() {
            for nested in related {
                check_labels(nested, source, &what, args);
            }
        }
    }
}

/// The labels of `diag` lie inside `source`.
fn check_labels(diag: &dyn Diagnostic, source: &str, what: &str, args: &[String]) {
    let Some(labels) = diag.labels() else {
        return;
    };
    for label in labels {
        let (start, len) = (label.offset(), label.len());
        let end = start.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= source.len()),
            "{what}: label {:?} at {start}+{len} ends past the end of its text ({} bytes) \
             (args {args:?})",
            label.label(),
            source.len()
        );
        let end = end.unwrap_or_default();
        assert!(
            source.is_char_boundary(start) && source.is_char_boundary(end),
            "{what}: label {:?} at {start}..{end} is not on char boundaries (args {args:?})",
            label.label()
        );
    }
}

/// Renders `diags` with both of miette's handlers as the CLI configures them
/// ([`crate::commands::graphical_handler`]); the graphical form only where the CLI draws it
/// ([`crate::commands::draws_carets`]).
fn render(diags: &Diagnostics, text: &str, args: &[String]) -> Rendered {
    let mut narrated = String::new();
    let status = miette::NarratableReportHandler::new().render_report(&mut narrated, diags);
    assert!(
        status.is_ok(),
        "the narrated report failed to render (args {args:?}):\n{narrated}"
    );
    let graphical = crate::commands::draws_carets(text).then(|| {
        // The CLI picks the colored theme on a terminal; both draw the same layout, and the
        // uncolored one keeps the check independent of where it runs.
        let mut out = String::new();
        let status = crate::commands::graphical_handler(false).render_report(&mut out, diags);
        assert!(
            status.is_ok(),
            "the graphical report failed to render (args {args:?}):\n{out}"
        );
        out
    });
    Rendered {
        errors: diags.errors.len(),
        graphical,
        narrated,
    }
}
