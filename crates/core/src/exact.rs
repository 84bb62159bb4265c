//! Exact sums: floating-point values added without rounding, in any order.
//!
//! Windowed runs add the same values in another order than whole-array runs; an [`ExactSum`]
//! gives the same total either way, so statistics (normalize's means, per-class band means) do
//! not depend on how a scene was cut into windows or how many threads added it up.

/// An exact sum of `f64` values: each value's 53-bit significand is added, as an integer, to a
/// bin for its binary exponent. Adding is exact and commutative; the total is read from the exact
/// bins, always in the same way, so it depends only on the values added.
#[derive(Clone, Default)]
pub struct ExactSum {
    /// Empty until the first value is added.
    bins: Vec<i128>,
}

/// Bins of an [`ExactSum`]: one per biased `f64` exponent (0 for subnormals).
const EXPONENT_BINS: usize = 2048;

impl std::fmt::Debug for ExactSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExactSum({})", self.value())
    }
}

impl ExactSum {
    /// Adds a finite value (others are ignored).
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        let bits = v.to_bits();
        let exponent = ((bits >> 52) & 0x7ff) as usize;
        let fraction = (bits & ((1u64 << 52) - 1)) as i128;
        // value = significand * 2^(max(exponent, 1) - 1075)
        let significand = if exponent == 0 {
            fraction
        } else {
            fraction | (1i128 << 52)
        };
        let bin = exponent.max(1);
        if self.bins.is_empty() {
            self.bins = vec![0; EXPONENT_BINS];
        }
        if bits >> 63 == 1 {
            self.bins[bin] -= significand;
        } else {
            self.bins[bin] += significand;
        }
    }

    /// Adds another sum's values.
    pub fn merge(&mut self, other: &ExactSum) {
        if other.bins.is_empty() {
            return;
        }
        if self.bins.is_empty() {
            self.bins = vec![0; EXPONENT_BINS];
        }
        for (a, b) in self.bins.iter_mut().zip(other.bins.iter()) {
            *a += b;
        }
    }

    /// The sum, rounded to `f64` (infinite when it overflows).
    pub fn value(&self) -> f64 {
        // Carry each bin into the next so that every bin but the top one is 0 or 1: the exact sum
        // in binary. Bin e weighs 2^(e - 1075); a carry halves as it moves up one bin.
        if self.bins.is_empty() {
            return 0.0;
        }
        let mut bins = self.bins.clone();
        for e in 1..EXPONENT_BINS - 1 {
            let carry = bins[e] >> 1;
            bins[e] -= carry << 1;
            bins[e + 1] += carry;
        }
        // Read the bits from the top: at most 54 significant bits matter for an f64; summing from
        // the top in f64 keeps them, the rest only decides rounding.
        let mut total = 0.0f64;
        for (e, &b) in bins.iter().enumerate().rev() {
            if b != 0 {
                total += b as f64 * pow2(e as i32 - 1075);
            }
        }
        total
    }
}

/// 2^e as an f64, for exponents where it is finite or underflows towards 0.
fn pow2(e: i32) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else if e >= -1074 {
        f64::from_bits(1u64 << (e + 1074))
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sum_cancels_exactly() {
        let mut s = ExactSum::default();
        for v in [1e300, 1.0, -1e300, 1e-300, -1.0, 3.5] {
            s.add(v);
        }
        assert_eq!(s.value(), 3.5 + 1e-300);
        let mut t = ExactSum::default();
        t.add(f64::MIN_POSITIVE / 4.0);
        t.add(f64::MIN_POSITIVE / 4.0);
        assert_eq!(t.value(), f64::MIN_POSITIVE / 2.0);
    }

    #[test]
    fn the_order_of_additions_does_not_matter() {
        let v: Vec<f64> = (0..10_000)
            .map(|i| ((i as f64) * 0.618).sin() * 10f64.powi(i % 9 - 4))
            .collect();
        let mut a = ExactSum::default();
        v.iter().for_each(|&x| a.add(x));
        let mut b = ExactSum::default();
        let mut c = ExactSum::default();
        v.iter().rev().take(5000).for_each(|&x| b.add(x));
        v.iter().rev().skip(5000).for_each(|&x| c.add(x));
        c.merge(&b);
        assert_eq!(a.value(), c.value());
    }
}
