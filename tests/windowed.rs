//! Windowed execution: the same recipe computed whole and window by window (`--window N`) gives
//! byte-identical outputs, for windows that divide the grid and windows that do not.

use std::path::Path;

use crate::support::{flow, output};

/// The files a Timberlea run writes that must not depend on how it was computed.
const OUTPUTS: &[&str] = &[
    "timberlea_classes.tif",
    "timberlea_classes.png",
    "timberlea_model.json",
];

/// Runs `recipe` on the offline scene without the cache, with `args`, into `out`; returns its
/// run report.
fn run(cache: &Path, recipe: &str, out: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .args(["--profile", "offline", "--no-cache", "--out"])
            .arg(out)
            .args(args),
    );
    assert_eq!(code, 0, "{args:?}\n{stdout}\n{stderr}");
    std::fs::read_to_string(out.join("run.json")).unwrap()
}

/// Whole and windowed runs of `recipe` with `overrides` write the same bytes.
fn same_outputs(recipe: &str, overrides: &[&str]) {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let report = run(cache.path(), recipe, &whole, overrides);
    assert!(!report.contains("\"Deferred\""), "{report}");
    for window in ["64", "50"] {
        let out = dir.path().join(window);
        let mut args = overrides.to_vec();
        args.extend(["--window", window]);
        let report = run(cache.path(), recipe, &out, &args);
        assert!(
            report.contains("\"Deferred\""),
            "the run was not windowed: {report}"
        );
        for file in OUTPUTS {
            let (a, b) = (
                std::fs::read(whole.join(file)).unwrap(),
                std::fs::read(out.join(file)).unwrap(),
            );
            assert!(
                a == b,
                "{recipe} {overrides:?}: {file} differs in windows of {window}"
            );
        }
    }
}

#[test]
fn the_timberlea_recipe_gives_the_same_outputs_whole_and_in_windows() {
    same_outputs("recipes/timberlea_kmeans.toml", &[]);
}

#[test]
fn indices_percentiles_per_band_and_a_sampled_fit_give_the_same_outputs_in_windows() {
    same_outputs(
        "recipes/timberlea_kmeans_ndvi.toml",
        &[
            "--set",
            "normalize.method=\"percentile\"",
            "--set",
            "normalize.scope=\"band\"",
            "--set",
            "fit.sample=0.5",
        ],
    );
}

#[test]
fn z_scores_and_a_sample_of_a_count_give_the_same_outputs_in_windows() {
    same_outputs(
        "recipes/timberlea_kmeans.toml",
        &[
            "--set",
            "normalize.method=\"zscore\"",
            "--set",
            "fit.sample=20000",
        ],
    );
}

/// The ids of the nodes of a run report with `status`.
fn with_status(report: &str, status: &str) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == status)
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn windowed_values_are_cached_with_what_was_gathered_for_them() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |args: &[&str]| {
        let (code, stdout, stderr) = output(
            flow(cache.path())
                .arg("run")
                .arg("recipes/timberlea_kmeans.toml")
                .args(["--profile", "offline", "--window", "64", "--out"])
                .arg(&out)
                .args(args),
        );
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        std::fs::read_to_string(out.join("run.json")).unwrap()
    };
    let first = run(&[]);
    assert!(with_status(&first, "computed").contains(&"normalize".to_string()));
    let second = run(&[]);
    assert_eq!(with_status(&second, "computed"), Vec::<String>::new());
    // A new k reuses the statistics gathered for normalize: only the fit and after run.
    let third = run(&["--set", "k=5"]);
    let mut computed = with_status(&third, "computed");
    computed.sort();
    assert_eq!(
        computed,
        [
            "classes",
            "classes_tif",
            "fit",
            "model_json",
            "predict",
            "quicklook"
        ]
    );
}
