//! `composite`: reduces a raster's time axis per pixel and band to one time step (median, mean,
//! min, max or the first valid value), NaN-aware, so that cloudy dates can be combined.
//!
//! NaN is a missing value, as in NumPy's `nan*` functions: it never enters a reduction, and a
//! pixel with no valid value at any time stays NaN. Infinities are values. The median of an even
//! number of values is the mean of the two middle ones (`numpy.nanmedian`). Means and medians are
//! computed in f64 and rounded once to f32, so every output pixel depends only on the values of
//! its own pixel: results do not depend on the number of threads.
//!
//! The output's single time label is the input's time span as an ISO 8601 interval,
//! `first/last` (`2021-07-14T15:49:11Z/2021-08-03T15:49:09Z`), the form STAC uses for a range; a
//! raster with one time step keeps its label.
//!
//! `time` or `times` ([`flow_core::time`]) restrict it to the time steps of some dates; the
//! label is then the span of those.

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::time::DateSelection;
use flow_core::{
    DeclaredParams, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, Port, Raster,
    RunContext, Signature, Value, ValueType,
};
use ndarray::Array4;
use rayon::prelude::*;

use crate::common::CHUNK;
use crate::error::MlError;

flow_core::param_enum! {
    /// How the values of one pixel and band over time become one value.
    pub enum CompositeMethod {
        /// The median of the valid values; for an even count, the mean of the two middle ones.
        Median = "median",
        /// The mean of the valid values.
        Mean = "mean",
        /// The smallest valid value.
        Min = "min",
        /// The largest valid value.
        Max = "max",
        /// The first valid value in the raster's time order (`stack` orders items by datetime,
        /// oldest first).
        First = "first",
    }
}

flow_core::params! {
    /// `composite` parameters as written in the recipe.
    pub struct CompositeParams {
        /// how the values of a pixel over time become one: median, mean, min, max or first
        /// (the first valid value in time order); NaN is missing and never enters them
        pub method: CompositeMethod = CompositeMethod::Median,
        /// the time steps to combine: a date "2021-07-15" (the steps of that UTC day), a month
        /// "2021-07", or an inclusive range "2021-07-01/2021-07-31" (open ends as
        /// "../2021-07-31"), as STAC datetime; default every step
        pub time: Option<String>,
        /// the time steps of any of these dates or ranges, e.g. ["2021-07-05", "2021-07-15"]
        /// (instead of `time`)
        pub times: Option<Vec<String>>,
    }
}

/// The `composite` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompositeKind;

impl NodeKind for CompositeKind {
    fn name(&self) -> &str {
        "composite"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Reduces the time axis to one time step, per pixel and band: the median (of an even count, \
         the mean of the two middle values, as numpy.nanmedian), mean, min, max or first valid \
         value in time order. NaN is missing: it never enters a reduction, and a pixel with no \
         valid value stays NaN. Mask clouds first (mask-nodata with scl) to make a cloud-free \
         composite of several dates; `time` or `times` combine only the steps of those dates or \
         ranges. The time label becomes the span `first/last`."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Raster,
                "the raster whose time steps are combined",
            )],
            output: ValueType::Raster,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        CompositeParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let p = CompositeParams::parse(params)?;
        let dates = DateSelection::from_params(p.time.as_deref(), p.times.as_deref())?;
        Ok(Box::new(CompositeNode {
            method: p.method,
            dates,
        }))
    }

    fn pixel_local(&self) -> bool {
        true
    }
}

/// A built `composite` node.
#[derive(Debug, Clone)]
pub struct CompositeNode {
    method: CompositeMethod,
    /// The time steps it combines; every one when `None`.
    dates: Option<DateSelection>,
}

impl CompositeNode {
    /// A node reducing every time step with `method`.
    pub fn new(method: CompositeMethod) -> Self {
        CompositeNode {
            method,
            dates: None,
        }
    }

    /// The same node reducing only the time steps `dates` selects.
    pub fn with_dates(self, dates: DateSelection) -> Self {
        CompositeNode {
            dates: Some(dates),
            ..self
        }
    }

