//! `flatten`: a raster cube to a pixels x features matrix, one row per fully valid pixel.

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::time::{step_names, DateSelection};
use flow_core::{
    DeclaredParams, Inputs, Matrix, Node, NodeError, NodeKind, ParamError, ParamKind, ParamSpec,
    ParamType, Params, Port, Raster, RunContext, Signature, Value, ValueType,
};
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::MlError;

/// Which time steps become features, as written: an integer or a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeParam {
    /// One time step by index.
    Index(i64),
    /// `"all"`, or a date or range of dates ([`flow_core::time`]).
    Name(String),
}

impl ParamKind for TimeParam {
    /// An integer or a string: the schema cannot say both, so any value passes it and
    /// [`FlattenParams::validate`] checks.
    fn param_type() -> ParamType {
        ParamType::Any
    }
}

flow_core::params! {
    /// `flatten` parameters as written in the recipe.
    pub struct FlattenParams {
        /// the time steps that become features: "all", a time index (integer from 0), a date
        /// "2021-07-15" (the steps of that UTC day), a month "2021-07", or an inclusive range
        /// "2021-07-01/2021-07-31" (open ends as "../2021-07-31"), as STAC datetime
        pub time: TimeParam = TimeParam::Name("all".into()),
        /// the time steps of any of these dates or ranges, e.g. ["2021-07-05", "2021-07-15"]
        /// (instead of `time`)
        pub times: Option<Vec<String>>,
    }
}

/// Validated time selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSelection {
    /// Every time step.
    All,
    /// One time step by index.
    Index(usize),
    /// The time steps of some dates.
    Dates(DateSelection),
}

impl FlattenParams {
    /// Checks `time` and `times`.
    ///
    /// # Errors
    /// A [`ParamError`] on `time` when it is negative or a string other than `"all"` and a
    /// date or range; on `times` when an entry is not a date or range, or `time` is given too.
    pub fn validate(self) -> Result<TimeSelection, ParamError> {
        let all = matches!(&self.time, TimeParam::Name(s) if s.eq_ignore_ascii_case("all"));
        match (self.time, self.times) {
            (_, Some(times)) if all => Ok(DateSelection::from_params(None, Some(&times))?
                .map_or(TimeSelection::All, TimeSelection::Dates)),
            (_, Some(_)) => Err(ParamError::new(
                "times",
                "give either `time` (one index, date or range) or `times` (a list), not both",
            )),
            (TimeParam::Name(_), None) if all => Ok(TimeSelection::All),
            (TimeParam::Name(s), None) => DateSelection::from_params(Some(&s), None)
                .map(|d| d.map_or(TimeSelection::All, TimeSelection::Dates))
                .map_err(|e| ParamError {
                    message: format!(
                        "`time` must be \"all\", a time index, a date or a range of dates: {}",
                        e.message
                    ),
                    ..e
                }),
            (TimeParam::Index(i), None) => usize::try_from(i)
                .map(TimeSelection::Index)
                .map_err(|_| ParamError::new("time", format!("`time` must be >= 0, got {i}"))),
        }
    }
}

/// The `flatten` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlattenKind;

impl NodeKind for FlattenKind {
    fn name(&self) -> &str {
        "flatten"
    }

    fn version(&self) -> u32 {
        // 2: several time steps are named by date (`B04@2021-07-14`), no longer `B04@t0`.
        // 3: the matrix carries its features' scaling.
        3
    }

    fn doc(&self) -> &str {
        "Turns a raster into a pixels x features matrix: one row per pixel whose features are all \
         finite (row-major order), features = bands x the time steps chosen (`time`, `times`: \
         all, an index, dates or ranges of dates). Several time steps are named by their UTC \
         date, B04@2021-07-14, B04@2021-08-03 (with the time, B04@2021-08-03T15:49:09Z, for \
         steps that share a date); one keeps the band names. The validity mask and grid travel \
         with the matrix."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Raster,
                "the raster to flatten",
            )],
            output: ValueType::Matrix,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        FlattenParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let time = FlattenParams::parse(params)
            .map_err(|e| match e.param.as_deref() {
                Some("times") => e,
                _ => ParamError::new(
                    "time",
                    format!("`time` must be an integer or a string (\"all\" or dates): {e}"),
                ),
            })?
            .validate()?;
        Ok(Box::new(FlattenNode { time }))
    }

    /// A pixel's row depends on that pixel alone (a window's rows are its valid pixels in
    /// row-major order).
    fn pixel_local(&self) -> bool {
        true
    }
}

