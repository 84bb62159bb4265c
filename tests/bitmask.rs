//! `mask-nodata`'s `bits` on a Landsat Collection 2 Level-2 like scene: one item whose assets are
//! named as on Planetary Computer (`red`, `green`, `blue`, `nir08` with eo:bands common names and
//! raster:bands scale / offset, `qa_pixel` with nodata 1), UInt16 COGs written here, with known
//! QA_PIXEL bit patterns. The masked cube is written and read back with GDAL.

use std::path::{Path, PathBuf};

use gdal::raster::Buffer;
use gdal::spatial_ref::SpatialRef;
use gdal::{DriverManager, Metadata as _};

use crate::support::{flow, output};

/// The scene's size in pixels (30 m, EPSG:32618, on multiples of 30 m).
const W: usize = 24;
const H: usize = 16;
const X0: f64 = 585_000.0;
const Y0: f64 = 5_033_010.0;

/// QA_PIXEL values as USGS documents them for Landsat 8-9 C2 L2 (bit 0 fill, 1 dilated cloud,
/// 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow, 6 clear, 7 water, 8-9 / 10-11 / 12-13 / 14-15 the
/// confidences of cloud / shadow / snow / cirrus).
const CLEAR: u16 = 21824; // bits 6, 8, 10, 12, 14
const WATER: u16 = 21952; // clear + bit 7
const SNOW: u16 = 30048; // bits 5, 6, snow confidence high
const CLOUD: u16 = 22280; // bit 3, cloud confidence high
const SHADOW: u16 = 23888; // bit 4, shadow confidence high
const DILATED: u16 = 21762; // bit 1
const CIRRUS: u16 = 54596; // bit 2, cirrus confidence high
const FILL: u16 = 1; // bit 0 (and the asset's nodata)

/// Every pattern, in the order the scene cycles through them.
const PATTERNS: [u16; 8] = [CLEAR, WATER, CLOUD, SHADOW, SNOW, DILATED, CIRRUS, FILL];

/// The Landsat C2 L2 surface reflectance scale and offset.
const SCALE: f64 = 0.0000275;
const OFFSET: f64 = -0.2;

/// The QA_PIXEL value of pixel `i` (row-major): blocks of 3 x 2 pixels cycling through the
/// patterns.
fn qa(i: usize) -> u16 {
    let (row, col) = (i / W, i % W);
    PATTERNS[((row / 2) * (W / 3) + col / 3) % PATTERNS.len()]
}

/// The DN of band `b` at pixel `i`; red's first pixel is its nodata (0).
fn dn(b: usize, i: usize) -> u16 {
    if b == 0 && i == 0 {
        0
    } else {
        (8000 + 1000 * b + i) as u16
    }
}

/// Writes `data` as a UInt16 COG over the scene's grid.
fn cog(path: &Path, data: Vec<u16>) {
    let mem = DriverManager::get_driver_by_name("MEM").unwrap();
    let mut ds = mem.create_with_band_type::<u16, _>("", W, H, 1).unwrap();
    ds.set_geo_transform(&[X0, 30.0, 0.0, Y0, 0.0, -30.0])
        .unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(32618).unwrap())
        .unwrap();
    {
        let mut band = ds.rasterband(1).unwrap();
        let mut buffer = Buffer::new((W, H), data);
        band.write((0, 0), (W, H), &mut buffer).unwrap();
    }
    let driver = DriverManager::get_driver_by_name("COG").unwrap();
    ds.create_copy(&driver, path, &gdal::cpl::CslStringList::new())
        .unwrap();
}

/// The reflectance assets: key, eo:bands name, common name, centre wavelength.
const BANDS: [(&str, &str, &str, f64); 4] = [
    ("red", "OLI_B4", "red", 0.65),
    ("green", "OLI_B3", "green", 0.56),
    ("blue", "OLI_B2", "blue", 0.48),
    ("nir08", "OLI_B5", "nir08", 0.86),
];

