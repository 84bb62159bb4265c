//! The values that flow along the edges of a recipe's graph.

use std::fmt;

use ndarray::{Array2, Array4};
use serde::{Deserialize, Serialize};

use crate::grid::Grid;

/// The type of a port; `flow validate` checks that every edge joins compatible ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// A STAC ItemCollection.
    Items,
    /// A `time x band x y x x` f32 cube on a grid.
    Raster,
    /// Pixels x features, with the validity mask and grid they came from.
    Matrix,
    /// A fitted model (K-Means centroids and statistics).
    Model,
    /// Class ids per pixel on a grid.
    Labels,
    /// Small structured data (statistics, a list of written files).
    Json,
    /// Accepts any value (input ports, e.g. `write`'s), or, as a kind's output, a type that each
    /// node's params decide ([`crate::Node::output_type`], e.g. `script`'s).
    Any,
}

impl ValueType {
    /// True when a value of type `self` may feed a port of type `port`.
    pub fn fits(self, port: ValueType) -> bool {
        port == ValueType::Any || self == port
    }

    /// The name used in recipes and messages.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Items => "Items",
            ValueType::Raster => "Raster",
            ValueType::Matrix => "Matrix",
            ValueType::Model => "Model",
            ValueType::Labels => "Labels",
            ValueType::Json => "Json",
            ValueType::Any => "Any",
        }
    }

    /// Parses [`ValueType::name`] back (case-insensitive).
    pub fn parse(name: &str) -> Option<ValueType> {
        Some(match name.to_ascii_lowercase().as_str() {
            "items" => ValueType::Items,
            "raster" => ValueType::Raster,
            "matrix" => ValueType::Matrix,
            "model" => ValueType::Model,
            "labels" => ValueType::Labels,
            "json" => ValueType::Json,
            "any" => ValueType::Any,
            _ => return None,
        })
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value produced by a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A STAC ItemCollection.
    Items(Items),
    /// A raster cube.
    Raster(Raster),
    /// A feature matrix.
    Matrix(Matrix),
    /// A fitted model.
    Model(Model),
    /// A class map.
    Labels(Labels),
    /// Small structured data.
    Json(serde_json::Value),
    /// A Raster, Matrix or Labels computed window by window when needed (see
    /// [`crate::deferred`]); its type is its template's.
    Deferred(crate::deferred::Deferred),
}

impl Value {
    /// The type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Items(_) => ValueType::Items,
            Value::Raster(_) => ValueType::Raster,
            Value::Matrix(_) => ValueType::Matrix,
            Value::Model(_) => ValueType::Model,
            Value::Labels(_) => ValueType::Labels,
            Value::Json(_) => ValueType::Json,
            Value::Deferred(d) => d.template.value_type(),
        }
    }
}

/// A STAC ItemCollection, kept as JSON so that every extension field survives untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Items {
    /// The GeoJSON FeatureCollection (`{"type": "FeatureCollection", "features": [...]}`).
    pub collection: serde_json::Value,
}

impl Items {
    /// Wraps a list of STAC items into an ItemCollection.
    pub fn from_features(features: Vec<serde_json::Value>) -> Self {
        Items {
            collection: serde_json::json!({"type": "FeatureCollection", "features": features}),
        }
    }

    /// The items.
    pub fn features(&self) -> &[serde_json::Value] {
        self.collection
            .get("features")
            .and_then(|f| f.as_array())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The items, mutably.
    pub fn features_mut(&mut self) -> Option<&mut Vec<serde_json::Value>> {
        self.collection
            .get_mut("features")
            .and_then(|f| f.as_array_mut())
    }

    /// Where the items came from: the catalog's URL or local path, as the search recorded it in
    /// the collection's [`Items::CATALOG_FIELD`] member.
    pub fn catalog(&self) -> Option<&str> {
        self.collection
            .get(Self::CATALOG_FIELD)
            .and_then(|c| c.as_str())
    }

    /// Records where the items came from (see [`Items::catalog`]).
    pub fn set_catalog(&mut self, catalog: &str) {
        if let Some(obj) = self.collection.as_object_mut() {
            obj.insert(
                Self::CATALOG_FIELD.into(),
                serde_json::Value::String(catalog.to_string()),
            );
        }
    }

    /// The collection member naming the catalog the items came from.
    pub const CATALOG_FIELD: &'static str = "flow:catalog";
}

/// What is known of one band of a raster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct BandInfo {
    /// The band's name (the STAC asset key such as `B04`, or an index name such as `NDVI`).
    pub name: String,
    /// eo:bands common name (`red`, `nir`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Centre wavelength in micrometres, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wavelength: Option<f64>,
    /// How `normalize` rescaled the band, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
}

