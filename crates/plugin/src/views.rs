//! What a plugin node sees of its inputs: views of the host's arrays, not copies.
//!
//! [`Inputs`] has the same accessors as `flow_core::Inputs` (`labels`, `raster`, `matrix`,
//! `model`, `items`, `value`, and `*_opt` for optional ports), but hands out views
//! ([`LabelsView`], [`RasterView`], [`MatrixView`]) whose arrays are `ndarray` views of the host's
//! memory. A view's `to_owned()` makes the `flow_core` value when a node needs one.

use std::collections::BTreeMap;

use flow_core::{
    BandInfo, ClassInfo, Grid, Items, Labels, Matrix, Model, NodeError, Raster, ValueType,
};
use ndarray::{ArrayView2, ArrayView4, Ix2, Ix4};

use crate::abi::FlowValue;
use crate::parts::{self, field};

/// A class map lent by the host.
#[derive(Debug, Clone)]
pub struct LabelsView<'a> {
    /// Shape `(height, width)`.
    pub data: ArrayView2<'a, u16>,
    /// The value that marks pixels without a class.
    pub nodata: u16,
    /// The classes, in id order.
    pub classes: Vec<ClassInfo>,
    /// The grid.
    pub grid: Grid,
}

impl LabelsView<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Labels {
        Labels {
            data: self.data.to_owned(),
            nodata: self.nodata,
            classes: self.classes.clone(),
            grid: self.grid.clone(),
        }
    }
}

/// A raster lent by the host.
#[derive(Debug, Clone)]
pub struct RasterView<'a> {
    /// The pixels, shape `(times, bands, height, width)`, NaN = nodata.
    pub data: ArrayView4<'a, f32>,
    /// The grid of the last two axes.
    pub grid: Grid,
    /// One entry per band.
    pub bands: Vec<BandInfo>,
    /// One RFC 3339 datetime per time step.
    pub times: Vec<String>,
}

impl RasterView<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Raster {
        Raster {
            data: self.data.to_owned(),
            grid: self.grid.clone(),
            bands: self.bands.clone(),
            times: self.times.clone(),
        }
    }
}

/// A feature matrix lent by the host.
#[derive(Debug, Clone)]
pub struct MatrixView<'a> {
    /// Shape `(rows, features)`.
    pub data: ArrayView2<'a, f32>,
    /// Feature names.
    pub features: Vec<String>,
    /// `height x width`; true where the pixel has a row.
    pub valid: ArrayView2<'a, bool>,
    /// The grid the pixels came from.
    pub grid: Grid,
}

impl MatrixView<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> Matrix {
        Matrix {
            data: self.data.to_owned(),
            features: self.features.clone(),
            valid: self.valid.to_owned(),
            grid: self.grid.clone(),
        }
    }
}

/// One input value as a plugin sees it.
#[derive(Debug, Clone)]
pub enum ValueView<'a> {
    /// A STAC ItemCollection (parsed from JSON: owned).
    Items(Items),
    /// A raster (view).
    Raster(RasterView<'a>),
    /// A matrix (views).
    Matrix(MatrixView<'a>),
    /// A model (its centroids are small and copied).
    Model(Model),
    /// A class map (view).
    Labels(LabelsView<'a>),
    /// Small structured data.
    Json(serde_json::Value),
}

impl ValueView<'_> {
    /// The type of the value.
    pub fn value_type(&self) -> ValueType {
        match self {
            ValueView::Items(_) => ValueType::Items,
            ValueView::Raster(_) => ValueType::Raster,
            ValueView::Matrix(_) => ValueType::Matrix,
            ValueView::Model(_) => ValueType::Model,
            ValueView::Labels(_) => ValueType::Labels,
            ValueView::Json(_) => ValueType::Json,
        }
    }
}

/// Views of a [`FlowValue`] lent by the host.
///
/// # Safety
/// Every pointer in `v` must be valid, unmutated, for `'a` (the host lends inputs for the whole
/// `run` call).
pub(crate) unsafe fn view_value<'a>(v: &FlowValue) -> Result<ValueView<'a>, String> {
    // SAFETY: forwarded to the caller's guarantee, here and below.
    let meta = unsafe { parts::meta(v) }?;
    let arrays = unsafe { parts::arrays(v) }?;
    let get = |name: &str| unsafe { parts::find(arrays, name) };
    Ok(match parts::meta_type(&meta) {
        "Items" => ValueView::Items(Items {
            collection: meta.get("collection").cloned().unwrap_or_default(),
        }),
        "Json" => ValueView::Json(meta.get("value").cloned().unwrap_or_default()),
        "Raster" => ValueView::Raster(RasterView {
            data: unsafe { parts::view::<f32, Ix4>(get("data")?) }?,
            grid: field(&meta, "grid")?,
            bands: field(&meta, "bands")?,
            times: field(&meta, "times")?,
        }),
        "Matrix" => ValueView::Matrix(MatrixView {
            data: unsafe { parts::view::<f32, Ix2>(get("data")?) }?,
            valid: unsafe { parts::view::<bool, Ix2>(get("valid")?) }?,
            grid: field(&meta, "grid")?,
            features: field(&meta, "features")?,
        }),
        "Model" => {
            let mut model: Model = field(&meta, "model")?;
            model.centroids = unsafe { parts::copy(get("centroids")?) }?;
            ValueView::Model(model)
        }
        "Labels" => ValueView::Labels(LabelsView {
            data: unsafe { parts::view::<u16, Ix2>(get("data")?) }?,
            nodata: field(&meta, "nodata")?,
            classes: field(&meta, "classes")?,
            grid: field(&meta, "grid")?,
        }),
        other => return Err(format!("unknown value type `{other}`")),
    })
}

/// The inputs of one plugin node run, by port name: views of the host's values.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    values: BTreeMap<String, ValueView<'a>>,
}

