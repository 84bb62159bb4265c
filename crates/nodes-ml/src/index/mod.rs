//! `add-index`: spectral indices and band math, appended to a raster as new bands.
//!
//! Bands are found by name or common name (`nir`, `red`, ...), falling back to Sentinel-2 asset
//! keys (`B08`, `B04`, ...) and back. Results are NaN wherever they are undefined (0/0, a NaN
//! input, an infinite value).
//!
//! Scale: the normalized differences (NDVI, NDWI, MNDWI, NDBI, NDMI, NBR, GNDVI) do not change
//! when all bands are multiplied by one factor, so they give the same values on raw digital
//! numbers (0..10000) and on reflectance (0..1). SAVI and EVI contain additive constants that
//! assume reflectance in [0, 1]: the node warns when their bands go beyond 1.5. After a
//! per-band or offset-shifting `normalize` no index keeps its physical meaning; compute indices
//! before normalizing when that matters.

pub mod expr;
pub mod formulas;
mod hyperparams;

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    BandInfo, DeclaredParams, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params,
    Port, Raster, RunContext, Signature, Value, ValueType,
};
use ndarray::{s, Array4, Axis};
use rayon::prelude::*;

use crate::common::{band_list, finite_or_nan, resolve_band, CHUNK};
use crate::error::MlError;

pub use hyperparams::{AddIndexParams, AddIndexValidParams, NewBand};

/// The `add-index` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddIndexKind;

impl NodeKind for AddIndexKind {
    fn name(&self) -> &str {
        "add-index"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Appends spectral indices (NDVI, GNDVI, NDWI, MNDWI, NDBI, NDMI, NBR, SAVI, EVI) and band-math \
         expressions as new bands. Bands are found by name or common name (nir, red, green, blue, \
         swir16, swir22), falling back to Sentinel-2 keys (B08, B04, ...). NaN where undefined."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Raster,
                "the raster to extend",
            )],
            output: ValueType::Raster,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        AddIndexParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let params = AddIndexParams::parse(params)?.validate()?;
        Ok(Box::new(AddIndexNode { params }))
    }

    fn pixel_local(&self) -> bool {
        true
    }
}

/// A built `add-index` node.
#[derive(Debug, Clone)]
pub struct AddIndexNode {
    params: AddIndexValidParams,
}

impl AddIndexNode {
    /// A node with these parameters.
    pub fn new(params: AddIndexValidParams) -> Self {
        AddIndexNode { params }
    }

    /// Appends the bands to `raster`.
    ///
    /// # Errors
    /// [`MlError::MissingBand`] when a band an index or expression needs is absent,
    /// [`MlError::DuplicateBand`] when an output name is taken, [`MlError::Expr`] when an
    /// interpreted expression does not give a number.
    pub fn apply(&self, raster: &Raster, warn: &dyn Fn(String)) -> Result<Raster, MlError> {
        let (nt, nb, h, w) = raster.data.dim();
        let n_new = self.params.bands().len();
        let mut bands = raster.bands.clone();
        for new in self.params.bands() {
            if bands
                .iter()
                .any(|b| b.name.eq_ignore_ascii_case(new.name()))
            {
                return Err(MlError::DuplicateBand(new.name().into()));
            }
        }
        let mut out = Array4::<f32>::zeros((nt, nb + n_new, h, w));
        out.slice_mut(s![.., ..nb, .., ..]).assign(&raster.data);

        for (j, new) in self.params.bands().iter().enumerate() {
            let bi = nb + j;
            let (what, wanted): (String, Vec<&str>) = match new {
                NewBand::Index(i) => (i.name().to_string(), i.bands().to_vec()),
                NewBand::Expr(e) => (
                    format!("expression `{}`", e.name),
                    e.vars.iter().map(String::as_str).collect(),
                ),
            };
            let inputs = wanted
                .iter()
                .map(|name| {
                    resolve_band(&bands, name).ok_or_else(|| MlError::MissingBand {
                        what: what.clone(),
                        band: name.to_string(),
                        available: band_list(&bands),
                    })
                })
                .collect::<Result<Vec<usize>, _>>()?;
            let (left_mut, mut right) = out.view_mut().split_at(Axis(1), bi);
            let left = left_mut.view();
            if let NewBand::Index(i) = new {
                if i.needs_reflectance() {
                    let max = inputs
                        .iter()
                        .flat_map(|&b| left.index_axis(Axis(1), b).into_iter().copied())
                        .filter(|v| v.is_finite())
                        .fold(f32::NEG_INFINITY, f32::max);
                    if max > 1.5 {
                        warn(format!(
                            "add-index: {} assumes reflectance in [0, 1] but its bands reach {max}; \
                             compute it on scaled reflectance, before normalize",
                            i.name()
                        ));
                    }
                }
            }
            for t in 0..nt {
                let cols: Vec<std::borrow::Cow<'_, [f32]>> = inputs
                    .iter()
                    .map(|&b| {
                        let plane = left.slice_move(s![t, b, .., ..]);
                        match plane.to_slice() {
                            Some(sl) => std::borrow::Cow::Borrowed(sl),
                            None => std::borrow::Cow::Owned(plane.iter().copied().collect()),
                        }
                    })
                    .collect();
                let mut target = right.slice_mut(s![t, 0, .., ..]);
                let Some(o) = target.as_slice_mut() else {
                    return Err(MlError::Shape(
                        "add-index: output plane is not contiguous".into(),
                    ));
                };
                o.par_chunks_mut(CHUNK)
                    .enumerate()
                    .try_for_each(|(ci, oc)| {
                        let start = ci * CHUNK;
                        let ins: Vec<&[f32]> =
                            cols.iter().map(|c| &c[start..start + oc.len()]).collect();
                        match new {
                            NewBand::Index(i) => {
                                let mut v = [0.0f64; 4];
                                for (p, o) in oc.iter_mut().enumerate() {
                                    for (k, c) in ins.iter().enumerate() {
                                        v[k] = c[p] as f64;
                                    }
                                    *o = finite_or_nan(
                                        i.compute(&v[..ins.len()], self.params.savi_l()),
                                    );
                                }
                                Ok(())
                            }
                            NewBand::Expr(e) => {
                                e.eval_block(&ins, oc).map_err(|message| MlError::Expr {
                                    name: e.name.clone(),
                                    message,
                                })
                            }
                        }
                    })?;
            }
            bands.push(BandInfo {
                scaling: Default::default(),
                name: new.name().to_string(),
                common_name: None,
                wavelength: None,
            });
        }
        Ok(Raster {
            data: out,
            grid: raster.grid.clone(),
            bands,
            times: raster.times.clone(),
        })
    }
}

