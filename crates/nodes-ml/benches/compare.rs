//! flow's K-Means side by side with linfa-clustering (and, through `scripts/bench`, with
//! scikit-learn) on the same `.npy` data and initial centroids. A measuring tool, not a test:
//!
//! ```text
//! cargo bench -p flow-nodes-ml --bench compare -- gen DIR NAME ROWS FEATURES SEED K...
//! cargo bench -p flow-nodes-ml --bench compare -- flow DATA.npy INIT.npy A B REPS
//! cargo bench -p flow-nodes-ml --bench compare -- linfa DATA.npy INIT.npy A B
//! ```
//!
//! `gen` writes `DIR/NAME.npy` (ROWS x FEATURES f32, a blocky synthetic scene of 10 spectral
//! classes plus noise, 0..255, fully determined by SEED) and `DIR/NAME_k{K}.npy` (K initial
//! centroids by flow's k-means++ on 100,000 sampled rows). `flow` and `linfa` print one JSON line:
//! the time per iteration is (time of B iterations - time of A iterations) / (B - A), so fixed
//! costs cancel; `flow` also times the whole fit from the same init (tol 1e-4, max_iter 300), its
//! peak RSS, and checks that 1 and 2 threads give the same bits.

use std::io::{Read, Write};
use std::time::Instant;

use flow_nodes_ml::kmeans::algorithm::{fit_from_init, lloyd};
use flow_nodes_ml::kmeans::assign::{labels, mean_variance, pass, Rows};
use flow_nodes_ml::kmeans::{init, kernel, InitMethod};
use ndarray::{Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256Plus;
use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["gen", dir, name, n, f, seed, ks @ ..] => gen(
            dir,
            name,
            n.parse().unwrap(),
            f.parse().unwrap(),
            seed.parse().unwrap(),
            &ks.iter()
                .map(|k| k.parse().unwrap())
                .collect::<Vec<usize>>(),
        ),
        ["flow", data, init, a, b, reps] => flow(
            data,
            init,
            a.parse().unwrap(),
            b.parse().unwrap(),
            reps.parse().unwrap(),
        ),
        ["linfa", data, init, a, b] => linfa(data, init, a.parse().unwrap(), b.parse().unwrap()),
        [] => eprintln!("compare: nothing to do (see the header of benches/compare.rs)"),
        other => panic!("compare: unknown arguments {other:?}"),
    }
}

/// Writes a 2-D f32 `.npy` without a second copy of the data in memory.
fn write_npy(path: &str, rows: usize, cols: usize, data: &[f32]) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(b"\x93NUMPY\x01\x00").unwrap();
    w.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
    w.write_all(header.as_bytes()).unwrap();
    for chunk in data.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes).unwrap();
    }
    w.flush().unwrap();
}

