//! The Lloyd assignment kernel: nearest centroid by `||c||^2 - 2 x.c`, all k centroids of a
//! block of 8 held as 8-lane vectors, rows streamed once.
//!
//! * The squared distance of row `x` to centroid `c` is `||x||^2 + (||c||^2 - 2 x.c)`; the first
//!   term is the same for every centroid, so the argmin needs only `||c||^2 - 2 x.c`: one FMA per
//!   feature for 8 centroids at once (scikit-learn's GEMM trick, without the GEMM's temporary).
//! * With AVX2 the rows are labelled 8 at a time "in lanes" (lane `l` = row `l`): the 8 rows are
//!   transposed in registers (4 features at a time: two 128-bit loads and two shuffles per
//!   feature vector), then `k x f` FMAs per 8 rows against broadcast coefficients
//!   (no padding lanes when `k` is not a multiple of 8), the argmin by one compare, a min and an
//!   integer max (ids grow with the centroid), the 8 labels in one store. The two FMA chains
//!   (even features on `||c||^2`, odd ones on zero, then added) are those of the one-row-at-a-time
//!   code that still labels the last `n % 8` rows and `f > 16`: the same distances bit for bit,
//!   hence the same labels. Rows 2 KiB ahead are prefetched (the hardware prefetcher stops at page
//!   ends). Where the CPU has AVX-512 F and DQ, two such groups are joined into 16 lanes (the same
//!   operations per lane, so the same bits); `FLOW_KMEANS_NO_AVX512=1` turns that off.
//! * Rows are handled in blocks of [`BLOCK`] rows: labels of the block first, then the block (still
//!   in L1) is added to per-cluster f32 partial sums, in [`BANKS`] banks picked by row index
//!   (`i % BANKS`) so that consecutive rows of one cluster do not wait on each other; each bank
//!   carries its row count in the lane after the features (no separate counter), starts on a
//!   cache line, and takes one masked load, add and store per row where a bank is one AVX-512
//!   vector. The banks are flushed to f64 every [`FLUSH_BLOCKS`] blocks. Rounding therefore
//!   depends only on the row index, never on the thread that ran the block or the instruction set.
//! * AVX2 + FMA is chosen at run time (`is_x86_feature_detected!`); elsewhere a portable version of
//!   the same algorithm runs (mul + add instead of FMA, so distances may differ in the last bit and
//!   an exact near-tie may go the other way; every result is still the same for any thread count).
//! * Ties go to the lowest centroid id: within 8 lanes the lowest lane equal to the minimum, across
//!   blocks of 8 a later block must be strictly smaller. A row with a NaN gets class 0.

use rayon::prelude::*;

use super::assign::{add_into, Rows};
use crate::common::CHUNK;

/// Centroids per vector.
pub const LANES: usize = 8;
/// Rows per block: labels, then sums into the f32 banks.
pub const BLOCK: usize = 512;
/// Blocks between two flushes of the f32 banks to f64 (each bank then holds at most
/// `BLOCK x FLUSH_BLOCKS / BANKS` = 512 rows).
pub const FLUSH_BLOCKS: usize = 4;
/// f32 partial-sum banks per cluster (row `i` goes to bank `i % BANKS`).
pub const BANKS: usize = 4;

/// Centroids laid out for the kernel: per block of 8 centroids, `f` vectors of `-2 c_j` and one of
/// `||c||^2` (padding lanes: coefficients 0 and norm +inf, so they never win).
#[derive(Debug, Clone)]
pub struct Prepared {
    k: usize,
    f: usize,
    nb: usize,
    coef: Vec<[f32; LANES]>,
    norm: Vec<[f32; LANES]>,
    /// For the rows-in-lanes kernel: per centroid `c`, `f` vectors of `-2 c_j` in all lanes
    /// (`bcoef[c * f + j]`), the same values as `coef`.
    bcoef: Vec<[f32; LANES]>,
    /// `||c||^2` in all lanes, per centroid (the same values as `norm`).
    bnorm: Vec<[f32; LANES]>,
    flat: Vec<f32>,
}

impl Prepared {
    /// Prepares `k x f` centroids given flat (`f >= 1`).
    pub fn new(centroids: &[f32], f: usize) -> Self {
        let f = f.max(1);
        let k = centroids.len() / f;
        let nb = k.div_ceil(LANES).max(1);
        let mut coef = vec![[0.0f32; LANES]; nb * f];
        let mut norm = vec![[f32::INFINITY; LANES]; nb];
        for c in 0..k {
            let (b, l) = (c / LANES, c % LANES);
            let row = &centroids[c * f..(c + 1) * f];
            let mut n = 0.0f32;
            for (j, &v) in row.iter().enumerate() {
                coef[b * f + j][l] = -2.0 * v;
                n += v * v;
            }
            norm[b][l] = n;
        }
        let mut bcoef = Vec::with_capacity(k * f);
        let mut bnorm = Vec::with_capacity(k);
        for c in 0..k {
            let (b, l) = (c / LANES, c % LANES);
            for j in 0..f {
                bcoef.push([coef[b * f + j][l]; LANES]);
            }
            bnorm.push([norm[b][l]; LANES]);
        }
        Prepared {
            k,
            f,
            nb,
            coef,
            norm,
            bcoef,
            bnorm,
            flat: centroids[..k * f].to_vec(),
        }
    }

    /// Number of centroids.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Features (at least 1).
    pub fn f(&self) -> usize {
        self.f
    }

    /// The centroids as given, row-major (`k x f`).
    pub fn flat(&self) -> &[f32] {
        &self.flat
    }
}

/// Which implementation runs on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX2 + FMA (+ BMI1) intrinsics.
    Avx2Fma,
    /// Plain Rust (auto-vectorized for the build's baseline, SSE2 on x86-64).
    Portable,
}

