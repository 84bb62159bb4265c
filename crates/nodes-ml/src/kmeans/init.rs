//! Initial centroids: k-means++, random rows, k-means||.
//!
//! Every random choice comes from the one `Xoshiro256Plus` stream of the fit, consumed in a fixed
//! order; per-row coin flips of k-means|| come from a counter-based hash of (round key, row), so
//! they can run in parallel and still give the same result on any number of threads.

use rand::Rng;
use rand_xoshiro::Xoshiro256Plus;
use rayon::prelude::*;

use super::assign::{pass, sq_dist, Rows};
use super::hyperparams::InitMethod;
use crate::common::CHUNK;

/// k initial centroids (flat, `k x f`) chosen by `method` from `rows` (which has >= 1 row).
pub fn initialize(
    method: InitMethod,
    rows: &Rows<'_>,
    k: usize,
    rng: &mut Xoshiro256Plus,
) -> Vec<f32> {
    let idx = match method {
        InitMethod::Random => rand::seq::index::sample(rng, rows.n, k.min(rows.n)).into_vec(),
        InitMethod::KMeansPlusPlus => kmeans_plus_plus(rows, k, rng),
        InitMethod::KMeansParallel => kmeans_parallel(rows, k, rng),
    };
    let mut out = Vec::with_capacity(k * rows.f);
    for &i in &idx {
        out.extend_from_slice(rows.row(i));
    }
    // Only reachable with fewer rows than k, which the fit rejects earlier: repeat row 0.
    while out.len() < k * rows.f {
        out.extend_from_slice(rows.row(0));
    }
    out
}

/// Draws an index with probability proportional to `weights` (whose sum is `total`); uniform
/// when every weight is zero.
fn draw(weights: &[f64], total: f64, rng: &mut Xoshiro256Plus) -> usize {
    if total.is_nan() || total <= 0.0 {
        return rng.gen_range(0..weights.len());
    }
    let u = rng.gen::<f64>() * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            acc += w;
            last = i;
            if acc > u {
                return i;
            }
        }
    }
    last
}

fn chunked_sum(v: &[f64]) -> f64 {
    let partials: Vec<f64> = v.par_chunks(CHUNK).map(|c| c.iter().sum()).collect();
    partials.iter().sum()
}

/// `d2[i] = min(d2[i], |row_i - c|^2)` over the centres `cs` (flat).
fn update_d2(rows: &Rows<'_>, d2: &mut [f64], cs: &[f32]) {
    let f = rows.f.max(1);
    d2.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, ds)| {
        for (j, d) in ds.iter_mut().enumerate() {
            let row = rows.row(ci * CHUNK + j);
            for c in cs.chunks_exact(f) {
                let v = sq_dist(row, c) as f64;
                if v < *d {
                    *d = v;
                }
            }
        }
    });
}

