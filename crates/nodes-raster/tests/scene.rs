//! The Timberlea generator: deterministic bytes, STAC layout, provider and registry wiring, and
//! the stack -> mask-nodata pipeline on its cloudy item.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use flow_core::{ClassInfo, Labels, Value};
use flow_nodes_raster::{MaskKind, StackKind, WriteKind};

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn generation_is_deterministic_and_small() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    flow_nodes_raster::generate_timberlea(a.path()).unwrap();
    flow_nodes_raster::generate_timberlea(b.path()).unwrap();
    let (ta, tb) = (tree(a.path()), tree(b.path()));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        assert!(v == &tb[k], "{k} differs between runs");
    }
    // items.json + truth.tif + 2 x (12 bands + SCL)
    assert_eq!(ta.len(), 2 + 2 * 13);
    let total: usize = ta.values().map(Vec::len).sum();
    assert!(total < 8 << 20, "{total} bytes");
}

#[test]
fn items_look_like_planetary_computer_sentinel_2_l2a() {
    let path = scene();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let features = v["features"].as_array().unwrap();
    assert_eq!(features.len(), 2);
    let f = &features[0];
    assert_eq!(
        f["id"],
        "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227"
    );
    assert_eq!(f["collection"], "sentinel-2-l2a");
    let p = &f["properties"];
    assert_eq!(p["datetime"], "2021-08-03T15:49:09Z");
    assert_eq!(p["s2:mgrs_tile"], "18TWR");
    assert_eq!(p["proj:epsg"], 32618);
    assert_eq!(p["proj:code"], "EPSG:32618");
    assert!(p["eo:cloud_cover"].as_f64().unwrap() < 3.0);
    assert!(
        features[1]["properties"]["eo:cloud_cover"]
            .as_f64()
            .unwrap()
            > 30.0
    );
    // The footprint contains the notebook's AOI.
    let bbox: Vec<f64> = f["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(
        bbox[0] < -73.9120245
            && bbox[1] < 45.4263471
            && bbox[2] > -73.883357
            && bbox[3] > 45.4445361,
        "{bbox:?}"
    );
    let assets = f["assets"].as_object().unwrap();
    let keys: Vec<&str> = assets.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
            "SCL"
        ]
    );
    let b05 = &assets["B05"];
    assert_eq!(
        b05["href"],
        format!("{}/B05.tif", f["id"].as_str().unwrap())
    );
    assert_eq!(
        b05["type"],
        "image/tiff; application=geotiff; profile=cloud-optimized"
    );
    assert_eq!(b05["proj:shape"], serde_json::json!([201, 222]));
    assert_eq!(
        b05["proj:transform"],
        serde_json::json!([20.0, 0.0, 583980.0, 0.0, -20.0, 5034000.0])
    );
    assert_eq!(b05["eo:bands"][0]["common_name"], "rededge");
    assert_eq!(b05["raster:bands"][0]["scale"], 0.0001);
    assert!(assets["SCL"]["raster:bands"][0].get("scale").is_none());
    // Files agree with the metadata.
    let dir = path.parent().unwrap();
    let ds = gdal::Dataset::open(dir.join(b05["href"].as_str().unwrap())).unwrap();
    assert_eq!(ds.raster_size(), (222, 201));
    assert_eq!(
        ds.geo_transform().unwrap(),
        [583980.0, 20.0, 0.0, 5034000.0, 0.0, -20.0]
    );
    assert_eq!(ds.rasterband(1).unwrap().no_data_value(), Some(0.0));
    assert_eq!(
        ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref(),
        Some("COG")
    );
    let truth = gdal::Dataset::open(dir.join("truth.tif")).unwrap();
    assert_eq!(truth.raster_size(), (444, 402));
    assert_eq!(truth.rasterband(1).unwrap().no_data_value(), Some(255.0));
}

use gdal::Metadata as _;

