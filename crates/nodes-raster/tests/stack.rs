//! `stack` against the generated Timberlea scene and against gdalwarp.

mod common;

use std::process::Command;

use common::*;
use flow_core::{NodeError, Value};
use flow_nodes_raster::StackKind;

fn only_first_item(mut v: serde_json::Value) -> serde_json::Value {
    let first = v["features"][0].clone();
    v["features"] = serde_json::json!([first]);
    v
}

fn stack(p: &str, items: serde_json::Value) -> Result<flow_core::Raster, NodeError> {
    let tmp = tempfile::tempdir().unwrap();
    match run(
        &StackKind,
        p,
        vec![("input", items_value(items))],
        &ctx(tmp.path()),
    )? {
        Value::Raster(r) => Ok(r),
        other => panic!("not a raster: {other:?}"),
    }
}

#[test]
fn notebook_aoi_has_stackstacs_grid_and_source_pixels() {
    let items = only_first_item(items());
    let r = stack(
        &format!("assets = {ASSETS}\nresolution = 10\nbounds_latlon = {AOI}"),
        items.clone(),
    )
    .unwrap();
    assert_eq!(r.data.shape(), &[1, 12, 207, 228]);
    assert_eq!(
        r.grid.transform,
        [585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]
    );
    assert_eq!(r.grid.crs, "EPSG:32618");
    assert_eq!(r.times, ["2021-08-03T15:49:09Z"]);
    assert_eq!(r.bands[3].name, "B04");
    assert_eq!(r.bands[3].common_name.as_deref(), Some("red"));
    assert_eq!(r.bands[11].common_name.as_deref(), Some("nir08"));
    // Some nodata inside the AOI (the swath edge), and NaN there.
    let nan = r.data.iter().filter(|v| v.is_nan()).count();
    assert!(nan > 0 && nan < r.data.len() / 10, "{nan}");

    let dir = scene().parent().unwrap();
    let id = items["features"][0]["id"].as_str().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    for (b, key) in [
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A",
    ]
    .iter()
    .enumerate()
    {
        let src = dir.join(id).join(format!("{key}.tif"));
        let (expected, w, h) = if ["B02", "B03", "B04", "B08"].contains(key) {
            // 10 m: the source window itself (scene origin 583980, 5034000).
            let (all, sw, _) = read_band(&src);
            let (c0, r0) = ((585080 - 583980) / 10, (5034000 - 5032950) / 10);
            let v: Vec<f64> = (0..207)
                .flat_map(|r| (0..228).map(move |c| (r, c)))
                .map(|(r, c)| all[(r0 + r) * sw + c0 + c])
                .collect();
            (v, 228, 207)
        } else {
            let out = scratch.path().join(format!("{key}.tif"));
            let status = Command::new("gdalwarp")
                .args([
                    "-q", "-te", "585080", "5030880", "587360", "5032950", "-tr", "10", "10", "-r",
                    "near", "-ot", "Float32",
                ])
                .arg(&src)
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success());
            read_band(&out)
        };
        assert_eq!((w, h), (228, 207));
        for (i, e) in expected.iter().enumerate() {
            let got = r.data[[0, b, i / 228, i % 228]];
            if *e == 0.0 {
                assert!(got.is_nan(), "{key} pixel {i}: expected nodata, got {got}");
            } else {
                assert!(
                    (got as f64 - e * 0.0001).abs() < 1e-6,
                    "{key} pixel {i}: {got} vs {}",
                    e * 0.0001
                );
            }
        }
    }
}

