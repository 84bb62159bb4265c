//! `write`: GeoTIFF / COG class maps and rasters reopened with GDAL, PNG quicklooks, JSON, and
//! freshness of cached writes.

mod common;

use std::ffi::CStr;
use std::fmt::Write as _;
use std::path::Path;

use common::*;
use flow_core::{BandInfo, ClassInfo, Grid, Labels, Model, Node, NodeKind, Raster, Value};
use flow_nodes_raster::WriteKind;
use gdal::{Dataset, Metadata};
use ndarray::{Array2, Array4};

fn grid(w: usize, h: usize) -> Grid {
    Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, w, h)
}

fn labels() -> Labels {
    let (w, h) = (6, 4);
    let data = Array2::from_shape_fn((h, w), |(y, x)| {
        if x == 0 && y == 0 {
            255
        } else {
            ((x + y) % 3) as u16
        }
    });
    let classes = vec![
        ClassInfo {
            id: 0,
            name: "water".into(),
            color: [31, 119, 180],
        },
        ClassInfo {
            id: 1,
            name: "forest".into(),
            color: [44, 160, 44],
        },
        ClassInfo {
            id: 2,
            name: "crops".into(),
            color: [188, 189, 34],
        },
    ];
    Labels {
        data,
        nodata: 255,
        classes,
        grid: grid(w, h),
    }
}