/// The implementation chosen for this CPU (`FLOW_KMEANS_PORTABLE=1` forces the portable one).
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        if std::env::var_os("FLOW_KMEANS_PORTABLE").is_some_and(|v| v == "1") {
            return Isa::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            return Isa::Avx2Fma;
        }
        Isa::Portable
    })
}

/// Labels of the rows of `block` (row-major, `p.f` values each) into `out`. [`Isa::Avx2Fma`] on
/// a CPU without it runs the portable code.
pub fn assign_with(isa: Isa, block: &[f32], p: &Prepared, out: &mut [u32]) {
    let n = block.len() / p.f;
    debug_assert!(out.len() >= n);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2, FMA and BMI1 (`available`), and AVX-512 F and DQ where
        // `wide` says so.
        Isa::Avx2Fma if avx2::available() => unsafe {
            avx2::assign(block, p, &mut out[..n], avx2::wide())
        },
        _ => portable::assign(block, p, &mut out[..n]),
    }
}

/// [`assign_with`] on this CPU's implementation.
#[inline]
pub fn assign(block: &[f32], p: &Prepared, out: &mut [u32]) {
    assign_with(isa(), block, p, out)
}

/// One cache line of f32 bank values: banks start on a line, so that a bank's vector never
/// straddles two lines (a split store would also defeat store-to-load forwarding).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// Lines as contiguous f32 values.
fn values(lines: &[Line]) -> &[f32] {
    // SAFETY: `Line` is `repr(C)` around `[f32; 16]` (64 bytes, no padding): the lines are
    // contiguous f32s.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast(), lines.len() * 16) }
}

/// Lines as contiguous f32 values, mutable.
fn values_mut(lines: &mut [Line]) -> &mut [f32] {
    // SAFETY: as in `values`.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast(), lines.len() * 16) }
}

/// Per-cluster f32 partial sums of one run, flushed into f64 totals.
///
/// Each (bank, cluster) holds `fpad` floats: the `f` feature sums, then in lane `f` the number of
/// rows added (exact in f32: a bank holds at most a few thousand rows between flushes), so that
/// the count costs no separate increment; `fpad` is `f + 1` rounded up to a multiple of 8.
#[derive(Debug, Clone)]
pub struct Accum {
    k: usize,
    f: usize,
    fpad: usize,
    banks: Vec<Line>,
    /// Per cluster sums, `k x f`, f64.
    pub sums: Vec<f64>,
    /// Rows per cluster.
    pub counts: Vec<u64>,
}

impl Accum {
    /// Zeroed accumulators for `k` clusters of `f` features.
    pub fn new(k: usize, f: usize) -> Self {
        let f = f.max(1);
        let fpad = (f + 1).div_ceil(LANES) * LANES;
        Accum {
            k,
            f,
            fpad,
            banks: vec![Line([0.0; 16]); (BANKS * k * fpad).div_ceil(16)],
            sums: vec![0.0; k * f],
            counts: vec![0; k],
        }
    }

    /// Adds the rows of `block` (at most [`BLOCK`] rows) to the banks of their labels, then
    /// flushes the banks into the f64 sums (in a fixed order) and zeroes them.
    pub fn add_block(&mut self, isa: Isa, block: &[f32], labels: &[u32]) {
        self.add_block_no_flush(isa, block, labels);
        self.flush();
    }

    /// Adds the rows of `block` to the f32 banks only. [`Isa::Avx2Fma`] on a CPU without it runs
    /// the portable code.
    ///
    /// # Panics
    /// When a label of a row of `block` is not below the number of clusters.
    pub fn add_block_no_flush(&mut self, isa: Isa, block: &[f32], labels: &[u32]) {
        // The vector code does not check bounds: a label out of range stops here (on every
        // path, so that it never lands in another cluster's bank either).
        let rows = labels.len().min(block.len() / self.f);
        let top = labels[..rows].iter().fold(0, |m, &c| m.max(c));
        assert!(
            rows == 0 || (top as usize) < self.k,
            "label {top} out of range for {} clusters",
            self.k
        );
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma if avx2::available() => {
                if self.fpad == 16 && avx2::wide() {
                    // SAFETY: the CPU has AVX-512 F (`wide`); a bank is one 16-float line; every
                    // label of the rows added is below `k` (checked above).
                    unsafe { avx2::accumulate16(block, labels, self) }
                } else {
                    // SAFETY: the CPU has AVX2 and FMA (`available`); every label of the rows
                    // added is below `k` (checked above).
                    unsafe { avx2::accumulate(block, labels, self) }
                }
            }
            _ => portable::accumulate(block, labels, self),
        }
    }

    /// Adds the f32 banks into the f64 sums (in a fixed order) and zeroes them.
    pub fn flush(&mut self) {
        let (k, f, fpad) = (self.k, self.f, self.fpad);
        let values = values(&self.banks);
        for b in 0..BANKS {
            for c in 0..k {
                let bank = &values[(b * k + c) * fpad..(b * k + c + 1) * fpad];
                for (s, &v) in self.sums[c * f..(c + 1) * f].iter_mut().zip(bank) {
                    *s += v as f64;
                }
                self.counts[c] += bank[f] as u64;
            }
        }
        values_mut(&mut self.banks)
            .iter_mut()
            .for_each(|v| *v = 0.0);
    }

    fn merge(&mut self, other: &Accum) {
        add_into(&mut self.sums, &other.sums);
        add_into(&mut self.counts, &other.counts);
    }
}

