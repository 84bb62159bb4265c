//! `flow fixture tile` and `flow fixture mosaic` at small sizes: the items and their COGs agree,
//! the Timberlea recipe's nodes classify the tile, and the mosaic's four items form one
//! continuous area.

use std::path::{Path, PathBuf};

use gdal::Metadata as _;
use serde_json::Value;

use crate::support::adjusted_rand_index;
use crate::support::{flow, output};

/// `flow fixture NAME --out DIR ARGS...`; returns the path it prints.
fn fixture(cache: &Path, name: &str, dir: &Path, args: &[&str]) -> PathBuf {
    let (code, stdout, stderr) = output(
        flow(cache)
            .args(["fixture", name, "--out"])
            .arg(dir)
            .args(args),
    );
    assert_eq!(code, 0, "{stderr}");
    let path = PathBuf::from(stdout.trim());
    assert_eq!(path, dir.join("items.json"));
    path
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Band 1 of a raster as u16, with its size and geotransform.
fn read_u16(path: &Path) -> (Vec<u16>, (usize, usize), [f64; 6]) {
    let ds = gdal::Dataset::open(path).unwrap();
    let size = ds.raster_size();
    let data = ds
        .rasterband(1)
        .unwrap()
        .read_as::<u16>((0, 0), size, size, None)
        .unwrap()
        .data()
        .to_vec();
    (data, size, ds.geo_transform().unwrap())
}

/// Checks every asset of every item against its file: a DEFLATE COG in 256 x 256 blocks whose
/// size, geotransform, CRS and nodata are those the item gives (`proj:shape`, `proj:transform`).
fn check_items(items_path: &Path, size: usize) -> Vec<Value> {
    let dir = items_path.parent().unwrap();
    let items = read_json(items_path);
    let features = items["features"].as_array().unwrap().clone();
    for f in &features {
        let id = f["id"].as_str().unwrap();
        assert_eq!(f["properties"]["proj:epsg"], 32618);
        let assets = f["assets"].as_object().unwrap();
        let keys: Vec<&str> = assets.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
                "SCL"
            ]
        );
        for (key, a) in assets {
            let gsd = a["gsd"].as_u64().unwrap() as usize;
            let n = size * 10 / gsd;
            assert_eq!(a["proj:shape"], serde_json::json!([n, n]), "{id} {key}");
            let t: Vec<f64> = a["proj:transform"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let href = a["href"].as_str().unwrap();
            assert_eq!(href, format!("{id}/{key}.tif"));
            let ds = gdal::Dataset::open(dir.join(href)).unwrap();
            assert_eq!(ds.raster_size(), (n, n), "{id} {key}");
            assert_eq!(
                ds.geo_transform().unwrap(),
                [t[2], t[0], t[1], t[5], t[3], t[4]],
                "{id} {key}"
            );
            assert_eq!(ds.spatial_ref().unwrap().auth_code().unwrap(), 32618);
            assert_eq!(
                ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
                Some("COG"),
                "{id} {key}"
            );
            assert_eq!(
                ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE")
                    .as_deref(),
                Some("DEFLATE")
            );
            let band = ds.rasterband(1).unwrap();
            assert_eq!(band.block_size(), (256, 256));
            assert_eq!(band.no_data_value(), Some(0.0));
        }
    }
    features
}

/// Runs `recipe` (TOML text) from `dir`; returns the output directory.
fn run(cache: &Path, dir: &Path, recipe: &str) -> PathBuf {
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    let out = dir.join("out");
    let (code, stdout, stderr) = output(flow(cache).arg("run").arg(&path).arg("--out").arg(&out));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    out
}

/// ARI of a class map against the fixture's truth (same grid), over pixels valid in both; also
/// asserts that the map has a class exactly where the truth has data.
fn ari_against_truth(classes: &Path, truth: &Path) -> f64 {
    let ds = gdal::Dataset::open(classes).unwrap();
    let nodata = ds.rasterband(1).unwrap().no_data_value().unwrap() as u16;
    let (labels, size, gt) = read_u16(classes);
    let (truth, tsize, tgt) = read_u16(truth);
    assert_eq!(
        (size, gt),
        (tsize, tgt),
        "the class map is on the truth's grid"
    );
    let mut pairs = (Vec::new(), Vec::new());
    for (p, (&l, &t)) in labels.iter().zip(&truth).enumerate() {
        assert_eq!(l == nodata, t == 255, "pixel {p}: class {l}, truth {t}");
        if t != 255 {
            pairs.0.push(l);
            pairs.1.push(t);
        }
    }
    assert!(pairs.0.len() > labels.len() / 2);
    adjusted_rand_index(&pairs.0, &pairs.1)
}