/// Greedy k-means++ over all rows: row indices of the k centres.
fn kmeans_plus_plus(rows: &Rows<'_>, k: usize, rng: &mut Xoshiro256Plus) -> Vec<usize> {
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = rng.gen_range(0..rows.n);
    let mut chosen = vec![first];
    let mut d2 = vec![f64::INFINITY; rows.n];
    update_d2(rows, &mut d2, rows.row(first));
    while chosen.len() < k {
        let total = chunked_sum(&d2);
        let candidates: Vec<usize> = (0..trials).map(|_| draw(&d2, total, rng)).collect();
        // The candidate that lowers the potential most (first one on ties); all candidates in
        // one pass over the rows, per-chunk partials combined in order.
        let f = rows.f.max(1);
        let partials: Vec<Vec<f64>> = rows
            .par_chunks()
            .map(|(start, chunk)| {
                let mut pot = vec![0.0f64; candidates.len()];
                for (i, r) in chunk.chunks_exact(f).enumerate() {
                    let d = d2[start + i];
                    for (p, &c) in pot.iter_mut().zip(&candidates) {
                        *p += d.min(sq_dist(r, rows.row(c)) as f64);
                    }
                }
                pot
            })
            .collect();
        let mut potentials = vec![0.0f64; candidates.len()];
        for part in &partials {
            potentials.iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
        let mut best = (candidates[0], f64::INFINITY);
        for (&c, &potential) in candidates.iter().zip(&potentials) {
            if potential < best.1 {
                best = (c, potential);
            }
        }
        chosen.push(best.0);
        update_d2(rows, &mut d2, rows.row(best.0));
    }
    chosen
}

/// SplitMix64, a counter-based uniform in [0, 1) for row `i` of a round.
fn coin(key: u64, i: usize) -> f64 {
    let mut z = key.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// k-means|| (5 rounds, oversampling l = 2k), then weighted k-means++ over the candidates.
fn kmeans_parallel(rows: &Rows<'_>, k: usize, rng: &mut Xoshiro256Plus) -> Vec<usize> {
    const ROUNDS: usize = 5;
    let l = 2.0 * k as f64;
    let first = rng.gen_range(0..rows.n);
    let mut cands = vec![first];
    let mut d2 = vec![f64::INFINITY; rows.n];
    update_d2(rows, &mut d2, rows.row(first));
    for _ in 0..ROUNDS {
        let phi = chunked_sum(&d2);
        let key: u64 = rng.gen();
        if phi.is_nan() || phi <= 0.0 {
            break;
        }
        let picked: Vec<Vec<usize>> = d2
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(ci, ds)| {
                ds.iter()
                    .enumerate()
                    .filter(|&(j, &d)| coin(key, ci * CHUNK + j) < l * d / phi)
                    .map(|(j, _)| ci * CHUNK + j)
                    .collect()
            })
            .collect();
        let new: Vec<usize> = picked.concat();
        let centres: Vec<f32> = new
            .iter()
            .flat_map(|&c| rows.row(c).iter().copied())
            .collect();
        update_d2(rows, &mut d2, &centres);
        cands.extend(new);
    }
    // Weight of a candidate = rows nearest to it.
    let flat: Vec<f32> = cands
        .iter()
        .flat_map(|&c| rows.row(c).iter().copied())
        .collect();
    let weights: Vec<f64> = pass(rows, &flat, cands.len())
        .counts
        .iter()
        .map(|&c| c as f64)
        .collect();
    if cands.len() <= k {
        // Too few candidates: keep them all and add k-means++ draws over all rows.
        let mut chosen = cands;
        while chosen.len() < k {
            let total = chunked_sum(&d2);
            let c = draw(&d2, total, rng);
            chosen.push(c);
            update_d2(rows, &mut d2, rows.row(c));
        }
        return chosen;
    }
    // Weighted k-means++ over the candidates.
    let f = rows.f;
    let total_w: f64 = weights.iter().sum();
    let mut chosen = vec![draw(&weights, total_w, rng)];
    let mut cd2: Vec<f64> = (0..cands.len())
        .map(|i| {
            sq_dist(
                &flat[i * f..(i + 1) * f],
                &flat[chosen[0] * f..(chosen[0] + 1) * f],
            ) as f64
        })
        .collect();
    while chosen.len() < k {
        let w: Vec<f64> = cd2.iter().zip(&weights).map(|(d, w)| d * w).collect();
        let total: f64 = w.iter().sum();
        let c = draw(&w, total, rng);
        chosen.push(c);
        for (i, d) in cd2.iter_mut().enumerate() {
            *d = d.min(sq_dist(&flat[i * f..(i + 1) * f], &flat[c * f..(c + 1) * f]) as f64);
        }
    }
    chosen.into_iter().map(|i| cands[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;

    fn blobs() -> Array2<f32> {
        // three tight groups of 50 rows around 0, 10 and 20
        Array2::from_shape_fn((150, 2), |(i, j)| {
            (i / 50) as f32 * 10.0 + ((i * 7 + j * 3) % 11) as f32 * 0.01
        })
    }

    #[test]
    fn every_method_finds_one_centre_per_blob() {
        let data = blobs();
        let rows = Rows::new(data.view());
        for method in [InitMethod::KMeansPlusPlus, InitMethod::KMeansParallel] {
            let mut rng = Xoshiro256Plus::seed_from_u64(7);
            let c = initialize(method, &rows, 3, &mut rng);
            let mut groups: Vec<i32> = c.chunks(2).map(|r| (r[0] / 10.0).round() as i32).collect();
            groups.sort();
            assert_eq!(groups, [0, 1, 2], "{method:?}: {c:?}");
        }
        let mut rng = Xoshiro256Plus::seed_from_u64(7);
        assert_eq!(initialize(InitMethod::Random, &rows, 3, &mut rng).len(), 6);
    }

    #[test]
    fn same_seed_same_centres() {
        let data = blobs();
        let rows = Rows::new(data.view());
        for method in [
            InitMethod::KMeansPlusPlus,
            InitMethod::KMeansParallel,
            InitMethod::Random,
        ] {
            let a = initialize(method, &rows, 4, &mut Xoshiro256Plus::seed_from_u64(1));
            let b = initialize(method, &rows, 4, &mut Xoshiro256Plus::seed_from_u64(1));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn draw_follows_weights() {
        let mut rng = Xoshiro256Plus::seed_from_u64(0);
        for _ in 0..100 {
            assert_eq!(draw(&[0.0, 3.0, 0.0], 3.0, &mut rng), 1);
        }
        assert!(draw(&[0.0, 0.0], 0.0, &mut rng) < 2);
        assert!(coin(5, 3) < 1.0 && coin(5, 3) >= 0.0);
    }
}