/// Reads a 2-D little-endian f32 `.npy` straight into its final buffer (no second copy).
fn read_npy(path: &str) -> Array2<f32> {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut pre = [0u8; 10];
    file.read_exact(&mut pre).unwrap();
    assert_eq!(&pre[..6], b"\x93NUMPY", "{path}: not .npy");
    let hlen = u16::from_le_bytes([pre[8], pre[9]]) as usize;
    assert_eq!(pre[6], 1, "{path}: only .npy 1.0");
    let mut header = vec![0u8; hlen];
    file.read_exact(&mut header).unwrap();
    let header = String::from_utf8(header).unwrap();
    assert!(
        header.contains("'<f4'") && header.contains("False"),
        "{header}"
    );
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let (n, f) = (shape[0], shape[1]);
    let mut data = vec![0f32; n * f];
    // SAFETY: f32 has no invalid bit patterns; the byte view covers exactly `data`.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr() as *mut u8, data.len() * 4) };
    file.read_exact(bytes).unwrap();
    if cfg!(target_endian = "big") {
        data.iter_mut()
            .for_each(|v| *v = f32::from_bits(v.to_bits().swap_bytes()));
    }
    Array2::from_shape_vec((n, f), data).unwrap()
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn gen(dir: &str, name: &str, n: usize, f: usize, seed: u64, ks: &[usize]) {
    const CLASSES: usize = 10;
    const WIDTH: usize = 3000;
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let protos: Vec<f32> = (0..CLASSES * f)
        .map(|_| rng.gen_range(60.0f32..180.0))
        .collect();
    let spread: Vec<f32> = (0..CLASSES).map(|_| rng.gen_range(10.0f32..30.0)).collect();
    let mut data = vec![0f32; n * f];
    data.par_chunks_mut(8192 * f)
        .enumerate()
        .for_each(|(ci, chunk)| {
            for (j, row) in chunk.chunks_exact_mut(f).enumerate() {
                let i = ci * 8192 + j;
                let (y, x) = (i / WIDTH, i % WIDTH);
                // Irregular fields: cells of 37 x 53 pixels, class by hash, some mixed pixels.
                let cell = splitmix(seed ^ ((y / 37) as u64) << 32 ^ (x / 53) as u64);
                let c = (cell % CLASSES as u64) as usize;
                let h = splitmix(seed.wrapping_add(i as u64));
                // Every pixel is a mixture with a second class (field edges, mixed cover): the
                // clusters overlap, so Lloyd needs tens of iterations as on real scenes.
                let c2 = ((h >> 8) % CLASSES as u64) as usize;
                let mix = ((h >> 20) & 0xFF) as f32 / 255.0 * 0.6;
                for (b, v) in row.iter_mut().enumerate() {
                    let hb = splitmix(h ^ (b as u64 + 1));
                    // sum of two uniforms: a triangular noise in [-1, 1]
                    let u = ((hb & 0xFFFF) as f32 + ((hb >> 16) & 0xFFFF) as f32) / 65535.0 - 1.0;
                    let base = protos[c * f + b] * (1.0 - mix) + protos[c2 * f + b] * mix;
                    *v = (base + u * spread[c] * 2.0).clamp(0.0, 255.0);
                }
            }
        });
    let path = format!("{dir}/{name}.npy");
    write_npy(&path, n, f, &data);
    let view = ArrayView2::from_shape((n, f), &data).unwrap();
    let m = n.min(100_000);
    let mut srng = Xoshiro256Plus::seed_from_u64(seed ^ 0x5EED);
    let mut idx = rand::seq::index::sample(&mut srng, n, m).into_vec();
    idx.sort_unstable();
    let sample = view.select(ndarray::Axis(0), &idx);
    let rows = Rows::new(sample.view());
    for &k in ks {
        let mut irng = Xoshiro256Plus::seed_from_u64(seed.wrapping_add(k as u64));
        let c = init::initialize(InitMethod::KMeansPlusPlus, &rows, k, &mut irng);
        write_npy(&format!("{dir}/{name}_k{k}.npy"), k, f, &c);
    }
    eprintln!("wrote {path} ({n} x {f}) and initial centroids for k = {ks:?}");
}

fn vm_hwm() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (best, out.unwrap())
}

