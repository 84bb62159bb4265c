use std::path::{Path, PathBuf};

use flow::fuzzing::{check_diagnostics, check_recipe, Checked, Rendered, Validation};
use flow_recipe::{Diagnostics, Problem, RecipeError};

use crate::support::root;

fn corpus_dir() -> PathBuf {
    root().join("fuzz/corpus/recipe_validate")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The validations of a text, which must be readable.
fn validations(bytes: &[u8]) -> Vec<Validation> {
    match check_recipe(bytes) {
        Checked::Validated(v) => v,
        Checked::Unreadable(message) => panic!("the text is UTF-8 but unreadable: {message}"),
    }
}

/// The rendered diagnostics of the validation without overrides, which must fail.
fn failure(text: &str) -> Rendered {
    let plain = validations(text.as_bytes()).remove(0);
    assert!(plain.args.is_empty());
    plain.result.expect_err("the recipe is invalid")
}

/// The end of a long rendering, for a failure message.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(2000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Runs `f` on a thread with the main thread's stack size (8 MiB), where the CLI validates.
fn on_main_sized_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn every_corpus_file_passes_the_recipe_check() {
    let files = files_in(&corpus_dir());
    let (mut valid, mut invalid, mut unreadable) = (0, 0, 0);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        match check_recipe(&bytes) {
            Checked::Unreadable(message) => {
                assert!(
                    message.contains("valid UTF-8"),
                    "{}: {message}",
                    file.display()
                );
                unreadable += 1;
            }
            Checked::Validated(validations) => {
                for v in validations {
                    match v.result {
                        Ok(_) => valid += 1,
                        Err(_) => invalid += 1,
                    }
                }
            }
        }
    }
    // The corpus covers every outcome, so a check that stopped looking would show here.
    assert!(files.len() >= 40, "{} corpus files", files.len());
    assert!(
        valid >= 5 && invalid >= 30 && unreadable >= 3,
        "{valid} valid, {invalid} invalid, {unreadable} unreadable validations"
    );
}

#[test]
fn the_corpus_keeps_every_project_recipe_and_they_validate_as_their_folder_says() {
    let corpus: Vec<Vec<u8>> = files_in(&corpus_dir())
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let recipes = root().join("recipes");
    let folders = [
        recipes.clone(),
        recipes.join("valid"),
        recipes.join("invalid"),
    ];
    for folder in &folders {
        for recipe in files_in(folder) {
            let bytes = std::fs::read(&recipe).unwrap();
            let name = recipe.strip_prefix(&recipes).unwrap().display().to_string();
            assert!(
                corpus.contains(&bytes),
                "{name} is not in fuzz/corpus/recipe_validate (copy it there)"
            );
            let validations = validations(&bytes);
            let plain = &validations[0].result;
            if name.starts_with("valid/") {
                assert!(matches!(plain, Ok(n) if *n > 0), "{name}: {plain:?}");
            } else if name.starts_with("invalid/") {
                // The error may come from the fixture's own `# args:` overrides.
                assert!(
                    validations.iter().any(|v| v.result.is_err()),
                    "{name} validates: {validations:?}"
                );
            } else if name.ends_with("_smooth.toml") {
                // Its majority-filter kind comes from a plugin, which the check does not load.
                let rendered = plain.as_ref().unwrap_err();
                assert!(rendered.narrated.contains("majority-filter"), "{name}");
            } else {
                assert!(matches!(plain, Ok(n) if *n > 0), "{name}: {plain:?}");
            }
        }
    }
}

#[test]
fn fixture_args_and_derived_overrides_are_tried() {
    let text = "# args: --set k=four\nname = \"x\"\n[params]\nk = 3\n[profiles.fine]\nk = 6\n";
    let validations = validations(text.as_bytes());
    let args: Vec<Vec<String>> = validations.iter().map(|v| v.args.clone()).collect();
    assert_eq!(
        args,
        [
            vec![],
            vec!["--set".to_string(), "k=four".into()],
            vec![
                "--profile".into(),
                "fine".into(),
                "--set".into(),
                "k=3".into()
            ],
        ]
    );
    assert_eq!(validations[0].result, Ok(0));
    let bad_set = validations[1].result.as_ref().unwrap_err();
    assert_eq!(bad_set.errors, 1);
    let drawn = bad_set.graphical.as_deref().unwrap();
    assert!(drawn.contains("--set k=four"), "{drawn}");
    assert_eq!(validations[2].result, Ok(0));
}

