//! `normalize`: rescales a raster's values, NaN-aware, to f32 (never to a wrapping integer type).
//!
//! The notebook this replaces did `((a - min) / (max - min) * 255).astype(np.int8)`, which wraps
//! 128..255 to negative numbers and turns NaN into 0. Here the output stays f32, NaN stays NaN and
//! never enters the statistics, and (with `clip`) no value leaves `range`.

mod hyperparams;
mod stats;

use flow_core::{
    DeclaredParams, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, Port, Raster,
    RunContext, Signature, Value, ValueType,
};
use ndarray::{s, Axis};

pub use hyperparams::{Method, NormalizeParams, NormalizeValidParams, Number, Scope};

/// The `normalize` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct NormalizeKind;

impl NodeKind for NormalizeKind {
    fn name(&self) -> &str {
        "normalize"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Rescales raster values to f32: min-max or percentile-clipped onto `range` (default [0, 255]), \
         or z-scores; statistics over all bands (scope = \"global\") or per band, NaN-aware. \
         Constant data maps to the low end of the range, with a warning."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Raster,
                "the raster to rescale",
            )],
            output: ValueType::Raster,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        NormalizeParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let params = NormalizeParams::parse(params)?.validate()?;
        Ok(Box::new(NormalizeNode { params }))
    }

    /// Statistics come from the whole raster, so the output of one window depends on the others.
    fn pixel_local(&self) -> bool {
        false
    }
}

/// `v -> v * scale + offset`, then an optional clamp.
type Affine = (f64, f64, Option<(f64, f64)>);

/// A built `normalize` node.
#[derive(Debug, Clone)]
pub struct NormalizeNode {
    params: NormalizeValidParams,
}

impl NormalizeNode {
    /// A node with these parameters.
    pub fn new(params: NormalizeValidParams) -> Self {
        NormalizeNode { params }
    }

    /// Rescales `raster`; warnings go to `warn`.
    pub fn apply(&self, raster: &Raster, warn: &dyn Fn(String)) -> Raster {
        let p = &self.params;
        let nbands = raster.data.len_of(Axis(1));
        let groups: Vec<Vec<usize>> = match p.scope() {
            Scope::Global => vec![(0..nbands).collect()],
            Scope::Band => (0..nbands).map(|b| vec![b]).collect(),
        };
        let mut out = raster.data.as_standard_layout().into_owned();
        let (lo, hi) = p.range();
        for group in groups {
            let what = match p.scope() {
                Scope::Global => "the raster".to_string(),
                Scope::Band => format!(
                    "band {}",
                    raster.bands.get(group[0]).map_or("?", |b| b.name.as_str())
                ),
            };
            let mut values = stats::finite_values(&raster.data.view(), &group);
            // The affine map v -> v * scale + offset, and the clamp, for this group.
            let map: Option<Affine> = match p.method() {
                Method::Minmax | Method::Percentile => {
                    let bounds = if p.method() == Method::Minmax {
                        stats::min_max(&values)
                    } else {
                        let (plo, phi) = p.percentiles();
                        stats::percentiles(&mut values, plo, phi)
                    };
                    match bounds {
                        None => None,
                        Some((a, b)) if b > a && (b - a).is_finite() => {
                            let scale = (hi - lo) / (b - a);
                            Some((scale, lo - a * scale, p.clip().then_some((lo, hi))))
                        }
                        Some(_) => {
                            warn(format!("normalize: {what} is constant; mapped to {lo}"));
                            Some((0.0, lo, None))
                        }
                    }
                }
                Method::Zscore => match stats::mean_std(&values) {
                    None => None,
                    Some((mean, std)) if std > 0.0 && std.is_finite() => {
                        Some((1.0 / std, -mean / std, None))
                    }
                    Some(_) => {
                        warn(format!("normalize: {what} is constant; z-scores set to 0"));
                        Some((0.0, 0.0, None))
                    }
                },
            };
            drop(values);
            let Some((scale, offset, clamp)) = map else {
                warn(format!(
                    "normalize: {what} has no finite value; left as NaN"
                ));
                continue;
            };
            for &b in &group {
                let mut band = out.slice_mut(s![.., b, .., ..]);
                band.par_mapv_inplace(|v| {
                    if !v.is_finite() {
                        return f32::NAN;
                    }
                    let y = (v as f64 * scale + offset) as f32;
                    match clamp {
                        Some((l, h)) => y.clamp(l as f32, h as f32),
                        None => y,
                    }
                });
            }
        }
        Raster {
            data: out,
            grid: raster.grid.clone(),
            bands: raster.bands.clone(),
            times: raster.times.clone(),
        }
    }
}

