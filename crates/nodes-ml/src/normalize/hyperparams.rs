//! Parameters of `normalize`, as written in a recipe and once validated.

use flow_core::{ParamError, ParamKind, ParamType};
use serde::{Deserialize, Serialize};

use crate::common::pair;

flow_core::param_enum! {
    /// How values are rescaled.
    pub enum Method {
        /// `(v - min) / (max - min)` mapped onto `range`.
        Minmax = "minmax",
        /// Clipped to the `percentiles` (linear interpolation, like NumPy's default), then mapped
        /// onto `range`.
        Percentile = "percentile",
        /// `(v - mean) / std` (population standard deviation); `range` and `clip` do not apply.
        Zscore = "zscore",
    }
}

flow_core::param_enum! {
    /// Over which values statistics are computed.
    pub enum Scope {
        /// One set of statistics over every band and time step.
        Global = "global",
        /// One set of statistics per band (over all its time steps).
        Band = "band",
    }
}

/// A number as written in the recipe: an integer stays an integer (so that the defaults
/// `[0, 255]` and `[2, 98]` read, and enter cache keys, as written), a float a float.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    /// The value as an `f64`.
    pub fn get(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl ParamKind for Number {
    fn param_type() -> ParamType {
        ParamType::Float
    }
}

flow_core::params! {
    /// `normalize` parameters as written in the recipe.
    pub struct NormalizeParams {
        /// minmax: (v-min)/(max-min) onto range; percentile: clip to the percentiles, then onto
        /// range; zscore: (v-mean)/std (range ignored)
        pub method: Method = Method::Minmax,
        /// statistics over all bands together (global) or per band (band)
        pub scope: Scope = Scope::Global,
        /// output range [lo, hi] (f32 output, never wraps around)
        pub range: Vec<Number> = vec![Number::Int(0), Number::Int(255)],
        /// percentiles [lo, hi] for method = "percentile"
        pub percentiles: Vec<Number> = vec![Number::Int(2), Number::Int(98)],
        /// clamp the output to range
        pub clip: bool = true,
        /// given statistics instead of computing them, one [a, b] pair per group (one for scope
        /// = "global", one per band for "band"): [min, max] for minmax, the two percentile values
        /// for percentile, [mean, std] for zscore
        pub statistics: Option<Vec<Vec<Number>>>,
    }
}

/// `normalize` parameters once checked; made only by [`NormalizeParams::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizeValidParams {
    method: Method,
    scope: Scope,
    range: (f64, f64),
    percentiles: (f64, f64),
    clip: bool,
    statistics: Option<Vec<(f64, f64)>>,
}

impl NormalizeValidParams {
    /// See [`Method`].
    pub fn method(&self) -> Method {
        self.method
    }

    /// See [`Scope`].
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// Output range, `lo < hi`, both finite.
    pub fn range(&self) -> (f64, f64) {
        self.range
    }

    /// Percentiles, `lo < hi`, within `[0, 100]`.
    pub fn percentiles(&self) -> (f64, f64) {
        self.percentiles
    }

    /// Clamp the output to [`range`](Self::range).
    pub fn clip(&self) -> bool {
        self.clip
    }

    /// Given statistics, one `(a, b)` pair per group, each finite.
    pub fn statistics(&self) -> Option<&[(f64, f64)]> {
        self.statistics.as_deref()
    }
}

/// The values of a `[lo, hi]` param as `f64`s.
fn numbers(values: &[Number]) -> Vec<f64> {
    values.iter().map(|v| v.get()).collect()
}

impl NormalizeParams {
    /// Checks the values.
    ///
    /// # Errors
    /// A [`ParamError`] on `range` or `percentiles` when they are not `[lo, hi]` with `lo < hi`
    /// (percentiles also within `[0, 100]`).
    pub fn validate(self) -> Result<NormalizeValidParams, ParamError> {
        let range = pair(&numbers(&self.range), "range")?;
        let percentiles = pair(&numbers(&self.percentiles), "percentiles")?;
        if percentiles.0 < 0.0 || percentiles.1 > 100.0 {
            return Err(ParamError::new(
                "percentiles",
                "`percentiles` must lie within [0, 100]",
            ));
        }
        let statistics = match &self.statistics {
            None => None,
            Some(groups) => {
                let mut out = Vec::with_capacity(groups.len());
                for g in groups {
                    let v = numbers(g);
                    match v[..] {
                        [a, b] if a.is_finite() && b.is_finite() => out.push((a, b)),
                        _ => {
                            return Err(ParamError::new(
                                "statistics",
                                "`statistics` must be a list of [a, b] pairs of finite numbers",
                            ))
                        }
                    }
                }
                if out.is_empty() {
                    return Err(ParamError::new(
                        "statistics",
                        "`statistics` must hold at least one [a, b] pair",
                    ));
                }
                Some(out)
            }
        };
        Ok(NormalizeValidParams {
            method: self.method,
            scope: self.scope,
            range,
            percentiles,
            clip: self.clip,
            statistics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::DeclaredParams;

    #[test]
    fn defaults_are_written_as_integers_and_read_as_numbers() {
        let specs = NormalizeParams::specs();
        let range = specs.iter().find(|s| s.name == "range").unwrap();
        assert_eq!(
            range.default,
            Some(toml::Value::Array(vec![0.into(), 255.into()]))
        );
        let p = NormalizeParams::parse(&toml::Table::new())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            (p.method(), p.scope(), p.range(), p.percentiles(), p.clip()),
            (
                Method::Minmax,
                Scope::Global,
                (0.0, 255.0),
                (2.0, 98.0),
                true
            )
        );
        let p = NormalizeParams::parse(&toml::from_str("range = [-1.5, 1]").unwrap())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(p.range(), (-1.5, 1.0));
    }
}