#[test]
fn invalid_utf8_is_a_clean_read_error() {
    let checked = check_recipe(b"name = \"caf\xe9\"\n");
    let Checked::Unreadable(message) = checked else {
        panic!("{checked:?}");
    };
    assert_eq!(
        message,
        "cannot read recipe recipe.toml: stream did not contain valid UTF-8"
    );
}

#[test]
fn an_error_past_column_65535_is_narrated_inside_the_text() {
    let wide = "y".repeat(70_000);
    let text = format!("name = \"x\"\n[nodes.a]\nkind = \"stack\"\nbogus = \"{wide}\"; zzz\n");
    let rendered = failure(&text);
    assert_eq!(
        rendered.graphical, None,
        "past 4096 bytes a line is not drawn"
    );
    let at = "label at line 4, column 70011";
    assert!(
        rendered.narrated.contains(at),
        "{}",
        tail(&rendered.narrated)
    );
}

#[test]
fn ten_thousand_nested_arrays_are_refused_or_accepted_without_a_crash() {
    let depth = 10_000;
    let text = format!(
        "name = \"deep\"\n[params]\ndeep = {}1{}\n[nodes.a]\nkind = \"flatten\"\ninput = \"${{params.deep}}\"\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let validations = on_main_sized_stack(move || validations(text.as_bytes()));
    let rendered = validations[0].result.as_ref().unwrap_err();
    assert!(rendered.errors >= 1, "{rendered:?}");
}

#[test]
fn a_five_megabyte_string_value_is_checked() {
    let big = "é".repeat(5 << 19);
    assert_eq!(big.len(), 5 << 20);
    let text = format!(
        "name = \"big\"\n[params]\ns = \"{big}\"\n[nodes.a]\nkind = \"stack\"\ninput = \"${{params.s}}\"\nassets = [\"{big}\"]\n"
    );
    let validations = validations(text.as_bytes());
    assert_eq!(
        validations.len(),
        2,
        "without overrides and with --set s=..."
    );
    for v in &validations {
        let rendered = v.result.as_ref().unwrap_err();
        assert_eq!(rendered.graphical, None);
        let at = "Begin snippet for recipe.toml";
        assert!(
            rendered.narrated.contains(at),
            "{}",
            tail(&rendered.narrated)
        );
    }
}

fn diagnostics(text: &str, span: std::ops::Range<usize>) -> Diagnostics {
    Diagnostics {
        file: "recipe.toml".into(),
        errors: vec![RecipeError {
            problem: Problem::Syntax {
                message: "made up".into(),
            },
            source_code: miette::NamedSource::new("recipe.toml", text.to_string()),
            span: span.into(),
        }],
    }
}

#[test]
fn a_span_inside_the_text_passes() {
    let rendered = check_diagnostics(&diagnostics("name = 1\n", 7..8), "name = 1\n", &[]);
    assert!(rendered.graphical.unwrap().contains("made up"));
}

#[test]
#[should_panic(expected = "ends past the end of its text")]
fn a_span_past_the_end_is_a_violation() {
    check_diagnostics(&diagnostics("name = 1\n", 7..12), "name = 1\n", &[]);
}

#[test]
#[should_panic(expected = "not on char boundaries")]
fn a_span_inside_a_char_is_a_violation() {
    check_diagnostics(&diagnostics("n = \"é\"\n", 5..6), "n = \"é\"\n", &[]);
}

#[test]
#[should_panic(expected = "carries another text")]
fn an_error_in_the_recipe_with_another_text_is_a_violation() {
    check_diagnostics(&diagnostics("name = 1\n", 0..1), "name = 2\n", &[]);
}
