//! The bands of the synthetic Sentinel-2 L2A scene and the surface reflectance of its classes.

/// One Sentinel-2 L2A band as Planetary Computer describes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Band {
    /// Asset key (`B04`).
    pub key: &'static str,
    /// Native resolution in metres.
    pub resolution: u32,
    /// eo:bands common name.
    pub common_name: &'static str,
    /// Centre wavelength in micrometres.
    pub wavelength: f64,
    /// Full width at half maximum in micrometres.
    pub fwhm: f64,
    /// eo:bands description.
    pub description: &'static str,
}

/// The twelve reflectance bands of L2A, in wavelength order (there is no B10 in L2A).
pub(crate) const BANDS: [Band; 12] = [
    Band {
        key: "B01",
        resolution: 60,
        common_name: "coastal",
        wavelength: 0.443,
        fwhm: 0.027,
        description: "Band 1 - Coastal aerosol - 60m",
    },
    Band {
        key: "B02",
        resolution: 10,
        common_name: "blue",
        wavelength: 0.49,
        fwhm: 0.098,
        description: "Band 2 - Blue - 10m",
    },
    Band {
        key: "B03",
        resolution: 10,
        common_name: "green",
        wavelength: 0.56,
        fwhm: 0.045,
        description: "Band 3 - Green - 10m",
    },
    Band {
        key: "B04",
        resolution: 10,
        common_name: "red",
        wavelength: 0.665,
        fwhm: 0.038,
        description: "Band 4 - Red - 10m",
    },
    Band {
        key: "B05",
        resolution: 20,
        common_name: "rededge",
        wavelength: 0.704,
        fwhm: 0.019,
        description: "Band 5 - Vegetation red edge 1 - 20m",
    },
    Band {
        key: "B06",
        resolution: 20,
        common_name: "rededge",
        wavelength: 0.74,
        fwhm: 0.018,
        description: "Band 6 - Vegetation red edge 2 - 20m",
    },
    Band {
        key: "B07",
        resolution: 20,
        common_name: "rededge",
        wavelength: 0.783,
        fwhm: 0.028,
        description: "Band 7 - Vegetation red edge 3 - 20m",
    },
    Band {
        key: "B08",
        resolution: 10,
        common_name: "nir",
        wavelength: 0.842,
        fwhm: 0.145,
        description: "Band 8 - NIR - 10m",
    },
    Band {
        key: "B8A",
        resolution: 20,
        common_name: "nir08",
        wavelength: 0.865,
        fwhm: 0.033,
        description: "Band 8A - Vegetation red edge 4 - 20m",
    },
    Band {
        key: "B09",
        resolution: 60,
        common_name: "nir09",
        wavelength: 0.945,
        fwhm: 0.026,
        description: "Band 9 - Water vapor - 60m",
    },
    Band {
        key: "B11",
        resolution: 20,
        common_name: "swir16",
        wavelength: 1.61,
        fwhm: 0.143,
        description: "Band 11 - SWIR (1.6) - 20m",
    },
    Band {
        key: "B12",
        resolution: 20,
        common_name: "swir22",
        wavelength: 2.19,
        fwhm: 0.242,
        description: "Band 12 - SWIR (2.2) - 20m",
    },
];

/// Names of the ground-truth classes, by class id.
pub const CLASS_NAMES: [&str; 5] = [
    "water",
    "dense forest",
    "grass/crops",
    "urban/concrete",
    "bare soil",
];

/// Surface reflectance (0..1) of each class in the order of [`BANDS`].
pub(crate) const SPECTRA: [[f64; 12]; 5] = [
    // water: dark, decreasing into the infrared
    [
        0.062, 0.055, 0.048, 0.032, 0.026, 0.021, 0.018, 0.016, 0.013, 0.009, 0.006, 0.004,
    ],
    // dense forest: dark visible, red edge rise, high NIR, moderate SWIR
    [
        0.030, 0.024, 0.046, 0.022, 0.072, 0.215, 0.270, 0.290, 0.305, 0.295, 0.145, 0.065,
    ],
    // grass / crops: brighter green, higher NIR and SWIR than forest
    [
        0.042, 0.040, 0.085, 0.052, 0.130, 0.320, 0.400, 0.425, 0.445, 0.420, 0.255, 0.135,
    ],
    // urban / concrete: grey, flat, bright
    [
        0.105, 0.112, 0.125, 0.135, 0.145, 0.152, 0.160, 0.168, 0.172, 0.168, 0.205, 0.185,
    ],
    // bare soil: brown, rising towards the SWIR
    [
        0.070, 0.080, 0.115, 0.165, 0.195, 0.225, 0.245, 0.258, 0.272, 0.270, 0.345, 0.295,
    ],
];

/// Reflectance of an opaque cloud in the order of [`BANDS`].
pub(crate) const CLOUD: [f64; 12] = [
    0.48, 0.46, 0.45, 0.46, 0.47, 0.48, 0.49, 0.50, 0.50, 0.34, 0.31, 0.22,
];

/// Scene classification (SCL) class of each ground-truth class: water 6, vegetation 4, not
/// vegetated 5.
pub(crate) const SCL_OF_CLASS: [u8; 5] = [6, 4, 4, 5, 5];