/// How `normalize` rescaled one band: enough to rescale other data exactly the same way (a model
/// fitted on one scene applied to another with the first scene's scaling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// `minmax`, `percentile` or `zscore`.
    pub method: String,
    /// `global` (one pair shared by every band) or `band`.
    pub scope: String,
    /// The statistics: `[min, max]`, the two percentile values, or `[mean, std]`.
    pub statistics: [f64; 2],
    /// The output range `[lo, hi]` (not used by `zscore`).
    pub range: [f64; 2],
    /// Whether the output was clamped to the range.
    pub clip: bool,
}

/// A `time x band x y x x` cube of f32 on a grid, NaN meaning nodata; like a stackstac DataArray.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    /// The pixels, shape `(times, bands, height, width)`.
    pub data: Array4<f32>,
    /// The grid of the last two axes.
    pub grid: Grid,
    /// One entry per band.
    pub bands: Vec<BandInfo>,
    /// One RFC 3339 datetime per time step.
    pub times: Vec<String>,
}

impl Raster {
    /// Index of the band called `name`, matched against band names then common names
    /// (case-insensitive).
    pub fn band_index(&self, name: &str) -> Option<usize> {
        self.bands
            .iter()
            .position(|b| b.name.eq_ignore_ascii_case(name))
            .or_else(|| {
                self.bands.iter().position(|b| {
                    b.common_name
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(name))
                })
            })
    }
}

/// Pixels x features, one row per valid pixel, plus the mask that says which pixels they are.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Shape `(rows, features)`.
    pub data: Array2<f32>,
    /// Feature names, one per column.
    pub features: Vec<String>,
    /// `height x width`; true where the pixel has a row (row order = row-major over valid pixels).
    pub valid: Array2<bool>,
    /// The grid the pixels came from.
    pub grid: Grid,
    /// How each feature was rescaled by `normalize` (one entry per feature), or empty when none
    /// was.
    pub scaling: Vec<Option<Scaling>>,
}

/// A fitted model: K-Means centroids, or a supervised classifier (`classifier` set; then the
/// centroids are its classes' training means, see [`crate::classifier`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Shape `(k, features)`, in canonical class order (a classifier's: its classes' order).
    #[serde(skip)]
    pub centroids: Array2<f32>,
    /// Feature names, one per centroid column.
    pub features: Vec<String>,
    /// Sum of squared distances of the training rows to their centroid.
    pub inertia: f64,
    /// Lloyd iterations of the retained run.
    pub iterations: usize,
    /// The seed that made this model.
    pub seed: u64,
    /// Training rows per class.
    pub counts: Vec<u64>,
    /// Anything else worth recording (init method, n_init, tolerance, ...).
    #[serde(default)]
    pub info: serde_json::Value,
    /// How each feature of the training matrix was rescaled by `normalize` (one entry per
    /// feature), or empty when none was: `normalize` can apply it to other data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaling: Vec<Option<Scaling>>,
    /// The supervised classifier (`classifier-fit`); `None` for K-Means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<Box<crate::classifier::Classifier>>,
}

/// Name and colour of one class of a [`Labels`] map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassInfo {
    /// The class id as stored in the map.
    pub id: u16,
    /// A human name (`class 0`, or `water` when known).
    pub name: String,
    /// RGB colour for maps and legends.
    pub color: [u8; 3],
}

/// A class map on a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// Shape `(height, width)`.
    pub data: Array2<u16>,
    /// The value that marks pixels without a class.
    pub nodata: u16,
    /// The classes, in id order.
    pub classes: Vec<ClassInfo>,
    /// The grid.
    pub grid: Grid,
}

impl Labels {
    /// True ground area (m²) per class id (index = class id), ignoring nodata; `None` when the
    /// grid's CRS is not one flow measures ([`Grid::ground_areas`]).
    pub fn class_areas_m2(&self) -> Option<Vec<f64>> {
        let areas = self.grid.ground_areas()?;
        let mut sums = vec![0f64; self.class_counts().len()];
        for (&v, &a) in self.data.iter().zip(&areas) {
            if v != self.nodata {
                sums[v as usize] += a;
            }
        }
        Some(sums)
    }

    /// Pixels per class id (index = class id), ignoring nodata.
    pub fn class_counts(&self) -> Vec<u64> {
        let n = self.classes.len().max(
            self.data
                .iter()
                .filter(|&&v| v != self.nodata)
                .map(|&v| v as usize + 1)
                .max()
                .unwrap_or(0),
        );
        let mut counts = vec![0u64; n];
        for &v in self.data.iter() {
            if v != self.nodata {
                counts[v as usize] += 1;
            }
        }
        counts
    }
}
