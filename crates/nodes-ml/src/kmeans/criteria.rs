//! The criteria `k = "auto"` compares fits with: silhouette, Calinski-Harabasz, Davies-Bouldin,
//! as scikit-learn's `sklearn.metrics` defines them (`silhouette_score`,
//! `calinski_harabasz_score`, `davies_bouldin_score`).
//!
//! A fit's clusters are its rows labelled by their nearest centroid (the kernel's assignment, as
//! `predict` labels them); Calinski-Harabasz and Davies-Bouldin use the means of those clusters
//! and every fitted row, the silhouette a seeded sample of rows ([`SILHOUETTE_SAMPLE`]; it costs
//! a distance per pair of rows). Empty clusters do not count. Every sum is in f64 over fixed
//! chunks combined in order, so the values are the same bits for any number of threads.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use rayon::prelude::*;

use super::assign::{sq_dist, Rows};
use super::kernel::{self, Prepared};
use super::Criterion;

/// Rows the silhouette is computed on (a seeded sample when more rows were fitted). Its cost
/// grows with the square of this: 5000 rows are 25 million distances, computed once for every k
/// of a sweep. On the offline Timberlea scene (38,893 rows) the silhouette of 5000 rows was
/// within 0.01 of scikit-learn's over all of them (0.799 for k = 5, 0.787 for k = 6).
pub const SILHOUETTE_SAMPLE: usize = 5000;

/// Mixed into the seed for the silhouette's sample, so that it is independent of the other
/// random streams of the fit.
const SILHOUETTE_STREAM: u64 = 0x5349_4C48_5F53_4D50;

/// Rows of the silhouette's work item: each row's distances to the whole sample are computed
/// once and reused for every fit.
const SILHOUETTE_CHUNK: usize = 64;

/// The three criteria of one fit; None where a criterion is undefined (fewer than two non-empty
/// clusters, or as many clusters as rows).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    /// Mean silhouette, in [-1, 1]; higher is better.
    pub silhouette: Option<f64>,
    /// Calinski-Harabasz index (variance ratio), >= 0; higher is better.
    pub calinski_harabasz: Option<f64>,
    /// Davies-Bouldin index, >= 0; lower is better.
    pub davies_bouldin: Option<f64>,
}

impl Scores {
    /// The value of `criterion`.
    pub fn get(&self, criterion: Criterion) -> Option<f64> {
        match criterion {
            Criterion::Silhouette => self.silhouette,
            Criterion::CalinskiHarabasz => self.calinski_harabasz,
            Criterion::DaviesBouldin => self.davies_bouldin,
        }
    }
}

/// The rows (indices, ascending) the silhouette is computed on: all `n` when there are at most
/// [`SILHOUETTE_SAMPLE`], else that many drawn with `seed`. The same rows for every k of a sweep.
pub fn silhouette_rows(seed: u64, n: usize) -> Vec<usize> {
    if n <= SILHOUETTE_SAMPLE {
        return (0..n).collect();
    }
    let mut rng = Xoshiro256Plus::seed_from_u64(seed ^ SILHOUETTE_STREAM);
    let mut idx = rand::seq::index::sample(&mut rng, n, SILHOUETTE_SAMPLE).into_vec();
    idx.sort_unstable();
    idx
}

