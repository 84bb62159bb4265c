//! The fast Lloyd kernel against references: linfa-clustering's assignment (its `predict`) and a
//! plain f64 Lloyd written here, on random data and on degenerate data (duplicate rows, empty
//! clusters, k = 1, d = 1).

use flow_nodes_ml::kmeans::algorithm::{fit_from_init, lloyd};
use flow_nodes_ml::kmeans::assign::{labels, sq_dist, Rows};
use linfa::prelude::*;
use linfa::DatasetBase;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::{Array1, Array2, ArrayView2};

fn random(n: usize, f: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((n, f), |(i, _)| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        // a few groups plus noise, values 0..255
        let group = (i * 7 / n) as f32 * 30.0;
        group + (s >> 40) as f32 / (1u64 << 24) as f32 * 40.0
    })
}

/// Same labels, except where the two candidate centroids are a near-tie.
fn assert_same_labels(data: ArrayView2<'_, f32>, c: ArrayView2<'_, f32>, a: &[usize], b: &[usize]) {
    let mut differ = 0;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        if x != y {
            let row = data.row(i).to_vec();
            let dx = sq_dist(&row, &c.row(x).to_vec());
            let dy = sq_dist(&row, &c.row(y).to_vec());
            assert!(
                (dx - dy).abs() <= 1e-5 * dx.max(dy).max(1.0),
                "row {i}: {x} ({dx}) vs {y} ({dy})"
            );
            differ += 1;
        }
    }
    assert!(
        differ * 1000 <= a.len(),
        "{differ} near-ties of {}",
        a.len()
    );
}

#[test]
fn kernel_labels_match_linfa_predict() {
    for (n, f, k) in [
        (5000, 13, 8),
        (5000, 13, 6),
        (3000, 12, 11),
        (2000, 1, 3),
        (1000, 3, 1),
    ] {
        let data = random(n, f, (n + f * 10 + k) as u64);
        let init = data.select(
            ndarray::Axis(0),
            &(0..k).map(|i| i * (n / k)).collect::<Vec<_>>(),
        );
        let ds = DatasetBase::from(data.clone());
        let model = KMeans::params(k)
            .n_runs(1)
            .max_n_iterations(3)
            .tolerance(1e-30)
            .init_method(KMeansInit::Precomputed(init.clone()))
            .fit(&ds)
            .unwrap();
        let theirs: Array1<usize> = model.predict(&data);
        let c = model.centroids().to_owned();
        let flat: Vec<f32> = c.iter().copied().collect();
        let ours: Vec<usize> = labels(&Rows::new(data.view()), &flat)
            .into_iter()
            .map(|l| l as usize)
            .collect();
        assert_same_labels(data.view(), c.view(), &ours, theirs.as_slice().unwrap());
    }
}

/// A plain Lloyd in f64 with the documented empty-cluster rule (each empty cluster, in id order,
/// moves to the row farthest from the centroids kept so far, ties to the lowest row).
fn reference(data: ArrayView2<'_, f32>, init: ArrayView2<'_, f32>, iters: usize) -> Array2<f64> {
    let (n, f) = data.dim();
    let k = init.nrows();
    let mut c = init.mapv(|v| v as f64);
    let d2 = |i: usize, c: &Array2<f64>, j: usize| -> f64 {
        (0..f)
            .map(|q| (data[[i, q]] as f64 - c[[j, q]]).powi(2))
            .sum()
    };
    for _ in 0..iters {
        let mut sums = Array2::<f64>::zeros((k, f));
        let mut counts = vec![0usize; k];
        for i in 0..n {
            let mut best = (0, f64::INFINITY);
            for j in 0..k {
                let d = d2(i, &c, j);
                if d < best.1 {
                    best = (j, d);
                }
            }
            counts[best.0] += 1;
            for q in 0..f {
                sums[[best.0, q]] += data[[i, q]] as f64;
            }
        }
        let mut next = c.clone();
        let empty: Vec<usize> = (0..k).filter(|&j| counts[j] == 0).collect();
        for j in 0..k {
            if counts[j] > 0 {
                for q in 0..f {
                    next[[j, q]] = sums[[j, q]] / counts[j] as f64;
                }
            }
        }
        let mut live: Vec<usize> = (0..k).filter(|j| !empty.contains(j)).collect();
        for &e in &empty {
            let mut far = (0, f64::NEG_INFINITY);
            for i in 0..n {
                let d = live
                    .iter()
                    .map(|&j| d2(i, &next, j))
                    .fold(f64::INFINITY, f64::min);
                if d > far.1 {
                    far = (i, d);
                }
            }
            for q in 0..f {
                next[[e, q]] = data[[far.0, q]] as f64;
            }
            live.push(e);
        }
        c = next.mapv(|v| v as f32 as f64);
    }
    c
}

