//! NaN-aware statistics over groups of bands.

use ndarray::{ArrayView4, Axis};
use rayon::prelude::*;

/// The finite values of the given bands (all times), in a fixed order.
pub(crate) fn finite_values(data: &ArrayView4<'_, f32>, bands: &[usize]) -> Vec<f32> {
    let mut out = Vec::new();
    for &b in bands {
        let band = data.index_axis(Axis(1), b);
        out.extend(band.iter().copied().filter(|v| v.is_finite()));
    }
    out
}

/// Minimum and maximum of the finite values, `None` when there are none.
pub(crate) fn min_max(values: &[f32]) -> Option<(f64, f64)> {
    let (min, max) = values
        .par_chunks(crate::common::CHUNK)
        .map(|c| {
            c.iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                })
        })
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |x, y| (x.0.min(y.0), x.1.max(y.1)),
        );
    (min <= max).then_some((min as f64, max as f64))
}

/// Mean and population standard deviation (two passes, f64, chunk sums combined in order).
pub(crate) fn mean_std(values: &[f32]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let sums: Vec<f64> = values
        .par_chunks(crate::common::CHUNK)
        .map(|c| c.iter().map(|&v| v as f64).sum())
        .collect();
    let mean = sums.iter().sum::<f64>() / n;
    let sq: Vec<f64> = values
        .par_chunks(crate::common::CHUNK)
        .map(|c| c.iter().map(|&v| (v as f64 - mean).powi(2)).sum())
        .collect();
    Some((mean, (sq.iter().sum::<f64>() / n).sqrt()))
}

/// The `p`-th percentiles (0..=100) with linear interpolation between order statistics (NumPy's
/// default). Reorders `values`. `None` when there are no values.
pub(crate) fn percentiles(values: &mut [f32], lo: f64, hi: f64) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let a = percentile(values, lo);
    let b = percentile(values, hi);
    Some((a, b))
}

fn percentile(values: &mut [f32], p: f64) -> f64 {
    let n = values.len();
    let rank = p / 100.0 * (n - 1) as f64;
    let i = (rank.floor() as usize).min(n - 1);
    let frac = rank - i as f64;
    let (_, &mut vi, right) = values.select_nth_unstable_by(i, f32::total_cmp);
    let vi = vi as f64;
    if frac == 0.0 || right.is_empty() {
        return vi;
    }
    let next = right.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    vi + frac * (next - vi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 98]) = [1.18, 9.82]
        let mut v: Vec<f32> = (1..=10).rev().map(|x| x as f32).collect();
        let (a, b) = percentiles(&mut v, 2.0, 98.0).unwrap();
        assert!(
            (a - 1.18).abs() < 1e-9 && (b - 9.82).abs() < 1e-9,
            "{a} {b}"
        );
        let mut one = vec![4.0f32];
        assert_eq!(percentiles(&mut one, 0.0, 100.0), Some((4.0, 4.0)));
    }

    #[test]
    fn mean_std_and_min_max() {
        let v = [1.0f32, 2.0, 3.0, 4.0];
        let (m, s) = mean_std(&v).unwrap();
        assert_eq!(m, 2.5);
        assert!((s - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(min_max(&v), Some((1.0, 4.0)));
        assert_eq!(min_max(&[]), None);
    }
}