fn raster(w: usize, h: usize) -> Raster {
    let names = ["B02", "B03", "B04"];
    let mut data = Array4::from_shape_fn((1, 3, h, w), |(_, b, y, x)| {
        (b * 100 + y * w + x) as f32 / 1000.0
    });
    data[[0, 0, 1, 1]] = f32::NAN;
    let bands = names
        .iter()
        .map(|n| BandInfo {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    Raster {
        data,
        grid: grid(w, h),
        bands,
        times: vec!["2021-08-03T15:49:09Z".into()],
    }
}

fn category_names(band: &gdal::raster::RasterBand) -> Vec<String> {
    let mut out = Vec::new();
    // SAFETY: the band handle is valid while `band` lives; GDAL returns a NULL-terminated list of
    // NUL-terminated strings (or NULL) that it owns, and nothing here calls GDAL while reading it.
    unsafe {
        let list = gdal_sys::GDALGetRasterCategoryNames(band.c_rasterband());
        let mut i = 0;
        while !list.is_null() && !(*list.add(i)).is_null() {
            out.push(CStr::from_ptr(*list.add(i)).to_string_lossy().into_owned());
            i += 1;
        }
    }
    out
}

/// A gdalinfo-like dump of what matters in a written raster.
fn dump(path: &Path) -> String {
    let ds = Dataset::open(path).unwrap();
    let mut s = String::new();
    let (w, h) = ds.raster_size();
    writeln!(s, "size: {w} x {h}, bands: {}", ds.raster_count()).unwrap();
    writeln!(s, "geotransform: {:?}", ds.geo_transform().unwrap()).unwrap();
    writeln!(
        s,
        "crs: EPSG:{}",
        ds.spatial_ref().unwrap().auth_code().unwrap()
    )
    .unwrap();
    for i in 1..=ds.raster_count() {
        let band = ds.rasterband(i).unwrap();
        writeln!(
            s,
            "band {i}: {}, nodata {:?}, description {:?}",
            band.band_type().name(),
            band.no_data_value(),
            band.description().unwrap()
        )
        .unwrap();
        writeln!(
            s,
            "  colour interpretation: {}",
            band.color_interpretation().name()
        )
        .unwrap();
        let names = category_names(&band);
        if let Some(ct) = band.color_table() {
            writeln!(s, "  colour table: {} entries", ct.entry_count()).unwrap();
            // The classes' entries and the nodata entry (GTiff pads the table to 256 entries).
            let nodata = band.no_data_value().map(|n| n as usize);
            for e in (0..ct.entry_count()).filter(|&e| e < names.len() || Some(e) == nodata) {
                let c = ct.entry_as_rgb(e).unwrap();
                writeln!(s, "  colour {e}: {} {} {} {}", c.r, c.g, c.b, c.a).unwrap();
            }
        }
        for (id, name) in names.iter().enumerate() {
            writeln!(s, "  category {id}: {name}").unwrap();
        }
    }
    s
}

fn write(p: &str, inputs: Vec<(&str, Value)>, out: &Path) -> (Box<dyn Node>, Value) {
    let node = WriteKind.build(&params(p)).unwrap();
    let c = ctx(out);
    let inputs = flow_core::Inputs::new(
        inputs
            .into_iter()
            .map(|(k, v)| (k.to_string(), std::sync::Arc::new(v))),
    );
    let value = node.run(&c, &inputs).unwrap();
    (node, value)
}

#[test]
fn class_geotiff_has_grid_nodata_colours_and_names() {
    let out = tempfile::tempdir().unwrap();
    let (node, value) = write(
        "path = \"maps/classes.tif\"",
        vec![("input", Value::Labels(labels()))],
        out.path(),
    );
    let file = out.path().join("maps/classes.tif");
    insta::assert_snapshot!("class_map_gtiff", dump(&file));
    let Value::Json(doc) = &value else { panic!() };
    let files = doc["files"].as_array().unwrap();
    assert_eq!(files[0]["path"], "maps/classes.tif");
    assert_eq!(
        files[0]["bytes"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len()
    );
    // Nothing but the outputs in the directory (no temp files).
    let names: Vec<String> = std::fs::read_dir(out.path().join("maps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    assert_eq!(names.len(), files.len(), "{names:?} vs {files:?}");

    // Fresh while the files are there and unchanged.
    let c = ctx(out.path());
    assert!(node.is_fresh(&c, &value));
    std::fs::remove_file(&file).unwrap();
    assert!(!node.is_fresh(&c, &value));
}

#[test]
fn class_cog_keeps_colours_and_names() {
    let out = tempfile::tempdir().unwrap();
    let (_, value) = write(
        "path = \"classes.tif\"\nformat = \"cog\"\nclass_names = [\"lake\", \"woods\", \"fields\"]",
        vec![("input", Value::Labels(labels()))],
        out.path(),
    );
    let text = dump(&out.path().join("classes.tif"));
    assert!(text.contains("colour 1: 44 160 44 255"), "{text}");
    assert!(text.contains("category 2: fields"), "{text}");
    assert!(text.contains("nodata Some(255.0)"), "{text}");
    let Value::Json(doc) = value else { panic!() };
    assert_eq!(doc["format"], "cog");
}

#[test]
fn raster_geotiff_is_float_with_nan_nodata_and_descriptions() {
    let out = tempfile::tempdir().unwrap();
    write(
        "path = \"cube.tif\"",
        vec![("input", Value::Raster(raster(5, 3)))],
        out.path(),
    );
    let path = out.path().join("cube.tif");
    let text = dump(&path);
    assert!(text.contains("size: 5 x 3, bands: 3"), "{text}");
    assert_eq!(
        text.matches("Float32, nodata Some(NaN)").count(),
        3,
        "{text}"
    );
    assert!(text.contains("description \"B04\""), "{text}");
    let (v, _, _) = read_band(&path);
    // Pixel (1, 1) of band 1 was NaN; pixel (2, 1) holds 7 / 1000 as f32.
    assert!(v[6].is_nan(), "{v:?}");
    assert_eq!(v[7], (7.0f32 / 1000.0) as f64);
    let ds = Dataset::open(&path).unwrap();
    assert!(ds.rasterband(1).unwrap().no_data_value().unwrap().is_nan());
}

#[test]
fn png_quicklook_has_the_expected_size() {
    let out = tempfile::tempdir().unwrap();
    write(
        "path = \"quicklook.png\"\nrgb_bands = [\"B04\", \"B03\", \"B02\"]",
        vec![
            ("input", Value::Labels(labels())),
            ("rgb", Value::Raster(raster(6, 4))),
        ],
        out.path(),
    );
    let ds = Dataset::open(out.path().join("quicklook.png")).unwrap();
    assert_eq!(ds.driver().short_name(), "PNG");
    // Panels 6 x 4 enlarged 67 times: 402 x 268; margins 12, gaps 16, legend 14 + 8 + "Legend" (70).
    assert_eq!(
        ds.raster_size(),
        (
            12 + 402 + 16 + 402 + 16 + 14 + 8 + 70 + 12,
            12 + 22 + 268 + 12
        )
    );
    assert_eq!(ds.raster_count(), 3);
    // No sidecar next to it.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
}

#[test]
fn failed_write_leaves_no_file() {
    let out = tempfile::tempdir().unwrap();
    let node = WriteKind
        .build(&params(
            "path = \"q.png\"\nrgb_bands = [\"B8A\", \"B03\", \"B02\"]",
        ))
        .unwrap();
    let inputs = flow_core::Inputs::new([
        (
            "input".to_string(),
            std::sync::Arc::new(Value::Labels(labels())),
        ),
        (
            "rgb".to_string(),
            std::sync::Arc::new(Value::Raster(raster(6, 4))),
        ),
    ]);
    let err = node.run(&ctx(out.path()), &inputs).unwrap_err();
    assert!(err.to_string().contains("B8A"), "{err}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn model_json_has_centroids_and_class_statistics() {
    let out = tempfile::tempdir().unwrap();
    let model = Model {
        scaling: Default::default(),
        centroids: ndarray::array![[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]],
        features: vec!["B02".into(), "B03".into(), "B04".into()],
        inertia: 12.5,
        iterations: 7,
        seed: 42,
        counts: vec![7, 8, 8],
        info: serde_json::json!({"init": "k-means++"}),
        classifier: None,
    };
    let (node, value) = write(
        "path = \"model.json\"",
        vec![
            ("input", Value::Model(model)),
            ("labels", Value::Labels(labels())),
            ("spectra", Value::Raster(raster(6, 4))),
        ],
        out.path(),
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("model.json")).unwrap())
            .unwrap();
    assert_eq!(doc["k"], 3);
    assert_eq!(doc["centroids"][1]["centroid"]["B03"], 0.5);
    assert_eq!(doc["inertia"], 12.5);
    assert_eq!(doc["seed"], 42);
    let classes = doc["classes"].as_array().unwrap();
    let total: u64 = classes.iter().map(|c| c["pixels"].as_u64().unwrap()).sum();
    assert_eq!(total, 23);
    // 10 m UTM pixels: 0.01 ha each on the map, a little more on the ground (the projection's
    // scale factor is below 1 near the central meridian).
    let (area, map) = (
        classes[0]["area_ha"].as_f64().unwrap(),
        classes[0]["pixels"].as_f64().unwrap() * 0.01,
    );
    assert!(area >= map && (area - map) / map < 1e-3, "{area} vs {map}");
    // Class 1 pixels: (x + y) % 3 == 1; band B02 = (y * 6 + x) / 1000, minus the NaN at (1, 1)? (1+1)%3 = 2, so no.
    let mut sum = 0.0;
    let mut n = 0.0;
    for y in 0..4 {
        for x in 0..6 {
            if (x + y) % 3 == 1 {
                sum += (y * 6 + x) as f64 / 1000.0;
                n += 1.0;
            }
        }
    }
    assert!((classes[1]["mean"]["B02"].as_f64().unwrap() - sum / n).abs() < 1e-6);
    assert!(node.is_fresh(&ctx(out.path()), &value));
    std::fs::write(out.path().join("model.json"), "{}").unwrap();
    assert!(!node.is_fresh(&ctx(out.path()), &value));
}

#[test]
fn a_classifier_model_json_keeps_its_class_ids_and_names_and_the_whole_classifier() {
    let out = tempfile::tempdir().unwrap();
    let model = flow_core::meta::examples()
        .into_iter()
        .find_map(|v| match v {
            Value::Model(m) if m.classifier.is_some() => Some(m),
            _ => None,
        })
        .unwrap();
    write(
        "path = \"model.json\"",
        vec![("input", Value::Model(model.clone()))],
        out.path(),
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("model.json")).unwrap())
            .unwrap();
    assert_eq!(doc["centroids"][0]["class"], 2);
    assert_eq!(doc["centroids"][1]["name"], "forest");
    let back: flow_core::Classifier = serde_json::from_value(doc["classifier"].clone()).unwrap();
    assert_eq!(Some(Box::new(back)), model.classifier, "read back whole");
}

#[test]
fn json_values_are_pretty_printed() {
    let out = tempfile::tempdir().unwrap();
    write(
        "path = \"stats/summary.json\"",
        vec![("input", Value::Json(serde_json::json!({"a": [1, 2]})))],
        out.path(),
    );
    let text = std::fs::read_to_string(out.path().join("stats/summary.json")).unwrap();
    assert_eq!(text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n");
}

#[test]
fn unsupported_combinations_are_errors() {
    let out = tempfile::tempdir().unwrap();
    let node = WriteKind.build(&params("path = \"x.png\"")).unwrap();
    let inputs = flow_core::Inputs::new([(
        "input".to_string(),
        std::sync::Arc::new(Value::Json(serde_json::json!(1))),
    )]);
    assert!(node.run(&ctx(out.path()), &inputs).is_err());
}

/// The scene's items (absolute hrefs), as the `items` input of `write`.
fn scene_items() -> Value {
    items_value(items())
}

#[test]
fn class_cog_with_a_stac_item_that_gdal_reads_back() {
    let out = tempfile::tempdir().unwrap();
    let (node, value) = write(
        "path = \"maps/classes.tif\"\nformat = \"cog\"\nstac_item = true",
        vec![("input", Value::Labels(labels())), ("items", scene_items())],
        out.path(),
    );
    let tif = out.path().join("maps/classes.tif");
    let item_path = out.path().join("maps/classes.item.json");
    let item: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&item_path).unwrap()).unwrap();
    // Listed among the outputs, with its hash, and part of the freshness check.
    let Value::Json(doc) = &value else { panic!() };
    let paths: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"maps/classes.item.json"), "{paths:?}");
    let c = ctx(out.path());
    assert!(node.is_fresh(&c, &value));

    assert_eq!(item["type"], "Feature");
    assert_eq!(item["id"], "classes");
    let props = &item["properties"];
    // Two source items: a range from the earlier to the later one.
    let mut times: Vec<String> = items()["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["datetime"].as_str().unwrap().to_string())
        .collect();
    times.sort();
    assert_eq!(times.len(), 2);
    assert_eq!(props["datetime"], serde_json::Value::Null);
    assert_eq!(props["start_datetime"], times[0].as_str());
    assert_eq!(props["end_datetime"], times[1].as_str());
    assert_eq!(props["flow:source_items"].as_array().unwrap().len(), 2);
    assert_eq!(props["proj:epsg"], 32618);
    assert_eq!(props["proj:shape"], serde_json::json!([4, 6]));
    assert_eq!(
        props["proj:transform"],
        serde_json::json!([10.0, 0.0, 585080.0, 0.0, -10.0, 5032950.0])
    );
    // The footprint: a closed counter-clockwise ring around the grid's centre, inside the bbox.
    let bbox: Vec<f64> = serde_json::from_value(item["bbox"].clone()).unwrap();
    let ring: Vec<[f64; 2]> =
        serde_json::from_value(item["geometry"]["coordinates"][0].clone()).unwrap();
    assert_eq!(ring.first(), ring.last());
    let twice_area: f64 = ring
        .windows(2)
        .map(|p| p[0][0] * p[1][1] - p[1][0] * p[0][1])
        .sum();
    assert!(twice_area > 0.0, "counter-clockwise");
    for p in &ring {
        assert!(p[0] >= bbox[0] && p[0] <= bbox[2] && p[1] >= bbox[1] && p[1] <= bbox[3]);
    }
    // The grid's centre (585110, 5032930) in EPSG:32618 is near -73.9116 E, 45.4447 N.
    assert!(bbox[0] < -73.9116 && bbox[2] > -73.9116, "{bbox:?}");
    assert!(bbox[1] < 45.4447 && bbox[3] > 45.4447, "{bbox:?}");
    let asset = &item["assets"]["data"];
    assert_eq!(asset["href"], "classes.tif");
    assert_eq!(
        asset["type"],
        "image/tiff; application=geotiff; profile=cloud-optimized"
    );
    let bytes = std::fs::read(&tif).unwrap();
    assert_eq!(
        asset["file:checksum"],
        format!("1e20{}", blake3::hash(&bytes).to_hex())
    );
    assert_eq!(asset["file:size"], bytes.len());
    assert_eq!(asset["raster:bands"][0]["data_type"], "uint8");
    assert_eq!(asset["raster:bands"][0]["nodata"], 255);
    let classes = asset["classification:classes"].as_array().unwrap();
    assert_eq!(classes.len(), 3);
    assert_eq!(classes[1]["name"], "forest");
    assert_eq!(classes[1]["color_hint"], "2CA02C");

    // An independent reader: GDAL's STACIT driver on the Item (in an ItemCollection, with the
    // href made absolute as a STAC API would serve it: GDAL 3.6 resolves relative hrefs against
    // the working directory) finds the file, its grid and its pixels from the Item alone.
    let collection = out.path().join("maps/collection.json");
    let mut served = item.clone();
    served["assets"]["data"]["href"] = tif.to_string_lossy().into_owned().into();
    std::fs::write(
        &collection,
        serde_json::json!({"type": "FeatureCollection", "features": [served]}).to_string(),
    )
    .unwrap();
    let stacit = Dataset::open(format!("STACIT:\"{}\":asset=data", collection.display())).unwrap();
    let direct = Dataset::open(&tif).unwrap();
    assert_eq!(stacit.raster_size(), direct.raster_size());
    assert_eq!(
        stacit.geo_transform().unwrap(),
        direct.geo_transform().unwrap()
    );
    let read = |ds: &Dataset| {
        let b = ds.rasterband(1).unwrap();
        b.read_as::<u8>((0, 0), (6, 4), (6, 4), None)
            .unwrap()
            .data()
            .to_vec()
    };
    assert_eq!(read(&stacit), read(&direct));
}

#[test]
fn raster_stac_item_takes_its_times_and_bands() {
    let out = tempfile::tempdir().unwrap();
    write(
        "path = \"cube.tif\"\nstac_item = true",
        vec![("input", Value::Raster(raster(5, 3)))],
        out.path(),
    );
    let item: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("cube.item.json")).unwrap())
            .unwrap();
    assert_eq!(item["properties"]["datetime"], "2021-08-03T15:49:09Z");
    let asset = &item["assets"]["data"];
    assert_eq!(asset["type"], "image/tiff; application=geotiff");
    assert_eq!(asset["raster:bands"].as_array().unwrap().len(), 3);
    assert_eq!(asset["raster:bands"][0]["data_type"], "float32");
    assert_eq!(asset["raster:bands"][0]["nodata"], "nan");
    assert_eq!(asset["eo:bands"][2]["name"], "B04");
}