#[test]
fn items_go_on_the_time_axis_in_datetime_order() {
    let r = stack("assets = [\"B04\", \"SCL\"]\nresolution = 20", items()).unwrap();
    // No bounds: the union of the items' extents.
    assert_eq!(
        r.grid.transform,
        [583980.0, 20.0, 0.0, 5034000.0, 0.0, -20.0]
    );
    assert_eq!((r.grid.width, r.grid.height), (222, 201));
    assert_eq!(r.times, ["2021-07-14T15:49:11Z", "2021-08-03T15:49:09Z"]);
    // SCL has no scale: class ids stay integers; the July item is cloudier.
    let clouds = |t: usize| {
        r.data
            .slice(ndarray::s![t, 1, .., ..])
            .iter()
            .filter(|&&v| v == 8.0 || v == 9.0)
            .count()
    };
    assert!(
        clouds(0) > 10 * clouds(1) && clouds(1) > 0,
        "{} {}",
        clouds(0),
        clouds(1)
    );
}

#[test]
fn snap_false_keeps_the_native_origin() {
    let p = "assets = [\"B04\"]\nresolution = 10\nsnap = false\nbounds = [585085, 5030885, 585200, 5031000]";
    let r = stack(p, only_first_item(items())).unwrap();
    // Native origin 583980 / 5034000 at 10 m: already multiples of 10, so the same as snapping.
    assert_eq!(
        r.grid.transform,
        [585080.0, 10.0, 0.0, 5031000.0, 0.0, -10.0]
    );
    let p = "assets = [\"B01\"]\nresolution = 60\nsnap = false\nbounds = [585085, 5030885, 585200, 5031000]";
    let r = stack(p, only_first_item(items())).unwrap();
    assert_eq!(
        r.grid.transform,
        [585060.0, 60.0, 0.0, 5031000.0, 0.0, -60.0]
    );
    assert_eq!((r.grid.width, r.grid.height), (3, 2));
}

/// Item 2 re-labelled and re-projected into EPSG:32619.
fn items_in_two_crss(scratch: &std::path::Path) -> serde_json::Value {
    let mut v = items();
    let f = &mut v["features"][1];
    f["properties"]["proj:epsg"] = 32619.into();
    f["properties"]["proj:code"] = "EPSG:32619".into();
    let src = f["assets"]["B04"]["href"].as_str().unwrap().to_string();
    let out = scratch.join("B04_32619.tif");
    let status = Command::new("gdalwarp")
        .args(["-q", "-t_srs", "EPSG:32619", "-tr", "10", "10"])
        .arg(&src)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let a = &mut f["assets"]["B04"];
    a["href"] = out.to_string_lossy().into_owned().into();
    a["proj:epsg"] = 32619.into();
    a["proj:code"] = "EPSG:32619".into();
    a.as_object_mut().unwrap().remove("proj:transform");
    a.as_object_mut().unwrap().remove("proj:shape");
    v
}

#[test]
fn different_crss_need_epsg() {
    let scratch = tempfile::tempdir().unwrap();
    let v = items_in_two_crss(scratch.path());
    let err = stack("assets = [\"B04\"]\nresolution = 10", v.clone()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, NodeError::InvalidData(_)), "{err:?}");
    assert!(
        msg.contains("EPSG:32618") && msg.contains("EPSG:32619"),
        "{msg}"
    );
    let r = stack(
        &format!("assets = [\"B04\"]\nresolution = 10\nepsg = 32618\nbounds_latlon = {AOI}"),
        v,
    )
    .unwrap();
    assert_eq!(r.data.shape(), &[2, 1, 207, 228]);
    // The re-projected July image comes back close to the original on most pixels.
    let valid = r
        .data
        .slice(ndarray::s![0, 0, .., ..])
        .iter()
        .filter(|v| v.is_finite())
        .count();
    assert!(valid > 207 * 228 * 8 / 10, "{valid}");
}