fn check(data: &Array2<f32>, init: &Array2<f32>, iters: usize) {
    let ours = lloyd(data.view(), init.view(), iters, -1.0).unwrap();
    assert_eq!(ours.iterations, iters);
    let want = reference(data.view(), init.view(), iters);
    for (a, b) in ours.centroids.iter().zip(want.iter()) {
        assert!(
            (*a as f64 - b).abs() <= 1e-4 * b.abs().max(1.0),
            "{:?} x {iters}: {} vs {}",
            data.dim(),
            ours.centroids,
            want
        );
    }
}

#[test]
fn lloyd_matches_a_plain_reference_on_random_data() {
    for (n, f, k) in [
        (4000, 13, 8),
        (4000, 12, 6),
        (3000, 5, 11),
        (2500, 1, 4),
        (2000, 7, 1),
    ] {
        let data = random(n, f, (3 * n + f + k) as u64);
        let init = data.select(
            ndarray::Axis(0),
            &(0..k).map(|i| (i * 997) % n).collect::<Vec<_>>(),
        );
        for iters in [1, 4, 12] {
            check(&data, &init, iters);
        }
    }
}

#[test]
fn lloyd_matches_on_degenerate_data() {
    // Duplicate rows only: two distinct values, k = 4 -> empty clusters, relocation.
    let dup = Array2::from_shape_fn(
        (600, 3),
        |(i, j)| if i % 3 == 0 { 5.0 } else { 1.0 + j as f32 },
    );
    let init = Array2::from_shape_fn((4, 3), |(c, j)| c as f32 * 0.1 + j as f32);
    for iters in [1, 2, 5] {
        check(&dup, &init, iters);
    }
    // Duplicate initial centroids: the copy gets nothing (ties go to the lowest id).
    let data = random(1000, 2, 9);
    let init = ndarray::array![[10.0f32, 10.0], [10.0, 10.0], [200.0, 200.0]];
    for iters in [1, 3] {
        check(&data, &init, iters);
    }
    // k = 1: the mean after one step.
    let data = random(777, 13, 4);
    check(&data, &data.slice(ndarray::s![0..1, ..]).to_owned(), 2);
    // d = 1
    let data = Array2::from_shape_fn((900, 1), |(i, _)| (i % 30) as f32 * 1.5);
    check(&data, &ndarray::array![[0.0f32], [1.0], [40.0]], 6);
    // k = n: every row its own cluster.
    let data = ndarray::array![[0.0f32, 1.0], [2.0, 3.0], [4.0, 5.0]];
    let run = lloyd(data.view(), data.view(), 3, 0.0).unwrap();
    assert_eq!(run.centroids, data);
    assert!(run.converged);
}

#[test]
fn the_fit_is_the_same_with_1_and_2_threads() {
    let data = random(50_000, 13, 77);
    let init = data.select(ndarray::Axis(0), &[0, 9000, 18000, 27000, 36000, 45000]);
    let fit = |t: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
            .install(|| fit_from_init(data.view(), init.view(), 100, 1e-4).unwrap())
    };
    let (a, b) = (fit(1), fit(2));
    assert_eq!(a.0, b.0);
    assert_eq!(a.1.to_bits(), b.1.to_bits());
}