#[test]
fn stac_items_need_a_geotiff_and_a_datetime() {
    let err = WriteKind
        .build(&params("path = \"x.png\"\nstac_item = true"))
        .err()
        .unwrap();
    assert_eq!(err.param.as_deref(), Some("stac_item"));
    // A class map without source items has no datetime: a clear error, and no Item.
    let out = tempfile::tempdir().unwrap();
    let node = WriteKind
        .build(&params("path = \"classes.tif\"\nstac_item = true"))
        .unwrap();
    let inputs = flow_core::Inputs::new([(
        "input".to_string(),
        std::sync::Arc::new(Value::Labels(labels())),
    )]);
    let err = node.run(&ctx(out.path()), &inputs).unwrap_err().to_string();
    assert!(err.contains("connect the `items` port"), "{err}");
    assert!(!out.path().join("classes.item.json").exists());
}

/// A source kind that hands out any window of a value it holds whole (a Raster or Labels), as
/// `stack` reads only the window it is asked for.
struct WindowsOf(Value);

/// A built [`WindowsOf`].
struct WindowsOfNode(Value);

impl NodeKind for WindowsOf {
    fn name(&self) -> &str {
        "windows-of"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "test source"
    }
    fn signature(&self) -> flow_core::Signature {
        flow_core::Signature {
            inputs: vec![],
            output: self.0.value_type(),
        }
    }
    fn params(&self) -> Vec<flow_core::ParamSpec> {
        vec![]
    }
    fn build(&self, _: &flow_core::Params) -> Result<Box<dyn Node>, flow_core::ParamError> {
        Ok(Box::new(WindowsOfNode(self.0.clone())))
    }
}