/// Calinski-Harabasz and Davies-Bouldin of `rows` clustered by their nearest centroid of
/// `centroids` (`k x f`, flat); `means` are the column means of all rows.
///
/// Calinski-Harabasz is `B (n - k) / (W (k - 1))` with `B` the squared distances of the cluster
/// means to the overall mean weighted by cluster sizes and `W` the squared distances of rows to
/// their cluster's mean (1 when `W` is 0, as scikit-learn). Davies-Bouldin is the mean over
/// clusters of `max over other clusters (s_i + s_j) / d(m_i, m_j)`, `s` the mean distance of a
/// cluster's rows to its mean (a pair of clusters with equal means counts 0, as scikit-learn).
pub fn dispersion(rows: &Rows<'_>, centroids: &[f32], means: &[f64]) -> (Option<f64>, Option<f64>) {
    let f = rows.f.max(1);
    let prepared = Prepared::new(centroids, f);
    let k = prepared.k();
    let Some(acc) = kernel::step(rows, &[&prepared]).pop() else {
        return (None, None);
    };
    let live: Vec<usize> = (0..k).filter(|&c| acc.counts[c] > 0).collect();
    let (n, kk) = (rows.n, live.len());
    if kk < 2 || kk >= n {
        return (None, None);
    }
    let cluster_means: Vec<f64> = (0..k * f)
        .map(|i| {
            let count = acc.counts[i / f];
            if count == 0 {
                0.0
            } else {
                acc.sums[i] / count as f64
            }
        })
        .collect();
    // Per cluster: the sum of squared distances of its rows to its mean, and of distances.
    let isa = kernel::isa();
    let partials: Vec<Vec<(f64, f64)>> = rows
        .par_chunks()
        .map(|(_, chunk)| {
            let mut labels = [0u32; kernel::BLOCK];
            let mut sums = vec![(0.0f64, 0.0f64); k];
            for block in chunk.chunks(kernel::BLOCK * f) {
                kernel::assign_with(isa, block, &prepared, &mut labels);
                for (row, &c) in block.chunks_exact(f).zip(&labels) {
                    let c = c as usize;
                    let mean = &cluster_means[c * f..(c + 1) * f];
                    let d2: f64 = row
                        .iter()
                        .zip(mean)
                        .map(|(&x, &m)| (x as f64 - m).powi(2))
                        .sum();
                    sums[c].0 += d2;
                    sums[c].1 += d2.sqrt();
                }
            }
            sums
        })
        .collect();
    let mut within = vec![(0.0f64, 0.0f64); k];
    for part in &partials {
        for (w, p) in within.iter_mut().zip(part) {
            w.0 += p.0;
            w.1 += p.1;
        }
    }
    let mean_of = |c: usize| &cluster_means[c * f..(c + 1) * f];
    let between: f64 = live
        .iter()
        .map(|&c| {
            let d2: f64 = mean_of(c)
                .iter()
                .zip(means)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
            acc.counts[c] as f64 * d2
        })
        .sum();
    let w: f64 = live.iter().map(|&c| within[c].0).sum();
    let ch = if w == 0.0 {
        1.0
    } else {
        between * (n - kk) as f64 / (w * (kk - 1) as f64)
    };
    let spread: Vec<f64> = live
        .iter()
        .map(|&c| within[c].1 / acc.counts[c] as f64)
        .collect();
    let distance = |a: usize, b: usize| -> f64 {
        mean_of(a)
            .iter()
            .zip(mean_of(b))
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let db = if spread.iter().all(|&s| s == 0.0) {
        0.0
    } else {
        live.iter()
            .enumerate()
            .map(|(i, &a)| {
                live.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(j, &b)| {
                        let d = distance(a, b);
                        if d == 0.0 {
                            0.0
                        } else {
                            (spread[i] + spread[j]) / d
                        }
                    })
                    .fold(0.0f64, f64::max)
            })
            .sum::<f64>()
            / kk as f64
    };
    (Some(ch), Some(db))
}

/// The mean silhouette of the rows `sample` under each labelling of `labelings` (one label per
/// row of `sample`, each below that labelling's `k`): every row's Euclidean distances to the
/// others are computed once for all of them.
///
/// A row's silhouette is `(b - a) / max(a, b)`, `a` its mean distance to the other rows of its
/// cluster, `b` the smallest mean distance to the rows of another cluster; 0 for a row alone in
/// its cluster. None for a labelling with fewer than two clusters, or as many as rows.
pub fn silhouettes(sample: &Rows<'_>, labelings: &[(&[u32], usize)]) -> Vec<Option<f64>> {
    let n = sample.n;
    let sizes: Vec<Vec<u64>> = labelings
        .iter()
        .map(|(labels, k)| {
            let mut sizes = vec![0u64; *k];
            for &c in labels.iter() {
                sizes[c as usize] += 1;
            }
            sizes
        })
        .collect();
    let defined: Vec<bool> = sizes
        .iter()
        .map(|s| {
            let clusters = s.iter().filter(|&&c| c > 0).count();
            (2..n).contains(&clusters)
        })
        .collect();
    if !defined.iter().any(|&d| d) {
        return vec![None; labelings.len()];
    }
    let starts: Vec<usize> = (0..n).step_by(SILHOUETTE_CHUNK).collect();
    let partials: Vec<Vec<f64>> = starts
        .par_iter()
        .map(|&start| {
            let mut dist = vec![0.0f64; n];
            let mut sums: Vec<Vec<f64>> = labelings.iter().map(|(_, k)| vec![0.0; *k]).collect();
            let mut total = vec![0.0f64; labelings.len()];
            for i in start..(start + SILHOUETTE_CHUNK).min(n) {
                let x = sample.row(i);
                for (j, d) in dist.iter_mut().enumerate() {
                    *d = (sq_dist(x, sample.row(j)) as f64).sqrt();
                }
                for (l, (labels, _)) in labelings.iter().enumerate() {
                    if !defined[l] {
                        continue;
                    }
                    let s = &mut sums[l];
                    s.iter_mut().for_each(|v| *v = 0.0);
                    for (&c, &d) in labels.iter().zip(&dist) {
                        s[c as usize] += d;
                    }
                    total[l] += row_silhouette(labels[i] as usize, s, &sizes[l]);
                }
            }
            total
        })
        .collect();
    (0..labelings.len())
        .map(|l| defined[l].then(|| partials.iter().map(|p| p[l]).sum::<f64>() / n as f64))
        .collect()
}

