//! The memory budget: `flow plan` and `flow run --dry-run` estimate a run before it reads any
//! pixel, and `--memory-limit` refuses a run estimated to need more: exit 2 when the plan alone
//! shows it, exit 3 when only the search's items do, before anything is read either way.

use std::path::Path;

use crate::support::{flow, node_report, node_statuses, output, root};

const RECIPE: &str = "recipes/timberlea_kmeans.toml";

/// `flow <command> RECIPE --profile offline ARGS...` from the repository; exit code, stdout,
/// stderr.
fn offline(cache: &Path, command: &str, args: &[&str]) -> (i32, String, String) {
    output(
        flow(cache)
            .current_dir(root())
            .args([command, RECIPE, "--profile", "offline"])
            .args(args),
    )
}

/// `flow run` of the offline recipe into `out` without the cache, with `args`.
fn run(cache: &Path, out: &Path, args: &[&str]) -> (i32, String, String) {
    let out = out.to_string_lossy();
    let mut all = vec!["--no-cache", "--out", &out];
    all.extend(args);
    offline(cache, "run", &all)
}

/// Files in `dir` besides the run report.
fn outputs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "run.json")
        .collect()
}

/// The number of GiB in `text` just before ` of memory at node` (the estimate).
fn estimate_gib(text: &str) -> f64 {
    let end = text.find(" GiB of memory at node").expect(text);
    let start = text[..end].rfind(' ').unwrap() + 1;
    text[start..end].parse().unwrap()
}

#[test]
fn a_run_over_the_memory_limit_by_its_plan_is_refused_before_anything_runs() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // With the CRS given, the grid is known from the recipe alone: at 0.5 m the 12-band cube is
    // 4140 x 4560, and fitting every pixel (no `sample`) holds the whole matrix.
    let (code, stdout, stderr) = run(
        cache.path(),
        out.path(),
        &[
            "--set",
            "stack.epsg=32618",
            "--set",
            "stack.resolution=0.5",
            "--memory-limit",
            "1G",
        ],
    );
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("at node `fit` (kmeans-fit")
            && stderr.contains("more than the memory limit of 1.0 GiB"),
        "{stderr}"
    );
    assert!(estimate_gib(&stderr) > 1.0, "{stderr}");
    let statuses = node_statuses(out.path());
    assert!(
        statuses.iter().all(|(_, s)| s == "cancelled"),
        "{statuses:?}"
    );
    assert!(outputs(out.path()).is_empty(), "{:?}", outputs(out.path()));
}

#[test]
fn a_run_over_the_memory_limit_by_its_items_stops_after_the_search() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Without `epsg` the grid comes from the items: known once the search has run.
    let (code, stdout, stderr) = run(
        cache.path(),
        out.path(),
        &["--set", "stack.resolution=0.5", "--memory-limit", "1G"],
    );
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("more than the memory limit of 1.0 GiB"),
        "{stderr}"
    );
    let statuses = node_statuses(out.path());
    let status = |id: &str| statuses.iter().find(|(n, _)| n == id).unwrap().1.clone();
    assert_eq!(status("search"), "computed");
    assert_eq!(status("stack"), "cancelled", "{statuses:?}");
    assert!(outputs(out.path()).is_empty());
    // A finer grid than the scene's within the same limit: windowed, the fit on a sample.
    let (code, _, stderr) = run(
        cache.path(),
        out.path(),
        &[
            "--set",
            "stack.resolution=2",
            "--set",
            "fit.sample=20000",
            "--memory-limit",
            "1G",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_plan_tells_each_node_its_output_reads_and_memory() {
    let cache = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = offline(cache.path(), "plan", &["--no-cache"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Raster 1 x 12 x 207 x 228 whole"),
        "{stdout}"
    );
    assert!(stdout.contains("Labels 207 x 228 whole"), "{stdout}");
    assert!(stdout.contains("within the memory limit"), "{stdout}");

    let (code, stdout, stderr) = offline(
        cache.path(),
        "plan",
        &["--no-cache", "--json", "--window", "64", "--jobs", "2"],
    );
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let node = |id: &str| {
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()
            .clone()
    };
    let stack = node("stack");
    assert_eq!(stack["output"]["pixels"]["window"], 64, "{stack}");
    // Normalize's statistics pass reads the scene once: 12 bands of 207 x 228 f32.
    let normalize = node("normalize");
    assert_eq!(normalize["read_bytes"], 12 * 207 * 228 * 4, "{normalize}");
    assert_eq!(normalize["windows"], 4 * 4, "{normalize}");
    assert!(plan["peak_bytes"].as_u64().unwrap() > 0, "{plan}");

    // `flow run --dry-run` prints the same and runs nothing.
    let out = tempfile::tempdir().unwrap();
    let never = out.path().join("never");
    let (code, stdout, stderr) = offline(
        cache.path(),
        "run",
        &["--dry-run", "--out", &never.to_string_lossy()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("peak "), "{stdout}");
    assert!(!never.exists());
}

#[test]
fn a_windowed_run_reports_its_windows_pixels_and_bytes_read() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(cache.path(), out.path(), &["--window", "100"]);
    assert_eq!(code, 0, "{stderr}");
    let normalize = node_report(out.path(), "normalize");
    // 207 x 228 in windows of 100: 3 x 3 windows, every pixel once, 12 bands read as f32.
    assert_eq!(normalize["windows"], 9, "{normalize}");
    assert_eq!(normalize["pixels"], 207 * 228, "{normalize}");
    assert_eq!(normalize["read_bytes"], 207 * 228 * 12 * 4, "{normalize}");
}
