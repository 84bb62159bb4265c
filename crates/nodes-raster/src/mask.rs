//! The `mask-nodata` kind: nodata and out-of-range values to NaN, and optionally the Sentinel-2
//! scene classification (SCL) as a cloud / shadow mask.

use flow_core::{
    DeclaredParams, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, Port, Raster,
    RunContext, Signature, Value, ValueType,
};
use ndarray::Array2;
use rayon::prelude::*;

use crate::alloc::{self, AllocError};

/// The `mask-nodata` node kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct MaskKind;

flow_core::params! {
    /// `mask-nodata` parameters as written in the recipe.
    struct MaskParams {
        /// values equal to this become NaN
        nodata: Option<f64>,
        /// [min, max]; values outside become NaN
        valid_range: Option<Vec<f64>>,
        /// name of the Sentinel-2 SCL band to mask with (then dropped)
        scl: Option<String>,
        /// SCL classes to mask (3 shadow, 8/9 cloud, 10 cirrus)
        scl_classes: Vec<i64> = DEFAULT_SCL_CLASSES.to_vec(),
        /// grow the SCL mask by this many pixels
        dilate: i64 = 0,
    }
}

/// Validated `mask-nodata` parameters.
#[derive(Debug, Clone, PartialEq)]
struct ValidMask {
    nodata: Option<f32>,
    valid_range: Option<(f32, f32)>,
    scl: Option<String>,
    scl_classes: Vec<i64>,
    dilate: usize,
}

/// The SCL classes masked by default: cloud shadow, cloud medium / high probability, thin cirrus.
pub const DEFAULT_SCL_CLASSES: [i64; 4] = [3, 8, 9, 10];

impl MaskParams {
    fn validate(self) -> Result<ValidMask, ParamError> {
        let valid_range = match self.valid_range {
            None => None,
            Some(v) if v.len() == 2 && v[0] <= v[1] && !v.iter().any(|x| x.is_nan()) => {
                Some((v[0] as f32, v[1] as f32))
            }
            Some(v) => {
                return Err(ParamError::new(
                    "valid_range",
                    format!("`valid_range` must be [min, max] with min <= max, got {v:?}"),
                ))
            }
        };
        if let Some(n) = self.nodata {
            if n.is_nan() {
                return Err(ParamError::new(
                    "nodata",
                    "`nodata` must be a number (NaN is already nodata)",
                ));
            }
        }
        let scl_classes = self.scl_classes;
        if scl_classes.iter().any(|c| !(0..=255).contains(c)) {
            return Err(ParamError::new(
                "scl_classes",
                "SCL classes are integers 0..=255",
            ));
        }
        let dilate = match self.dilate {
            d if (0..=1000).contains(&d) => d as usize,
            d => {
                return Err(ParamError::new(
                    "dilate",
                    format!("`dilate` must be 0..=1000 pixels, got {d}"),
                ))
            }
        };
        if self.scl.as_deref() == Some("") {
            return Err(ParamError::new(
                "scl",
                "`scl` names a band and cannot be empty",
            ));
        }
        Ok(ValidMask {
            nodata: self.nodata.map(|n| n as f32),
            valid_range,
            scl: self.scl,
            scl_classes,
            dilate,
        })
    }
}

impl NodeKind for MaskKind {
    fn name(&self) -> &str {
        "mask-nodata"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Turns nodata and out-of-range values into NaN; with `scl`, masks every band where the Sentinel-2 \
         scene classification band is one of `scl_classes` (optionally dilated) and drops the SCL band."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Raster,
                "the raster to mask",
            )],
            output: ValueType::Raster,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        MaskParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let p = MaskParams::parse(params)?;
        Ok(Box::new(MaskNode {
            params: p.validate()?,
        }))
    }

    fn pixel_local(&self) -> bool {
        // Exactly so without `dilate`; with it, a window needs a halo of `dilate` pixels.
        true
    }
}

/// A built `mask-nodata` node.
struct MaskNode {
    params: ValidMask,
}

/// Grows a mask by `r` pixels (a square structuring element).
fn dilate(mask: Array2<bool>, r: usize) -> Result<Array2<bool>, AllocError> {
    if r == 0 {
        return Ok(mask);
    }
    let (h, w) = mask.dim();
    // Separable: rows then columns.
    let mut tmp = alloc::array2((h, w), false)?;
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(r), (x + r).min(w - 1));
            tmp[[y, x]] = (a..=b).any(|i| mask[[y, i]]);
        }
    }
    let mut out = alloc::array2((h, w), false)?;
    for y in 0..h {
        let (a, b) = (y.saturating_sub(r), (y + r).min(h - 1));
        for x in 0..w {
            out[[y, x]] = (a..=b).any(|j| tmp[[j, x]]);
        }
    }
    Ok(out)
}

/// The error of a buffer of `what` that cannot be allocated.
fn too_large(what: String, e: AllocError) -> NodeError {
    NodeError::InvalidData(format!("mask-nodata: {what} {e}"))
}

