//! NaN-aware statistics over groups of bands, accumulated piece by piece.
//!
//! Every statistic here is exact and independent of the order in which values arrive, so that a
//! raster seen whole and the same raster seen window by window (in any order, on any number of
//! threads) give bit-identical statistics:
//!
//! - minimum and maximum are exact by nature;
//! - sums are kept in an [`ExactSum`], integer bins per binary exponent, so no rounding happens
//!   until the final value is read;
//! - percentiles are exact order statistics found in two passes over the data with fixed-size
//!   histograms of the values' bits (the high 16 bits, then the low 16 bits within the buckets
//!   that hold the wanted ranks), so no pass holds more than 1 MiB whatever the raster's size.
//!
//! Only finite values count; NaN (nodata) and infinities are skipped.

use flow_core::exact::ExactSum;
use ndarray::{ArrayView4, Axis};

/// An order-preserving key of an f32: keys compare as `f32::total_cmp` compares values.
fn key(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The f32 of a [`key`].
fn from_key(k: u32) -> f32 {
    if k >> 31 == 1 {
        f32::from_bits(k & 0x7fff_ffff)
    } else {
        f32::from_bits(!k)
    }
}

/// Calls `f` with each finite value of the given bands (all times) of one piece of a raster.
fn for_each_finite(data: &ArrayView4<'_, f32>, bands: &[usize], mut f: impl FnMut(f32)) {
    for &b in bands {
        for &v in data.index_axis(Axis(1), b) {
            if v.is_finite() {
                f(v);
            }
        }
    }
}

/// What one group's statistics are made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Wanted {
    /// Minimum and maximum.
    MinMax,
    /// Mean and population standard deviation.
    MeanStd,
    /// Two percentiles (0..=100), linear between order statistics as NumPy's default.
    Percentiles(f64, f64),
}

/// Statistics of one group of bands, as accumulated so far.
#[derive(Debug, Clone)]
pub(crate) struct GroupStats {
    wanted: Wanted,
    /// Finite values seen (first pass).
    count: u64,
    min: f32,
    max: f32,
    /// MeanStd: the sum (pass 0), then the sum of squared deviations from the mean (pass 1).
    sum: ExactSum,
    squares: ExactSum,
    mean: f64,
    /// Percentiles: counts by the high 16 bits of the key (pass 0).
    high: Vec<u64>,
    /// Percentiles: the ranks wanted, and for each distinct high bucket holding one, counts by
    /// the low 16 bits (pass 1).
    ranks: Vec<u64>,
    low: Vec<(u32, Vec<u64>)>,
    /// Which pass is being accumulated.
    pass: usize,
}

impl GroupStats {
    /// Empty statistics.
    pub(crate) fn new(wanted: Wanted) -> Self {
        GroupStats {
            wanted,
            count: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            sum: ExactSum::default(),
            squares: ExactSum::default(),
            mean: 0.0,
            high: match wanted {
                Wanted::Percentiles(..) => vec![0; 1 << 16],
                _ => Vec::new(),
            },
            ranks: Vec::new(),
            low: Vec::new(),
            pass: 0,
        }
    }

    /// How many passes over the data these statistics need.
    pub(crate) fn passes(&self) -> usize {
        match self.wanted {
            Wanted::MinMax => 1,
            Wanted::MeanStd | Wanted::Percentiles(..) => 2,
        }
    }

    /// An empty accumulator for the current pass, to fill from one piece and [`merge`] back.
    ///
    /// [`merge`]: GroupStats::merge
    pub(crate) fn partial(&self) -> GroupStats {
        let mut p = GroupStats::new(self.wanted);
        p.pass = self.pass;
        p.mean = self.mean;
        p.ranks = self.ranks.clone();
        p.low = self
            .low
            .iter()
            .map(|(h, _)| (*h, vec![0; 1 << 16]))
            .collect();
        if self.pass > 0 {
            p.high = Vec::new();
        }
        p
    }

