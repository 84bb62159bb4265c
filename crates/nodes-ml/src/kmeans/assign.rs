//! Row views, the exact distance helpers (init, relocation) and the deterministic parallel passes
//! (cluster sums, counts and inertia; column variance) built on the fast [`super::kernel`].
//!
//! Every reduction splits the rows into fixed chunks of 8192 rows, computes one partial
//! result per chunk in parallel and combines the partials sequentially in chunk order, so the
//! floating-point result does not depend on the number of rayon threads.

use std::borrow::Cow;

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::kernel::{self, Prepared};
use crate::common::{with_feature_count, CHUNK};

/// A row-major view of a matrix as one slice.
#[derive(Debug, Clone)]
pub struct Rows<'a> {
    data: Cow<'a, [f32]>,
    /// Number of rows.
    pub n: usize,
    /// Number of features per row.
    pub f: usize,
}

impl<'a> Rows<'a> {
    /// Borrows the matrix when it is in standard layout, else copies it.
    pub fn new(view: ArrayView2<'a, f32>) -> Self {
        let (n, f) = view.dim();
        let data = match view.to_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(view.iter().copied().collect()),
        };
        Rows { data, n, f }
    }

    /// Row `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.f..(i + 1) * self.f]
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Parallel iterator over chunks of 8192 rows: (index of the first row, values).
    pub fn par_chunks(&self) -> impl IndexedParallelIterator<Item = (usize, &[f32])> + '_ {
        let f = self.f.max(1);
        self.data
            .par_chunks(CHUNK * f)
            .enumerate()
            .map(move |(c, s)| (c * CHUNK, s))
    }
}