impl Node for NormalizeNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let raster = inputs.raster("input")?;
        Ok(Value::Raster(self.apply(raster, &|m| ctx.warn(m))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::raster;
    use ndarray::Array4;
    use std::cell::RefCell;

    fn node(toml_src: &str) -> NormalizeNode {
        let params: Params = toml::from_str(toml_src).unwrap();
        NormalizeNode::new(NormalizeParams::parse(&params).unwrap().validate().unwrap())
    }

    fn run(n: &NormalizeNode, r: &Raster) -> (Vec<f32>, Vec<String>) {
        let warnings = RefCell::new(Vec::new());
        let out = n.apply(r, &|m| warnings.borrow_mut().push(m));
        (out.data.iter().copied().collect(), warnings.into_inner())
    }

    fn sample() -> Raster {
        // 1 time, 2 bands, 2 x 3 pixels, one NaN.
        let v = vec![
            0.0,
            100.0,
            200.0,
            300.0,
            f32::NAN,
            1000.0,
            50.0,
            150.0,
            250.0,
            350.0,
            450.0,
            550.0,
        ];
        raster(
            Array4::from_shape_vec((1, 2, 2, 3), v).unwrap(),
            &["B04", "B08"],
        )
    }

    #[test]
    fn minmax_global_snapshot_and_range() {
        let (out, warnings) = run(&node(""), &sample());
        assert!(warnings.is_empty());
        assert!(out[4].is_nan(), "NaN stays NaN");
        assert!(out
            .iter()
            .filter(|v| !v.is_nan())
            .all(|&v| (0.0..=255.0).contains(&v)));
        assert_eq!(out[0], 0.0);
        assert_eq!(out[5], 255.0);
        insta::assert_debug_snapshot!("normalize_minmax_global", out);
    }

    #[test]
    fn minmax_per_band_and_custom_range() {
        let (out, _) = run(&node("scope = \"band\"\nrange = [-1, 1]"), &sample());
        assert_eq!(&out[..4], &[-1.0, -0.8, -0.6, -0.4]);
        assert_eq!(out[5], 1.0);
        assert_eq!(out[6], -1.0);
        assert_eq!(out[11], 1.0);
        insta::assert_debug_snapshot!("normalize_minmax_band", out);
    }

    #[test]
    fn percentile_clips_to_the_range() {
        let v: Vec<f32> = (0..100).map(|i| i as f32).chain([1e6]).collect();
        let r = raster(Array4::from_shape_vec((1, 1, 1, 101), v).unwrap(), &["B04"]);
        let (out, _) = run(&node("method = \"percentile\"\npercentiles = [10, 90]"), &r);
        assert!(out.iter().all(|&v| (0.0..=255.0).contains(&v)));
        assert_eq!(out[0], 0.0);
        assert_eq!(out[100], 255.0, "the outlier is clipped");
        // clip = false extends the map linearly beyond the range
        let (out, _) = run(
            &node("method = \"percentile\"\npercentiles = [10, 90]\nclip = false"),
            &r,
        );
        assert!(out[0] < 0.0 && out[100] > 255.0);
    }

    #[test]
    fn zscore_has_zero_mean_unit_std() {
        let (out, _) = run(&node("method = \"zscore\""), &sample());
        let f: Vec<f64> = out
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| v as f64)
            .collect();
        let mean = f.iter().sum::<f64>() / f.len() as f64;
        let var = f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / f.len() as f64;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "{mean} {var}"
        );
    }

    #[test]
    fn constant_data_maps_to_lo_with_a_warning() {
        let mut r = raster(Array4::from_elem((1, 1, 2, 2), 7.0), &["B04"]);
        r.data[[0, 0, 0, 0]] = f32::NAN;
        for method in ["minmax", "percentile", "zscore"] {
            let (out, warnings) = run(
                &node(&format!("method = \"{method}\"\nrange = [10, 20]")),
                &r,
            );
            assert_eq!(warnings.len(), 1, "{method}: {warnings:?}");
            let expect = if method == "zscore" { 0.0 } else { 10.0 };
            assert!(out[0].is_nan());
            assert!(out[1..].iter().all(|&v| v == expect), "{method}: {out:?}");
        }
    }

    #[test]
    fn no_wrap_around_on_large_values() {
        let v: Vec<f32> = (0..=255).map(|i| i as f32 * 1000.0).collect();
        let r = raster(Array4::from_shape_vec((1, 1, 1, 256), v).unwrap(), &["B04"]);
        let (out, _) = run(&node(""), &r);
        for (i, &v) in out.iter().enumerate() {
            assert!((v - i as f32).abs() < 1e-3, "{i}: {v}");
        }
    }

    #[test]
    fn rejects_bad_ranges() {
        let params: Params = toml::from_str("range = [255, 0]").unwrap();
        let e = NormalizeKind.build(&params).err().unwrap();
        assert_eq!(e.param.as_deref(), Some("range"));
        let params: Params = toml::from_str("percentiles = [2, 120]").unwrap();
        assert_eq!(
            NormalizeKind.build(&params).err().unwrap().param.as_deref(),
            Some("percentiles")
        );
    }
}