/// The nodes of recipes/timberlea_kmeans.toml after the search, over the fixture's whole extent.
fn classify_recipe(items: &Path, bounds: &Value, between: &str) -> String {
    format!(
        r#"
name = "big-fixture"

[nodes.search]
kind = "stac-search"
catalog = {catalog:?}
query = {{ "eo:cloud_cover" = {{ lt = 5 }} }}

[nodes.stack]
kind = "stack"
input = "search"
assets = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]
resolution = 10
bounds = {bounds}

[nodes.mask]
kind = "mask-nodata"
input = "stack"
nodata = 0
{between}
[nodes.normalize]
kind = "normalize"
input = "{last}"
method = "minmax"
scope = "global"
range = [0, 255]

[nodes.flatten]
kind = "flatten"
input = "normalize"

[nodes.fit]
kind = "kmeans-fit"
input = "flatten"
k = 4
seed = 0

[nodes.predict]
kind = "predict"
inputs = {{ matrix = "flatten", model = "fit" }}

[nodes.classes]
kind = "reshape"
inputs = {{ input = "predict", model = "fit" }}

[nodes.classes_tif]
kind = "write"
inputs = {{ input = "classes", items = "search" }}
path = "classes.tif"
stac_item = true
"#,
        catalog = items.display().to_string(),
        last = if between.is_empty() { "mask" } else { "mosaic" },
    )
}

#[test]
fn a_small_tile_fixture_validates_and_the_timberlea_nodes_classify_it() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("tile");
    let items_path = fixture(
        cache.path(),
        "tile",
        &scene,
        &["--size", "516", "--dates", "2"],
    );
    let features = check_items(&items_path, 516);
    assert_eq!(features.len(), 2);
    let cover = |f: &Value| f["properties"]["eo:cloud_cover"].as_f64().unwrap();
    assert_eq!(
        features[0]["properties"]["datetime"],
        "2021-08-03T15:49:09Z"
    );
    assert!(cover(&features[0]) < 5.0, "the first date is nearly clear");
    assert!(cover(&features[1]) > 5.0, "the second date is cloudy");
    let items = read_json(&items_path);
    let bounds = &items["flow:fixture"]["bounds"];
    assert_eq!(
        *bounds,
        serde_json::json!([499980.0, 5094840.0, 505140.0, 5100000.0])
    );

    let out = run(
        cache.path(),
        dir.path(),
        &classify_recipe(&items_path, bounds, ""),
    );
    let ari = ari_against_truth(&out.join("classes.tif"), &scene.join("truth.tif"));
    println!("516 x 516 tile, k = 4: adjusted Rand index {ari:.4}");
    assert!(ari > 0.5, "ARI {ari}");
    let item = read_json(&out.join("classes.item.json"));
    assert_eq!(item["properties"]["datetime"], "2021-08-03T15:49:09Z");
}