impl<'a> Inputs<'a> {
    /// Builds inputs from `(port, value)` pairs (for tests of a plugin's nodes).
    pub fn new(values: impl IntoIterator<Item = (String, ValueView<'a>)>) -> Self {
        Inputs {
            values: values.into_iter().collect(),
        }
    }

    /// The value on `port`, if connected.
    pub fn get(&self, port: &str) -> Option<&ValueView<'a>> {
        self.values.get(port)
    }

    /// The value on a required port.
    ///
    /// # Errors
    /// [`NodeError::Input`] when the port is not connected.
    pub fn value(&self, port: &str) -> Result<&ValueView<'a>, NodeError> {
        self.get(port).ok_or_else(|| NodeError::Input {
            port: port.into(),
            message: "not connected".into(),
        })
    }

    /// Ports and values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ValueView<'a>)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

macro_rules! typed_view {
    ($fn:ident, $opt:ident, $variant:ident, $ty:ty) => {
        impl<'a> Inputs<'a> {
            #[doc = concat!("The ", stringify!($variant), " on a required port.\n\n# Errors\n[`NodeError::Input`] when it is missing or of another type.")]
            pub fn $fn(&self, port: &str) -> Result<&$ty, NodeError> {
                match self.value(port)? {
                    ValueView::$variant(v) => Ok(v),
                    other => Err(NodeError::Input {
                        port: port.into(),
                        message: format!("expected {}, got {}", ValueType::$variant, other.value_type()),
                    }),
                }
            }

            #[doc = concat!("The ", stringify!($variant), " on an optional port.\n\n# Errors\n[`NodeError::Input`] when it is of another type.")]
            pub fn $opt(&self, port: &str) -> Result<Option<&$ty>, NodeError> {
                match self.get(port) {
                    None => Ok(None),
                    Some(_) => self.$fn(port).map(Some),
                }
            }
        }
    };
}

typed_view!(items, items_opt, Items, Items);
typed_view!(raster, raster_opt, Raster, RasterView<'a>);
typed_view!(matrix, matrix_opt, Matrix, MatrixView<'a>);
typed_view!(model, model_opt, Model, Model);
typed_view!(labels, labels_opt, Labels, LabelsView<'a>);
typed_view!(json, json_opt, Json, serde_json::Value);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::Lent;
    use flow_core::Value;
    use ndarray::Array2;

    #[test]
    fn a_lent_value_is_viewed_without_copying() {
        let labels = Labels {
            data: Array2::from_shape_fn((2, 3), |(y, x)| (y * 3 + x) as u16),
            nodata: 7,
            classes: vec![],
            grid: Grid::north_up("EPSG:32618", 0.0, 10.0, 1.0, 3, 2),
        };
        let value = Value::Labels(labels.clone());
        let lent = Lent::new(&value);
        let fv = lent.flow_value();
        // SAFETY: `value` and `lent` outlive the view.
        let view = unsafe { view_value(&fv) }.unwrap();
        let inputs = Inputs::new([("input".to_string(), view)]);
        let l = inputs.labels("input").unwrap();
        let Value::Labels(orig) = &value else {
            unreachable!()
        };
        assert_eq!(l.data.as_ptr(), orig.data.as_ptr(), "no copy");
        assert_eq!(l.to_owned(), labels);
        assert!(inputs.raster("input").is_err());
        assert!(inputs.labels_opt("other").unwrap().is_none());
    }
}
