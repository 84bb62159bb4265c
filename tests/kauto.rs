//! `kmeans-fit` with `k = "auto"` on the offline scene: the sweep finds the scene's true number
//! of classes, its map is as good as the best fixed k of the range, and it is the same on one
//! and two threads.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{flow, output, write_scene};
use crate::timberlea::{ari_against_truth, read_u16};

const BASE: &str = "recipes/timberlea_kmeans.toml";
const AUTO: &str = "recipes/timberlea_kauto.toml";

/// `flow run RECIPE --profile offline ARGS --out OUT` with the cache in `cache`; panics unless it
/// succeeds.
fn run(cache: &Path, recipe: &str, args: &[&str], out: &Path) {
    let (code, _, stderr) = output(
        flow(cache)
            .args(["run", recipe, "--profile", "offline"])
            .args(args)
            .arg("--out")
            .arg(out),
    );
    assert_eq!(code, 0, "{recipe} {args:?}: {stderr}");
}

/// The classes of the truth map over the pixels the class map `classes` has a class for.
fn true_classes(classes: &Path, scene: &Path) -> usize {
    let (labels, gt, (w, h), _) = read_u16(classes, None);
    let truth_path = scene.join("truth.tif");
    let tgt = gdal::Dataset::open(&truth_path)
        .unwrap()
        .geo_transform()
        .unwrap();
    let col = ((gt[0] - tgt[0]) / tgt[1]).round() as isize;
    let row = ((gt[3] - tgt[3]) / tgt[5]).round() as isize;
    let (truth, ..) = read_u16(&truth_path, Some(((col, row), (w, h))));
    let seen: BTreeSet<u16> = labels
        .iter()
        .zip(&truth)
        .filter(|&(&l, &t)| l != 255 && t != 255)
        .map(|(_, &t)| t)
        .collect();
    seen.len()
}

fn model_json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("timberlea_model.json")).unwrap()).unwrap()
}

#[test]
fn auto_k_finds_the_true_classes_as_well_as_the_best_fixed_k_on_any_thread_count() {
    let scene = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_scene(cache.path(), scene.path());

    // k = "auto" on one and on two threads, each with a cache of its own.
    let mut outs = Vec::new();
    for jobs in ["1", "2"] {
        let own_cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        run(own_cache.path(), AUTO, &["--jobs", jobs], out.path());
        outs.push(out);
    }
    for file in [
        "timberlea_model.json",
        "timberlea_sweep.png",
        "timberlea_classes.png",
    ] {
        let a = std::fs::read(outs[0].path().join(file)).unwrap();
        let b = std::fs::read(outs[1].path().join(file)).unwrap();
        assert!(a == b, "{file} differs between --jobs 1 and --jobs 2");
    }
    let classes = outs[0].path().join("timberlea_classes.tif");
    assert_eq!(
        read_u16(&classes, None).0,
        read_u16(&outs[1].path().join("timberlea_classes.tif"), None).0,
        "class maps differ between --jobs 1 and --jobs 2"
    );
    let model = model_json(outs[0].path());
    let sweep = &model["info"]["sweep"];
    let truth = true_classes(&classes, scene.path());
    assert_eq!(truth, 5, "the offline scene has five classes");
    assert_eq!(sweep["criterion"], "silhouette");
    assert_eq!(sweep["k_range"], serde_json::json!([2, 10]));
    assert_eq!(
        sweep["k"], truth,
        "k = \"auto\" chooses the true number of classes: {sweep:#}"
    );
    assert_eq!(model["k"], truth);
    let ari_auto = ari_against_truth(&classes, scene.path());

    // Every fixed k of the range, through the base recipe (one cache: only fit and after rerun).
    let results = sweep["results"].as_array().unwrap();
    let mut best_fixed = (0, f64::MIN);
    println!(
        "k = \"auto\" on the offline scene ({} rows fitted, silhouette on {}):",
        sweep["rows"], sweep["silhouette_rows"]
    );
    println!(
        "{:>3} {:>14} {:>11} {:>18} {:>15} {:>11}",
        "k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "ARI fixed k"
    );
    for r in results {
        let k = r["k"].as_u64().unwrap();
        let out = tempfile::tempdir().unwrap();
        let set = format!("k={k}");
        run(cache.path(), BASE, &["--set", &set], out.path());
        let fixed = model_json(out.path());
        // The sweep's fit of this k is the fixed-k fit with the same seed.
        assert_eq!(fixed["inertia"], r["inertia"], "k = {k}");
        assert_eq!(fixed["iterations"], r["iterations"], "k = {k}");
        let ari = ari_against_truth(&out.path().join("timberlea_classes.tif"), scene.path());
        if ari > best_fixed.1 {
            best_fixed = (k, ari);
        }
        println!(
            "{k:>3} {:>14.1} {:>11.4} {:>18.1} {:>15.4} {ari:>11.4}{}",
            r["inertia"].as_f64().unwrap(),
            r["silhouette"].as_f64().unwrap(),
            r["calinski_harabasz"].as_f64().unwrap(),
            r["davies_bouldin"].as_f64().unwrap(),
            if r["chosen"] == true {
                "  <- chosen"
            } else {
                ""
            }
        );
    }
    println!(
        "ARI of k = \"auto\": {ari_auto:.4}; best fixed k: {} with {:.4}",
        best_fixed.0, best_fixed.1
    );
    assert!(
        ari_auto >= best_fixed.1,
        "auto's ARI {ari_auto} is below the best fixed k's ({} with {})",
        best_fixed.0,
        best_fixed.1
    );
}

#[test]
fn a_fixed_k_replaces_auto_from_the_command_line_and_auto_replaces_a_fixed_k() {
    let cache = tempfile::tempdir().unwrap();
    // `k = "auto"` in [params] takes `--set k=6` (the fit ignores `k_range` and `criterion`
    // then); a fixed-k model has no sweep, so the node that draws one fails, saying why.
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(
        flow(cache.path())
            .args(["run", AUTO, "--profile", "offline", "--set", "k=6", "--out"])
            .arg(out.path()),
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("node `sweep` (write) failed")
            && stderr.contains("only when it holds the sweep of a kmeans-fit with k = \"auto\""),
        "{stderr}"
    );
    let report = crate::support::node_report(out.path(), "fit");
    assert_eq!(report["status"], "computed", "{report:#}");
    // The base recipe's `k = 4` takes "auto", quoted or bare, and a bad word is refused where
    // it is used, before anything runs.
    for set in ["k=auto", "k=\"auto\""] {
        let (code, _, stderr) = output(flow(cache.path()).args(["validate", BASE, "--set", set]));
        assert_eq!(code, 0, "{set}: {stderr}");
    }
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(
        flow(cache.path())
            .args([
                "run",
                BASE,
                "--profile",
                "offline",
                "--set",
                "fit.k=\"many\"",
                "--out",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`k` must be an integer >= 1 or \"auto\""),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}
