use std::path::Path;

use crate::support::{flow, node_report, output, root, write_scene};

const RECIPE: &str = "recipes/timberlea_supervised.toml";

/// `flow run RECIPE --out OUT` with the cache in `cache`, plus `extra`.
fn run(cache: &Path, recipe: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .arg("--out")
            .arg(out)
            .args(extra),
    )
}

/// Band 1 of a GeoTIFF as u16, the window `(col, row, width, height)` of it or all of it, with
/// its geotransform and size.
fn read_u16(
    path: &Path,
    window: Option<(isize, isize, usize, usize)>,
) -> (Vec<u16>, [f64; 6], (usize, usize)) {
    let ds = gdal::Dataset::open(path).unwrap();
    let (w, h) = ds.raster_size();
    let (col, row, ww, wh) = window.unwrap_or((0, 0, w, h));
    let buf = ds
        .rasterband(1)
        .unwrap()
        .read_as::<u16>((col, row), (ww, wh), (ww, wh), None)
        .unwrap();
    (buf.data().to_vec(), ds.geo_transform().unwrap(), (w, h))
}

#[test]
fn a_forest_trained_on_the_truth_maps_the_scene_the_same_on_one_and_two_jobs() {
    let (cache1, cache2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out1, out2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let recipe = root().join(RECIPE);
    let (code, stdout, stderr) = run(cache1.path(), &recipe, out1.path(), &["--jobs", "1"]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let (code, stdout, stderr) = run(cache2.path(), &recipe, out2.path(), &["--jobs", "2"]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");

    // The held-out evaluation, in the run report.
    let fit = node_report(out1.path(), "fit");
    let summary = &fit["output"]["classifier"];
    let accuracy = summary["holdout_accuracy"].as_f64().unwrap();
    let recall: Vec<f64> = summary["recall"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect();
    println!("Timberlea offline, random forest: held-out accuracy {accuracy}, recall {recall:?}");
    assert!(accuracy >= 0.90, "held-out accuracy {accuracy}");
    assert!(recall.iter().all(|&r| r >= 0.8), "recall {recall:?}");
    assert_eq!(summary["method"], "random-forest");
    assert_eq!(summary["classes"], serde_json::json!([0, 1, 2, 3, 4]));
    assert_eq!(summary["trees"], 100);
    // 2000 pixels of each of the five classes, 30 % of them held out.
    assert_eq!(summary["holdout_rows"], 3000);
    assert_eq!(fit["output"]["counts"], serde_json::json!(vec![1400; 5]));
    assert_eq!(
        node_report(out2.path(), "fit")["output"],
        fit["output"],
        "the same evaluation on two threads"
    );

    // The same model and the same map, byte for byte, on one and two threads.
    for file in ["timberlea_model.json", "timberlea_classes.tif"] {
        assert!(
            std::fs::read(out1.path().join(file)).unwrap()
                == std::fs::read(out2.path().join(file)).unwrap(),
            "{file} differs between --jobs 1 and --jobs 2"
        );
    }
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.path().join("timberlea_model.json")).unwrap())
            .unwrap();
    assert_eq!(model["classifier"]["trees"].as_array().unwrap().len(), 100);
    assert_eq!(model["classifier"]["holdout"]["rows"], 3000);
    // The classes keep the truth's ids and names.
    assert_eq!(model["centroids"][1]["class"], 1);
    assert_eq!(model["centroids"][1]["name"], "dense forest");
    assert_eq!(model["classes"][4]["name"], "bare soil");

    // The whole map against the truth: every pixel both call valid, not only the held-out ones.
    let scene = tempfile::tempdir().unwrap();
    write_scene(cache1.path(), scene.path());
    let (map, gt, (w, h)) = read_u16(&out1.path().join("timberlea_classes.tif"), None);
    let truth_path = scene.path().join("truth.tif");
    let (_, tgt, _) = read_u16(&truth_path, Some((0, 0, 1, 1)));
    let col = ((gt[0] - tgt[0]) / tgt[1]).round() as isize;
    let row = ((gt[3] - tgt[3]) / tgt[5]).round() as isize;
    let (truth, ..) = read_u16(&truth_path, Some((col, row, w, h)));
    let (mut both, mut same) = (0usize, 0usize);
    for (&m, &t) in map.iter().zip(&truth) {
        if m != 255 && t != 255 {
            both += 1;
            same += usize::from(m == t);
        }
    }
    assert!(both > w * h / 2, "most pixels are valid: {both}");
    let agreement = same as f64 / both as f64;
    println!("Timberlea offline, random forest: the map agrees with the truth on {agreement:.4} of {both} pixels");
    assert!(agreement >= 0.90, "agreement {agreement}");
}

#[test]
fn predict_refuses_features_other_than_the_training_ones_naming_both() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("other_features.toml");
    // The forest learns from the 12 bands; predict is given the 12 bands and NDVI.
    std::fs::write(
        &recipe,
        format!(
            r#"extends = "{}"
name = "other-features"
[nodes.ndvi]
kind = "add-index"
input = "normalize"
indices = ["NDVI"]
[nodes.flat_ndvi]
kind = "flatten"
input = "ndvi"
[nodes.predict]
inputs = {{ matrix = "flat_ndvi", model = "fit" }}
"#,
            root().join(RECIPE).display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(cache.path(), &recipe, out.path(), &[]);
    assert_eq!(code, 3, "stdout: {stdout}\nstderr: {stderr}");
    let bands = "B01, B02, B03, B04, B05, B06, B07, B08, B09, B11, B12, B8A";
    assert!(
        stderr.contains("predict")
            && stderr.contains(&format!("[{bands}]"))
            && stderr.contains(&format!("[{bands}, NDVI]")),
        "{stderr}"
    );
}

#[test]
fn a_classifier_written_as_json_and_read_back_maps_the_scene_the_same() {
    let cache = tempfile::tempdir().unwrap();
    let (out, again) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let recipe = root().join(RECIPE);
    let (code, _, stderr) = run(cache.path(), &recipe, out.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    // The same recipe, its fit replaced by the model JSON the first run wrote.
    let dir = tempfile::tempdir().unwrap();
    let model = out.path().join("timberlea_model.json");
    let copy = dir.path().join("trained.json");
    std::fs::copy(&model, &copy).unwrap();
    let reread = dir.path().join("reread.toml");
    std::fs::write(
        &reread,
        format!(
            r#"extends = "{}"
name = "reread"
[nodes.fit]
kind = "read"
path = "trained.json"
"#,
            root().join(RECIPE).display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(cache.path(), &reread, again.path(), &[]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let (first, ..) = read_u16(&out.path().join("timberlea_classes.tif"), None);
    let (second, ..) = read_u16(&again.path().join("timberlea_classes.tif"), None);
    assert!(first == second, "the model read back predicts another map");
    assert!(
        std::fs::read(&model).unwrap()
            == std::fs::read(again.path().join("timberlea_model.json")).unwrap(),
        "the model read back writes the same JSON"
    );
}