/// The silhouette of a row of cluster `own`, given its summed distances to every cluster's rows
/// (itself included, at distance 0) and the clusters' sizes.
fn row_silhouette(own: usize, sums: &[f64], sizes: &[u64]) -> f64 {
    if sizes[own] <= 1 {
        return 0.0;
    }
    let a = sums[own] / (sizes[own] - 1) as f64;
    let b = sums
        .iter()
        .zip(sizes)
        .enumerate()
        .filter(|&(c, (_, &size))| c != own && size > 0)
        .map(|(_, (&s, &size))| s / size as f64)
        .fold(f64::INFINITY, f64::min);
    let m = a.max(b);
    if m > 0.0 && m.is_finite() {
        (b - a) / m
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    /// Six points on a line in two groups, labelled 0 0 0 1 1 1 by centroids at 1 and 11.
    fn two_groups() -> (Array2<f32>, Vec<f32>) {
        (
            array![[0.0f32], [1.0], [2.0], [10.0], [11.0], [12.0]],
            vec![1.0, 11.0],
        )
    }

    #[test]
    fn silhouette_of_two_groups_by_hand() {
        let (x, centroids) = two_groups();
        let rows = Rows::new(x.view());
        let labels = super::super::assign::labels(&rows, &centroids);
        assert_eq!(labels, [0, 0, 0, 1, 1, 1]);
        // Row 0: a = (1 + 2) / 2 = 1.5, b = (10 + 11 + 12) / 3 = 11, s = 9.5 / 11.
        // Row 1: a = 1, b = 10, s = 0.9. Row 2: a = 1.5, b = 9, s = 7.5 / 9. Symmetric for the
        // other group, so the mean is (9.5 / 11 + 0.9 + 7.5 / 9) / 3.
        let want = (9.5 / 11.0 + 0.9 + 7.5 / 9.0) / 3.0;
        let got = silhouettes(&rows, &[(&labels, 2)]);
        assert!((got[0].unwrap() - want).abs() < 1e-12, "{got:?} vs {want}");
        // sklearn: silhouette_score([[0],[1],[2],[10],[11],[12]], [0,0,0,1,1,1]) ==
        // 0.8656565656565657.
        assert!((got[0].unwrap() - 0.8656565656565657).abs() < 1e-12);
        // One cluster, or as many clusters as rows: undefined.
        let one = [0u32; 6];
        let each = [0u32, 1, 2, 3, 4, 5];
        assert_eq!(silhouettes(&rows, &[(&one, 1), (&each, 6)]), [None, None]);
        // A row alone in its cluster counts 0: labels 0 0 0 1 1 2 (sklearn gives
        // 0.5125681851688043 for silhouette_score([[0],[1],[2],[10],[11],[12]], [0,0,0,1,1,2])).
        let lone = [0u32, 0, 0, 1, 1, 2];
        let got = silhouettes(&rows, &[(&lone, 3)])[0].unwrap();
        assert!((got - 0.5125681851688043).abs() < 1e-12, "{got}");
    }

    #[test]
    fn calinski_harabasz_and_davies_bouldin_by_hand() {
        let (x, centroids) = two_groups();
        let rows = Rows::new(x.view());
        let means = [6.0f64];
        let (ch, db) = dispersion(&rows, &centroids, &means);
        // Cluster means 1 and 11; B = 3 * 25 + 3 * 25 = 150; W = 2 + 2 = 4;
        // CH = 150 * (6 - 2) / (4 * (2 - 1)) = 150.
        assert_eq!(ch, Some(150.0));
        // s = (1 + 0 + 1) / 3 for both, d = 10: DB = (2/3 + 2/3) / 10 = 2 / 15.
        assert!((db.unwrap() - 2.0 / 15.0).abs() < 1e-15, "{db:?}");
        // All rows in one cluster (the other centroid far away): undefined.
        let (ch, db) = dispersion(&rows, &[6.0, 1000.0], &means);
        assert_eq!((ch, db), (None, None));
    }

    /// Three 2-D clusters of unequal spread, checked against scikit-learn 1.2:
    /// `silhouette_score(X, y)`, `calinski_harabasz_score(X, y)`, `davies_bouldin_score(X, y)`.
    #[test]
    fn three_clusters_match_scikit_learn() {
        let x = array![
            [0.0f32, 0.0],
            [1.0, 0.0],
            [0.0, 1.0],
            [1.0, 1.0],
            [5.0, 5.0],
            [6.0, 5.0],
            [5.0, 7.0],
            [9.0, 0.0],
            [9.0, 2.0],
            [11.0, 1.0],
        ];
        let rows = Rows::new(x.view());
        let centroids = [0.5f32, 0.5, 5.333_333_5, 5.666_666_5, 9.666_667, 1.0];
        let labels = super::super::assign::labels(&rows, &centroids);
        assert_eq!(labels, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
        let means = [4.7f64, 2.2];
        let (ch, db) = dispersion(&rows, &centroids, &means);
        let sil = silhouettes(&rows, &[(&labels, 3)])[0].unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(sil, 0.7523604947996564), "silhouette {sil}");
        assert!(close(ch.unwrap(), 69.195), "CH {ch:?}");
        assert!(close(db.unwrap(), 0.3186816184533902), "DB {db:?}");
    }

    #[test]
    fn the_silhouette_sample_is_seeded_and_bounded() {
        assert_eq!(silhouette_rows(3, 10), (0..10).collect::<Vec<_>>());
        let a = silhouette_rows(3, 100_000);
        assert_eq!(a.len(), SILHOUETTE_SAMPLE);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, silhouette_rows(3, 100_000));
        assert_ne!(a, silhouette_rows(4, 100_000));
    }
}