/// One Lloyd assignment step for several runs at once, streaming the rows once: for every block
/// of rows (in L1), every run's labels and sums. Returns each run's cluster sums and counts.
/// Chunks of [`CHUNK`] rows run in parallel and are combined in chunk order: the same bits for
/// any number of threads.
pub fn step(rows: &Rows<'_>, runs: &[&Prepared]) -> Vec<Accum> {
    let isa = isa();
    let f = rows.f.max(1);
    let partials: Vec<Vec<Accum>> = rows
        .par_chunks()
        .map(|(_, chunk)| {
            let mut acc: Vec<Accum> = runs.iter().map(|p| Accum::new(p.k, f)).collect();
            let mut labels = [0u32; BLOCK];
            for (bi, block) in chunk.chunks(BLOCK * f).enumerate() {
                let n = block.len() / f;
                let flush = (bi + 1) % FLUSH_BLOCKS == 0;
                for (p, a) in runs.iter().zip(acc.iter_mut()) {
                    assign_with(isa, block, p, &mut labels);
                    a.add_block_no_flush(isa, block, &labels[..n]);
                    if flush {
                        a.flush();
                    }
                }
            }
            for a in acc.iter_mut() {
                a.flush();
            }
            acc
        })
        .collect();
    let mut total: Vec<Accum> = runs.iter().map(|p| Accum::new(p.k, f)).collect();
    for part in &partials {
        for (t, p) in total.iter_mut().zip(part) {
            t.merge(p);
        }
    }
    total
}

/// Labels of all rows into `out` (one per row), in parallel over fixed chunks.
pub fn labels_into(rows: &Rows<'_>, p: &Prepared, out: &mut [u32]) {
    debug_assert_eq!(out.len(), rows.n);
    let isa = isa();
    out.par_chunks_mut(CHUNK)
        .zip(rows.par_chunks())
        .for_each(|(o, (_, chunk))| assign_with(isa, chunk, p, o));
}

mod portable {
    use super::{Accum, Prepared, BANKS, LANES};

    pub(super) fn assign(block: &[f32], p: &Prepared, out: &mut [u32]) {
        let f = p.f;
        for (row, o) in block.chunks_exact(f).zip(out.iter_mut()) {
            let mut best = (0u32, f32::INFINITY);
            for b in 0..p.nb {
                let coef = &p.coef[b * f..(b + 1) * f];
                let mut a0 = p.norm[b];
                let mut a1 = [0.0f32; LANES];
                let mut j = 0;
                while j + 1 < f {
                    let (x0, x1) = (row[j], row[j + 1]);
                    for l in 0..LANES {
                        a0[l] += x0 * coef[j][l];
                        a1[l] += x1 * coef[j + 1][l];
                    }
                    j += 2;
                }
                if j < f {
                    let x0 = row[j];
                    for l in 0..LANES {
                        a0[l] += x0 * coef[j][l];
                    }
                }
                for l in 0..LANES {
                    let d = a0[l] + a1[l];
                    if d < best.1 {
                        best = ((b * LANES + l) as u32, d);
                    }
                }
            }
            *o = best.0;
        }
    }

    pub(super) fn accumulate(block: &[f32], labels: &[u32], acc: &mut Accum) {
        let (f, fpad, k) = (acc.f, acc.fpad, acc.k);
        let banks = super::values_mut(&mut acc.banks);
        for (i, (row, &c)) in block.chunks_exact(f).zip(labels).enumerate() {
            let base = ((i % BANKS) * k + c as usize) * fpad;
            let bank = &mut banks[base..base + fpad];
            for (s, &v) in bank.iter_mut().zip(row) {
                *s += v;
            }
            bank[f] += 1.0;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Accum, Prepared, BANKS, LANES};

    /// Index of the lowest set bit of a byte (0 for 0).
    static FIRST_LANE: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut i = 1;
        while i < 256 {
            t[i] = (i as u32).trailing_zeros() as u8;
            i += 1;
        }
        t
    };

