//! One scene's model and scaling applied to another date: `normalize` records its statistics in
//! its bands and the model, and applies recorded statistics instead of its input's own.

use std::path::Path;

use crate::support::{flow, output, root};

const RECIPE: &str = "recipes/timberlea_two_dates.toml";

/// Runs `recipe` offline into `out` with `args`; panics unless it exits 0.
fn run(cache: &Path, recipe: &Path, out: &Path, args: &[&str]) {
    let (code, stdout, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .args(["--profile", "offline", "--out"])
            .arg(out)
            .args(args),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
}

/// Band 1 of a class GeoTIFF.
fn labels(path: &Path) -> Vec<u8> {
    let ds = gdal::Dataset::open(path).unwrap();
    let size = ds.raster_size();
    let band = ds.rasterband(1).unwrap();
    band.read_as::<u8>((0, 0), size, size, None)
        .unwrap()
        .data()
        .to_vec()
}

/// The recipe in `dir`, beside a copy of the recipe it extends, with `replace` applied.
fn variant(dir: &Path, replace: &[(&str, &str)]) -> std::path::PathBuf {
    std::fs::copy(
        root().join("recipes/timberlea_kmeans.toml"),
        dir.join("timberlea_kmeans.toml"),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(root().join(RECIPE)).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    let path = dir.join("variant.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_second_date_is_classified_with_the_first_dates_scaling() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(cache.path(), &root().join(RECIPE), &out, &[]);
    let july = labels(&out.join("timberlea_classes_2021-07-14.tif"));
    let august = labels(&out.join("timberlea_classes.tif"));
    assert_ne!(july, august, "two dates, two maps");

    // The model records August's global min-max scaling for every feature, at full precision.
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timberlea_model.json")).unwrap()).unwrap();
    let scaling = model["scaling"].as_array().unwrap();
    assert_eq!(scaling.len(), model["features"].as_array().unwrap().len());
    let pair = &scaling[0]["statistics"];
    assert!(scaling
        .iter()
        .all(|s| s["statistics"] == *pair && s["method"] == "minmax"));

    // The same map from July normalized with those statistics written as numbers.
    let given = format!("statistics = [[{}, {}]]", pair[0], pair[1]);
    let recipe = variant(
        dir.path(),
        &[(
            "inputs = { input = \"mask_july\", statistics = \"fit\" }",
            &format!("input = \"mask_july\"\n{given}"),
        )],
    );
    let out2 = dir.path().join("given");
    run(cache.path(), &recipe, &out2, &[]);
    assert_eq!(labels(&out2.join("timberlea_classes_2021-07-14.tif")), july);

    // ... and from August's normalized raster instead of the model.
    let recipe = variant(
        dir.path(),
        &[("statistics = \"fit\"", "statistics = \"normalize\"")],
    );
    let out3 = dir.path().join("raster");
    run(cache.path(), &recipe, &out3, &[]);
    assert_eq!(labels(&out3.join("timberlea_classes_2021-07-14.tif")), july);

    // July's own statistics give another map: the scaling did matter.
    let recipe = variant(
        dir.path(),
        &[(
            "inputs = { input = \"mask_july\", statistics = \"fit\" }",
            "input = \"mask_july\"",
        )],
    );
    let out4 = dir.path().join("own");
    run(cache.path(), &recipe, &out4, &[]);
    assert_ne!(labels(&out4.join("timberlea_classes_2021-07-14.tif")), july);

    // Window by window, the same maps.
    let out5 = dir.path().join("windowed");
    run(
        cache.path(),
        &root().join(RECIPE),
        &out5,
        &["--window", "50", "--no-cache"],
    );
    assert_eq!(labels(&out5.join("timberlea_classes_2021-07-14.tif")), july);
}

#[test]
fn a_scaling_made_with_other_params_is_refused_naming_both() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = variant(
        dir.path(),
        &[(
            "scope = \"global\"\nrange = [0, 255]\n\n[nodes.flatten_july]",
            "scope = \"band\"\nrange = [0, 255]\n\n[nodes.flatten_july]",
        )],
    );
    let (code, _, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&recipe)
            .args(["--profile", "offline", "--out"])
            .arg(dir.path().join("out")),
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("normalize_july")
            && stderr.contains("scope = \"global\"")
            && stderr.contains("scope = \"band\""),
        "{stderr}"
    );
}

#[test]
fn a_model_json_written_by_one_run_classifies_the_other_date_in_another() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One recipe: fit on August, classify July (the reference map).
    let one = dir.path().join("one");
    run(cache.path(), &root().join(RECIPE), &one, &[]);
    let july = labels(&one.join("timberlea_classes_2021-07-14.tif"));
    // Another recipe, another cache: the model JSON of the first run is all it knows of August.
    std::fs::copy(
        one.join("timberlea_model.json"),
        dir.path().join("august.json"),
    )
    .unwrap();
    let recipe = dir.path().join("apply.toml");
    std::fs::write(
        &recipe,
        r#"name = "apply"
[nodes.search]
kind = "stac-search"
catalog = "builtin:timberlea"
collections = ["sentinel-2-l2a"]
datetime = "2021-07-14"

[nodes.stack]
kind = "stack"
input = "search"
assets = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]
resolution = 10
aoi = { type = "Polygon", coordinates = [[[-73.8847303, 45.4294192], [-73.883357, 45.4445361], [-73.9108229, 45.4442049], [-73.9120245, 45.4263471], [-73.8847303, 45.4294192]]] }

[nodes.mask]
kind = "mask-nodata"
input = "stack"
nodata = 0

[nodes.model]
kind = "read"
path = "august.json"

[nodes.normalize]
kind = "normalize"
inputs = { input = "mask", statistics = "model" }

[nodes.flatten]
kind = "flatten"
input = "normalize"

[nodes.predict]
kind = "predict"
inputs = { matrix = "flatten", model = "model" }

[nodes.classes]
kind = "reshape"
inputs = { input = "predict", model = "model" }

[nodes.tif]
kind = "write"
input = "classes"
path = "july.tif"
"#,
    )
    .unwrap();
    let other_cache = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        flow(other_cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(dir.path().join("two")),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(labels(&dir.path().join("two/july.tif")), july);

    // A model of other features is refused by predict, naming both lists: one band fewer, then
    // as many bands with another name.
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "inputs = { input = \"mask\", statistics = \"model\" }",
        "input = \"mask\"",
    );
    for (from, to) in [("[\"B01\", ", "["), ("[\"B01\", ", "[\"SCL\", ")] {
        std::fs::write(&recipe, text.replace(from, to)).unwrap();
        let (code, _, stderr) = output(
            flow(other_cache.path())
                .arg("run")
                .arg(&recipe)
                .arg("--out")
                .arg(dir.path().join("three")),
        );
        assert_eq!(code, 3, "{stderr}");
        assert!(
            stderr.contains("predict")
                && stderr.contains("B01, B02")
                && stderr.contains("B02, B03"),
            "both lists are named: {stderr}"
        );
    }
}
