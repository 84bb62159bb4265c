//! Criterion benches of the ML hot paths on a synthetic 1-Mpx, 12-band scene (and the notebook's
//! 47,196 x 12): the Lloyd kernel (one assignment + sums step; AVX2/FMA and portable), a whole
//! fit from fixed centroids, predict, normalize and flatten.
//!
//! `cargo bench -p flow-nodes-ml --bench nodes` (add `-- kernel` to run only the kernel group).
//! Benchmarks, not timed tests: nothing here fails on a slow machine.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flow_core::{BandInfo, DeclaredParams, Grid, Matrix, Model, Raster};
use flow_nodes_ml::flatten::{FlattenNode, TimeSelection};
use flow_nodes_ml::kmeans::algorithm::{fit_from_init, lloyd};
use flow_nodes_ml::kmeans::assign::Rows;
use flow_nodes_ml::kmeans::kernel::{self, Isa, Prepared};
use flow_nodes_ml::normalize::{NormalizeNode, NormalizeParams};
use flow_nodes_ml::predict::PredictNode;
use ndarray::{Array2, Array4, Axis};

fn scene(h: usize, w: usize, bands: usize) -> Raster {
    let mut data = Array4::<f32>::zeros((1, bands, h, w));
    for ((_, b, y, x), v) in data.indexed_iter_mut() {
        let group = ((y / 37 + x / 53) % 7) as f32;
        *v =
            20.0 + 25.0 * group * (1.0 + b as f32 * 0.07) + ((y * 31 + x * 17 + b * 7) % 23) as f32;
    }
    Raster {
        data,
        grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, w, h),
        bands: (0..bands)
            .map(|i| BandInfo {
                name: format!("B{i:02}"),
                ..Default::default()
            })
            .collect(),
        times: vec!["2021-07-01T00:00:00Z".into()],
    }
}

fn matrix(r: &Raster) -> Matrix {
    FlattenNode::new(TimeSelection::All).apply(r).unwrap()
}

fn init(m: &Matrix, k: usize) -> Array2<f32> {
    let n = m.data.nrows();
    m.data.select(
        Axis(0),
        &(0..k).map(|i| (i * 7919 * 13) % n).collect::<Vec<_>>(),
    )
}

fn bench_kernel(c: &mut Criterion) {
    let mut g = c.benchmark_group("kernel");
    g.sample_size(20);
    let m = matrix(&scene(1000, 1000, 13));
    let rows = Rows::new(m.data.view());
    for k in [6usize, 8] {
        let c0 = init(&m, k);
        let p = Prepared::new(c0.as_slice().unwrap(), 13);
        g.throughput(Throughput::Bytes((m.data.len() * 4) as u64));
        g.bench_function(BenchmarkId::new("step_1Mx13", k), |b| {
            b.iter(|| black_box(kernel::step(&rows, &[&p])))
        });
        let mut out = vec![0u32; rows.n];
        for isa in [Isa::Portable, kernel::isa()] {
            g.bench_function(BenchmarkId::new(format!("assign_1Mx13_{isa:?}"), k), |b| {
                b.iter(|| {
                    for (o, chunk) in out.chunks_mut(8192).zip(rows.as_slice().chunks(8192 * 13)) {
                        kernel::assign_with(isa, chunk, &p, o);
                    }
                    black_box(&out);
                })
            });
        }
        g.bench_function(BenchmarkId::new("lloyd_10_iterations_1Mx13", k), |b| {
            b.iter(|| black_box(lloyd(m.data.view(), c0.view(), 10, -1.0).unwrap()))
        });
    }
    // The notebook's size: the whole fit from fixed centroids.
    let small = matrix(&scene(207, 228, 12));
    let big_enough = small.data.select(
        Axis(0),
        &(0..47_196)
            .map(|i| i % small.data.nrows())
            .collect::<Vec<_>>(),
    );
    let c0 = big_enough.select(
        Axis(0),
        &[0, 5000, 11000, 17000, 23000, 29000, 35000, 41000],
    );
    g.bench_function("fit_47196x12_k8", |b| {
        b.iter(|| black_box(fit_from_init(big_enough.view(), c0.view(), 300, 1e-4).unwrap()))
    });
    g.finish();
}

fn bench_nodes(c: &mut Criterion) {
    let mut g = c.benchmark_group("nodes");
    g.sample_size(10);
    let r = scene(1000, 1000, 12);
    let m = matrix(&r);
    let c0 = init(&m, 8);
    let model = Model {
        scaling: Default::default(),
        centroids: c0,
        features: m.features.clone(),
        inertia: 0.0,
        iterations: 0,
        seed: 0,
        counts: vec![0; 8],
        info: serde_json::json!({}),
        classifier: None,
    };
    g.throughput(Throughput::Elements(m.data.nrows() as u64));
    g.bench_function("predict_1Mx12_k8", |b| {
        b.iter(|| black_box(PredictNode.apply(&m, &model).unwrap()))
    });
    let p = NormalizeParams::parse(
        &toml::from_str("method = \"minmax\"\nscope = \"global\"\nrange = [0, 255]").unwrap(),
    )
    .unwrap();
    let norm = NormalizeNode::new(p.validate().unwrap());
    g.bench_function("normalize_minmax_global_1Mx12", |b| {
        b.iter(|| black_box(norm.apply(&r, &|_| {})))
    });
    g.bench_function("flatten_1Mx12", |b| b.iter(|| black_box(matrix(&r))));
    g.finish();
}

criterion_group!(benches, bench_kernel, bench_nodes);
criterion_main!(benches);
