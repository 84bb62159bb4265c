//! The synthetic scene is classifiable: K-Means (k = 5) on the 0..255-normalized 12 bands of the
//! notebook's AOI finds the ground truth's classes (adjusted Rand index >= 0.8).

mod common;

use common::*;
use flow_core::Value;
use flow_nodes_raster::StackKind;

/// Lloyd's K-Means with k-means++ seeding; returns labels of the best of `n_init` runs.
fn kmeans(x: &[Vec<f64>], k: usize, n_init: usize, seed: u64) -> Vec<usize> {
    let mut state = seed;
    let mut rand = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let dist = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>();
    let mut best = (f64::INFINITY, vec![]);
    for _ in 0..n_init {
        let mut centres = vec![x[(rand() * x.len() as f64) as usize].clone()];
        while centres.len() < k {
            let d: Vec<f64> = x
                .iter()
                .map(|p| {
                    centres
                        .iter()
                        .map(|c| dist(p, c))
                        .fold(f64::INFINITY, f64::min)
                })
                .collect();
            let total: f64 = d.iter().sum();
            let mut target = rand() * total;
            let mut pick = 0;
            for (i, di) in d.iter().enumerate() {
                target -= di;
                if target <= 0.0 {
                    pick = i;
                    break;
                }
            }
            centres.push(x[pick].clone());
        }
        let mut labels = vec![0; x.len()];
        for _ in 0..100 {
            for (i, p) in x.iter().enumerate() {
                labels[i] = (0..k)
                    .min_by(|&a, &b| dist(p, &centres[a]).total_cmp(&dist(p, &centres[b])))
                    .unwrap();
            }
            let mut sums = vec![vec![0.0; x[0].len()]; k];
            let mut counts = vec![0usize; k];
            for (p, &l) in x.iter().zip(&labels) {
                counts[l] += 1;
                for (s, v) in sums[l].iter_mut().zip(p) {
                    *s += v;
                }
            }
            let mut moved = 0.0;
            for c in 0..k {
                if counts[c] > 0 {
                    let new: Vec<f64> = sums[c].iter().map(|s| s / counts[c] as f64).collect();
                    moved += dist(&new, &centres[c]);
                    centres[c] = new;
                }
            }
            if moved < 1e-9 {
                break;
            }
        }
        let inertia: f64 = x
            .iter()
            .zip(&labels)
            .map(|(p, &l)| dist(p, &centres[l]))
            .sum();
        if inertia < best.0 {
            best = (inertia, labels);
        }
    }
    best.1
}

fn ari(a: &[usize], b: &[usize]) -> f64 {
    let (ka, kb) = (a.iter().max().unwrap() + 1, b.iter().max().unwrap() + 1);
    let mut table = vec![vec![0f64; kb]; ka];
    for (&i, &j) in a.iter().zip(b) {
        table[i][j] += 1.0;
    }
    let c2 = |n: f64| n * (n - 1.0) / 2.0;
    let index: f64 = table.iter().flatten().map(|&n| c2(n)).sum();
    let sa: f64 = table.iter().map(|r| c2(r.iter().sum())).sum();
    let sb: f64 = (0..kb).map(|j| c2(table.iter().map(|r| r[j]).sum())).sum();
    let expected = sa * sb / c2(a.len() as f64);
    (index - expected) / ((sa + sb) / 2.0 - expected)
}

#[test]
fn kmeans_recovers_the_ground_truth() {
    let mut v = items();
    let first = v["features"][0].clone();
    v["features"] = serde_json::json!([first]);
    let tmp = tempfile::tempdir().unwrap();
    let p = format!("assets = {ASSETS}\nresolution = 10\nbounds_latlon = {AOI}");
    let Value::Raster(r) = run(
        &StackKind,
        &p,
        vec![("input", items_value(v))],
        &ctx(tmp.path()),
    )
    .unwrap() else {
        panic!()
    };
    let (truth, tw, _) = read_band(&scene().parent().unwrap().join("truth.tif"));
    let (h, w) = (r.grid.height, r.grid.width);
    let (min, max) = r
        .data
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let mut x = Vec::new();
    let mut t = Vec::new();
    for row in 0..h {
        for col in 0..w {
            let px: Vec<f32> = (0..12).map(|b| r.data[[0, b, row, col]]).collect();
            if px.iter().any(|v| v.is_nan()) {
                continue;
            }
            let truth_class = truth[(row + 105) * tw + col + 110];
            assert!(truth_class < 5.0, "valid pixel outside the truth");
            x.push(
                px.iter()
                    .map(|&v| ((v - min) / (max - min) * 255.0) as f64)
                    .collect::<Vec<_>>(),
            );
            t.push(truth_class as usize);
        }
    }
    let labels = kmeans(&x, 5, 3, 42);
    let score = ari(&labels, &t);
    eprintln!("ARI = {score:.4} over {} pixels", x.len());
    assert!(score >= 0.8, "ARI {score}");
    // The notebook casts to int8, which wraps values above 127; report what that does.
    let wrapped: Vec<Vec<f64>> = x
        .iter()
        .map(|p| p.iter().map(|&v| (v as i64 as u8 as i8) as f64).collect())
        .collect();
    eprintln!(
        "ARI with the notebook's int8 wrap = {:.4}",
        ari(&kmeans(&wrapped, 5, 3, 42), &t)
    );
}