impl Node for AddIndexNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        let bands = p.bands + self.params.bands().len();
        Some(Estimate::of(Shape::Pixels(p.reshaped(
            ValueType::Raster,
            p.times,
            bands,
        ))))
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let raster = inputs.raster("input")?;
        Ok(Value::Raster(self.apply(raster, &|m| ctx.warn(m))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::raster;
    use std::cell::RefCell;

    fn node(src: &str) -> AddIndexNode {
        let params: Params = toml::from_str(src).unwrap();
        AddIndexNode::new(AddIndexParams::parse(&params).unwrap().validate().unwrap())
    }

    /// Bands B02 blue, B03 green, B04 red, B08 nir, B11 swir16, B12 swir22; 1 x 3 pixels.
    fn scene() -> Raster {
        #[rustfmt::skip]
        let v = vec![
            0.05, 0.0, f32::NAN, // B02
            0.2, 0.0, 0.1,       // B03
            0.1, 0.0, 0.1,       // B04
            0.5, 0.0, 0.3,       // B08
            0.3, 0.0, 0.2,       // B11
            0.2, 0.0, 0.1,       // B12
        ];
        raster(
            Array4::from_shape_vec((1, 6, 1, 3), v).unwrap(),
            &["B02", "B03", "B04", "B08", "B11", "B12"],
        )
    }

    fn band(r: &Raster, name: &str) -> Vec<f32> {
        let b = r.band_index(name).unwrap();
        r.data.index_axis(Axis(1), b).iter().copied().collect()
    }

    fn close(a: f32, b: f64) -> bool {
        (a as f64 - b).abs() < 1e-6
    }

    #[test]
    fn named_indices_on_known_values() {
        let n = node(r#"indices = ["ndvi", "NDWI", "MNDWI", "NDBI", "SAVI", "EVI", "NBR"]"#);
        let out = n.apply(&scene(), &|_| {}).unwrap();
        assert_eq!(out.bands.len(), 13);
        assert_eq!(out.bands[6].name, "NDVI");
        let ndvi = band(&out, "NDVI");
        assert!(close(ndvi[0], 0.666667), "{ndvi:?}");
        assert!(ndvi[1].is_nan(), "0/0 is NaN");
        assert!(close(ndvi[2], 0.5));
        assert!(close(band(&out, "NDWI")[0], -0.428571));
        assert!(close(band(&out, "MNDWI")[0], -0.2));
        assert!(close(band(&out, "NDBI")[0], -0.25));
        assert!(close(band(&out, "SAVI")[0], 0.545455));
        assert!(close(band(&out, "EVI")[0], 0.579710));
        assert!(band(&out, "EVI")[2].is_nan(), "NaN input gives NaN");
        assert!(close(band(&out, "NBR")[0], 0.428571));
        // the input bands are untouched
        assert_eq!(
            out.data.slice(s![.., ..6, .., ..]).mapv(f32::to_bits),
            scene().data.mapv(f32::to_bits)
        );
    }

    #[test]
    fn works_on_raw_digital_numbers_with_a_warning_for_savi() {
        let mut r = scene();
        r.data.mapv_inplace(|v| v * 10000.0);
        let warnings = RefCell::new(Vec::new());
        let out = node(r#"indices = ["NDVI", "SAVI"]"#)
            .apply(&r, &|m| warnings.borrow_mut().push(m))
            .unwrap();
        assert!(close(band(&out, "NDVI")[0], 0.666667));
        let w = warnings.into_inner();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("SAVI"));
    }

    #[test]
    fn resolves_common_names_without_s2_keys() {
        let mut r = scene();
        for b in &mut r.bands {
            b.name = b.common_name.take().unwrap();
        }
        let out = node(r#"indices = ["NDVI"]"#).apply(&r, &|_| {}).unwrap();
        assert!(close(band(&out, "NDVI")[0], 0.666667));
        let out = node(r#"expr = { D = "B08 - B04" }"#)
            .apply(&r, &|_| {})
            .unwrap();
        assert!(close(band(&out, "D")[0], 0.4));
    }

    #[test]
    fn band_math_expressions() {
        let n = node(
            r#"indices = ["NDVI"]
expr = { RATIO = "nir / red", ND = "(B08 - B04) / (B08 + B04)", TWICE = "NDVI * 2" }"#,
        );
        let out = n.apply(&scene(), &|_| {}).unwrap();
        let names: Vec<&str> = out.bands.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            &names[6..],
            ["NDVI", "RATIO", "ND", "TWICE"],
            "in the order written"
        );
        assert!(close(band(&out, "RATIO")[0], 5.0));
        assert!(band(&out, "RATIO")[1].is_nan());
        assert_eq!(band(&out, "ND")[0], band(&out, "NDVI")[0]);
        assert!(close(band(&out, "TWICE")[0], 2.0 * 0.666667));
    }

    #[test]
    fn missing_band_names_index_band_and_available_bands() {
        let r = raster(Array4::zeros((1, 2, 1, 1)), &["B02", "B04"]);
        let e = node(r#"indices = ["NDVI"]"#)
            .apply(&r, &|_| {})
            .unwrap_err();
        let msg = NodeError::from(e).to_string();
        assert!(
            msg.contains("NDVI") && msg.contains("`nir`") && msg.contains("B02 (blue), B04 (red)"),
            "{msg}"
        );
        let e = node(r#"expr = { X = "B99 + 1" }"#)
            .apply(&r, &|_| {})
            .unwrap_err();
        assert!(e.to_string().contains("B99"), "{e}");
    }

    #[test]
    fn param_errors() {
        let build = |src: &str| {
            AddIndexKind
                .build(&toml::from_str(src).unwrap())
                .err()
                .expect(src)
        };
        let e = build(r#"indices = ["NDVX"]"#);
        assert_eq!(e.param.as_deref(), Some("indices"));
        assert_eq!(e.help.as_deref(), Some("did you mean `NDVI`?"));
        assert_eq!(
            build(r#"expr = { A = "nir -" }"#).param.as_deref(),
            Some("expr")
        );
        assert_eq!(build(r#"expr = { A = 3 }"#).param.as_deref(), Some("expr"));
        assert_eq!(build("").param, None);
        let r = scene();
        let e = node(r#"expr = { B04 = "nir" }"#)
            .apply(&r, &|_| {})
            .unwrap_err();
        assert!(matches!(e, MlError::DuplicateBand(_)));
    }

    #[test]
    fn two_time_steps_and_many_pixels() {
        let (h, w) = (97, 131);
        let mut data = Array4::<f32>::zeros((2, 2, h, w));
        for ((t, b, y, x), v) in data.indexed_iter_mut() {
            *v = 0.01 + (t + 2 * b + y + x) as f32 * 0.001;
        }
        let r = raster(data, &["B04", "B08"]);
        let out = node(
            r#"indices = ["NDVI"]
expr = { S = "nir + red" }"#,
        )
        .apply(&r, &|_| {})
        .unwrap();
        for t in 0..2 {
            for (y, x) in [(0, 0), (50, 77), (h - 1, w - 1)] {
                let red = r.data[[t, 0, y, x]] as f64;
                let nir = r.data[[t, 1, y, x]] as f64;
                assert!(close(out.data[[t, 2, y, x]], (nir - red) / (nir + red)));
                assert!(close(out.data[[t, 3, y, x]], nir + red));
            }
        }
    }
}
