//! Small helpers shared by the kinds of this crate.

use flow_core::{BandInfo, ParamError};

/// Rows (or pixels) per parallel work item. Fixed, so that every reduction combines the same
/// partial results in the same order whatever the number of rayon threads: results are identical
/// bit for bit with 1 or 64 threads.
pub(crate) const CHUNK: usize = 8192;

/// `$f::<N>(args...)` monomorphized for a feature count `$n` of 1 to 16, else `$fallback`: the
/// dispatch of the per-feature-count kernels (fixed-size arrays the compiler keeps in registers).
macro_rules! with_feature_count {
    ($n:expr, $f:ident ($($arg:expr),* $(,)?), $fallback:expr) => {
        $crate::common::with_feature_count!(@ $n, $f, ($($arg),*), $fallback,
            1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    };
    (@ $n:expr, $f:ident, $args:tt, $fallback:expr, $($k:literal)*) => {
        match $n {
            $($k => $f::<$k> $args,)*
            _ => $fallback,
        }
    };
}
pub(crate) use with_feature_count;

/// Reads a two-element array parameter such as `range = [0, 255]`, requiring `lo < hi`.
pub(crate) fn pair(values: &[f64], param: &str) -> Result<(f64, f64), ParamError> {
    // Pixels are f32: the bounds, their difference and their order must hold in f32, or
    // normalizing overflows (1e39 is infinite in f32) or divides by zero.
    let fits = |lo: f64, hi: f64| {
        let (l, h) = (lo as f32, hi as f32);
        l.is_finite() && h.is_finite() && (h - l).is_finite() && l < h
    };
    match values {
        [lo, hi] if fits(*lo, *hi) => Ok((*lo, *hi)),
        [lo, hi] => Err(ParamError::new(
            param,
            format!(
                "`{param}` must be [lo, hi] with lo < hi as 32-bit floats, both and hi - lo \
                 within ±{:e}; got [{lo:?}, {hi:?}]",
                f32::MAX
            ),
        )),
        _ => Err(ParamError::new(
            param,
            format!(
                "`{param}` must have exactly two numbers, got {}",
                values.len()
            ),
        )),
    }
}

/// The raster's bands for messages: `B02 (blue), B03 (green), NDVI`.
pub(crate) fn band_list(bands: &[BandInfo]) -> String {
    if bands.is_empty() {
        return "none".into();
    }
    bands
        .iter()
        .map(|b| match &b.common_name {
            Some(c) if !c.eq_ignore_ascii_case(&b.name) => format!("{} ({c})", b.name),
            _ => b.name.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sentinel-2 asset keys and their eo:bands common names.
const S2_BANDS: &[(&str, &str)] = &[
    ("B01", "coastal"),
    ("B02", "blue"),
    ("B03", "green"),
    ("B04", "red"),
    ("B05", "rededge1"),
    ("B06", "rededge2"),
    ("B07", "rededge3"),
    ("B08", "nir"),
    ("B8A", "nir08"),
    ("B09", "nir09"),
    ("B11", "swir16"),
    ("B12", "swir22"),
];

/// Index of the band called `name`, matched against band names then common names
/// (case-insensitive), like [`flow_core::Raster::band_index`].
fn band_index(bands: &[BandInfo], name: &str) -> Option<usize> {
    bands
        .iter()
        .position(|b| b.name.eq_ignore_ascii_case(name))
        .or_else(|| {
            bands.iter().position(|b| {
                b.common_name
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(name))
            })
        })
}

/// Finds a band by name or common name, then through the Sentinel-2 table: common name `nir`
/// finds a band called `B08`, and `B08` finds a band whose common name is `nir`.
pub(crate) fn resolve_band(bands: &[BandInfo], name: &str) -> Option<usize> {
    band_index(bands, name).or_else(|| {
        S2_BANDS.iter().find_map(|(key, common)| {
            if common.eq_ignore_ascii_case(name) {
                band_index(bands, key)
            } else if key.eq_ignore_ascii_case(name) {
                band_index(bands, common)
            } else {
                None
            }
        })
    })
}

/// NaN for anything that is not finite (0/0, x/0, overflow).
#[inline]
pub(crate) fn finite_or_nan(v: f64) -> f32 {
    let v = v as f32;
    if v.is_finite() {
        v
    } else {
        f32::NAN
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Builders for tests.
    use flow_core::{BandInfo, Grid, Raster};
    use ndarray::Array4;

    /// A raster on a small north-up grid with the given band names (common names filled for
    /// Sentinel-2 keys).
    pub(crate) fn raster(data: Array4<f32>, bands: &[&str]) -> Raster {
        let (t, _, h, w) = data.dim();
        Raster {
            grid: Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, w, h),
            bands: bands
                .iter()
                .map(|b| BandInfo {
                    scaling: Default::default(),
                    name: b.to_string(),
                    common_name: super::S2_BANDS
                        .iter()
                        .find(|(k, _)| k == b)
                        .map(|(_, c)| c.to_string()),
                    wavelength: None,
                })
                .collect(),
            times: (0..t)
                .map(|i| format!("2021-07-{:02}T15:00:00Z", i + 1))
                .collect(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn pair_checks_order_and_length() {
        assert_eq!(pair(&[0.0, 255.0], "range").unwrap(), (0.0, 255.0));
        for bad in [
            [0.0, 1e39],
            [-3e38, 3e38],
            [1.0, 1.000_000_01],
            [f64::NAN, 1.0],
        ] {
            let e = pair(&bad, "range").unwrap_err();
            assert_eq!(e.param.as_deref(), Some("range"), "{bad:?}");
            assert!(e.message.contains("32-bit"), "{e}");
        }
        assert_eq!(
            pair(&[3.0, 1.0], "range").unwrap_err().param.as_deref(),
            Some("range")
        );
        assert!(pair(&[1.0], "range").is_err());
    }

    #[test]
    fn resolves_common_names_and_s2_keys() {
        let mut r = testutil::raster(Array4::zeros((1, 2, 1, 1)), &["B04", "B08"]);
        assert_eq!(resolve_band(&r.bands, "red"), Some(0));
        assert_eq!(resolve_band(&r.bands, "NIR"), Some(1));
        r.bands[1].common_name = None;
        assert_eq!(
            resolve_band(&r.bands, "nir"),
            Some(1),
            "falls back to the Sentinel-2 key"
        );
        r.bands[0].name = "red".into();
        r.bands[0].common_name = None;
        assert_eq!(
            resolve_band(&r.bands, "B04"),
            Some(0),
            "S2 key finds the common name"
        );
        assert_eq!(resolve_band(&r.bands, "swir16"), None);
        assert_eq!(band_list(&r.bands), "red, B08");
    }
}