/// Writes the scene's COGs and its one-item catalog into `dir`; returns the catalog.
fn landsat_scene(dir: &Path) -> PathBuf {
    let projection = |asset: &mut serde_json::Value| {
        asset["proj:shape"] = serde_json::json!([H, W]);
        asset["proj:transform"] = serde_json::json!([30.0, 0.0, X0, 0.0, -30.0, Y0]);
        asset["proj:epsg"] = 32618.into();
    };
    let mut assets = serde_json::Map::new();
    for (b, (key, name, common, wavelength)) in BANDS.iter().enumerate() {
        let path = dir.join(format!("{key}.tif"));
        cog(&path, (0..W * H).map(|i| dn(b, i)).collect());
        let mut asset = serde_json::json!({
            "href": path.to_string_lossy(),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "eo:bands": [{"name": name, "common_name": common, "center_wavelength": wavelength}],
            "raster:bands": [{"scale": SCALE, "offset": OFFSET, "nodata": 0, "data_type": "uint16"}],
        });
        projection(&mut asset);
        assets.insert(key.to_string(), asset);
    }
    let path = dir.join("qa_pixel.tif");
    cog(&path, (0..W * H).map(qa).collect());
    let mut asset = serde_json::json!({
        "href": path.to_string_lossy(),
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
        "title": "Pixel Quality Assessment Band",
        "roles": ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
        "raster:bands": [{"unit": "bit index", "nodata": 1, "data_type": "uint16"}],
    });
    projection(&mut asset);
    assets.insert("qa_pixel".into(), asset);
    let item = serde_json::json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": "LC09_L2SP_014028_20210803_02_T1",
        "collection": "landsat-c2-l2",
        "geometry": {"type": "Polygon", "coordinates": [[
            [-73.93, 45.42], [-73.88, 45.42], [-73.88, 45.46], [-73.93, 45.46], [-73.93, 45.42]
        ]]},
        "bbox": [-73.93, 45.42, -73.88, 45.46],
        "properties": {
            "datetime": "2021-08-03T15:30:00Z",
            "platform": "landsat-9",
            "proj:epsg": 32618,
        },
        "assets": assets,
    });
    let catalog = dir.join("items.json");
    std::fs::write(
        &catalog,
        serde_json::json!({"type": "FeatureCollection", "features": [item]}).to_string(),
    )
    .unwrap();
    catalog
}

/// A recipe stacking `assets` of `catalog`, masking with `mask` (TOML lines of mask-nodata's
/// params) and writing the masked cube to `masked.tif`.
fn write_recipe(dir: &Path, catalog: &Path, assets: &str, mask: &str) -> PathBuf {
    let text = format!(
        "name = \"landsat-bits\"\n\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"{}\"\n\n\
         [nodes.stack]\nkind = \"stack\"\ninput = \"search\"\nassets = {assets}\nresolution = 30\n\n\
         [nodes.mask]\nkind = \"mask-nodata\"\ninput = \"stack\"\n{mask}\n\n\
         [nodes.save]\nkind = \"write\"\ninput = \"mask\"\npath = \"masked.tif\"\n",
        catalog.display()
    );
    let path = dir.join("landsat.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const ALL: &str = r#"["red", "green", "blue", "nir08", "qa_pixel"]"#;

/// The written cube: band descriptions and every band's pixels.
fn read_cube(path: &Path) -> (Vec<String>, Vec<Vec<f32>>) {
    let ds = gdal::Dataset::open(path).unwrap();
    assert_eq!(ds.raster_size(), (W, H));
    let mut names = Vec::new();
    let mut data = Vec::new();
    for i in 1..=ds.raster_count() {
        let band = ds.rasterband(i).unwrap();
        names.push(band.description().unwrap());
        let buf = band.read_as::<f32>((0, 0), (W, H), (W, H), None).unwrap();
        data.push(buf.data().to_vec());
    }
    (names, data)
}

/// Runs `recipe` into `out` with `args`; returns the masked cube and the run report.
fn run(cache: &Path, recipe: &Path, out: &Path, args: &[&str]) -> (Vec<Vec<f32>>, String) {
    let (code, stdout, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .args(["--no-cache", "--out"])
            .arg(out)
            .args(args),
    );
    assert_eq!(code, 0, "{args:?}\n{stdout}\n{stderr}");
    let (names, data) = read_cube(&out.join("masked.tif"));
    assert_eq!(
        names,
        ["red", "green", "blue", "nir08"],
        "qa_pixel is dropped"
    );
    (data, std::fs::read_to_string(out.join("run.json")).unwrap())
}

/// Checks that exactly the pixels `masked` says (and red's nodata pixel) are NaN in every band,
/// and that the others keep their reflectance.
fn check(cube: &[Vec<f32>], masked: impl Fn(u16) -> bool) {
    for (b, band) in cube.iter().enumerate() {
        for (i, &v) in band.iter().enumerate() {
            let nan = masked(qa(i)) || dn(b, i) == 0;
            assert_eq!(v.is_nan(), nan, "band {b} pixel {i} (qa {}): {v}", qa(i));
            if !nan {
                let want = f64::from(dn(b, i)) * SCALE + OFFSET;
                assert!(
                    (f64::from(v) - want).abs() < 1e-6,
                    "band {b} pixel {i}: {v}, expected {want}"
                );
            }
        }
    }
}

#[test]
fn the_landsat_preset_masks_fill_dilated_cirrus_cloud_and_shadow_whole_and_in_windows() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = landsat_scene(dir.path());
    let recipe = write_recipe(dir.path(), &catalog, ALL, "bits = \"landsat-c2-qa\"");
    let (whole, report) = run(cache.path(), &recipe, &dir.path().join("whole"), &[]);
    assert!(!report.contains("\"Deferred\""), "{report}");
    let preset = |q: u16| matches!(q, FILL | DILATED | CIRRUS | CLOUD | SHADOW);
    check(&whole, preset);
    // Clear, water and snow pixels stay valid (bits 5, 6, 7 and the confidences are kept).
    for keep in [CLEAR, WATER, SNOW] {
        let i = (0..W * H).find(|&i| qa(i) == keep).unwrap();
        assert!(!whole[1][i].is_nan(), "qa {keep}");
    }
    for masked in [FILL, DILATED, CIRRUS, CLOUD, SHADOW] {
        assert!(
            (0..W * H).any(|i| qa(i) == masked),
            "the scene has qa {masked}"
        );
    }
    // In windows that divide the grid and windows that do not: the same pixels.
    for window in ["8", "10"] {
        let out = dir.path().join(format!("window-{window}"));
        let (cube, report) = run(cache.path(), &recipe, &out, &["--window", window]);
        assert!(report.contains("\"Deferred\""), "not windowed: {report}");
        for (b, (a, c)) in whole.iter().zip(&cube).enumerate() {
            let same = a
                .iter()
                .zip(c)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()));
            assert!(same, "band {b} differs in windows of {window}");
        }
    }
}

