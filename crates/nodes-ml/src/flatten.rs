//! `flatten`: a raster cube to a pixels x features matrix, one row per fully valid pixel.

use flow_core::estimate::{Estimate, Known, Shape};
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
    /// `"all"`.
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
        /// a time index (integer from 0), or "all" for every time step as extra features
        pub time: TimeParam = TimeParam::Name("all".into()),
    }
}

/// Validated time selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSelection {
    /// Every time step, as extra features `BAND@t0`, `BAND@t1`, ... (plain band names when there
    /// is a single time step).
    All,
    /// One time step; features are the band names.
    Index(usize),
}

impl FlattenParams {
    /// Checks `time`.
    ///
    /// # Errors
    /// A [`ParamError`] on `time` when it is negative or a string other than `"all"`.
    pub fn validate(self) -> Result<TimeSelection, ParamError> {
        match self.time {
            TimeParam::Name(s) if s.eq_ignore_ascii_case("all") => Ok(TimeSelection::All),
            TimeParam::Name(s) => Err(ParamError::new(
                "time",
                format!("`time` must be a time index or \"all\", got \"{s}\""),
            )),
            TimeParam::Index(i) => usize::try_from(i)
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
        1
    }

    fn doc(&self) -> &str {
        "Turns a raster into a pixels x features matrix: one row per pixel whose features are all \
         finite (row-major order), features = bands (x time steps as BAND@t0, BAND@t1, ... when \
         time = \"all\" and there are several). The validity mask and grid travel with the matrix."
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
            .map_err(|e| {
                ParamError::new("time", format!("`time` must be an integer or \"all\": {e}"))
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

    /// Flattens `raster`.
    ///
    /// # Errors
    /// [`MlError::TimeOutOfRange`] for a time index beyond the raster's.
    pub fn apply(&self, raster: &Raster) -> Result<Matrix, MlError> {
        let (nt, nb, h, w) = raster.data.dim();
        let times: Vec<usize> = match self.time {
            TimeSelection::All => (0..nt).collect(),
            TimeSelection::Index(i) if i < nt => vec![i],
            TimeSelection::Index(index) => {
                return Err(MlError::TimeOutOfRange { index, times: nt })
            }
        };
        let suffix = times.len() > 1;
        let mut features = Vec::with_capacity(times.len() * nb);
        let mut planes = Vec::with_capacity(times.len() * nb);
        for &t in &times {
            for b in 0..nb {
                let name = raster
                    .bands
                    .get(b)
                    .map_or_else(|| format!("band{b}"), |i| i.name.clone());
                features.push(if suffix { format!("{name}@t{t}") } else { name });
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
        Ok(Matrix {
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
        let features = p.times * p.bands;
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
        assert_eq!(m.features, ["B04@t0", "B04@t1"]);
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
    }
}
