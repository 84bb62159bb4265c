//! One model over several tiles, as a run scaled out over many tiles does it: the offline
//! scene cut into two halves (two `stack`s with `bounds`), each half sampled, the samples
//! gathered, one fit, and each half classified with it.

use std::path::Path;

use crate::support::{flow, output};
use crate::timberlea::read_u16;

/// The two halves of the offline scene's 228 x 207 grid (EPSG:32618, 10 m), normalized with
/// the same given statistics so that their scalings agree.
const RECIPE: &str = r#"
name = "two-halves"
description = "Two halves of the offline scene, sampled, gathered and fitted once"
aoi = { type = "Polygon", coordinates = [[[-73.8847303, 45.4294192], [-73.883357, 45.4445361], [-73.9108229, 45.4442049], [-73.9120245, 45.4263471], [-73.8847303, 45.4294192]]] }

[params]
catalog = "https://planetarycomputer.microsoft.com/api/stac/v1"

[profiles.offline]
catalog = "builtin:timberlea"

[nodes.search]
kind = "stac-search"
catalog = "${params.catalog}"
collections = ["sentinel-2-l2a"]
envelope = true
datetime = "2021-07-01/2021-08-30"
query = { "eo:cloud_cover" = { lt = 5 } }

[nodes.west]
kind = "stack"
input = "search"
assets = ["B02", "B03", "B04", "B08", "B11"]
resolution = 10
bounds = [585080, 5030880, 586220, 5032950]
clip = false

[nodes.east]
kind = "stack"
input = "search"
assets = ["B02", "B03", "B04", "B08", "B11"]
resolution = 10
bounds = [586220, 5030880, 587360, 5032950]
clip = false

[nodes.west_mask]
kind = "mask-nodata"
input = "west"
nodata = 0

[nodes.east_mask]
kind = "mask-nodata"
input = "east"
nodata = 0

[nodes.west_norm]
kind = "normalize"
input = "west_mask"
STATISTICS

[nodes.east_norm]
kind = "normalize"
input = "east_mask"
STATISTICS

[nodes.west_matrix]
kind = "flatten"
input = "west_norm"

[nodes.east_matrix]
kind = "flatten"
input = "east_norm"

[nodes.west_sample]
kind = "sample"
input = "west_matrix"
size = 3000

[nodes.east_sample]
kind = "sample"
input = "east_matrix"
size = 3000

[nodes.all]
kind = "gather"
inputs = { west = "west_sample", east = "east_sample" }

[nodes.fit]
kind = "kmeans-fit"
input = "all"
k = 4

[nodes.model_json]
kind = "write"
input = "fit"
path = "model.json"

[nodes.west_predict]
kind = "predict"
inputs = { matrix = "west_matrix", model = "fit" }

[nodes.east_predict]
kind = "predict"
inputs = { matrix = "east_matrix", model = "fit" }

[nodes.west_classes]
kind = "reshape"
inputs = { input = "west_predict", model = "fit" }

[nodes.east_classes]
kind = "reshape"
inputs = { input = "east_predict", model = "fit" }

[nodes.west_tif]
kind = "write"
input = "west_classes"
path = "west.tif"

[nodes.east_tif]
kind = "write"
input = "east_classes"
path = "east.tif"
"#;

/// The recipe with `statistics` (normalize's params) in `dir`.
fn recipe(dir: &Path, statistics: &str) -> std::path::PathBuf {
    let path = dir.join("halves.toml");
    std::fs::write(&path, RECIPE.replace("STATISTICS", statistics)).unwrap();
    path
}

/// `flow run RECIPE --profile offline --out OUT ARGS`: exit code and stderr.
fn run(cache: &Path, recipe: &Path, out: &Path, args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .args(["--profile", "offline", "--out"])
            .arg(out)
            .args(args),
    );
    (code, stderr)
}

fn model_json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap()
}

#[test]
fn one_model_fitted_on_the_gathered_samples_of_two_halves_classifies_both() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let given = recipe(
        dir.path(),
        "method = \"minmax\"\nscope = \"global\"\nstatistics = [[0, 0.5]]",
    );
    let out = dir.path().join("whole");
    let (code, stderr) = run(cache.path(), &given, &out, &[]);
    assert_eq!(code, 0, "{stderr}");

    // Each half has more valid pixels than its sample: 3000 rows each, gathered, fitted.
    let model = model_json(&out);
    let counts: Vec<u64> = model["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(counts.len(), 4);
    assert_eq!(counts.iter().sum::<u64>(), 6000, "{model}");
    assert_eq!(model["info"]["rows"], 6000, "{model}");
    assert_eq!(
        model["features"].as_array().unwrap().len(),
        5,
        "{}",
        model["features"]
    );
    // The given statistics are the scaling both halves share, which the model keeps.
    assert_eq!(
        model["scaling"][0]["statistics"],
        serde_json::json!([0.0, 0.5])
    );

    // Each half's class map is on its own half of the grid, with the model's classes.
    let (west, wgt, wsize, _) = read_u16(&out.join("west.tif"), None);
    let (east, egt, esize, _) = read_u16(&out.join("east.tif"), None);
    assert_eq!((wsize, esize), ((114, 207), (114, 207)));
    assert_eq!((wgt[0], egt[0]), (585080.0, 586220.0));
    for (name, labels) in [("west", &west), ("east", &east)] {
        let classes: std::collections::BTreeSet<u16> =
            labels.iter().copied().filter(|&c| c < 4).collect();
        assert!(classes.len() >= 2, "{name}: {classes:?}");
    }

    // Window by window (each half a windowed cube, sampled window by window): the same model
    // and the same maps.
    let windowed = dir.path().join("windowed");
    let (code, stderr) = run(
        cache.path(),
        &given,
        &windowed,
        &["--window", "64", "--no-cache"],
    );
    assert_eq!(code, 0, "{stderr}");
    let again = model_json(&windowed);
    assert_eq!(again["centroids"], model["centroids"]);
    assert_eq!(again["counts"], model["counts"]);
    assert_eq!(read_u16(&windowed.join("west.tif"), None).0, west);
    assert_eq!(read_u16(&windowed.join("east.tif"), None).0, east);

    // Each half scaled by its own statistics: gather refuses to mix them, naming the input.
    let own = dir.path().join("own");
    std::fs::create_dir(&own).unwrap();
    let own_recipe = recipe(&own, "method = \"minmax\"\nscope = \"global\"");
    let (code, stderr) = run(cache.path(), &own_recipe, &own.join("out"), &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("input `west`") && stderr.contains("scaled otherwise"),
        "{stderr}"
    );
}