    /// Reduces the time axis of `raster`.
    ///
    /// # Errors
    /// [`MlError::Shape`] when the raster has no time step, [`MlError::NoTimeStep`] when its
    /// dates select none.
    pub fn apply(&self, raster: &Raster) -> Result<Raster, MlError> {
        let (nt, nb, h, w) = raster.data.dim();
        if nt == 0 {
            return Err(MlError::Shape(
                "composite: the raster has no time step to combine".into(),
            ));
        }
        let steps: Vec<usize> = match &self.dates {
            None => (0..nt).collect(),
            Some(d) => {
                let mut labels = raster.times.clone();
                labels.resize(nt, String::new());
                d.select_some("composite", &labels)
                    .map_err(MlError::NoTimeStep)?
            }
        };
        let data = raster.data.as_standard_layout();
        let Some(input) = data.as_slice() else {
            return Err(MlError::Shape(
                "composite: the input cube is not contiguous".into(),
            ));
        };
        let plane = h * w;
        let mut out = vec![f32::NAN; nb * plane];
        // Whole rows per work item (at least one), about CHUNK pixels each; nothing to do
        // without columns.
        if let Some(rows_per_item) = CHUNK.checked_div(w).map(|r| r.max(1)) {
            let method = self.method;
            out.par_chunks_mut(rows_per_item * w)
                .enumerate()
                .for_each(|(item, chunk)| {
                    let mut values = Vec::with_capacity(steps.len());
                    for (i, row_out) in chunk.chunks_mut(w).enumerate() {
                        // Row `r` of the output is row `r % h` of band `r / h`.
                        let r = item * rows_per_item + i;
                        let (b, y) = (r / h, r % h);
                        let start = |t: usize| (t * nb + b) * plane + y * w;
                        for (x, o) in row_out.iter_mut().enumerate() {
                            values.clear();
                            values.extend(
                                steps
                                    .iter()
                                    .map(|&t| input[start(t) + x])
                                    .filter(|v| !v.is_nan()),
                            );
                            *o = reduce(method, &mut values);
                        }
                    }
                });
        }
        let data = Array4::from_shape_vec((1, nb, h, w), out)
            .map_err(|e| MlError::Shape(format!("composite: {e}")))?;
        Ok(Raster {
            data,
            grid: raster.grid.clone(),
            bands: raster.bands.clone(),
            times: vec![span(
                &steps
                    .iter()
                    .filter_map(|&t| raster.times.get(t).cloned())
                    .collect::<Vec<_>>(),
            )],
        })
    }
}

/// One pixel's valid (non-NaN) values, in time order, reduced by `method`; NaN when there are
/// none. `values` may be reordered.
fn reduce(method: CompositeMethod, values: &mut [f32]) -> f32 {
    let Some(&first) = values.first() else {
        return f32::NAN;
    };
    match method {
        CompositeMethod::First => first,
        CompositeMethod::Min => values.iter().copied().fold(first, f32::min),
        CompositeMethod::Max => values.iter().copied().fold(first, f32::max),
        CompositeMethod::Mean => {
            let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
            (sum / values.len() as f64) as f32
        }
        CompositeMethod::Median => {
            values.sort_unstable_by(f32::total_cmp);
            let n = values.len();
            if n % 2 == 1 {
                values[n / 2]
            } else {
                ((f64::from(values[n / 2 - 1]) + f64::from(values[n / 2])) / 2.0) as f32
            }
        }
    }
}

/// The time label of a composite of steps labelled `times`: `earliest/latest` (RFC 3339 labels
/// of one precision sort as text), or the one label when all are the same; empty for no label.
pub fn span(times: &[String]) -> String {
    let first = times.iter().min();
    let last = times.iter().max();
    match (first, last) {
        (Some(a), Some(b)) if a == b => a.clone(),
        (Some(a), Some(b)) => format!("{a}/{b}"),
        _ => String::new(),
    }
}