/// A built `flatten` node.
#[derive(Debug, Clone)]
pub struct FlattenNode {
    time: TimeSelection,
}

impl FlattenNode {
    /// A node with this time selection.
    pub fn new(time: TimeSelection) -> Self {
        FlattenNode { time }
    }

    /// The time steps it keeps of a raster whose steps are labelled `labels` (one per step).
    ///
    /// # Errors
    /// [`MlError::TimeOutOfRange`] for a time index beyond the raster's,
    /// [`MlError::NoTimeStep`] for dates that select none.
    fn steps(&self, labels: &[String]) -> Result<Vec<usize>, MlError> {
        let nt = labels.len();
        match &self.time {
            TimeSelection::All => Ok((0..nt).collect()),
            TimeSelection::Index(i) if *i < nt => Ok(vec![*i]),
            TimeSelection::Index(index) => Err(MlError::TimeOutOfRange {
                index: *index,
                times: nt,
            }),
            TimeSelection::Dates(d) => d
                .select_some("flatten", labels)
                .map_err(MlError::NoTimeStep),
        }
    }

    /// Flattens `raster`.
    ///
    /// # Errors
    /// [`MlError::TimeOutOfRange`] for a time index beyond the raster's,
    /// [`MlError::NoTimeStep`] for dates that select none of its time steps.
    pub fn apply(&self, raster: &Raster) -> Result<Matrix, MlError> {
        let (nt, nb, h, w) = raster.data.dim();
        let mut labels = raster.times.clone();
        labels.resize(nt, String::new());
        let times = self.steps(&labels)?;
        // Several time steps: each band once per step, named `BAND@DATE`.
        let suffixes = (times.len() > 1).then(|| {
            let chosen: Vec<String> = times.iter().map(|&t| labels[t].clone()).collect();
            step_names(&chosen)
        });
        let mut features = Vec::with_capacity(times.len() * nb);
        let mut scaling = Vec::with_capacity(times.len() * nb);
        let mut planes = Vec::with_capacity(times.len() * nb);
        for (i, &t) in times.iter().enumerate() {
            for b in 0..nb {
                let name = raster
                    .bands
                    .get(b)
                    .map_or_else(|| format!("band{b}"), |i| i.name.clone());
                features.push(match &suffixes {
                    Some(s) => format!("{name}@{}", s[i]),
                    None => name,
                });
                scaling.push(raster.bands.get(b).and_then(|i| i.scaling.clone()));
                planes.push(
                    raster
                        .data
                        .index_axis(Axis(0), t)
                        .index_axis_move(Axis(0), b),
                );
            }
        }
        let mut valid = Array2::from_elem((h, w), !planes.is_empty());
        for plane in &planes {
            ndarray::Zip::from(&mut valid)
                .and(plane)
                .for_each(|ok, v| *ok &= v.is_finite());
        }
        let rows = valid.iter().filter(|&&v| v).count();
        let nf = planes.len();
        let mut data = Array2::<f32>::zeros((rows, nf));
        for (j, plane) in planes.iter().enumerate() {
            let mut column = data.column_mut(j);
            let mut it = column.iter_mut();
            ndarray::Zip::from(&valid).and(plane).for_each(|&ok, &v| {
                if ok {
                    if let Some(slot) = it.next() {
                        *slot = v;
                    }
                }
            });
        }
        // A feature's scaling is its band's; none recorded when no band was rescaled.
        if scaling.iter().all(Option::is_none) {
            scaling.clear();
        }
        Ok(Matrix {
            scaling,
            data,
            features,
            valid,
            grid: raster.grid.clone(),
        })
    }
}