/// Squared Euclidean distance, accumulated in f32 (as scikit-learn does for f32 data).
#[inline]
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The nearest centroid of `row` (centroids flat, `f` values each) and its squared distance;
/// ties go to the lowest id. Same arithmetic, hence the same bits, as [`Nearest::find`].
#[inline]
pub fn nearest(row: &[f32], centroids: &[f32], f: usize) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (c, centroid) in centroids.chunks_exact(f.max(1)).enumerate() {
        let d = sq_dist(row, centroid);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// Lanes of one centroid block in [`Nearest`].
const LANES: usize = 8;

/// Centroids stored in blocks of 8, feature-major inside a block (`[block][feature][lane]`), so
/// that the distances of one row to 8 centroids are computed on fixed-size arrays with the loop
/// over centroids innermost: no horizontal reduction, which the compiler vectorizes. Missing
/// lanes of the last block hold +inf and are never chosen. Each distance still sums its features
/// in order, exactly like [`sq_dist`], so results are bit-identical to [`nearest`].
#[derive(Debug, Clone)]
pub struct Nearest {
    blocks: Vec<[f32; LANES]>,
    k: usize,
    f: usize,
}

impl Nearest {
    /// Prepares `k x f` centroids given flat.
    pub fn new(centroids: &[f32], f: usize) -> Self {
        let f1 = f.max(1);
        let k = centroids.len() / f1;
        let nblocks = k.div_ceil(LANES);
        let mut blocks = vec![[f32::INFINITY; LANES]; nblocks * f1];
        for c in 0..k {
            for j in 0..f1 {
                blocks[(c / LANES) * f1 + j][c % LANES] = centroids[c * f1 + j];
            }
        }
        Nearest { blocks, k, f: f1 }
    }

    /// The nearest centroid of `row` and its squared distance; ties to the lowest id.
    #[inline]
    pub fn find(&self, row: &[f32]) -> (usize, f32) {
        let mut best = (0, f32::INFINITY);
        for (b, block) in self.blocks.chunks_exact(self.f).enumerate() {
            let mut acc = [0.0f32; LANES];
            for (&x, c) in row.iter().zip(block) {
                for l in 0..LANES {
                    let t = x - c[l];
                    acc[l] += t * t;
                }
            }
            for (l, &v) in acc.iter().enumerate() {
                if v < best.1 && b * LANES + l < self.k {
                    best = (b * LANES + l, v);
                }
            }
        }
        best
    }
}

/// What one assignment pass learns.
#[derive(Debug, Clone, PartialEq)]
pub struct PassStats {
    /// Rows per cluster.
    pub counts: Vec<u64>,
    /// Sum of squared distances of the rows to their nearest centroid (f64).
    pub inertia: f64,
}

impl PassStats {
    pub(crate) fn zeros(k: usize) -> Self {
        PassStats {
            counts: vec![0; k],
            inertia: 0.0,
        }
    }

    fn add(&mut self, other: &PassStats) {
        add_into(&mut self.counts, &other.counts);
        self.inertia += other.inertia;
    }
}

/// `a[i] += b[i]` for every `i`: how partial sums and counts are combined.
pub(crate) fn add_into<T: Copy + std::ops::AddAssign>(a: &mut [T], b: &[T]) {
    a.iter_mut().zip(b).for_each(|(x, &y)| *x += y);
}

/// Assigns every row to its nearest centroid (the fast [`kernel`](super::kernel), the same
/// assignment as every Lloyd step and as `predict`) and accumulates counts and the inertia
/// (each row's squared distance to its centroid, computed directly in f32, summed in f64 in row
/// order).
pub fn pass(rows: &Rows<'_>, centroids: &[f32], k: usize) -> PassStats {
    let f = rows.f.max(1);
    let p = Prepared::new(&centroids[..k * f], f);
    pass_multi(rows, &[&p])
        .pop()
        .unwrap_or_else(|| PassStats::zeros(k))
}

/// Count banks of [`pass_multi`]: row `i` counts in bank `i % COUNT_BANKS`, so that a run of
/// rows of one cluster does not wait on one counter.
const COUNT_BANKS: usize = 4;

/// [`pass`] for several sets of centroids at once, streaming the rows once.
pub fn pass_multi(rows: &Rows<'_>, runs: &[&Prepared]) -> Vec<PassStats> {
    let isa = kernel::isa();
    let f = rows.f.max(1);
    let partials: Vec<Vec<PassStats>> = rows
        .par_chunks()
        .map(|(_, chunk)| {
            let mut labels = [0u32; kernel::BLOCK];
            let mut dist = [0.0f32; kernel::BLOCK];
            runs.iter()
                .map(|p| {
                    let k = p.k();
                    let mut counts = vec![0u64; COUNT_BANKS * k];
                    let mut inertia = 0.0f64;
                    for block in chunk.chunks(kernel::BLOCK * f) {
                        kernel::assign_with(isa, block, p, &mut labels);
                        // Distances first (independent rows), then the ordered f64 sum.
                        distances(block, &labels, p.flat(), f, &mut dist);
                        let n = block.len() / f;
                        for (i, (&c, &d)) in labels[..n].iter().zip(&dist[..n]).enumerate() {
                            counts[(i % COUNT_BANKS) * k + c as usize] += 1;
                            inertia += d as f64;
                        }
                    }
                    let mut st = PassStats::zeros(k);
                    for bank in counts.chunks_exact(k) {
                        add_into(&mut st.counts, bank);
                    }
                    st.inertia = inertia;
                    st
                })
                .collect()
        })
        .collect();
    let mut total: Vec<PassStats> = runs.iter().map(|p| PassStats::zeros(p.k())).collect();
    for part in &partials {
        for (t, p) in total.iter_mut().zip(part) {
            t.add(p);
        }
    }
    total
}

/// Column means and the mean per-feature variance (`np.mean(np.var(X, axis=0))`, population
/// variance), in two passes with f64 sums, deterministic for any thread count.
pub fn mean_variance(rows: &Rows<'_>) -> (Vec<f64>, f64) {
    let f = rows.f.max(1);
    // Per chunk: f32 column sums per block of 512 rows, flushed to f64.
    let col_sums = |shift: &[f32], square: bool| -> Vec<f64> {
        let partials: Vec<Vec<f64>> = rows
            .par_chunks()
            .map(|(_, chunk)| {
                let mut acc = vec![0.0f64; f];
                let mut part = vec![0.0f32; f];
                for block in chunk.chunks(512 * f) {
                    add_rows(block, shift, square, &mut part);
                    for (a, p) in acc.iter_mut().zip(part.iter_mut()) {
                        *a += *p as f64;
                        *p = 0.0;
                    }
                }
                acc
            })
            .collect();
        let mut total = vec![0.0f64; f];
        for p in &partials {
            total.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        total
    };
    let n = rows.n.max(1) as f64;
    let zeros = vec![0.0f32; f];
    let means: Vec<f64> = col_sums(&zeros, false).iter().map(|s| s / n).collect();
    let m32: Vec<f32> = means.iter().map(|&m| m as f32).collect();
    // sum (x - m)^2 around the f32-rounded mean, corrected to the exact mean:
    // sum (x - mu)^2 = sum (x - m)^2 - n (mu - m)^2.
    let sq = col_sums(&m32, true);
    let var = sq
        .iter()
        .zip(&means)
        .zip(&m32)
        .map(|((s, mu), &m)| s - n * (mu - m as f64).powi(2))
        .sum::<f64>()
        / (n * f as f64);
    (means, var)
}

/// `dist[i]` = [`sq_dist`] of row `i` of `block` to its centroid `labels[i]` (the same bits),
/// monomorphized for up to 16 features so that each row's sum is unrolled and consecutive rows
/// overlap.
fn distances(block: &[f32], labels: &[u32], centroids: &[f32], f: usize, dist: &mut [f32]) {
    #[inline(always)]
    fn fixed<const F: usize>(block: &[f32], labels: &[u32], centroids: &[f32], dist: &mut [f32]) {
        for ((row, &c), d) in block.chunks_exact(F).zip(labels).zip(dist) {
            let c = c as usize;
            let x: &[f32; F] = row.try_into().expect("F values");
            let m: &[f32; F] = centroids[c * F..(c + 1) * F].try_into().expect("F values");
            let mut s = 0.0f32;
            for j in 0..F {
                let t = x[j] - m[j];
                s += t * t;
            }
            *d = s;
        }
    }
    with_feature_count!(f, fixed(block, labels, centroids, dist), {
        for ((row, &c), d) in block.chunks_exact(f).zip(labels).zip(dist) {
            let c = c as usize;
            *d = sq_dist(row, &centroids[c * f..(c + 1) * f]);
        }
    })
}

/// Adds every row of `block` minus `shift` (squared when `square`) into `part`, feature by
/// feature in row order. Monomorphized for up to 16 features, so that the partial sums stay in
/// registers rather than making each row wait on the previous row's stores.
fn add_rows(block: &[f32], shift: &[f32], square: bool, part: &mut [f32]) {
    #[inline(always)]
    fn fixed<const F: usize>(block: &[f32], shift: &[f32], square: bool, part: &mut [f32]) {
        let m: [f32; F] = shift.try_into().expect("shift has F values");
        let mut p: [f32; F] = (&*part).try_into().expect("part has F values");
        for row in block.chunks_exact(F) {
            for j in 0..F {
                let d = row[j] - m[j];
                p[j] += if square { d * d } else { d };
            }
        }
        part.copy_from_slice(&p);
    }
    let f = part.len();
    with_feature_count!(f, fixed(block, shift, square, part), {
        for row in block.chunks_exact(f) {
            for ((p, &v), &m) in part.iter_mut().zip(row).zip(shift) {
                let d = v - m;
                *p += if square { d * d } else { d };
            }
        }
    })
}

/// Sum over rows of `g(row index, row)`, deterministic whatever the thread count.
pub fn ordered_sum(rows: &Rows<'_>, g: impl Fn(usize, &[f32]) -> f64 + Sync) -> f64 {
    let f = rows.f.max(1);
    let partials: Vec<f64> = rows
        .par_chunks()
        .map(|(start, chunk)| {
            chunk
                .chunks_exact(f)
                .enumerate()
                .map(|(i, r)| g(start + i, r))
                .sum()
        })
        .collect();
    partials.iter().sum()
}

/// The nearest class of every row (the kernel's assignment), in parallel over fixed chunks.
pub fn labels(rows: &Rows<'_>, centroids: &[f32]) -> Vec<u32> {
    let p = Prepared::new(centroids, rows.f);
    let mut out = vec![0u32; rows.n];
    kernel::labels_into(rows, &p, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn nearest_ties_go_to_the_lowest_id() {
        let c = [0.0, 2.0, 2.0, 0.0]; // centroids (0, 2) and (2, 0)
        assert_eq!(nearest(&[1.0, 1.0], &c, 2), (0, 2.0));
        assert_eq!(nearest(&[2.0, 0.1], &c, 2).0, 1);
        let near = Nearest::new(&c, 2);
        assert_eq!(near.find(&[1.0, 1.0]), (0, 2.0));
        for row in [[0.3f32, 1.7], [2.0, 0.1], [-5.0, 3.25]] {
            let a = near.find(&row);
            let b = nearest(&row, &c, 2);
            assert_eq!((a.0, a.1.to_bits()), (b.0, b.1.to_bits()));
        }
        // 11 centroids of 3 features: two blocks, the second one partial.
        let c: Vec<f32> = (0..33).map(|i| ((i * 37) % 17) as f32 * 0.25).collect();
        let near = Nearest::new(&c, 3);
        for i in 0..200 {
            let row = [
                (i % 7) as f32 * 0.6,
                (i % 5) as f32 * 0.9,
                (i % 3) as f32 * 1.3,
            ];
            let (a, b) = (near.find(&row), nearest(&row, &c, 3));
            assert_eq!((a.0, a.1.to_bits()), (b.0, b.1.to_bits()), "{row:?}");
        }
    }

    #[test]
    fn pass_accumulates() {
        let m = array![[0.0f32, 0.0], [1.0, 0.0], [10.0, 10.0]];
        let rows = Rows::new(m.view());
        let st = pass(&rows, &[0.0, 0.0, 10.0, 10.0], 2);
        assert_eq!(st.counts, [2, 1]);
        assert_eq!(st.inertia, 1.0);
        assert_eq!(labels(&rows, &[0.0, 0.0, 10.0, 10.0]), [0, 0, 1]);
        let t = m.t();
        assert_eq!(
            Rows::new(t.t()).as_slice(),
            m.as_slice().unwrap(),
            "non-standard views are copied"
        );
    }
}