#[test]
fn a_mosaic_fixture_is_four_adjacent_tiles_that_continue_each_other() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let size = 132;
    let mosaic = dir.path().join("mosaic");
    let items_path = fixture(cache.path(), "mosaic", &mosaic, &["--size", "132"]);
    let features = check_items(&items_path, size);
    assert_eq!(features.len(), 4);
    let mut tiles = Vec::new();
    for (i, f) in features.iter().enumerate() {
        assert_eq!(f["properties"]["datetime"], "2021-08-03T15:49:09Z");
        tiles.push(
            f["properties"]["s2:mgrs_tile"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        // Row-major 2 x 2, edges touching exactly: 1320 m per tile.
        let (row, col) = (i / 2, i % 2);
        let t = &f["assets"]["B04"]["proj:transform"];
        assert_eq!(t[2].as_f64().unwrap(), 499_980.0 + 1320.0 * col as f64);
        assert_eq!(t[5].as_f64().unwrap(), 5_100_000.0 - 1320.0 * row as f64);
    }
    assert_eq!(tiles, ["18TWR", "18TXR", "18TWQ", "18TXQ"]);

    // The north-west item is the tile fixture of the same size, pixel for pixel.
    let tile = dir.path().join("tile");
    let tile_items = fixture(cache.path(), "tile", &tile, &["--size", "132"]);
    let tile_id = read_json(&tile_items)["features"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tile_id, features[0]["id"].as_str().unwrap());
    for key in ["B01", "B04", "B05", "SCL"] {
        let a = read_u16(&mosaic.join(&tile_id).join(format!("{key}.tif")));
        let b = read_u16(&tile.join(&tile_id).join(format!("{key}.tif")));
        assert!(a == b, "{key} differs between the mosaic and the tile");
    }

    // Stacked over the union, the four items are four time steps, each NaN outside its tile;
    // `composite` with `first` makes the mosaic, which has data wherever the truth has (no seam
    // is missing) and classifies like one scene.
    let bounds = &read_json(&items_path)["flow:fixture"]["bounds"];
    assert_eq!(
        *bounds,
        serde_json::json!([499980.0, 5097360.0, 502620.0, 5100000.0])
    );
    let between = "\n[nodes.mosaic]\nkind = \"composite\"\ninput = \"mask\"\nmethod = \"first\"\n";
    let out = run(
        cache.path(),
        dir.path(),
        &classify_recipe(&items_path, bounds, between),
    );
    let ari = ari_against_truth(&out.join("classes.tif"), &mosaic.join("truth.tif"));
    println!("2 x 2 mosaic of 132 x 132 tiles, k = 4: adjusted Rand index {ari:.4}");
    assert!(ari > 0.5, "ARI {ari}");
}

#[test]
fn fixture_options_are_checked() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        output(
            flow(cache.path())
                .arg("fixture")
                .args(args)
                .arg("--out")
                .arg(dir.path()),
        )
    };
    let (code, _, stderr) = run(&["tile", "--size", "512"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("multiple of 6"), "{stderr}");
    let (code, _, stderr) = run(&["mosaic", "--dates", "9"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("dates"), "{stderr}");
    let (code, _, stderr) = run(&["timberlea", "--size", "516"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--size"), "{stderr}");
    let (code, _, stderr) = run(&["tiles"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("timberlea, tile, mosaic"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing is written"
    );
}

#[test]
fn a_quicklook_of_a_windowed_tile_reads_a_coarser_grid_from_the_overviews() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let items = fixture(
        cache.path(),
        "tile",
        &dir.path().join("tile"),
        &["--size", "2112"],
    );
    let features = check_items(&items, 2112);
    // Its COGs have overviews, as Planetary Computer's do.
    let b04 = items
        .parent()
        .unwrap()
        .join(features[0]["assets"]["B04"]["href"].as_str().unwrap());
    let ds = gdal::Dataset::open(&b04).unwrap();
    assert!(ds.rasterband(1).unwrap().overview_count().unwrap() >= 2);
    let recipe = format!(
        r#"
name = "quicklook"
[nodes.search]
kind = "stac-search"
catalog = {catalog:?}
[nodes.stack]
kind = "stack"
input = "search"
assets = ["B04", "B03", "B02"]
resolution = 10
[nodes.mask]
kind = "mask-nodata"
input = "stack"
nodata = 0
[nodes.picture]
kind = "write"
input = "mask"
path = "rgb.png"
"#,
        catalog = items.display().to_string()
    );
    let path = dir.path().join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .args(["--window", "512"]),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let picture = crate::support::node_report(&out, "picture");
    // 2112 pixels a side is drawn from every second one: the three bands are read on a
    // 1056 x 1056 grid, a quarter of the pixels, in windows of 512.
    assert_eq!(picture["read_bytes"], 3 * 1056 * 1056 * 4, "{picture}");
    assert_eq!(picture["windows"], 9, "{picture}");
    let png = image_size(&out.join("rgb.png"));
    assert!(png.0 >= 1056 && png.0 < 2112, "{png:?}");
}

/// Width and height of a PNG, from its header.
fn image_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}