impl Node for FlattenNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        // The steps kept, when the input's time labels are known; else at most all of them.
        let times = match (&self.time, p.known_time_labels()) {
            (TimeSelection::Index(_), _) => 1,
            (TimeSelection::Dates(d), Some(labels)) => d.select(labels).len(),
            _ => p.times,
        };
        let features = times * p.bands;
        Some(Estimate::of(Shape::Pixels(p.reshaped(
            ValueType::Matrix,
            1,
            features,
        ))))
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let raster = inputs.raster("input")?;
        let m = self.apply(raster)?;
        if m.data.nrows() == 0 {
            ctx.warn("flatten: no pixel has all its features finite; the matrix is empty");
        }
        Ok(Value::Matrix(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::raster;
    use ndarray::{array, Array4};

    fn build(src: &str) -> Result<Box<dyn Node>, ParamError> {
        FlattenKind.build(&toml::from_str(src).unwrap())
    }

    #[test]
    fn drops_nan_pixels_in_row_major_order() {
        // 1 time, 2 bands, 2 x 2; pixel (0, 1) has a NaN in band 1 only.
        let v = vec![1.0, 2.0, 3.0, 4.0, 10.0, f32::NAN, 30.0, 40.0];
        let r = raster(
            Array4::from_shape_vec((1, 2, 2, 2), v).unwrap(),
            &["B04", "B08"],
        );
        let m = FlattenNode::new(TimeSelection::All).apply(&r).unwrap();
        assert_eq!(m.features, ["B04", "B08"]);
        assert_eq!(m.valid, array![[true, false], [true, true]]);
        assert_eq!(m.data, array![[1.0, 10.0], [3.0, 30.0], [4.0, 40.0]]);
        assert_eq!(m.grid, r.grid);
    }

    #[test]
    fn two_time_steps() {
        // 2 times, 1 band, 1 x 3; the last pixel is NaN at t1 only.
        let v = vec![1.0, 2.0, 3.0, 11.0, 12.0, f32::NAN];
        let r = raster(Array4::from_shape_vec((2, 1, 1, 3), v).unwrap(), &["B04"]);
        let m = FlattenNode::new(TimeSelection::All).apply(&r).unwrap();
        assert_eq!(m.features, ["B04@2021-07-01", "B04@2021-07-02"]);
        assert_eq!(m.data, array![[1.0, 11.0], [2.0, 12.0]]);
        assert_eq!(m.valid, array![[true, true, false]]);
        let m = FlattenNode::new(TimeSelection::Index(1)).apply(&r).unwrap();
        assert_eq!(m.features, ["B04"]);
        assert_eq!(m.data, array![[11.0], [12.0]]);
        let e = FlattenNode::new(TimeSelection::Index(2))
            .apply(&r)
            .unwrap_err();
        assert_eq!(e, MlError::TimeOutOfRange { index: 2, times: 2 });
    }

    /// 3 times, 2 bands, 1 x 2; the values say their time and band: `t * 10 + b`.
    fn three_dates() -> Raster {
        let data = Array4::from_shape_fn((3, 2, 1, 2), |(t, b, _, x)| {
            (t * 10 + b) as f32 + x as f32 / 10.0
        });
        raster(data, &["B04", "B08"])
    }

    fn node(src: &str) -> FlattenNode {
        let time = FlattenParams::parse(&toml::from_str(src).unwrap())
            .unwrap()
            .validate()
            .unwrap();
        FlattenNode::new(time)
    }

    #[test]
    fn time_steps_chosen_by_date_are_named_by_date() {
        // The steps are 2021-07-01, -02 and -03 at 15:00 UTC.
        let r = three_dates();
        let m = node("time = \"2021-07-02\"").apply(&r).unwrap();
        assert_eq!(m.features, ["B04", "B08"]);
        assert_eq!(m.data, array![[10.0, 11.0], [10.1, 11.1]]);
        let m = node("time = \"2021-07-02/..\"").apply(&r).unwrap();
        assert_eq!(
            m.features,
            [
                "B04@2021-07-02",
                "B08@2021-07-02",
                "B04@2021-07-03",
                "B08@2021-07-03"
            ]
        );
        assert_eq!(m.data.row(1).to_vec(), [10.1, 11.1, 20.1, 21.1]);
        let m = node("times = [\"2021-07-03\", \"../2021-07-01\"]")
            .apply(&r)
            .unwrap();
        assert_eq!(
            m.features,
            [
                "B04@2021-07-01",
                "B08@2021-07-01",
                "B04@2021-07-03",
                "B08@2021-07-03"
            ]
        );
        assert_eq!(m.data.row(0).to_vec(), [0.0, 1.0, 20.0, 21.0]);
        let e = node("time = \"2021-07-04\"").apply(&r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "flatten: `time = \"2021-07-04\"` selects none of the 3 time step(s); the dates \
             available: 2021-07-01, 2021-07-02, 2021-07-03"
        );
        assert_eq!(NodeError::from(e).exit_code().code(), 3);
        // Two steps of one date are told apart by their time.
        let mut r = three_dates();
        r.times[2] = "2021-07-02T18:30:00+00:00".into();
        let m = node("time = \"2021-07-02\"").apply(&r).unwrap();
        assert_eq!(
            m.features,
            [
                "B04@2021-07-02T15:00:00Z",
                "B08@2021-07-02T15:00:00Z",
                "B04@2021-07-02T18:30:00Z",
                "B08@2021-07-02T18:30:00Z"
            ]
        );
    }

    #[test]
    fn the_estimate_counts_the_steps_chosen() {
        let r = three_dates();
        let shape = Shape::of(&Value::Raster(r));
        let known = Known {
            shapes: vec![("input".into(), shape.clone())],
            ..Known::default()
        };
        let features = |src: &str| {
            let e = node(src).estimate(&known).unwrap();
            e.output.pixels().unwrap().bands
        };
        assert_eq!(features(""), 6);
        assert_eq!(features("time = 1"), 2);
        assert_eq!(features("time = \"2021-07-02/..\""), 4);
        assert_eq!(features("times = [\"2021-07-01\"]"), 2);
        // Without the labels, at most every step.
        let mut p = shape.pixels().unwrap().clone();
        p.time_labels.clear();
        let known = Known {
            shapes: vec![("input".into(), Shape::Pixels(p))],
            ..Known::default()
        };
        let e = node("time = \"2021-07-02\"").estimate(&known).unwrap();
        assert_eq!(e.output.pixels().unwrap().bands, 6);
    }

    #[test]
    fn time_param() {
        assert!(build("").is_ok());
        assert!(build("time = \"all\"").is_ok());
        assert!(build("time = 0").is_ok());
        assert_eq!(
            build("time = -1").err().unwrap().param.as_deref(),
            Some("time")
        );
        assert_eq!(
            build("time = \"first\"").err().unwrap().param.as_deref(),
            Some("time")
        );
        assert_eq!(
            build("time = 1.5").err().unwrap().param.as_deref(),
            Some("time")
        );
        assert!(build("time = \"2021-07-15\"").is_ok());
        assert!(build("time = \"../2021-07-31\"").is_ok());
        assert!(build("times = [\"2021-07-05\", \"2021-07-15\"]").is_ok());
        assert!(build("time = \"all\"\ntimes = [\"2021-07-05\"]").is_ok());
        for (src, param) in [
            ("time = \"2021-07-32\"", "time"),
            ("time = \"2021-08-01/2021-07-01\"", "time"),
            ("times = [\"2021-07-05\", \"15 July\"]", "times"),
            ("times = []", "times"),
            ("time = 0\ntimes = [\"2021-07-05\"]", "times"),
        ] {
            let e = build(src).err().unwrap();
            assert_eq!(e.param.as_deref(), Some(param), "{src}: {e}");
        }
        let e = build("time = \"2021-07-32\"").err().unwrap();
        assert!(e.message.contains("`2021-07-32` is not a date"), "{e}");
    }
}
