//! Parameters of `normalize`, as written in a recipe and once validated.

use flow_core::{ParamError, ParamSpec, ParamType};
use serde::Deserialize;

use crate::common::pair;

/// How values are rescaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// `(v - min) / (max - min)` mapped onto `range`.
    Minmax,
    /// Clipped to the `percentiles` (linear interpolation, like NumPy's default), then mapped onto
    /// `range`.
    Percentile,
    /// `(v - mean) / std` (population standard deviation); `range` and `clip` do not apply.
    Zscore,
}

/// Over which values statistics are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One set of statistics over every band and time step.
    Global,
    /// One set of statistics per band (over all its time steps).
    Band,
}

/// `normalize` parameters as written in the recipe.
#[derive(Debug, Clone, Deserialize)]
pub struct NormalizeParams {
    /// See [`Method`].
    #[serde(default = "default_method")]
    pub method: Method,
    /// See [`Scope`].
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// Output range `[lo, hi]`.
    #[serde(default = "default_range")]
    pub range: Vec<f64>,
    /// Percentiles `[lo, hi]` for [`Method::Percentile`].
    #[serde(default = "default_percentiles")]
    pub percentiles: Vec<f64>,
    /// Clamp the output to `range`.
    #[serde(default = "default_clip")]
    pub clip: bool,
}

fn default_method() -> Method {
    Method::Minmax
}
fn default_scope() -> Scope {
    Scope::Global
}
fn default_range() -> Vec<f64> {
    vec![0.0, 255.0]
}
fn default_percentiles() -> Vec<f64> {
    vec![2.0, 98.0]
}
fn default_clip() -> bool {
    true
}

/// `normalize` parameters once checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizeValidParams {
    /// See [`Method`].
    pub method: Method,
    /// See [`Scope`].
    pub scope: Scope,
    /// Output range.
    pub range: (f64, f64),
    /// Percentiles in `[0, 100]`.
    pub percentiles: (f64, f64),
    /// Clamp the output to `range`.
    pub clip: bool,
}

impl NormalizeParams {
    /// Checks the values.
    ///
    /// # Errors
    /// A [`ParamError`] on `range` or `percentiles` when they are not `[lo, hi]` with `lo < hi`
    /// (percentiles also within `[0, 100]`).
    pub fn validate(self) -> Result<NormalizeValidParams, ParamError> {
        let range = pair(&self.range, "range")?;
        let percentiles = pair(&self.percentiles, "percentiles")?;
        if percentiles.0 < 0.0 || percentiles.1 > 100.0 {
            return Err(ParamError::new(
                "percentiles",
                "`percentiles` must lie within [0, 100]",
            ));
        }
        Ok(NormalizeValidParams {
            method: self.method,
            scope: self.scope,
            range,
            percentiles,
            clip: self.clip,
        })
    }
}

/// The schema of `normalize`.
pub fn schema() -> Vec<ParamSpec> {
    vec![
        ParamSpec::with_default(
            "method",
            ParamType::one_of(&["minmax", "percentile", "zscore"]),
            "minmax",
            "minmax: (v-min)/(max-min) onto range; percentile: clip to the percentiles, then onto range; zscore: (v-mean)/std (range ignored)",
        ),
        ParamSpec::with_default(
            "scope",
            ParamType::one_of(&["global", "band"]),
            "global",
            "statistics over all bands together (global) or per band (band)",
        ),
        ParamSpec::with_default(
            "range",
            ParamType::array(ParamType::Float),
            toml::Value::Array(vec![0.into(), 255.into()]),
            "output range [lo, hi] (f32 output, never wraps around)",
        ),
        ParamSpec::with_default(
            "percentiles",
            ParamType::array(ParamType::Float),
            toml::Value::Array(vec![2.into(), 98.into()]),
            "percentiles [lo, hi] for method = \"percentile\"",
        ),
        ParamSpec::with_default("clip", ParamType::Bool, true, "clamp the output to range"),
    ]
}
