//! Mosaics: items of one date are one time step, the first valid pixel winning in order of
//! datetime, then id (`stack`'s `mosaic = "date"`, the default).

use std::path::Path;

use gdal::raster::Buffer;
use gdal::{Dataset, DriverManager};

use crate::support::{flow, output, write_scene};

const CLEAR: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";

/// Band 1 of a GeoTIFF as f64, with its size.
fn read(path: &Path) -> (Vec<f64>, (usize, usize)) {
    let ds = Dataset::open(path).unwrap();
    let (w, h) = ds.raster_size();
    let band = ds.rasterband(1).unwrap();
    let buf = band.read_as::<f64>((0, 0), (w, h), (w, h), None).unwrap();
    (buf.data().to_vec(), (w, h))
}

/// A COG like `src` (UInt16, nodata 0) whose values are `f(value, col, row)`.
fn derived_cog(src: &Path, dst: &Path, f: impl Fn(u16, usize, usize) -> u16) {
    let ds = Dataset::open(src).unwrap();
    let (w, h) = ds.raster_size();
    let band = ds.rasterband(1).unwrap();
    let buf = band.read_as::<u16>((0, 0), (w, h), (w, h), None).unwrap();
    let data: Vec<u16> = buf
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| f(v, i % w, i / w))
        .collect();
    let mem = DriverManager::get_driver_by_name("MEM").unwrap();
    let mut out = mem.create_with_band_type::<u16, _>("", w, h, 1).unwrap();
    out.set_geo_transform(&ds.geo_transform().unwrap()).unwrap();
    out.set_spatial_ref(&ds.spatial_ref().unwrap()).unwrap();
    {
        let mut b = out.rasterband(1).unwrap();
        b.set_no_data_value(Some(0.0)).unwrap();
        let mut buffer = Buffer::new((w, h), data);
        b.write((0, 0), (w, h), &mut buffer).unwrap();
    }
    let cog = DriverManager::get_driver_by_name("COG").unwrap();
    out.create_copy(&cog, dst, &gdal::cpl::CslStringList::new())
        .unwrap();
}

/// Runs a recipe stacking B04 of `items` (every item's footprint) and writing it; returns the
/// written raster and its size.
fn stack(cache: &Path, dir: &Path, items: &Path, mosaic: &str) -> (Vec<f64>, (usize, usize)) {
    let recipe = dir.join(format!("mosaic-{mosaic}.toml"));
    std::fs::write(
        &recipe,
        format!(
            "name = \"mosaic\"\n[nodes.items]\nkind = \"stac-search\"\ncatalog = \"{}\"\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"items\"\nassets = [\"B04\"]\nresolution = 10\nmosaic = \"{mosaic}\"\n\
             [nodes.save]\nkind = \"write\"\ninput = \"stack\"\npath = \"b04.tif\"\n",
            items.display()
        ),
    )
    .unwrap();
    let out = dir.join(format!("out-{mosaic}"));
    let (code, stdout, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(&recipe)
            .arg("--no-cache")
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let ds = Dataset::open(out.join("b04.tif")).unwrap();
    let bands = ds.raster_count();
    let (data, size) = read(&out.join("b04.tif"));
    assert_eq!(bands, if mosaic == "date" { 1 } else { 2 }, "{mosaic}");
    (data, size)
}

#[test]
fn items_of_one_date_are_one_time_step_and_the_first_valid_pixel_wins() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene");
    write_scene(cache.path(), &scene);
    let src = scene.join(CLEAR).join("B04.tif");
    // `a` (first by id) has a hole in its left half; `b`, same date, is brighter everywhere.
    let (a, b) = (dir.path().join("a.tif"), dir.path().join("b.tif"));
    let width = Dataset::open(&src).unwrap().raster_size().0;
    derived_cog(&src, &a, |v, col, _| if col < width / 2 { 0 } else { v });
    derived_cog(&src, &b, |v, _, _| if v == 0 { 0 } else { v + 1000 });
    let items: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scene.join("items.json")).unwrap()).unwrap();
    let clear = items["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == CLEAR)
        .unwrap()
        .clone();
    let item = |id: &str, href: &Path| {
        let mut f = clear.clone();
        f["id"] = id.into();
        let asset = f["assets"]["B04"].clone();
        f["assets"] = serde_json::json!({ "B04": asset });
        f["assets"]["B04"]["href"] = href.to_string_lossy().into_owned().into();
        f
    };
    // Listed b first: the order of the catalog does not matter, the ids do.
    let catalog = dir.path().join("items.json");
    std::fs::write(
        &catalog,
        serde_json::json!({"type": "FeatureCollection", "features": [item("b", &b), item("a", &a)]})
            .to_string(),
    )
    .unwrap();

    let (mosaic, size) = stack(cache.path(), dir.path(), &catalog, "date");
    let (va, sa) = read(&a);
    let (vb, _) = read(&b);
    assert_eq!(size, sa);
    let expected: Vec<f64> = va
        .iter()
        .zip(&vb)
        .map(|(&x, &y)| match (x, y) {
            (0.0, 0.0) => f64::NAN,
            (0.0, y) => y,
            (x, _) => x,
        })
        .collect();
    let mut from_b = 0;
    for (i, (&got, &want)) in mosaic.iter().zip(&expected).enumerate() {
        // The written cube is reflectance: DN x scale + offset, the same for both items.
        assert_eq!(got.is_nan(), want.is_nan(), "pixel {i}");
        if !want.is_nan() && va[i] == 0.0 {
            from_b += 1;
        }
    }
    assert!(from_b > 1000, "the hole is filled from b: {from_b}");
    // Where a is valid the mosaic is a's value, in the hole b's (1000 DN brighter): both
    // through the same DN -> reflectance map, found from two of a's pixels.
    let dn = |i: usize| if va[i] != 0.0 { va[i] } else { vb[i] };
    let valid: Vec<usize> = (0..mosaic.len())
        .filter(|&i| !expected[i].is_nan())
        .collect();
    let i0 = valid[0];
    let i1 = *valid.iter().find(|&&i| dn(i) != dn(i0)).unwrap();
    let scale = (mosaic[i1] - mosaic[i0]) / (dn(i1) - dn(i0));
    let offset = mosaic[i0] - dn(i0) * scale;
    for &i in &valid {
        let want = dn(i) * scale + offset;
        assert!(
            (mosaic[i] - want).abs() <= 1e-4 * want.abs().max(1.0),
            "pixel {i}: {} vs {want}",
            mosaic[i]
        );
    }

    // Without mosaicking, each item is a time step of its own.
    stack(cache.path(), dir.path(), &catalog, "none");
}