impl Node for WindowsOfNode {
    fn run(
        &self,
        ctx: &flow_core::RunContext,
        _: &flow_core::Inputs,
    ) -> Result<Value, flow_core::NodeError> {
        use ndarray::s;
        Ok(match &self.0 {
            Value::Raster(r) => {
                let w = ctx.window().unwrap_or(flow_core::window::Window::whole(
                    r.grid.width,
                    r.grid.height,
                ));
                Value::Raster(Raster {
                    data: r
                        .data
                        .slice(s![.., .., w.row..w.row + w.height, w.col..w.col + w.width])
                        .to_owned(),
                    grid: w.grid_of(&r.grid),
                    ..r.clone()
                })
            }
            Value::Labels(l) => {
                let w = ctx.window().unwrap_or(flow_core::window::Window::whole(
                    l.grid.width,
                    l.grid.height,
                ));
                Value::Labels(Labels {
                    data: l
                        .data
                        .slice(s![w.row..w.row + w.height, w.col..w.col + w.width])
                        .to_owned(),
                    grid: w.grid_of(&l.grid),
                    ..l.clone()
                })
            }
            other => other.clone(),
        })
    }
}

/// `value` as a deferred value in windows of `window` whose template is `template` (`value`
/// itself, or with other classes), and a context on three threads that computes it.
fn windowed(
    value: Value,
    template: Value,
    window: usize,
    out: &Path,
) -> (Value, flow_core::RunContext) {
    let mut registry = flow_core::Registry::new();
    registry
        .register(std::sync::Arc::new(WindowsOf(value)))
        .unwrap();
    let mut c = ctx(out).with_registry(std::sync::Arc::new(registry));
    c.threads = 3;
    let expr = flow_core::deferred::Expr {
        node_id: "source".into(),
        kind: "windows-of".into(),
        params: flow_core::Params::new(),
        inputs: vec![],
    };
    let d =
        flow_core::deferred::Deferred::new(template, window, std::sync::Arc::new(expr)).unwrap();
    (Value::Deferred(d), c)
}