    /// AVX2, FMA and BMI1 on this CPU: what every function of this module needs.
    pub(super) fn available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("bmi1")
        })
    }

    /// Lowest lane holding the minimum of `d` and that minimum; lane 0 when all are NaN.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and BMI1.
    #[inline]
    #[target_feature(enable = "avx2,fma,bmi1")]
    unsafe fn argmin(d: __m256) -> (u32, f32) {
        let m = _mm256_min_ps(d, _mm256_permute2f128_ps(d, d, 1));
        let m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0b0100_1110));
        let m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0b1011_0001));
        let mask = _mm256_movemask_ps(_mm256_cmp_ps(d, m, _CMP_EQ_OQ)) as usize;
        // Lowest set bit by table (one load; LLVM lowers `trailing_zeros` through a popcount
        // sequence here).
        (
            // SAFETY: `mask & 0xFF` is below 256, the length of `FIRST_LANE`.
            unsafe { *FIRST_LANE.get_unchecked(mask & 0xFF) } as u32,
            _mm256_cvtss_f32(m),
        )
    }

    /// `||c||^2 - 2 x.c` for the 8 centroids of one block, two FMA chains. `F` is the number of
    /// features when known at compile time (the loop is then fully unrolled), 0 for `f`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available (it is inlined into `#[target_feature]` code); with `n` the
    /// number of features (`F`, or `f` when `F` is 0), `x` must point at `n` readable floats and
    /// `coef` at `n` readable vectors.
    #[inline(always)]
    unsafe fn partial<const F: usize>(
        x: *const f32,
        f: usize,
        coef: *const [f32; LANES],
        norm: __m256,
    ) -> __m256 {
        let f = if F > 0 { F } else { f };
        // SAFETY: AVX2 and FMA are available, and every read is at an index `j < f` of `x` and
        // of `coef`, inside them (both the caller's contract).
        unsafe {
            let mut a0 = norm;
            let mut a1 = _mm256_setzero_ps();
            let mut j = 0;
            while j + 1 < f {
                a0 = _mm256_fmadd_ps(
                    _mm256_set1_ps(*x.add(j)),
                    _mm256_loadu_ps(coef.add(j) as *const f32),
                    a0,
                );
                a1 = _mm256_fmadd_ps(
                    _mm256_set1_ps(*x.add(j + 1)),
                    _mm256_loadu_ps(coef.add(j + 1) as *const f32),
                    a1,
                );
                j += 2;
            }
            if j < f {
                a0 = _mm256_fmadd_ps(
                    _mm256_set1_ps(*x.add(j)),
                    _mm256_loadu_ps(coef.add(j) as *const f32),
                    a0,
                );
            }
            _mm256_add_ps(a0, a1)
        }
    }

    /// Labels of the rows of `block` (row-major, `p.f` values each) into `out`: the first
    /// `min(out.len(), block.len() / p.f)` rows; reads stay inside `block` and `p`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and BMI1 ([`available`]), and AVX-512 F and DQ when `wide` is
    /// true ([`wide`]).
    #[target_feature(enable = "avx2,fma,bmi1")]
    pub(super) unsafe fn assign(block: &[f32], p: &Prepared, out: &mut [u32], wide: bool) {
        // SAFETY: the CPU features are this function's contract; `assign_f::<F>` runs with
        // `F == p.f` (1..=16) or `F == 0` (any `p.f`), as it requires.
        unsafe {
            crate::common::with_feature_count!(
                p.f,
                assign_f(block, p, out, wide),
                assign_f::<0>(block, p, out, wide)
            )
        }
    }

    /// Features `0..F` of the 8 rows at `base` (row-major, `F` values each) as `F` vectors, lane
    /// `l` = row `l`: 4 features at a time, rows `r` and `r + 4` loaded into the two halves, then
    /// a 4 x 4 transpose per half. Row 7's last 4 values are read with `last_mask` (the lanes of
    /// features below `F`): every other read stays inside the 8 rows.
    ///
    /// # Safety
    /// AVX2 must be available (called from `#[target_feature]` code); `base` must point at 8
    /// whole rows of `F` values (`8 x F` readable floats); `last_mask` must be
    /// [`tail_mask::<F>`](tail_mask).
    #[inline(always)]
    unsafe fn transpose8<const F: usize>(base: *const f32, last_mask: __m128i) -> [__m256; F] {
        // SAFETY: AVX2 is available; the unmasked 4-float loads of rows 0..=6 end at most 3
        // floats past their row, inside the next row; row 7's last load is masked to its own
        // features (masked lanes are neither read nor fault) (the caller's contract).
        unsafe {
            let ngroups4 = F.div_ceil(4);
            let mut xs = [_mm256_setzero_ps(); F];
            for q in 0..ngroups4 {
                let off = q * 4;
                let mut r = [_mm256_setzero_ps(); 4];
                for (i, ri) in r.iter_mut().enumerate() {
                    let lo = _mm_loadu_ps(base.add(i * F + off));
                    let hp = base.add((i + 4) * F + off);
                    let hi = if i == 3 && q + 1 == ngroups4 {
                        _mm_maskload_ps(hp, last_mask)
                    } else {
                        _mm_loadu_ps(hp)
                    };
                    *ri = _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(lo), hi);
                }
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let cols = [
                    _mm256_shuffle_ps::<0x44>(t0, t2),
                    _mm256_shuffle_ps::<0xEE>(t0, t2),
                    _mm256_shuffle_ps::<0x44>(t1, t3),
                    _mm256_shuffle_ps::<0xEE>(t1, t3),
                ];
                for (e, col) in cols.into_iter().enumerate() {
                    if off + e < F {
                        xs[off + e] = col;
                    }
                }
            }
            xs
        }
    }

    /// Features `0..F` of the 16 rows at `base` as `F` vectors, lane `l` = row `l`: for every 4
    /// features, rows `i`, `i + 4`, `i + 8` and `i + 12` are loaded into the four 128-bit lanes of
    /// one vector (one load and three inserts from memory, which need no shuffle port), then one
    /// 4 x 4 transpose per 128-bit lane gives the 4 feature vectors in row order. Row 15's last 4
    /// values are read with `last_mask`: every other read stays inside the 16 rows.
    ///
    /// # Safety
    /// AVX-512 F and AVX2 must be available (called from `#[target_feature]` code); `base` must
    /// point at 16 whole rows of `F` values; `last_mask` must be [`tail_mask::<F>`](tail_mask).
    #[inline(always)]
    unsafe fn transpose16<const F: usize>(base: *const f32, last_mask: __m128i) -> [__m512; F] {
        // SAFETY: AVX-512 F and AVX2 are available; as in `transpose8`, the unmasked loads of
        // rows 0..=14 end inside the next row and row 15's last load is masked to its features
        // (the caller's contract).
        unsafe {
            let ngroups4 = F.div_ceil(4);
            let mut xs = [_mm512_setzero_ps(); F];
            for q in 0..ngroups4 {
                let off = q * 4;
                let mut r = [_mm512_setzero_ps(); 4];
                for (i, ri) in r.iter_mut().enumerate() {
                    let row = |j: usize| base.add((i + 4 * j) * F + off);
                    let last = if i == 3 && q + 1 == ngroups4 {
                        _mm_maskload_ps(row(3), last_mask)
                    } else {
                        _mm_loadu_ps(row(3))
                    };
                    let v = _mm512_castps128_ps512(_mm_loadu_ps(row(0)));
                    let v = _mm512_insertf32x4::<1>(v, _mm_loadu_ps(row(1)));
                    let v = _mm512_insertf32x4::<2>(v, _mm_loadu_ps(row(2)));
                    *ri = _mm512_insertf32x4::<3>(v, last);
                }
                let t0 = _mm512_unpacklo_ps(r[0], r[1]);
                let t1 = _mm512_unpackhi_ps(r[0], r[1]);
                let t2 = _mm512_unpacklo_ps(r[2], r[3]);
                let t3 = _mm512_unpackhi_ps(r[2], r[3]);
                let cols = [
                    _mm512_shuffle_ps::<0x44>(t0, t2),
                    _mm512_shuffle_ps::<0xEE>(t0, t2),
                    _mm512_shuffle_ps::<0x44>(t1, t3),
                    _mm512_shuffle_ps::<0xEE>(t1, t3),
                ];
                for (e, col) in cols.into_iter().enumerate() {
                    if off + e < F {
                        xs[off + e] = col;
                    }
                }
            }
            xs
        }
    }

    /// How far ahead of the group being labelled its rows are prefetched.
    const PREFETCH_BYTES: usize = 2048;

    /// The lanes of the last 4-feature load of a row that hold features (`F % 4` of them, or
    /// all 4).
    #[inline(always)]
    fn tail_mask<const F: usize>() -> __m128i {
        let rem = F % 4;
        // SAFETY: SSE2 is part of the x86-64 baseline; no memory is touched.
        unsafe {
            _mm_cmpgt_epi32(
                _mm_set1_epi32(if rem == 0 { 4 } else { rem as i32 }),
                _mm_setr_epi32(0, 1, 2, 3),
            )
        }
    }

    /// Prefetches `bytes` bytes starting `ahead` bytes after `base`, one cache line at a time.
    /// Prefetches never fault, so the addresses may lie past the data.
    #[inline(always)]
    fn prefetch(base: *const f32, ahead: usize, bytes: usize) {
        let start = (base as *const i8).wrapping_add(ahead);
        let mut line = 0;
        while line < bytes {
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch is a hint: it neither
            // faults nor changes memory, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(line)) };
            line += 64;
        }
    }

    /// Rows in lanes: 8 rows per vector (lane `l` = row `l` of the group), transposed in
    /// registers from the row-major block; per centroid `c`, `d = ||c||^2 - 2 x.c` for the 8 rows
    /// with the same two FMA chains (even features on `norm`, odd ones on zero, then added) as
    /// [`partial`], so every distance has the same bits as there; the argmin walks the centroids in
    /// id order and takes a strictly smaller distance only (ties to the lowest id, NaN never wins:
    /// a row with a NaN keeps class 0). Handles the first `8 x (n / 8)` rows of `out`; returns
    /// that count. `F` (1..=16) is the number of features, `p.f == F`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available (called from `#[target_feature]` code); `F >= 1` and
    /// `p.f == F` (reads stay inside `block`: whole groups of 8 rows only).
    #[inline(always)]
    unsafe fn lanes_f<const F: usize>(block: &[f32], p: &Prepared, out: &mut [u32]) -> usize {
        let n = out.len().min(block.len() / F);
        let groups = n / LANES;
        let x = block.as_ptr();
        let k = p.k;
        let bcoef = p.bcoef.as_ptr() as *const f32;
        let bnorm = p.bnorm.as_ptr() as *const f32;
        // The last group of 4 features of row 7 may read past the block: masked load.
        let last_mask = tail_mask::<F>();
        // SAFETY: AVX2 and FMA are available (the caller's contract). Group `g < n / 8` covers
        // rows `8g..8g + 8`, all inside `block` (`n <= block.len() / F`) and `out` (`n <=
        // out.len()`); `bcoef` holds `k x F` vectors and `bnorm` `k` (`p.f == F`), read at
        // `c < k`, `j < F`.
        unsafe {
            for g in 0..groups {
                let base = x.add(g * LANES * F);
                // The hardware prefetcher stops at page ends: ask for the rows of a later group.
                prefetch(base, PREFETCH_BYTES, LANES * F * 4);
                let xs = transpose8::<F>(base, last_mask);
                let mut best = _mm256_set1_ps(f32::INFINITY);
                let mut lab = _mm256_setzero_si256();
                for c in 0..k {
                    let cf = bcoef.add(c * F * LANES);
                    let mut a0 = _mm256_loadu_ps(bnorm.add(c * LANES));
                    let mut a1 = _mm256_setzero_ps();
                    let mut j = 0;
                    while j + 1 < F {
                        a0 = _mm256_fmadd_ps(xs[j], _mm256_loadu_ps(cf.add(j * LANES)), a0);
                        a1 = _mm256_fmadd_ps(
                            xs[j + 1],
                            _mm256_loadu_ps(cf.add((j + 1) * LANES)),
                            a1,
                        );
                        j += 2;
                    }
                    if j < F {
                        a0 = _mm256_fmadd_ps(xs[j], _mm256_loadu_ps(cf.add(j * LANES)), a0);
                    }
                    let d = _mm256_add_ps(a0, a1);
                    let less = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(d, best));
                    best = _mm256_min_ps(d, best);
                    // Ids grow with `c`: the new id where strictly less, else the old one.
                    lab =
                        _mm256_max_epi32(lab, _mm256_and_si256(less, _mm256_set1_epi32(c as i32)));
                }
                _mm256_storeu_si256(out.as_mut_ptr().add(g * LANES) as *mut __m256i, lab);
            }
        }
        groups * LANES
    }

    /// [`lanes_f`] with 16 rows per AVX-512 vector ([`transpose16`]): the same operations per lane, so the same distances and labels bit for bit. Handles the first
    /// `16 x (n / 16)` rows; returns that count.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and DQ (and AVX2, FMA); `p.f == F`, `1 <= F`.
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn lanes16_f<const F: usize>(block: &[f32], p: &Prepared, out: &mut [u32]) -> usize {
        const W: usize = 2 * LANES;
        let n = out.len().min(block.len() / F);
        let groups = n / W;
        let x = block.as_ptr();
        let k = p.k;
        let bcoef = p.bcoef.as_ptr() as *const f32;
        let bnorm = p.bnorm.as_ptr() as *const f32;
        let last_mask = tail_mask::<F>();
        for g in 0..groups {
            // SAFETY: group `g < n / 16` covers rows `16g..16g + 16`, inside `block`.
            let base = unsafe { x.add(g * W * F) };
            prefetch(base, 2 * PREFETCH_BYTES, W * F * 4);
            // SAFETY: AVX-512 F and AVX2 are enabled here; `base` points at 16 whole rows.
            let xs = unsafe { transpose16::<F>(base, last_mask) };
            let mut best = _mm512_set1_ps(f32::INFINITY);
            let mut lab = _mm512_setzero_si512();
            for c in 0..k {
                // Lane 0 of the broadcast vectors (all lanes are equal).
                // SAFETY: `bcoef` holds `k x F` vectors and `bnorm` `k` (`p.f == F`): the reads
                // at `c < k`, `j < F` are inside them.
                unsafe {
                    let cf = bcoef.add(c * F * LANES);
                    let mut a0 = _mm512_set1_ps(*bnorm.add(c * LANES));
                    let mut a1 = _mm512_setzero_ps();
                    let mut j = 0;
                    while j + 1 < F {
                        a0 = _mm512_fmadd_ps(xs[j], _mm512_set1_ps(*cf.add(j * LANES)), a0);
                        a1 = _mm512_fmadd_ps(
                            xs[j + 1],
                            _mm512_set1_ps(*cf.add((j + 1) * LANES)),
                            a1,
                        );
                        j += 2;
                    }
                    if j < F {
                        a0 = _mm512_fmadd_ps(xs[j], _mm512_set1_ps(*cf.add(j * LANES)), a0);
                    }
                    let d = _mm512_add_ps(a0, a1);
                    let less = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, best);
                    best = _mm512_min_ps(d, best);
                    lab = _mm512_mask_mov_epi32(lab, less, _mm512_set1_epi32(c as i32));
                }
            }
            // SAFETY: rows `16g..16g + 16` are inside `out` (`n <= out.len()`).
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(g * W) as *mut _, lab) };
        }
        groups * W
    }

    /// AVX-512 F + DQ on this CPU (then [`lanes16_f`] labels the rows 16 at a time).
    pub(super) fn wide() -> bool {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| {
            std::env::var_os("FLOW_KMEANS_NO_AVX512").is_none_or(|v| v != "1")
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512dq")
        })
    }

    /// Labels of the first `min(out.len(), block.len() / p.f)` rows of `block`: groups of 16
    /// rows (AVX-512, when `wide`), then of 8, then one row at a time, the same bits on every
    /// path. `F` is `p.f` when it is 1..=16, 0 for any `p.f` (rows one at a time only).
    ///
    /// # Safety
    /// AVX2, FMA and BMI1 must be available (it is inlined into `#[target_feature]` code), and
    /// AVX-512 F and DQ when `wide` is true; `F == 0` or `F == p.f`.
    #[inline(always)]
    unsafe fn assign_f<const F: usize>(block: &[f32], p: &Prepared, out: &mut [u32], wide: bool) {
        let f = p.f;
        let n = out.len().min(block.len() / f);
        // Groups of 16 rows (AVX-512), then of 8, then one row at a time: the same bits.
        let done = if F > 0 {
            let w = if wide {
                // SAFETY: the caller checked AVX-512 F and DQ (`wide`); AVX2 and FMA are on;
                // `p.f == F >= 1`.
                unsafe { lanes16_f::<F>(block, p, out) }
            } else {
                0
            };
            // SAFETY: AVX2 and FMA are on; `p.f == F >= 1`.
            w + unsafe { lanes_f::<F>(&block[w * F..], p, &mut out[w..n]) }
        } else {
            0
        };
        // SAFETY: `done <= n <= block.len() / f` rows: the pointer stays inside `block` or one
        // past its end.
        let x = unsafe { block.as_ptr().add(done * f) };
        let out = &mut out[done..n];
        let n = n - done;
        let coef = p.coef.as_ptr();
        // SAFETY (both loops): AVX2, FMA and BMI1 are available (the caller's contract); row
        // `i < n` starts at `x + i * f` with its `f` floats inside `block`; `coef` holds
        // `p.nb x f` vectors, read from `b * f` for `b < p.nb`; `out` has `n` entries.
        if p.nb == 1 {
            // SAFETY: as above.
            unsafe {
                let norm = _mm256_loadu_ps(p.norm[0].as_ptr());
                // Two rows per step: more independent dependency chains.
                let mut i = 0;
                while i + 1 < n {
                    let d0 = partial::<F>(x.add(i * f), f, coef, norm);
                    let d1 = partial::<F>(x.add((i + 1) * f), f, coef, norm);
                    *out.get_unchecked_mut(i) = argmin(d0).0;
                    *out.get_unchecked_mut(i + 1) = argmin(d1).0;
                    i += 2;
                }
                if i < n {
                    *out.get_unchecked_mut(i) = argmin(partial::<F>(x.add(i * f), f, coef, norm)).0;
                }
            }
            return;
        }
        for i in 0..n {
            // SAFETY: as above.
            unsafe {
                let xr = x.add(i * f);
                let mut best = (0u32, f32::INFINITY);
                for b in 0..p.nb {
                    let norm = _mm256_loadu_ps(p.norm[b].as_ptr());
                    let (lane, m) = argmin(partial::<F>(xr, f, coef.add(b * f), norm));
                    if m < best.1 {
                        best = ((b * LANES) as u32 + lane, m);
                    }
                }
                *out.get_unchecked_mut(i) = best.0;
            }
        }
    }

    /// Adds every row of `block` to the bank of its label (bank `i % BANKS` for row `i`), and 1
    /// to the bank's count lane (`f`): the full vectors of 8 features as they are, the last one
    /// masked to the row with the count lane set.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `labels` must hold cluster ids below `acc.k`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn accumulate(block: &[f32], labels: &[u32], acc: &mut Accum) {
        let (f, fpad, k) = (acc.f, acc.fpad, acc.k);
        let n = labels.len().min(block.len() / f);
        let full = f / LANES;
        let tail = (f % LANES) as i32;
        let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let tail_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), idx);
        let one = _mm256_and_ps(
            _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_set1_epi32(tail), idx)),
            _mm256_set1_ps(1.0),
        );
        let x = block.as_ptr();
        let banks = super::values_mut(&mut acc.banks).as_mut_ptr();
        for i in 0..n {
            // SAFETY: `i < n <= labels.len()`; the label `c < k` (the caller's contract), so the
            // bank `(i % BANKS) x k + c` and its `fpad` floats are inside the `BANKS x k x fpad`
            // values of `acc.banks`. Row `i < n <= block.len() / f` has its `f` floats inside
            // `block`: the full vectors read `8 x full <= f` of them, the last load is masked
            // to the `f % 8` that remain; the last vector of the bank, at `8 x full`, ends at
            // `8 x (full + 1) <= fpad`.
            unsafe {
                let c = *labels.get_unchecked(i) as usize;
                let s = banks.add(((i % BANKS) * k + c) * fpad);
                let xr = x.add(i * f);
                for q in 0..full {
                    let v = _mm256_add_ps(
                        _mm256_loadu_ps(s.add(q * LANES)),
                        _mm256_loadu_ps(xr.add(q * LANES)),
                    );
                    _mm256_storeu_ps(s.add(q * LANES), v);
                }
                // The last vector: the remaining features (none when f % 8 == 0; masked lanes
                // are not read) and 1.0 in the count lane (the masked load gives +0.0 there).
                let off = full * LANES;
                let last = _mm256_or_ps(_mm256_maskload_ps(xr.add(off), tail_mask), one);
                _mm256_storeu_ps(s.add(off), _mm256_add_ps(_mm256_loadu_ps(s.add(off)), last));
            }
        }
    }

    /// [`accumulate`] when a bank is one 16-lane vector (`8 <= f <= 15`): per row one masked load
    /// (the count lane's 1.0 passed through), one add, one store to a cache-line-aligned bank.
    /// The same additions per lane, hence the same bits.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `acc.fpad == 16`; `labels` must hold ids below `acc.k`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate16(block: &[f32], labels: &[u32], acc: &mut Accum) {
        let (f, k) = (acc.f, acc.k);
        debug_assert_eq!(acc.fpad, 16);
        let n = labels.len().min(block.len() / f);
        let mask: __mmask16 = (1u16 << f) - 1;
        let mut count = [0.0f32; 16];
        count[f] = 1.0;
        // SAFETY: `count` holds 16 floats.
        let one = unsafe { _mm512_loadu_ps(count.as_ptr()) };
        let x = block.as_ptr();
        let banks = super::values_mut(&mut acc.banks).as_mut_ptr();
        let add = |i: usize, bank: usize| {
            // SAFETY: `i < n <= labels.len()` and the label `c < k` (the caller's contract):
            // bank `bank x k + c` (`bank < BANKS`) is one 16-float line of `acc.banks`, 64-byte
            // aligned (`Line` is) as the aligned load and store need; the masked load reads the
            // `f` floats of row `i < n <= block.len() / f`, inside `block`.
            unsafe {
                let c = *labels.get_unchecked(i) as usize;
                let s = banks.add((bank * k + c) * 16);
                let v = _mm512_mask_loadu_ps(one, mask, x.add(i * f));
                _mm512_store_ps(s, _mm512_add_ps(_mm512_load_ps(s), v));
            }
        };
        // BANKS rows at a time, so that each row's bank is a constant.
        let whole = n - n % BANKS;
        for i in (0..whole).step_by(BANKS) {
            for b in 0..BANKS {
                add(i + b, b);
            }
        }
        for i in whole..n {
            add(i, i % BANKS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmeans::assign::nearest;

    fn data(n: usize, f: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * f)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32) / (1u64 << 24) as f32 * 100.0
            })
            .collect()
    }

    #[test]
    fn both_implementations_find_the_nearest_centroid() {
        for (k, f) in [(1, 1), (3, 1), (6, 13), (8, 12), (8, 13), (11, 3), (17, 5)] {
            let x = data(1000, f, (k * 31 + f) as u64);
            let c = data(k, f, 99 + k as u64);
            let p = Prepared::new(&c, f);
            let mut isas = vec![Isa::Portable];
            if isa() == Isa::Avx2Fma {
                isas.push(Isa::Avx2Fma);
            }
            for isa in isas {
                let mut out = vec![0u32; 1000];
                assign_with(isa, &x, &p, &mut out);
                for (i, row) in x.chunks_exact(f).enumerate() {
                    let (want, dw) = nearest(row, &c, f);
                    let got = out[i] as usize;
                    if got != want {
                        // only a near-tie may differ (the expansion rounds differently)
                        let dg = crate::kmeans::assign::sq_dist(row, &c[got * f..(got + 1) * f]);
                        assert!(
                            (dg - dw).abs() <= 1e-4 * dw.max(1.0),
                            "{isa:?} k={k} f={f} row {i}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rows_in_lanes_match_the_row_at_a_time_kernel_bit_for_bit() {
        // A row alone (fewer than 8) takes the row-at-a-time code; a whole block takes the
        // rows-in-lanes code for its groups of 8: the labels must be the same, ties included
        // (duplicate centroids, rows on the centroids, NaN rows, rows that read to the block end).
        // n = 208: the last group of 16 ends at the end of the data.
        for (f, n) in (1..=17).flat_map(|f| [(f, 203), (f, 208)]) {
            for k in [1, 2, 3, 6, 8, 9, 13, 20] {
                let mut x: Vec<f32> = data(n, f, (k * 7 + f) as u64)
                    .into_iter()
                    .map(|v| (v / 8.0).round())
                    .collect();
                let mut c = data(k, f, 3 + k as u64);
                c.iter_mut().for_each(|v| *v = (*v / 8.0).round());
                if k >= 3 {
                    let (a, b) = c.split_at_mut(f);
                    b[f..2 * f].copy_from_slice(a); // centroid 2 = centroid 0
                }
                for (i, row) in x.chunks_exact_mut(f).enumerate() {
                    if i % 11 == 0 {
                        row.copy_from_slice(&c[(i % k) * f..(i % k + 1) * f]);
                    }
                    if i % 17 == 5 {
                        row[i % f] = f32::NAN;
                    }
                }
                let p = Prepared::new(&c, f);
                for isa in [Isa::Portable, isa()] {
                    let mut block = vec![u32::MAX; n];
                    assign_with(isa, &x, &p, &mut block);
                    for (i, row) in x.chunks_exact(f).enumerate() {
                        let mut one = [u32::MAX];
                        assign_with(isa, row, &p, &mut one);
                        assert_eq!(block[i], one[0], "{isa:?} f={f} k={k} row {i}");
                        if row.iter().any(|v| v.is_nan()) {
                            assert_eq!(one[0], 0);
                        }
                    }
                    if k >= 3 {
                        assert!(block.iter().all(|&l| l != 2), "{isa:?} f={f} k={k}");
                    }
                    #[cfg(target_arch = "x86_64")]
                    if isa == Isa::Avx2Fma {
                        // 8 rows per vector only (without AVX-512), and with it when present.
                        for wide in [false, avx2::wide()] {
                            let mut o = vec![u32::MAX; n];
                            // SAFETY: Avx2Fma was detected; `wide` only where AVX-512 is.
                            unsafe { avx2::assign(&x, &p, &mut o, wide) };
                            assert_eq!(o, block, "f={f} k={k} wide={wide}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ties_and_duplicates_go_to_the_lowest_id() {
        // 10 identical centroids (two blocks of 8): every row goes to 0.
        let c = [1.0f32, 2.0].repeat(10);
        let p = Prepared::new(&c, 2);
        let x = data(100, 2, 5);
        for isa in [Isa::Portable, isa()] {
            let mut out = vec![7u32; 100];
            assign_with(isa, &x, &p, &mut out);
            assert!(out.iter().all(|&l| l == 0), "{isa:?}");
            // NaN rows: class 0
            let mut o = [9u32; 1];
            assign_with(isa, &[f32::NAN, 1.0], &p, &mut o);
            assert_eq!(o[0], 0);
        }
    }

    #[test]
    fn every_accumulation_path_gives_the_same_bits() {
        // Random values, runs of one label (the chains through the banks) and random labels;
        // f around the vector widths: the count lane in the last vector, alone in its own
        // vector (f = 16), and the 16-lane AVX-512 path (8 <= f <= 15).
        for f in [1, 3, 7, 8, 9, 12, 13, 15, 16, 17, 24] {
            let n = 3 * BLOCK + 77;
            let x = data(n, f, f as u64);
            let k = 5;
            let labels: Vec<u32> = (0..n)
                .map(|i| {
                    if i % 200 < 100 {
                        2
                    } else {
                        ((i * 7919) % k) as u32
                    }
                })
                .collect();
            type Add<'a> = &'a dyn Fn(&[f32], &[u32], &mut Accum);
            let run = |add: Add| {
                let mut a = Accum::new(k, f);
                for (bi, (b, l)) in x.chunks(BLOCK * f).zip(labels.chunks(BLOCK)).enumerate() {
                    add(b, l, &mut a);
                    if (bi + 1) % FLUSH_BLOCKS == 0 {
                        a.flush();
                    }
                }
                a.flush();
                (
                    a.sums.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    a.counts,
                )
            };
            let portable = run(&|b, l, a| portable::accumulate(b, l, a));
            assert_eq!(portable.1.iter().sum::<u64>(), n as u64);
            assert_eq!(
                run(&|b, l, a| a.add_block_no_flush(isa(), b, l)),
                portable,
                "f = {f}"
            );
            #[cfg(target_arch = "x86_64")]
            if isa() == Isa::Avx2Fma {
                // SAFETY: AVX2 and FMA checked by `isa`; labels are below `k`.
                let avx2 = run(&|b, l, a| unsafe { avx2::accumulate(b, l, a) });
                assert_eq!(avx2, portable, "f = {f}");
                if avx2::wide() && (8..=15).contains(&f) {
                    // SAFETY: AVX-512 F checked by `wide`; `Accum::new(k, f)` with `f <= 15` has
                    // 16-float banks; labels are below `k`.
                    let avx512 = run(&|b, l, a| unsafe { avx2::accumulate16(b, l, a) });
                    assert_eq!(avx512, portable, "f = {f}");
                }
            }
        }
    }

    #[test]
    fn a_label_out_of_range_is_refused() {
        for isa in [Isa::Portable, isa()] {
            let mut a = Accum::new(2, 3);
            a.add_block_no_flush(isa, &[1.0; 6], &[1, 0]);
            let bad = std::panic::catch_unwind(move || {
                let mut a = Accum::new(2, 3);
                a.add_block_no_flush(isa, &[1.0; 6], &[0, 2]);
            });
            assert!(bad.is_err(), "{isa:?}");
        }
    }

    #[test]
    fn sums_are_exact_on_small_integers() {
        let f = 13;
        let x: Vec<f32> = (0..(BLOCK + 37) * f).map(|v| (v % 7) as f32).collect();
        let labels: Vec<u32> = (0..BLOCK + 37).map(|i| (i % 3) as u32).collect();
        for isa in [Isa::Portable, isa()] {
            let mut a = Accum::new(3, f);
            for (b, l) in x.chunks(BLOCK * f).zip(labels.chunks(BLOCK)) {
                a.add_block(isa, b, l);
            }
            let mut want = vec![0.0f64; 3 * f];
            for (row, &l) in x.chunks_exact(f).zip(&labels) {
                for j in 0..f {
                    want[l as usize * f + j] += row[j] as f64;
                }
            }
            assert_eq!(a.sums, want);
            assert_eq!(a.counts.iter().sum::<u64>(), (BLOCK + 37) as u64);
        }
    }
}
