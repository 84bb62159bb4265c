//! Criterion benches of `stack` on the generated offline Timberlea scene (two items, twelve
//! bands at 10, 20 and 60 m, as local COGs): the notebook's grid (10 m, windowed reads for the
//! 10 m bands, replication for the others), the same grid with bilinear resampling (every 20 m
//! and 60 m band through GDAL's warp), and a 5 m grid with one and four band readers.
//!
//! `cargo bench -p flow-nodes-raster --bench stack`. Benchmarks, not timed tests: nothing here
//! fails on a slow machine. Peak memory is measured by `scripts/bench-stack-memory`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flow_core::{Inputs, Items, NodeKind, Params, RunContext, Value};
use flow_nodes_raster::StackKind;

const ASSETS: &str =
    r#"["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]"#;
const AOI: &str = "[-73.9120245, 45.4263471, -73.883357, 45.4445361]";

/// The scene's items with absolute hrefs, as `stac-search` gives them.
fn items(dir: &Path) -> Value {
    let path = flow_nodes_raster::generate_timberlea(dir).expect("generate the scene");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("items")).expect("json");
    let base = path.parent().expect("scene dir");
    for f in v["features"].as_array_mut().expect("features") {
        for (_, a) in f["assets"].as_object_mut().expect("assets") {
            let href = a["href"].as_str().expect("href").to_string();
            a["href"] = base.join(href).to_string_lossy().into_owned().into();
        }
    }
    Value::Items(Items { collection: v })
}

fn bench_stack(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = Inputs::new([("input".to_string(), Arc::new(items(dir.path())))]);
    let ctx = RunContext::new(
        "bench",
        dir.path().to_path_buf(),
        dir.path().to_path_buf(),
        dir.path().to_path_buf(),
    );
    let mut g = c.benchmark_group("stack");
    g.sample_size(10);
    let cases = [
        ("notebook_10m_nearest", "resolution = 10"),
        (
            "notebook_10m_bilinear",
            "resolution = 10\nresampling = \"bilinear\"",
        ),
        ("5m_nearest_1_reader", "resolution = 5\nmax_parallel = 1"),
        ("5m_nearest_4_readers", "resolution = 5\nmax_parallel = 4"),
    ];
    for (name, extra) in cases {
        let params: Params = toml::from_str(&format!(
            "assets = {ASSETS}\nbounds_latlon = {AOI}\n{extra}"
        ))
        .expect("params");
        let node = StackKind.build(&params).expect("build");
        let Value::Raster(r) = node.run(&ctx, &inputs).expect("stack") else {
            panic!("stack gives a raster");
        };
        g.throughput(Throughput::Bytes((r.data.len() * 4) as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(node.run(&ctx, &inputs).expect("stack")))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_stack);
criterion_main!(benches);
