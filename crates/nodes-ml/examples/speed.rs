//! Rough timings of the ML nodes on a synthetic scene: `cargo run --release -p flow-nodes-ml
//! --example speed -- [pixels_millions] [k]`.

use std::time::Instant;

use flow_core::{BandInfo, DeclaredParams, Grid, Raster};
use flow_nodes_ml::flatten::{FlattenNode, TimeSelection};
use flow_nodes_ml::index::{AddIndexNode, AddIndexParams};
use flow_nodes_ml::kmeans::{KMeansFitNode, KMeansParams};
use ndarray::Array4;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mpx: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let k: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(8);
    let w = 1000;
    let h = ((mpx * 1e6) as usize / w).max(1);
    let names = [
        "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
    ];
    let mut data = Array4::<f32>::zeros((1, names.len(), h, w));
    for ((_, b, y, x), v) in data.indexed_iter_mut() {
        let group = ((y / 50 + x / 70) % 6) as f32;
        *v = 0.02
            + 0.05 * group * (1.0 + b as f32 * 0.1)
            + ((y * 31 + x * 17 + b * 7) % 23) as f32 * 0.001;
    }
    let raster = Raster {
        data,
        grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, w, h),
        bands: names
            .iter()
            .map(|n| BandInfo {
                name: n.to_string(),
                ..Default::default()
            })
            .collect(),
        times: vec!["2021-07-01T00:00:00Z".into()],
    };
    let warn = |m: String| eprintln!("warning: {m}");

    let t = Instant::now();
    let p = AddIndexParams::parse(
        &toml::from_str(r#"expr = { X = "(B08 - B04) / (B08 + B04) * 2 + sqrt(B11)" }"#).unwrap(),
    )
    .unwrap();
    let with_expr = AddIndexNode::new(p.validate().unwrap())
        .apply(&raster, &warn)
        .unwrap();
    println!("add-index expr, {} px: {:?}", h * w, t.elapsed());

    let t = Instant::now();
    let m = FlattenNode::new(TimeSelection::All)
        .apply(&with_expr)
        .unwrap();
    println!("flatten -> {:?}: {:?}", m.data.dim(), t.elapsed());

    let p = KMeansParams::parse(&toml::from_str(&format!("k = {k}\nn_init = 1")).unwrap()).unwrap();
    let t = Instant::now();
    let model = KMeansFitNode::new(p.validate().unwrap())
        .fit(&m, &warn, &|| false)
        .unwrap();
    let el = t.elapsed();
    println!(
        "kmeans-fit k={k} n_init=1: {el:?}, {} iterations ({:.1} ms per iteration per Mpx incl. init), inertia {:.4}",
        model.iterations,
        el.as_secs_f64() * 1e3 / model.iterations.max(1) as f64 / mpx,
        model.inertia
    );

    let init = m.data.select(
        ndarray::Axis(0),
        &(0..k as usize).map(|i| i * 997).collect::<Vec<_>>(),
    );
    let t = Instant::now();
    let run =
        flow_nodes_ml::kmeans::algorithm::lloyd(m.data.view(), init.view(), 20, -1.0).unwrap();
    let el = t.elapsed();
    println!(
        "lloyd alone: {} iterations in {el:?}: {:.1} ms per iteration per Mpx",
        run.iterations,
        el.as_secs_f64() * 1e3 / run.iterations as f64 / mpx
    );
}