    /// Adds the finite values of `bands` in one piece of the raster to this pass.
    pub(crate) fn add(&mut self, data: &ArrayView4<'_, f32>, bands: &[usize]) {
        match (self.wanted, self.pass) {
            (_, 0) => {
                let wanted = self.wanted;
                let (mut count, mut min, mut max) = (self.count, self.min, self.max);
                let (sum, high) = (&mut self.sum, &mut self.high);
                for_each_finite(data, bands, |v| {
                    count += 1;
                    min = min.min(v);
                    max = max.max(v);
                    match wanted {
                        Wanted::MinMax => {}
                        Wanted::MeanStd => sum.add(v as f64),
                        Wanted::Percentiles(..) => high[(key(v) >> 16) as usize] += 1,
                    }
                });
                (self.count, self.min, self.max) = (count, min, max);
            }
            (Wanted::MeanStd, _) => {
                let (mean, squares) = (self.mean, &mut self.squares);
                for_each_finite(data, bands, |v| squares.add((v as f64 - mean).powi(2)));
            }
            (Wanted::Percentiles(..), _) => {
                if self.low.is_empty() {
                    return;
                }
                let low = &mut self.low;
                for_each_finite(data, bands, |v| {
                    let k = key(v);
                    let h = k >> 16;
                    if let Some((_, counts)) = low.iter_mut().find(|(b, _)| *b == h) {
                        counts[(k & 0xffff) as usize] += 1;
                    }
                });
            }
            (Wanted::MinMax, _) => {}
        }
    }

    /// Adds a partial accumulator of the same pass.
    pub(crate) fn merge(&mut self, other: &GroupStats) {
        match self.pass {
            0 => {
                self.count += other.count;
                self.min = self.min.min(other.min);
                self.max = self.max.max(other.max);
                self.sum.merge(&other.sum);
                for (a, b) in self.high.iter_mut().zip(&other.high) {
                    *a += b;
                }
            }
            _ => {
                self.squares.merge(&other.squares);
                for ((_, a), (_, b)) in self.low.iter_mut().zip(&other.low) {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x += y;
                    }
                }
            }
        }
    }

    /// Ends the current pass and prepares the next one.
    pub(crate) fn next_pass(&mut self) {
        if self.pass == 0 {
            match self.wanted {
                Wanted::MinMax => {}
                Wanted::MeanStd => {
                    if self.count > 0 {
                        self.mean = self.sum.value() / self.count as f64;
                    }
                }
                Wanted::Percentiles(lo, hi) => {
                    let mut ranks = Vec::new();
                    if self.count > 0 {
                        for p in [lo, hi] {
                            let (i, _) = rank_of(p, self.count);
                            ranks.push(i);
                            if i + 1 < self.count {
                                ranks.push(i + 1);
                            }
                        }
                    }
                    let mut buckets: Vec<u32> = ranks
                        .iter()
                        .map(|&r| bucket_of_rank(&self.high, r).0)
                        .collect();
                    buckets.sort_unstable();
                    buckets.dedup();
                    self.low = buckets.into_iter().map(|b| (b, vec![0; 1 << 16])).collect();
                    self.ranks = ranks;
                }
            }
        }
        self.pass += 1;
    }

    /// Minimum and maximum of the finite values, `None` when there are none.
    pub(crate) fn min_max(&self) -> Option<(f64, f64)> {
        (self.count > 0).then_some((self.min as f64, self.max as f64))
    }

    /// Mean and population standard deviation, after both passes; `None` without values.
    pub(crate) fn mean_std(&self) -> Option<(f64, f64)> {
        (self.count > 0).then(|| {
            let n = self.count as f64;
            (self.mean, (self.squares.value() / n).sqrt())
        })
    }

    /// The two percentiles, after both passes; `None` without values.
    pub(crate) fn percentiles(&self) -> Option<(f64, f64)> {
        let Wanted::Percentiles(lo, hi) = self.wanted else {
            return None;
        };
        if self.count == 0 {
            return None;
        }
        let value_at = |rank: u64| -> f64 {
            let (bucket, before) = bucket_of_rank(&self.high, rank);
            let counts = self
                .low
                .iter()
                .find(|(b, _)| *b == bucket)
                .map(|(_, c)| c.as_slice())
                .unwrap_or(&[]);
            let mut seen = before;
            for (low, &c) in counts.iter().enumerate() {
                seen += c;
                if seen > rank {
                    return from_key((bucket << 16) | low as u32) as f64;
                }
            }
            f64::NAN
        };
        let at = |p: f64| -> f64 {
            let (i, frac) = rank_of(p, self.count);
            let vi = value_at(i);
            if frac == 0.0 || i + 1 >= self.count {
                return vi;
            }
            let next = value_at(i + 1);
            vi + frac * (next - vi)
        };
        Some((at(lo), at(hi)))
    }
}

/// The order statistic under percentile `p` of `n` values: its rank and the fraction towards the
/// next one (linear interpolation, NumPy's default).
fn rank_of(p: f64, n: u64) -> (u64, f64) {
    let rank = p / 100.0 * (n - 1) as f64;
    let i = (rank.floor() as u64).min(n - 1);
    (i, rank - i as f64)
}