impl MaskNode {
    fn mask(&self, input: &Raster) -> Result<Raster, NodeError> {
        let p = &self.params;
        let scl_index = match &p.scl {
            None => None,
            Some(name) => Some(input.band_index(name).ok_or_else(|| {
                let names: Vec<&str> = input.bands.iter().map(|b| b.name.as_str()).collect();
                NodeError::InvalidData(format!(
                    "mask-nodata: no band `{name}` to use as SCL; the raster has {}",
                    names.join(", ")
                ))
            })?),
        };
        let keep: Vec<usize> = (0..input.bands.len())
            .filter(|&b| Some(b) != scl_index)
            .collect();
        let (nt, _, h, w) = input.data.dim();
        let shape = (nt, keep.len(), h, w);
        let mut data = alloc::array4(shape, f32::NAN).map_err(|e| {
            too_large(
                format!(
                    "the output of {nt} time(s) x {} band(s) x {h} x {w} pixels (f32)",
                    keep.len()
                ),
                e,
            )
        })?;
        for (k, &b) in keep.iter().enumerate() {
            data.slice_mut(ndarray::s![.., k, .., ..])
                .assign(&input.data.slice(ndarray::s![.., b, .., ..]));
        }
        // Values: nodata and range.
        if p.nodata.is_some() || p.valid_range.is_some() {
            let (nodata, range) = (p.nodata, p.valid_range);
            data.as_slice_memory_order_mut()
                .ok_or_else(|| NodeError::Failed("mask-nodata: array is not contiguous".into()))?
                .par_chunks_mut(1 << 16)
                .for_each(|chunk| {
                    for v in chunk {
                        let bad = nodata.is_some_and(|n| *v == n)
                            || range.is_some_and(|(lo, hi)| *v < lo || *v > hi);
                        if bad {
                            *v = f32::NAN;
                        }
                    }
                });
        }
        // SCL classes, per time step.
        if let Some(si) = scl_index {
            for (t, mut cube) in data.outer_iter_mut().enumerate() {
                let scl = input.data.slice(ndarray::s![t, si, .., ..]);
                let plane = || format!("the SCL mask of {h} x {w} pixels");
                let mut hit = alloc::array2((h, w), false).map_err(|e| too_large(plane(), e))?;
                ndarray::Zip::from(&mut hit).and(&scl).for_each(|m, &v| {
                    *m = v.is_finite() && p.scl_classes.contains(&(v.round() as i64));
                });
                let hit = dilate(hit, p.dilate).map_err(|e| too_large(plane(), e))?;
                for mut band in cube.outer_iter_mut() {
                    ndarray::Zip::from(&mut band).and(&hit).for_each(|v, &m| {
                        if m {
                            *v = f32::NAN;
                        }
                    });
                }
            }
        }
        let bands = keep.iter().map(|&b| input.bands[b].clone()).collect();
        Ok(Raster {
            data,
            grid: input.grid.clone(),
            bands,
            times: input.times.clone(),
        })
    }
}

impl Node for MaskNode {
    fn run(&self, _ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let input = inputs.raster("input")?;
        Ok(Value::Raster(self.mask(input)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::{BandInfo, Grid};
    use ndarray::Array4;

    fn raster() -> Raster {
        let mut data = Array4::<f32>::zeros((1, 3, 3, 3));
        for (i, v) in data.iter_mut().enumerate() {
            *v = i as f32;
        }
        // SCL band: a cloud (9) in the centre.
        data.slice_mut(ndarray::s![0, 2, .., ..]).fill(4.0);
        data[[0, 2, 1, 1]] = 9.0;
        let bands = ["B04", "B08", "SCL"]
            .iter()
            .map(|n| BandInfo {
                name: n.to_string(),
                ..Default::default()
            })
            .collect();
        Raster {
            data,
            grid: Grid::north_up("EPSG:32618", 0.0, 30.0, 10.0, 3, 3),
            bands,
            times: vec!["t".into()],
        }
    }

    fn node(toml_text: &str) -> MaskNode {
        let params: Params = toml::from_str(toml_text).unwrap();
        let p = MaskParams::parse(&params).unwrap();
        MaskNode {
            params: p.validate().unwrap(),
        }
    }

    #[test]
    fn nodata_and_range_become_nan() {
        let out = node("nodata = 0.0\nvalid_range = [0, 12]")
            .mask(&raster())
            .unwrap();
        assert_eq!(out.data.shape(), &[1, 3, 3, 3]);
        assert!(out.data[[0, 0, 0, 0]].is_nan());
        assert_eq!(out.data[[0, 0, 0, 1]], 1.0);
        assert!(out.data[[0, 1, 1, 1]].is_nan()); // 13 > 12
    }

    #[test]
    fn scl_masks_all_bands_and_is_dropped() {
        let out = node("scl = \"SCL\"").mask(&raster()).unwrap();
        assert_eq!(out.data.shape(), &[1, 2, 3, 3]);
        assert_eq!(
            out.bands
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>(),
            ["B04", "B08"]
        );
        assert!(out.data[[0, 0, 1, 1]].is_nan() && out.data[[0, 1, 1, 1]].is_nan());
        assert_eq!(out.data.iter().filter(|v| v.is_nan()).count(), 2);
        let dilated = node("scl = \"SCL\"\ndilate = 1").mask(&raster()).unwrap();
        assert!(dilated.data.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn unknown_scl_band_is_invalid_data() {
        let err = node("scl = \"XX\"").mask(&raster()).unwrap_err();
        assert!(
            matches!(err, NodeError::InvalidData(ref m) if m.contains("B04, B08, SCL")),
            "{err}"
        );
    }

    #[test]
    fn bad_params_are_refused() {
        let params: Params = toml::from_str("valid_range = [3, 1]").unwrap();
        assert!(MaskKind.build(&params).is_err());
        let params: Params = toml::from_str("dilate = -1").unwrap();
        assert!(MaskKind.build(&params).is_err());
    }
}