#[test]
fn broken_assets_are_invalid_data_naming_item_asset_and_href() {
    let scratch = tempfile::tempdir().unwrap();
    let mut v = only_first_item(items());
    let id = v["features"][0]["id"].as_str().unwrap().to_string();
    // A truncated COG.
    let src = v["features"][0]["assets"]["B04"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = std::fs::read(&src).unwrap();
    let truncated = scratch.path().join("B04_truncated.tif");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    v["features"][0]["assets"]["B04"]["href"] = truncated.to_string_lossy().into_owned().into();
    let p = format!("assets = [\"B03\", \"B04\"]\nresolution = 10\nbounds_latlon = {AOI}");
    let err = stack(&p, v.clone()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code().code(), 3, "{msg}");
    assert!(
        msg.contains(&id) && msg.contains("B04") && msg.contains("B04_truncated.tif"),
        "{msg}"
    );

    // A missing file.
    let missing = scratch.path().join("nope.tif");
    v["features"][0]["assets"]["B04"]["href"] = missing.to_string_lossy().into_owned().into();
    let err = stack(&p, v.clone()).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code().code(), 3, "{msg}");
    assert!(
        msg.contains(&id) && msg.contains("`B04`") && msg.contains("nope.tif"),
        "{msg}"
    );

    // on_missing = "nodata": NaN and a warning.
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(tmp.path());
    let out = run(
        &StackKind,
        &format!("{p}\non_missing = \"nodata\""),
        vec![("input", items_value(v))],
        &c,
    )
    .unwrap();
    let Value::Raster(r) = out else { panic!() };
    assert!(r
        .data
        .slice(ndarray::s![0, 1, .., ..])
        .iter()
        .all(|v| v.is_nan()));
    assert!(r
        .data
        .slice(ndarray::s![0, 0, .., ..])
        .iter()
        .any(|v| v.is_finite()));
    assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
}

#[test]
fn file_urls_and_per_band_resampling() {
    let mut v = only_first_item(items());
    let href = v["features"][0]["assets"]["B05"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    v["features"][0]["assets"]["B05"]["href"] = format!("file://{href}").into();
    let p = format!("assets = [\"B05\", \"B04\"]\nresolution = 10\nbounds_latlon = {AOI}\nresampling_per_band = {{ B05 = \"bilinear\" }}");
    let r = stack(&p, v).unwrap();
    assert_eq!(r.data.shape(), &[1, 2, 207, 228]);
    assert!(r.data.iter().filter(|v| v.is_finite()).count() > 2 * 207 * 228 * 9 / 10);
}

#[test]
fn bad_params_are_param_errors() {
    use flow_core::NodeKind;
    for p in [
        "assets = []\nresolution = 10",
        "assets = [\"B04\"]\nresolution = -1",
        "assets = [\"B04\"]\nresolution = 10\nbounds = [1, 2, 3]",
        "assets = [\"B04\"]\nresolution = 10\nbounds = [0, 0, 1, 1]\nbounds_latlon = [0, 0, 1, 1]",
        "assets = [\"B04\"]\nresolution = 10\nresampling_per_band = { B05 = \"nearest\" }",
        "assets = [\"B04\"]\nresolution = 10\nresampling = \"lanczos\"",
    ] {
        assert!(StackKind.build(&params(p)).is_err(), "{p}");
    }
}

#[test]
fn a_grid_partly_outside_the_scene_reads_the_overlap_and_nan_elsewhere() {
    // North-east corner of the scene (x1 = 588420, y0 = 5034000), 20 x 20 pixels at 10 m.
    let items = only_first_item(items());
    let p = "assets = [\"B04\"]\nresolution = 10\nbounds = [588300, 5033900, 588500, 5034100]";
    let r = stack(p, items.clone()).unwrap();
    assert_eq!((r.grid.width, r.grid.height), (20, 20));
    let (src, sw, _) = read_band(std::path::Path::new(
        items["features"][0]["assets"]["B04"]["href"]
            .as_str()
            .unwrap(),
    ));
    for row in 0..20 {
        for col in 0..20 {
            let got = r.data[[0, 0, row, col]];
            if col < 12 && row >= 10 {
                let e = src[(row - 10) * sw + 432 + col] * 0.0001;
                assert!((got as f64 - e).abs() < 1e-6, "({row}, {col}) {got} vs {e}");
            } else {
                assert!(got.is_nan(), "({row}, {col}) {got}");
            }
        }
    }
}