/// The high bucket holding the value of rank `rank`, and how many values lie in lower buckets.
fn bucket_of_rank(high: &[u64], rank: u64) -> (u32, u64) {
    let mut before = 0u64;
    for (b, &c) in high.iter().enumerate() {
        if before + c > rank {
            return (b as u32, before);
        }
        before += c;
    }
    (high.len().saturating_sub(1) as u32, before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    /// Accumulates `values` (one band) in pieces of `piece`, in reverse order of the pieces.
    fn stats_of(values: &[f32], wanted: Wanted, piece: usize) -> GroupStats {
        let mut g = GroupStats::new(wanted);
        for _ in 0..g.passes() {
            for chunk in values.chunks(piece).rev() {
                let a = Array4::from_shape_vec((1, 1, 1, chunk.len()), chunk.to_vec()).unwrap();
                let mut p = g.partial();
                p.add(&a.view(), &[0]);
                g.merge(&p);
            }
            g.next_pass();
        }
        g
    }

    /// NumPy's linear percentile by sorting.
    fn sorted_percentile(values: &[f32], p: f64) -> f64 {
        let mut v: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        v.sort_by(f32::total_cmp);
        let (i, frac) = rank_of(p, v.len() as u64);
        let vi = v[i as usize] as f64;
        if frac == 0.0 || i as usize + 1 >= v.len() {
            return vi;
        }
        vi + frac * (v[i as usize + 1] as f64 - vi)
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 98]) = [1.18, 9.82]
        let v: Vec<f32> = (1..=10).rev().map(|x| x as f32).collect();
        let (a, b) = stats_of(&v, Wanted::Percentiles(2.0, 98.0), 3)
            .percentiles()
            .unwrap();
        assert!(
            (a - 1.18).abs() < 1e-9 && (b - 9.82).abs() < 1e-9,
            "{a} {b}"
        );
        let one = stats_of(&[4.0], Wanted::Percentiles(0.0, 100.0), 1);
        assert_eq!(one.percentiles(), Some((4.0, 4.0)));
        assert_eq!(
            stats_of(&[f32::NAN], Wanted::Percentiles(2.0, 98.0), 1).percentiles(),
            None
        );
    }

    #[test]
    fn percentiles_are_exact_order_statistics_whatever_the_pieces() {
        // Values crowded into few high buckets, negatives, zeros of both signs, NaN and inf.
        let mut v: Vec<f32> = (0..20_011)
            .map(|i| ((i * 7919) % 20_011) as f32 * 1e-4 - 0.5)
            .collect();
        v.extend([0.0, -0.0, f32::NAN, f32::INFINITY, 1e30, -1e-30]);
        for (lo, hi) in [(2.0, 98.0), (0.0, 100.0), (33.3, 66.7), (50.0, 50.0)] {
            let want = (sorted_percentile(&v, lo), sorted_percentile(&v, hi));
            for piece in [61, 1000, v.len()] {
                let got = stats_of(&v, Wanted::Percentiles(lo, hi), piece)
                    .percentiles()
                    .unwrap();
                assert_eq!(got, want, "{lo} {hi} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn mean_std_and_min_max() {
        let v = [1.0f32, 2.0, 3.0, 4.0, f32::NAN];
        let g = stats_of(&v, Wanted::MeanStd, 2);
        let (m, s) = g.mean_std().unwrap();
        assert_eq!(m, 2.5);
        assert!((s - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(g.min_max(), Some((1.0, 4.0)));
        assert_eq!(stats_of(&[], Wanted::MinMax, 1).min_max(), None);
    }

    #[test]
    fn sums_do_not_depend_on_order_or_pieces() {
        let v: Vec<f32> = (0..50_000)
            .map(|i| ((i as f32) * 0.618_034).sin() * 10f32.powi(i % 7 - 3))
            .collect();
        let whole = stats_of(&v, Wanted::MeanStd, v.len()).mean_std().unwrap();
        for piece in [1, 7, 4096] {
            assert_eq!(
                stats_of(&v, Wanted::MeanStd, piece).mean_std().unwrap(),
                whole
            );
        }
        // And they are accurate: compare with a sum in f64 of sorted magnitudes.
        let mut f: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        f.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        let mean = f.iter().sum::<f64>() / f.len() as f64;
        assert!((whole.0 - mean).abs() <= 1e-12 * mean.abs().max(1.0));
    }

    #[test]
    fn keys_order_as_total_cmp() {
        let v = [-1e30f32, -1.0, -0.0, 0.0, 1e-40, 1.0, 1e30];
        for w in v.windows(2) {
            assert!(key(w[0]) < key(w[1]), "{w:?}");
            assert_eq!(from_key(key(w[0])).to_bits(), w[0].to_bits());
        }
    }
}