/// Runs a `write` node with params `p` on `input` in context `c`.
fn write_in(
    p: &str,
    input: Value,
    c: &flow_core::RunContext,
) -> Result<Value, flow_core::NodeError> {
    let node = WriteKind.build(&params(p)).unwrap();
    let inputs = flow_core::Inputs::new([("input".to_string(), std::sync::Arc::new(input))]);
    node.run(c, &inputs)
}

/// Every band of a raster file as f64 bits (NaN equals NaN), and its overviews'.
fn pixels(path: &Path) -> Vec<Vec<u64>> {
    let ds = Dataset::open(path).unwrap();
    let mut out = Vec::new();
    for band in ds.rasterbands() {
        let band = band.unwrap();
        let mut bands = vec![band.size()];
        for i in 0..band.overview_count().unwrap() as usize {
            bands.push(band.overview(i).unwrap().size());
        }
        for (i, size) in bands.into_iter().enumerate() {
            let b = if i == 0 {
                ds.rasterband(out.len() + 1).unwrap()
            } else {
                band.overview(i - 1).unwrap()
            };
            let buf = b.read_as::<f64>((0, 0), size, size, None).unwrap();
            out.push(buf.data().iter().map(|v| v.to_bits()).collect());
        }
    }
    out
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn windowed_class_maps_are_written_as_the_whole_map_is() {
    // A Byte map, and a UInt16 one (class 300).
    let mut wide = labels();
    wide.data[[2, 3]] = 300;
    wide.classes.push(ClassInfo {
        id: 300,
        name: "roofs".into(),
        color: [200, 10, 10],
    });
    // Each with its own classes, and without classes 1 and 2 (they come from the pixels, from a
    // map held whole as from its windows).
    let mut variants = Vec::new();
    for (map, data_type) in [(labels(), "Byte"), (wide, "UInt16")] {
        let mut few = map.clone();
        few.classes.retain(|c| c.id != 1 && c.id != 2);
        variants.extend([(map, data_type), (few, data_type)]);
    }
    for (map, data_type) in variants {
        for format in ["gtiff", "cog"] {
            let p = format!("path = \"classes.tif\"\nformat = \"{format}\"");
            let whole_dir = tempfile::tempdir().unwrap();
            write_in(&p, Value::Labels(map.clone()), &ctx(whole_dir.path())).unwrap();
            let whole = whole_dir.path().join("classes.tif");
            assert!(dump(&whole).contains(data_type), "{}", dump(&whole));
            for window in [1, 3, 4, 5, 100] {
                let out = tempfile::tempdir().unwrap();
                let (input, c) = windowed(
                    Value::Labels(map.clone()),
                    Value::Labels(map.clone()),
                    window,
                    out.path(),
                );
                write_in(&p, input, &c).unwrap();
                let file = out.path().join("classes.tif");
                let what = format!("{data_type} {format} window {window} {:?}", map.classes);
                assert_eq!(dump(&file), dump(&whole), "{what}");
                assert_eq!(pixels(&file), pixels(&whole), "{what}");
                if format == "cog" {
                    // Copied from a GeoTIFF with the same pixels and metadata: the same file.
                    assert_eq!(
                        std::fs::read(&file).unwrap(),
                        std::fs::read(&whole).unwrap(),
                        "{what}"
                    );
                }
                // The sidecar, and nothing temporary.
                assert_eq!(
                    file_names(out.path()),
                    file_names(whole_dir.path()),
                    "{what}"
                );
            }
        }
    }
}

#[test]
fn a_windowed_class_id_that_a_byte_map_cannot_hold_is_refused_naming_the_window() {
    let mut map = labels();
    map.data[[3, 5]] = 300;
    for format in ["gtiff", "cog"] {
        let out = tempfile::tempdir().unwrap();
        // The template's classes are 0 to 2: Byte is chosen before the windows are computed.
        let (input, c) = windowed(
            Value::Labels(map.clone()),
            Value::Labels(labels()),
            4,
            out.path(),
        );
        let e = write_in(
            &format!("path = \"classes.tif\"\nformat = \"{format}\""),
            input,
            &c,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), flow_core::ExitCode::BadData, "{e}");
        let message = e.to_string();
        for needle in ["class id 300", "window 2x4+4+0", "class_names"] {
            assert!(message.contains(needle), "`{needle}` in: {message}");
        }
        // Nothing is left: no temporary file, no GeoTIFF a COG would have been copied from.
        assert_eq!(file_names(out.path()), Vec::<String>::new(), "{format}");
        // Names for every id up to 300 make it UInt16, as the whole map is written.
        let names: Vec<String> = (0..=300).map(|i| format!("\"c{i}\"")).collect();
        let p = format!(
            "path = \"classes.tif\"\nformat = \"{format}\"\nclass_names = [{}]",
            names.join(", ")
        );
        let (input, c) = windowed(
            Value::Labels(map.clone()),
            Value::Labels(labels()),
            4,
            out.path(),
        );
        write_in(&p, input, &c).unwrap();
        let whole_dir = tempfile::tempdir().unwrap();
        write_in(&p, Value::Labels(map.clone()), &ctx(whole_dir.path())).unwrap();
        let (a, b) = (
            out.path().join("classes.tif"),
            whole_dir.path().join("classes.tif"),
        );
        assert!(dump(&a).contains("UInt16"), "{}", dump(&a));
        assert_eq!(dump(&a), dump(&b));
        assert_eq!(pixels(&a), pixels(&b));
    }
}

#[test]
fn windowed_rasters_are_written_as_the_whole_raster_is() {
    let cube = raster(37, 21);
    for format in ["gtiff", "cog"] {
        let p = format!("path = \"cube.tif\"\nformat = \"{format}\"");
        let whole_dir = tempfile::tempdir().unwrap();
        write_in(&p, Value::Raster(cube.clone()), &ctx(whole_dir.path())).unwrap();
        let whole = whole_dir.path().join("cube.tif");
        for window in [1, 8, 16, 100] {
            let out = tempfile::tempdir().unwrap();
            let (input, c) = windowed(
                Value::Raster(cube.clone()),
                Value::Raster(cube.clone()),
                window,
                out.path(),
            );
            write_in(&p, input, &c).unwrap();
            let file = out.path().join("cube.tif");
            let what = format!("{format} window {window}");
            assert_eq!(dump(&file), dump(&whole), "{what}");
            assert_eq!(pixels(&file), pixels(&whole), "{what}");
            assert_eq!(file_names(out.path()), ["cube.tif"], "{what}");
        }
    }
}