impl Node for CompositeNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        let mut output = p.reshaped(ValueType::Raster, 1, p.bands);
        output.at_least = false;
        // The values of one pixel over the steps it combines, per worker (the median sorts
        // them): the steps its dates select when the input's labels are known.
        let steps = match (&self.dates, p.known_time_labels()) {
            (Some(d), Some(labels)) => d.select(labels).len(),
            _ => p.times,
        };
        let values = p.reshaped(ValueType::Raster, steps, p.bands).pixel_bytes();
        Some(Estimate::of(Shape::Pixels(output)).working(values * known.threads as u64))
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let raster = inputs.raster("input")?;
        let out = self.apply(raster)?;
        if out.data.iter().all(|v| v.is_nan()) {
            ctx.warn("composite: no pixel has a valid value at any time; the output is all NaN");
        }
        Ok(Value::Raster(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::raster;
    use ndarray::Array4;

    const NAN: f32 = f32::NAN;

    fn node(src: &str) -> Result<Box<dyn Node>, ParamError> {
        CompositeKind.build(&toml::from_str(src).unwrap())
    }

    /// Values equal, NaN where both are NaN.
    fn same(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.is_nan() && y.is_nan()) || x == y)
    }

    /// 3 times, 1 band, 1 x 6: per pixel, the values over time.
    fn three_dates() -> Raster {
        #[rustfmt::skip]
        let v = vec![
            // t0
            3.0, NAN, NAN, 1.0, -2.0, NAN,
            // t1
            1.0, 4.0, NAN, 5.0, f32::INFINITY, NAN,
            // t2
            2.0, 8.0, 7.0, NAN, 0.5, NAN,
        ];
        raster(Array4::from_shape_vec((3, 1, 1, 6), v).unwrap(), &["B04"])
    }

    #[test]
    fn each_method_on_a_small_case() {
        let r = three_dates();
        let cases: [(CompositeMethod, [f32; 6]); 5] = [
            (CompositeMethod::Median, [2.0, 6.0, 7.0, 3.0, 0.5, NAN]),
            (
                CompositeMethod::Mean,
                [2.0, 6.0, 7.0, 3.0, f32::INFINITY, NAN],
            ),
            (CompositeMethod::Min, [1.0, 4.0, 7.0, 1.0, -2.0, NAN]),
            (
                CompositeMethod::Max,
                [3.0, 8.0, 7.0, 5.0, f32::INFINITY, NAN],
            ),
            (CompositeMethod::First, [3.0, 4.0, 7.0, 1.0, -2.0, NAN]),
        ];
        for (method, expected) in cases {
            let out = CompositeNode::new(method).apply(&r).unwrap();
            assert_eq!(out.data.dim(), (1, 1, 1, 6));
            let got: Vec<f32> = out.data.iter().copied().collect();
            assert!(same(&got, &expected), "{method}: {got:?} != {expected:?}");
            assert_eq!(out.bands, r.bands);
            assert_eq!(out.grid, r.grid);
        }
    }

    #[test]
    fn median_of_three_dates_equals_a_reference() {
        // 3 times, 2 bands, 5 x 4, values from a fixed pattern with NaNs so that pixels have 3,
        // 2, 1 or 0 valid values.
        let (nt, nb, h, w) = (3, 2, 5, 4);
        let value = |t: usize, b: usize, y: usize, x: usize| -> f32 {
            let p = (b * h + y) * w + x;
            let missing = match p % 6 {
                0 => false,  // three values
                1 => t == 1, // two: t0, t2
                2 => t == 0, // two: t1, t2
                3 => t != 2, // one
                4 => true,   // none
                _ => t == 2, // two: t0, t1
            };
            if missing {
                NAN
            } else {
                // Not monotonic in t, with ties and negatives.
                ((p * 7 + t * 13) % 11) as f32 * 0.25 - 1.0
            }
        };
        let data = Array4::from_shape_fn((nt, nb, h, w), |(t, b, y, x)| value(t, b, y, x));
        let r = raster(data, &["B03", "B08"]);
        let out = CompositeNode::new(CompositeMethod::Median)
            .apply(&r)
            .unwrap();
        let mut counts = [0usize; 4];
        for b in 0..nb {
            for y in 0..h {
                for x in 0..w {
                    let v: Vec<f64> = (0..nt)
                        .map(|t| value(t, b, y, x))
                        .filter(|v| !v.is_nan())
                        .map(f64::from)
                        .collect();
                    counts[v.len()] += 1;
                    // Without sorting: the middle of three is the sum minus the extremes; of
                    // two, their mean (numpy.nanmedian).
                    let expected = match v.len() {
                        0 => f64::NAN,
                        1 => v[0],
                        2 => (v[0] + v[1]) / 2.0,
                        _ => {
                            let (lo, hi) = (v[0].min(v[1]).min(v[2]), v[0].max(v[1]).max(v[2]));
                            v[0] + v[1] + v[2] - lo - hi
                        }
                    } as f32;
                    let got = out.data[[0, b, y, x]];
                    assert!(
                        same(&[got], &[expected]),
                        "band {b} ({y}, {x}): {v:?} -> {got}, expected {expected}"
                    );
                }
            }
        }
        assert!(
            counts.iter().all(|&c| c > 0),
            "every count occurs: {counts:?}"
        );
    }

    #[test]
    fn time_label_is_the_span() {
        let r = three_dates();
        let out = CompositeNode::new(CompositeMethod::Median)
            .apply(&r)
            .unwrap();
        assert_eq!(out.times, ["2021-07-01T15:00:00Z/2021-07-03T15:00:00Z"]);
        let one = raster(Array4::from_elem((1, 1, 1, 1), 2.0), &["B04"]);
        let out = CompositeNode::new(CompositeMethod::Mean)
            .apply(&one)
            .unwrap();
        assert_eq!(out.times, one.times);
        assert_eq!(out.data, one.data);
    }

    #[test]
    fn no_time_step_is_an_error() {
        let r = raster(Array4::zeros((0, 1, 2, 2)), &["B04"]);
        let e = CompositeNode::new(CompositeMethod::Median)
            .apply(&r)
            .unwrap_err();
        assert!(matches!(e, MlError::Shape(_)), "{e}");
    }

    #[test]
    fn rows_of_every_band_land_in_place_whatever_the_chunking() {
        // 2 times, 3 bands, 7 x 3000 (rows longer than CHUNK / 3 and not dividing it): the output
        // of band b, pixel (y, x) is the max over time of its own inputs.
        let (nt, nb, h, w) = (2, 3, 7, 3000);
        let value = |t: usize, b: usize, y: usize, x: usize| {
            if (x + y + b) % 5 == t {
                NAN
            } else {
                (t * 1_000_000 + b * 100_000 + y * 3000 + x) as f32
            }
        };
        let data = Array4::from_shape_fn((nt, nb, h, w), |(t, b, y, x)| value(t, b, y, x));
        let r = raster(data, &["B02", "B03", "B04"]);
        let out = CompositeNode::new(CompositeMethod::Max).apply(&r).unwrap();
        for b in 0..nb {
            for y in 0..h {
                for x in 0..w {
                    let expected = (0..nt)
                        .map(|t| value(t, b, y, x))
                        .filter(|v| !v.is_nan())
                        .fold(NAN, f32::max);
                    assert_eq!(out.data[[0, b, y, x]], expected, "band {b} ({y}, {x})");
                }
            }
        }
    }

    #[test]
    fn only_the_steps_of_its_dates_are_combined() {
        // The steps are 2021-07-01, -02 and -03 at 15:00 UTC.
        let r = three_dates();
        let dates = |s: &str| DateSelection::parse(s).unwrap();
        let node = CompositeNode::new(CompositeMethod::Max);
        let out = node
            .clone()
            .with_dates(dates("2021-07-02/.."))
            .apply(&r)
            .unwrap();
        let got: Vec<f32> = out.data.iter().copied().collect();
        let expected = [2.0, 8.0, 7.0, 5.0, f32::INFINITY, NAN];
        assert!(same(&got, &expected), "{got:?}");
        assert_eq!(out.times, ["2021-07-02T15:00:00Z/2021-07-03T15:00:00Z"]);
        // One date: that step as it is, with its own label.
        let out = node
            .clone()
            .with_dates(dates("2021-07-01"))
            .apply(&r)
            .unwrap();
        let got: Vec<f32> = out.data.iter().copied().collect();
        assert!(same(&got, &[3.0, NAN, NAN, 1.0, -2.0, NAN]), "{got:?}");
        assert_eq!(out.times, ["2021-07-01T15:00:00Z"]);
        let list = DateSelection::parse_list(&["2021-07-03".into(), "2021-07-01".into()]).unwrap();
        let out = CompositeNode::new(CompositeMethod::First)
            .with_dates(list)
            .apply(&r)
            .unwrap();
        let got: Vec<f32> = out.data.iter().copied().collect();
        assert!(same(&got, &[3.0, 8.0, 7.0, 1.0, -2.0, NAN]), "{got:?}");
        let e = node.with_dates(dates("2021-06")).apply(&r).unwrap_err();
        assert!(matches!(e, MlError::NoTimeStep(_)), "{e}");
        assert!(
            e.to_string().contains(
                "composite: `time = \"2021-06\"` selects none of the 3 time step(s); the dates \
                 available: 2021-07-01, 2021-07-02, 2021-07-03"
            ),
            "{e}"
        );
    }

    #[test]
    fn time_params() {
        assert!(node("time = \"2021-07-15\"").is_ok());
        assert!(node("times = [\"2021-07-15\", \"2021-08-01/..\"]").is_ok());
        for (src, param) in [
            ("time = \"2021-07-32\"", "time"),
            ("times = [\"July\"]", "times"),
            ("time = \"2021\"\ntimes = [\"2021\"]", "times"),
        ] {
            let e = node(src).err().unwrap();
            assert_eq!(e.param.as_deref(), Some(param), "{src}: {e}");
        }
    }

    #[test]
    fn method_param() {
        assert!(node("").is_ok());
        for m in ["median", "mean", "min", "max", "first"] {
            assert!(node(&format!("method = \"{m}\"")).is_ok(), "{m}");
        }
        assert!(node("method = \"mode\"").is_err());
        assert!(CompositeKind.pixel_local());
        let specs = CompositeKind.params();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0].default, Some(toml::Value::String("median".into())));
    }
}
