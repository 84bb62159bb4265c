//! Shared test helpers: the generated scene (once per test binary) and node runners.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use flow_core::{Inputs, Items, NodeKind, Params, RunContext, Value};

/// The Timberlea scene, generated once into a temp dir that lives as long as the test binary.
pub fn scene() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, items) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let items = flow_nodes_raster::generate_timberlea(dir.path()).expect("generate");
        (dir, items)
    });
    items.as_path()
}

/// The scene's items with hrefs made absolute (as stac-search would).
pub fn items() -> serde_json::Value {
    let path = scene();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = path.parent().unwrap();
    for f in v["features"].as_array_mut().unwrap() {
        for (_, a) in f["assets"].as_object_mut().unwrap() {
            let href = a["href"].as_str().unwrap().to_string();
            a["href"] = dir.join(href).to_string_lossy().into_owned().into();
        }
    }
    v
}

pub fn params(text: &str) -> Params {
    toml::from_str(text).expect("toml")
}

pub fn ctx(out: &Path) -> RunContext {
    RunContext::new(
        "test",
        out.to_path_buf(),
        out.to_path_buf(),
        out.to_path_buf(),
    )
}

pub fn run(
    kind: &dyn NodeKind,
    p: &str,
    inputs: Vec<(&str, Value)>,
    ctx: &RunContext,
) -> Result<Value, flow_core::NodeError> {
    let node = kind.build(&params(p)).expect("build");
    let inputs = Inputs::new(
        inputs
            .into_iter()
            .map(|(k, v)| (k.to_string(), Arc::new(v))),
    );
    node.run(ctx, &inputs)
}

pub fn items_value(v: serde_json::Value) -> Value {
    Value::Items(Items { collection: v })
}

pub const ASSETS: &str =
    r#"["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]"#;
pub const AOI: &str = "[-73.9120245, 45.4263471, -73.883357, 45.4445361]";

/// Reads band 1 of a raster file as f64.
pub fn read_band(path: &Path) -> (Vec<f64>, usize, usize) {
    let ds = gdal::Dataset::open(path).unwrap();
    let band = ds.rasterband(1).unwrap();
    let (w, h) = band.size();
    let buf = band.read_as::<f64>((0, 0), (w, h), (w, h), None).unwrap();
    (buf.data().to_vec(), w, h)
}