#[test]
fn an_explicit_bit_masks_only_that_bit_and_a_field_masks_by_confidence() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = landsat_scene(dir.path());
    // Cloud only; the fill pixels are the asset's nodata, so their QA is NaN and masks too.
    let recipe = write_recipe(
        dir.path(),
        &catalog,
        ALL,
        "bits = { band = \"qa_pixel\", mask = [3] }",
    );
    let (cube, _) = run(cache.path(), &recipe, &dir.path().join("cloud"), &[]);
    check(&cube, |q| matches!(q, CLOUD | FILL));
    // High cirrus confidence (bits 14-15 = 3).
    let recipe = write_recipe(
        dir.path(),
        &catalog,
        ALL,
        "bits = { band = \"qa_pixel\", fields = [{ bits = [14, 15], min = 3 }] }",
    );
    let (cube, _) = run(cache.path(), &recipe, &dir.path().join("cirrus"), &[]);
    check(&cube, |q| matches!(q, CIRRUS | FILL));
}

#[test]
fn a_bit_out_of_range_is_a_recipe_error_at_the_bits_param() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("items.json");
    let recipe = write_recipe(
        dir.path(),
        &catalog,
        ALL,
        "bits = { band = \"qa_pixel\", mask = [1, 40] }",
    );
    for command in ["validate", "run"] {
        let (code, stdout, stderr) = output(flow(cache.path()).arg(command).arg(&recipe));
        assert_eq!(code, 2, "{command}\n{stdout}\n{stderr}");
        for says in [
            "landsat.toml:16:8",
            "param `bits` of node `mask` (mask-nodata)",
            "`bits.mask`: bit 40 is out of range",
        ] {
            assert!(stderr.contains(says), "{command}: no {says:?} in\n{stderr}");
        }
    }
    // An unknown preset names the presets there are.
    let recipe = write_recipe(dir.path(), &catalog, ALL, "bits = \"landsat-c1\"");
    let (code, _, stderr) = output(flow(cache.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unknown bit-mask preset `landsat-c1`")
            && stderr.contains("\"landsat-c2-qa\""),
        "{stderr}"
    );
}

#[test]
fn a_quality_band_the_cube_lacks_is_bad_data_naming_the_param_and_the_bands() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = landsat_scene(dir.path());
    let recipe = write_recipe(
        dir.path(),
        &catalog,
        ALL,
        "bits = { band = \"QA\", mask = [3] }",
    );
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(dir.path().join("out")),
    );
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("node `mask` (mask-nodata)")
            && stderr.contains("param `bits` names band `QA`")
            && stderr.contains("red, green, blue, nir08, qa_pixel"),
        "{stderr}"
    );
    // The preset's band left out of the stack: the message says to stack it.
    let recipe = write_recipe(
        dir.path(),
        &catalog,
        r#"["red", "nir08"]"#,
        "bits = \"landsat-c2-qa\"",
    );
    let (code, _, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(dir.path().join("out2")),
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("preset `landsat-c2-qa`: stack its asset `qa_pixel`")
            && stderr.contains("its bands are red, nir08"),
        "{stderr}"
    );
}