#[test]
fn register_adds_kinds_and_the_dataset() {
    let mut registry = flow_core::Registry::new();
    flow_nodes_raster::register(&mut registry);
    assert_eq!(
        registry.names().collect::<Vec<_>>(),
        ["mask-nodata", "read", "stack", "write"]
    );
    let provider = registry.datasets.get("timberlea").unwrap();
    assert_eq!(provider.version(), flow_nodes_raster::TIMBERLEA_VERSION);
    let dir = tempfile::tempdir().unwrap();
    let items = provider.materialize(dir.path()).unwrap();
    assert_eq!(items, dir.path().join("items.json"));
    for kind in registry.kinds() {
        // `write` is at 2 since its model JSON gives ground areas, at 3 since it writes
        // centroids that read back bit for bit.
        let expected = if kind.name() == "write" { 3 } else { 1 };
        assert_eq!(kind.version(), expected, "{}", kind.name());
        assert!(!kind.doc().is_empty());
        // Every default passes the kind's own schema.
        for spec in kind.params() {
            if let Some(d) = &spec.default {
                assert!(spec.ty.accepts(d), "{} {}", kind.name(), spec.name);
            }
        }
    }
}

#[test]
fn scl_masks_the_clouds_of_the_july_item() {
    let tmp = tempfile::tempdir().unwrap();
    let c = ctx(tmp.path());
    let p = format!("assets = [\"B02\", \"B04\", \"SCL\"]\nresolution = 10\nbounds_latlon = {AOI}");
    let stacked = run(&StackKind, &p, vec![("input", items_value(items()))], &c).unwrap();
    let Value::Raster(raw) = &stacked else {
        panic!()
    };
    let masked = run(
        &MaskKind,
        "scl = \"SCL\"",
        vec![("input", stacked.clone())],
        &c,
    )
    .unwrap();
    let Value::Raster(m) = masked else { panic!() };
    assert_eq!(m.data.shape(), &[2, 2, 207, 228]);
    let nan = |t: usize| {
        m.data
            .slice(ndarray::s![t, 0, .., ..])
            .iter()
            .filter(|v| v.is_nan())
            .count()
    };
    let raw_nan = |t: usize| {
        raw.data
            .slice(ndarray::s![t, 0, .., ..])
            .iter()
            .filter(|v| v.is_nan())
            .count()
    };
    // July (t = 0) is cloudy over the AOI; August (t = 1) has no cloud there.
    assert!(
        nan(0) > raw_nan(0) + 207 * 228 / 10,
        "{} {}",
        nan(0),
        raw_nan(0)
    );
    assert_eq!(nan(1), raw_nan(1));
    // What is left of July is not bright cloud.
    let max_blue = m
        .data
        .slice(ndarray::s![0, 0, .., ..])
        .iter()
        .filter(|v| v.is_finite())
        .fold(0f32, |a, &b| a.max(b));
    assert!(max_blue < 0.3, "{max_blue}");
}

/// Writes the truth map and the August RGB as a quicklook into $FLOW_QUICKLOOK_DIR, for eyes.
#[test]
fn quicklook_of_the_truth() {
    let Some(out) = std::env::var_os("FLOW_QUICKLOOK_DIR") else {
        return;
    };
    let out = Path::new(&out);
    let c = ctx(out);
    let stacked = run(
        &StackKind,
        "assets = [\"B04\", \"B03\", \"B02\"]\nresolution = 10",
        vec![("input", items_value(items()))],
        &c,
    )
    .unwrap();
    let (truth, w, h) = read_band(&scene().parent().unwrap().join("truth.tif"));
    let names = [
        "water",
        "dense forest",
        "grass/crops",
        "urban/concrete",
        "bare soil",
    ];
    let colors = [
        [31, 119, 180],
        [20, 90, 30],
        [150, 210, 80],
        [200, 60, 60],
        [180, 140, 90],
    ];
    let classes = (0..5)
        .map(|i| ClassInfo {
            id: i as u16,
            name: names[i].into(),
            color: colors[i],
        })
        .collect();
    let Value::Raster(r) = &stacked else { panic!() };
    let mut rgb = r.clone();
    rgb.data = r.data.slice(ndarray::s![1..2, .., .., ..]).to_owned();
    let labels = Labels {
        data: ndarray::Array2::from_shape_fn((h, w), |(y, x)| truth[y * w + x] as u16),
        nodata: 255,
        classes,
        grid: r.grid.clone(),
    };
    run(
        &WriteKind,
        "path = \"truth.png\"",
        vec![
            ("input", Value::Labels(labels)),
            ("rgb", Value::Raster(rgb)),
        ],
        &c,
    )
    .unwrap();
}
