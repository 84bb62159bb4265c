//! Named spectral indices.

/// A spectral index computed from common-name bands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpectralIndex {
    /// Normalized difference vegetation index, `(nir - red) / (nir + red)`.
    Ndvi,
    /// Green NDVI, `(nir - green) / (nir + green)`.
    Gndvi,
    /// McFeeters' normalized difference water index, `(green - nir) / (green + nir)`.
    Ndwi,
    /// Modified NDWI (Xu), `(green - swir16) / (green + swir16)`.
    Mndwi,
    /// Normalized difference built-up index, `(swir16 - nir) / (swir16 + nir)`.
    Ndbi,
    /// Normalized difference moisture index, `(nir - swir16) / (nir + swir16)`.
    Ndmi,
    /// Normalized burn ratio, `(nir - swir22) / (nir + swir22)`.
    Nbr,
    /// Soil-adjusted vegetation index, `(1 + L) (nir - red) / (nir + red + L)`.
    Savi,
    /// Enhanced vegetation index, `2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1)`.
    Evi,
}

/// Every named index, in the order `flow nodes` lists them.
pub const ALL: &[SpectralIndex] = &[
    SpectralIndex::Ndvi,
    SpectralIndex::Gndvi,
    SpectralIndex::Ndwi,
    SpectralIndex::Mndwi,
    SpectralIndex::Ndbi,
    SpectralIndex::Ndmi,
    SpectralIndex::Nbr,
    SpectralIndex::Savi,
    SpectralIndex::Evi,
];

fn nd(a: f64, b: f64) -> f64 {
    (a - b) / (a + b)
}

impl SpectralIndex {
    /// The band name the index is appended under (`NDVI`).
    pub fn name(self) -> &'static str {
        match self {
            SpectralIndex::Ndvi => "NDVI",
            SpectralIndex::Gndvi => "GNDVI",
            SpectralIndex::Ndwi => "NDWI",
            SpectralIndex::Mndwi => "MNDWI",
            SpectralIndex::Ndbi => "NDBI",
            SpectralIndex::Ndmi => "NDMI",
            SpectralIndex::Nbr => "NBR",
            SpectralIndex::Savi => "SAVI",
            SpectralIndex::Evi => "EVI",
        }
    }

    /// Parses a name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        ALL.iter()
            .copied()
            .find(|i| i.name().eq_ignore_ascii_case(name))
    }

    /// The common names of the bands it reads, in the order [`SpectralIndex::compute`] takes them.
    pub fn bands(self) -> &'static [&'static str] {
        match self {
            SpectralIndex::Ndvi | SpectralIndex::Savi => &["nir", "red"],
            SpectralIndex::Gndvi => &["nir", "green"],
            SpectralIndex::Ndwi => &["green", "nir"],
            SpectralIndex::Mndwi => &["green", "swir16"],
            SpectralIndex::Ndbi => &["swir16", "nir"],
            SpectralIndex::Ndmi => &["nir", "swir16"],
            SpectralIndex::Nbr => &["nir", "swir22"],
            SpectralIndex::Evi => &["nir", "red", "blue"],
        }
    }

    /// True when the formula has additive constants that assume reflectance in `[0, 1]`.
    pub fn needs_reflectance(self) -> bool {
        matches!(self, SpectralIndex::Savi | SpectralIndex::Evi)
    }

    /// The index of one pixel from its band values (in [`SpectralIndex::bands`] order). May be
    /// non-finite; callers turn that into NaN.
    pub fn compute(self, v: &[f64], savi_l: f64) -> f64 {
        match self {
            SpectralIndex::Savi => (1.0 + savi_l) * (v[0] - v[1]) / (v[0] + v[1] + savi_l),
            SpectralIndex::Evi => 2.5 * (v[0] - v[1]) / (v[0] + 6.0 * v[1] - 7.5 * v[2] + 1.0),
            _ => nd(v[0], v[1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert!(close(
            SpectralIndex::Ndvi.compute(&[0.5, 0.1], 0.5),
            0.666667
        ));
        assert!(close(
            SpectralIndex::Ndwi.compute(&[0.2, 0.5], 0.5),
            -0.428571
        ));
        assert!(close(
            SpectralIndex::Savi.compute(&[0.5, 0.1], 0.5),
            0.545455
        ));
        assert!(close(
            SpectralIndex::Evi.compute(&[0.5, 0.1, 0.05], 0.5),
            0.579710
        ));
        assert!(SpectralIndex::Ndvi.compute(&[0.0, 0.0], 0.5).is_nan());
        assert_eq!(SpectralIndex::parse("ndvi"), Some(SpectralIndex::Ndvi));
        assert_eq!(SpectralIndex::parse("mNdWi"), Some(SpectralIndex::Mndwi));
        assert_eq!(SpectralIndex::parse("ndxi"), None);
    }
}
