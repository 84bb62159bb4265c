//! The `mask-nodata` kind: nodata and out-of-range values to NaN, and optionally the Sentinel-2
//! scene classification (SCL) and / or a bit-packed quality band (Landsat Collection 2
//! `QA_PIXEL`, [`bits`]) as a cloud / shadow mask.

mod bits;

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    DeclaredParams, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, Port, Raster,
    RunContext, Signature, Value, ValueType,
};
use ndarray::Array2;
use rayon::prelude::*;

use crate::alloc::{self, AllocError};
use bits::{BitMask, Verdict};

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
        /// a bit-packed quality band to mask with (then dropped): `"landsat-c2-qa"` (band
        /// `qa_pixel`, Landsat Collection 2 QA_PIXEL bits 0 fill, 1 dilated cloud, 2 cirrus,
        /// 3 cloud, 4 cloud shadow; 5 snow, 6 clear, 7 water kept), or `{ band = "qa", mask =
        /// [3, 4], fields = [{ bits = [8, 9], min = 3 }] }`: masked where a listed bit is set, a
        /// field (bits first..=last as a number) is at least `min`, or the band is NaN; bits
        /// 0..=23; `preset = "landsat-c2-qa"` in the table adds the preset's band and bits
        bits: Option<toml::Value>,
        /// grow the SCL / bit mask by this many pixels (a windowed run dilates each window on
        /// its own: a mask does not grow across window edges)
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
    bits: Option<BitMask>,
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
        let bits = self.bits.as_ref().map(BitMask::parse).transpose()?;
        if let (Some(scl), Some(b)) = (&self.scl, &bits) {
            if scl.eq_ignore_ascii_case(&b.band) {
                return Err(ParamError::new(
                    "bits",
                    format!("`bits` and `scl` both name band `{scl}`: each needs its own band"),
                ));
            }
        }
        Ok(ValidMask {
            nodata: self.nodata.map(|n| n as f32),
            valid_range,
            scl: self.scl,
            scl_classes,
            bits,
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
         scene classification band is one of `scl_classes`, and with `bits` where a bit-packed quality \
         band (Landsat's QA_PIXEL: `bits = \"landsat-c2-qa\"`) has a masking bit set or is NaN; the \
         mask (the union of both when both are given) is optionally dilated, and the SCL and quality \
         bands are dropped."
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
        // Exactly so without `dilate`. With it, a window is dilated on its own: a masked pixel
        // in the next window does not grow into this one (there is no halo yet).
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

/// The index of band `name`, named by param `param`, or an error listing the raster's bands.
fn band_of(input: &Raster, name: &str, param: &str, hint: &str) -> Result<usize, NodeError> {
    input.band_index(name).ok_or_else(|| {
        let names: Vec<&str> = input.bands.iter().map(|b| b.name.as_str()).collect();
        NodeError::InvalidData(format!(
            "mask-nodata: param `{param}` names band `{name}`{hint}, which the raster does not \
             have; its bands are {}",
            names.join(", ")
        ))
    })
}

/// The output raster of `data`, holding the bands `keep` of `input`.
fn output(input: &Raster, data: ndarray::Array4<f32>, keep: &[usize]) -> Raster {
    Raster {
        data,
        grid: input.grid.clone(),
        bands: keep.iter().map(|&b| input.bands[b].clone()).collect(),
        times: input.times.clone(),
    }
}

impl MaskNode {
    /// The bands the mask reads (SCL, then the quality band of `bits`), which the output drops.
    fn mask_bands(&self, input: &Raster) -> Result<(Option<usize>, Option<usize>), NodeError> {
        let p = &self.params;
        let scl = match &p.scl {
            None => None,
            Some(name) => Some(band_of(input, name, "scl", "")?),
        };
        let qa = match &p.bits {
            None => None,
            Some(b) => {
                let hint = match b.preset {
                    Some(preset) => format!(
                        " (preset `{preset}`: stack its asset `{}` with the others)",
                        b.band
                    ),
                    None => String::new(),
                };
                Some(band_of(input, &b.band, "bits", &hint)?)
            }
        };
        if let (Some(s), Some(q)) = (scl, qa) {
            if s == q {
                return Err(NodeError::InvalidData(format!(
                    "mask-nodata: `scl` and `bits` both read band `{}`",
                    input.bands[s].name
                )));
            }
        }
        Ok((scl, qa))
    }

    fn mask(&self, input: &Raster) -> Result<Raster, NodeError> {
        let p = &self.params;
        let (scl_index, qa_index) = self.mask_bands(input)?;
        let keep: Vec<usize> = (0..input.bands.len())
            .filter(|&b| Some(b) != scl_index && Some(b) != qa_index)
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
        if scl_index.is_none() && qa_index.is_none() {
            return Ok(output(input, data, &keep));
        }
        // SCL classes and quality bits, per time step.
        for (t, mut cube) in data.outer_iter_mut().enumerate() {
            let plane = || format!("the cloud mask of {h} x {w} pixels");
            let mut hit = alloc::array2((h, w), false).map_err(|e| too_large(plane(), e))?;
            if let Some(si) = scl_index {
                let scl = input.data.slice(ndarray::s![t, si, .., ..]);
                ndarray::Zip::from(&mut hit).and(&scl).for_each(|m, &v| {
                    *m = v.is_finite() && p.scl_classes.contains(&(v.round() as i64));
                });
            }
            if let (Some(qi), Some(bits)) = (qa_index, &p.bits) {
                let qa = input.data.slice(ndarray::s![t, qi, .., ..]);
                let mut not_bits: Option<f32> = None;
                ndarray::Zip::from(&mut hit)
                    .and(&qa)
                    .for_each(|m, &v| match bits.verdict(v) {
                        Verdict::Mask => *m = true,
                        Verdict::Keep => {}
                        Verdict::NotBits => {
                            not_bits.get_or_insert(v);
                        }
                    });
                if let Some(v) = not_bits {
                    return Err(NodeError::InvalidData(format!(
                        "mask-nodata: band `{}` of `bits` holds {v} (time step {}), which is no \
                         bit field: quality values must be integers 0..=16777215; read the band \
                         without scale or offset and with nearest resampling",
                        input.bands[qi].name,
                        input.times.get(t).map_or("?", String::as_str)
                    )));
                }
            }
            let hit = dilate(hit, p.dilate).map_err(|e| too_large(plane(), e))?;
            for mut band in cube.outer_iter_mut() {
                ndarray::Zip::from(&mut band).and(&hit).for_each(|v, &m| {
                    if m {
                        *v = f32::NAN;
                    }
                });
            }
        }
        Ok(output(input, data, &keep))
    }

    /// Bands the output drops: SCL and the quality band of `bits`.
    fn dropped(&self) -> usize {
        usize::from(self.params.scl.is_some()) + usize::from(self.params.bits.is_some())
    }
}

impl Node for MaskNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        let bands = p.bands.saturating_sub(self.dropped());
        let mut est = Estimate::of(Shape::Pixels(p.reshaped(ValueType::Raster, p.times, bands)));
        if self.dropped() > 0 {
            // One byte a pixel for the mask of a time step, three while it is dilated.
            let planes = if self.params.dilate > 0 { 3 } else { 1 };
            est.working_bytes = (p.grid.len() as u64).saturating_mul(planes);
        }
        Some(est)
    }

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
        for text in [
            "bits = { band = \"qa\", mask = [32] }",
            "bits = \"landsat\"",
            "scl = \"QA\"\nbits = { band = \"qa\", mask = [3] }",
        ] {
            let params: Params = toml::from_str(text).unwrap();
            let e = MaskKind.build(&params).err().unwrap();
            assert_eq!(e.param.as_deref(), Some("bits"), "{text}: {e}");
        }
    }

    /// A Landsat-like raster: red and nir08 (values 1..), then qa_pixel (one time step, 2 x 4):
    /// clear, water, cloud, shadow / fill, dilated cloud, cirrus, NaN (outside the footprint).
    fn landsat() -> Raster {
        let qa = [
            21824.0,
            21952.0,
            22280.0,
            23888.0,
            1.0,
            21762.0,
            54596.0,
            f32::NAN,
        ];
        let mut data = Array4::<f32>::zeros((1, 3, 2, 4));
        for (i, v) in data.iter_mut().enumerate() {
            *v = (i + 1) as f32;
        }
        for (i, v) in data
            .slice_mut(ndarray::s![0, 2, .., ..])
            .iter_mut()
            .enumerate()
        {
            *v = qa[i];
        }
        let bands = [("red", "red"), ("nir08", "nir08"), ("qa_pixel", "")]
            .iter()
            .map(|(n, c)| BandInfo {
                name: n.to_string(),
                common_name: (!c.is_empty()).then(|| c.to_string()),
                ..Default::default()
            })
            .collect();
        Raster {
            data,
            grid: Grid::north_up("EPSG:32618", 0.0, 60.0, 30.0, 4, 2),
            bands,
            times: vec!["2021-08-03T15:30:00Z".into()],
        }
    }

    /// Which pixels of the first output band are NaN, row-major.
    fn masked(out: &Raster) -> Vec<bool> {
        out.data
            .slice(ndarray::s![0, 0, .., ..])
            .iter()
            .map(|v| v.is_nan())
            .collect()
    }

    #[test]
    fn the_landsat_preset_masks_every_band_where_a_bit_is_set_and_drops_qa() {
        let out = node("bits = \"landsat-c2-qa\"").mask(&landsat()).unwrap();
        assert_eq!(out.data.shape(), &[1, 2, 2, 4]);
        let names: Vec<&str> = out.bands.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["red", "nir08"]);
        let want = [false, false, true, true, true, true, true, true];
        assert_eq!(masked(&out), want);
        // Both bands alike; the kept pixels keep their values.
        for (i, &m) in want.iter().enumerate() {
            let (y, x) = (i / 4, i % 4);
            for b in 0..2 {
                let v = out.data[[0, b, y, x]];
                assert_eq!(v.is_nan(), m, "band {b} pixel {i}");
                if !m {
                    assert_eq!(v, (b * 8 + i + 1) as f32);
                }
            }
        }
    }

    #[test]
    fn an_explicit_bit_list_masks_only_those_bits_and_fields_mask_by_confidence() {
        let cloud = node("bits = { band = \"qa_pixel\", mask = [3] }")
            .mask(&landsat())
            .unwrap();
        // Cloud, and the NaN quality value.
        let want = [false, false, true, false, false, false, false, true];
        assert_eq!(masked(&cloud), want);
        // Cloud shadow confidence high (bits 10-11 = 3): the shadow pixel only.
        let shadow =
            node("bits = { band = \"QA_PIXEL\", fields = [{ bits = [10, 11], min = 3 }] }")
                .mask(&landsat())
                .unwrap();
        let want = [false, false, false, true, false, false, false, true];
        assert_eq!(masked(&shadow), want);
    }

    #[test]
    fn dilate_grows_the_bit_mask_and_scl_adds_to_it() {
        let mut r = landsat();
        // Only the cloud at (0, 2) and the NaN at (1, 3) mask with bit 3; dilated by one pixel,
        // columns 1..=3 of both rows are masked.
        let out = node("bits = { band = \"qa_pixel\", mask = [3] }\ndilate = 1")
            .mask(&r)
            .unwrap();
        assert_eq!(
            masked(&out),
            [false, true, true, true, false, true, true, true]
        );
        // The nir08 band read as an SCL band: class 1 at (0, 0) joins the mask.
        r.bands[1].name = "SCL".into();
        let out =
            node("scl = \"SCL\"\nscl_classes = [9]\nbits = { band = \"qa_pixel\", mask = [3] }")
                .mask(&r)
                .unwrap();
        assert_eq!(out.data.shape(), &[1, 1, 2, 4]);
        assert_eq!(
            masked(&out),
            [true, false, true, false, false, false, false, true]
        );
    }

    #[test]
    fn quality_values_that_are_no_bits_are_invalid_data() {
        for v in [-1.0, 0.5, f32::INFINITY, 1.0e8] {
            let mut r = landsat();
            r.data[[0, 2, 0, 0]] = v;
            let err = node("bits = \"landsat-c2-qa\"").mask(&r).unwrap_err();
            assert!(
                matches!(err, NodeError::InvalidData(ref m)
                    if m.contains("band `qa_pixel`") && m.contains("no bit field")),
                "{v}: {err}"
            );
        }
    }

    #[test]
    fn a_missing_quality_band_names_the_param_and_the_bands() {
        let mut r = landsat();
        r.bands[2].name = "QA".into();
        let err = node("bits = \"landsat-c2-qa\"").mask(&r).unwrap_err();
        assert!(
            matches!(err, NodeError::InvalidData(ref m)
                if m.contains("param `bits` names band `qa_pixel`")
                    && m.contains("preset `landsat-c2-qa`")
                    && m.contains("red, nir08, QA")),
            "{err}"
        );
        // The same band through its name for `scl` and its common name for `bits`.
        let mut r = landsat();
        r.bands[0].common_name = Some("r".into());
        let err = node("scl = \"red\"\nbits = { band = \"r\", mask = [0] }")
            .mask(&r)
            .unwrap_err();
        assert!(matches!(err, NodeError::InvalidData(_)), "{err}");
    }

    #[test]
    fn the_estimate_drops_the_mask_bands() {
        use flow_core::estimate::Pixels;
        let grid = Grid::north_up("EPSG:32618", 0.0, 60.0, 30.0, 4, 2);
        let known = Known {
            shapes: vec![(
                "input".into(),
                Shape::Pixels(Pixels::whole(ValueType::Raster, 2, 5, grid)),
            )],
            ..Default::default()
        };
        let bands = |text: &str| {
            let e = node(text).estimate(&known).unwrap();
            (e.output.pixels().unwrap().bands, e.working_bytes)
        };
        assert_eq!(bands("nodata = 0"), (5, 0));
        assert_eq!(bands("bits = \"landsat-c2-qa\""), (4, 8));
        assert_eq!(
            bands("scl = \"SCL\"\nbits = \"landsat-c2-qa\"\ndilate = 2"),
            (3, 24)
        );
    }
}