fn flow(data: &str, init: &str, a: usize, b: usize, reps: usize) {
    let x = read_npy(data);
    let c = read_npy(init);
    let (n, f) = x.dim();
    let k = c.nrows();
    let threads = rayon::current_num_threads();
    // The bandwidth floor: one parallel read of the whole matrix (a sum), best of 5.
    let (t_read, _) = best_of(5, || {
        x.as_slice()
            .unwrap()
            .par_chunks(1 << 16)
            .map(|c| {
                let mut acc = [0f32; 16];
                for ch in c.chunks_exact(16) {
                    for (a, v) in acc.iter_mut().zip(ch) {
                        *a += v;
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum::<f32>()
    });
    // Per iteration: B - A iterations, fixed costs cancel. A and B alternate, so that a slow
    // spell of the machine does not fall on one of them only.
    let (mut ta, mut tb) = (f64::INFINITY, f64::INFINITY);
    let (mut ra, mut rb) = (None, None);
    for _ in 0..reps.max(1) {
        let (t, r) = best_of(1, || lloyd(x.view(), c.view(), a, -1.0).unwrap());
        (ta, ra) = (ta.min(t), Some(r));
        let (t, r) = best_of(1, || lloyd(x.view(), c.view(), b, -1.0).unwrap());
        (tb, rb) = (tb.min(t), Some(r));
    }
    let (ra, rb) = (ra.expect("one run"), rb.expect("one run"));
    assert_eq!((ra.iterations, rb.iterations), (a, b));
    let per_iter = (tb - ta) / (b - a) as f64;
    // The whole fit from the same init, as kmeans-fit does one run; peak RSS while it runs.
    reset_hwm();
    let base_rss = vm_hwm();
    let (t_fit, (run, inertia)) = best_of(reps, || {
        fit_from_init(x.view(), c.view(), 300, 1e-4).unwrap()
    });
    let peak = vm_hwm();
    // Determinism: the whole fit and the labels with 1 and 2 threads.
    let one = pool(1).install(|| fit_from_init(x.view(), c.view(), 300, 1e-4).unwrap());
    let two = pool(2).install(|| fit_from_init(x.view(), c.view(), 300, 1e-4).unwrap());
    let same_fit = one.0 == two.0 && one.1.to_bits() == two.1.to_bits() && one.0 == run;
    let flat: Vec<f32> = run.centroids.iter().copied().collect();
    let rows = Rows::new(x.view());
    let l1 = pool(1).install(|| labels(&rows, &flat));
    let l2 = pool(2).install(|| labels(&rows, &flat));
    let (t_predict, _) = best_of(reps, || labels(&rows, &flat));
    // The fit's fixed costs: the variance for the tolerance and the final inertia pass.
    let (t_variance, _) = best_of(reps, || mean_variance(&rows));
    let (t_inertia, _) = best_of(reps, || pass(&rows, &flat, k));
    let out = serde_json::json!({
        "tool": "flow",
        "isa": format!("{:?}", kernel::isa()),
        "threads": threads,
        "rows": n, "features": f, "k": k,
        "matrix_bytes": n * f * 4,
        "per_iter_s": per_iter,
        "ms_per_iter_per_mpx": per_iter * 1e3 / (n as f64 / 1e6),
        "read_s": t_read,
        "floor_ms_per_mpx": t_read * 1e3 / (n as f64 / 1e6),
        "read_gb_s": (n * f * 4) as f64 / t_read / 1e9,
        "fit_s": t_fit,
        "fit_iterations": run.iterations,
        "fit_converged": run.converged,
        "fit_inertia": inertia,
        "predict_s": t_predict,
        "variance_s": t_variance,
        "inertia_pass_s": t_inertia,
        "rss_before_fit": base_rss,
        "peak_rss_fit": peak,
        "same_fit_1_2_threads": same_fit,
        "same_labels_1_2_threads": l1 == l2,
    });
    println!("{out}");
}

fn linfa(data: &str, init: &str, a: usize, b: usize) {
    use linfa::traits::Fit;
    use linfa::DatasetBase;
    use linfa_clustering::{KMeans, KMeansInit};
    let x = read_npy(data);
    let c = read_npy(init);
    let (n, f) = x.dim();
    let ds = DatasetBase::from(x);
    let time = |iters: usize| {
        let t = Instant::now();
        let model = KMeans::params(c.nrows())
            .n_runs(1)
            .max_n_iterations(iters as u64)
            .tolerance(1e-30)
            .init_method(KMeansInit::Precomputed(c.clone()))
            .fit(&ds)
            .unwrap();
        (t.elapsed().as_secs_f64(), model)
    };
    let (ta, _) = time(a);
    let (tb, _) = time(b);
    let per_iter = (tb - ta) / (b - a) as f64;
    let out = serde_json::json!({
        "tool": "linfa-clustering 0.8",
        "threads": rayon::current_num_threads(),
        "rows": n, "features": f, "k": c.nrows(),
        "per_iter_s": per_iter,
        "ms_per_iter_per_mpx": per_iter * 1e3 / (n as f64 / 1e6),
    });
    println!("{out}");
}
