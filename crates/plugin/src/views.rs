//! What a plugin node sees of its inputs: views of the host's arrays, not copies.
//!
//! [`PluginInputs`] has the same accessors as `flow_core::Inputs` (`labels`, `raster`, `matrix`,
//! `model`, `items`, `json`, `value`, and `*_opt` for optional ports), but hands out views
//! ([`LabelsView`], [`RasterView`], [`MatrixView`]) whose arrays are `ndarray` views of the host's
//! memory. A view's `to_owned()` makes the `flow_core` value when a node needs one.
//!
//! A [`ValueView`] is made from the two halves of `flow_core::meta`: a value's [`ValueMeta`] and
//! its [`NamedArray`]s, whether those come from the host's lent buffers or from
//! `Value::split` of a value in the plugin's own memory ([`ValueView::of`], for tests).

use std::collections::BTreeMap;

use flow_core::meta::{ArrayRef, Element, NamedArray, OwnedArrays, ValueMeta};
use flow_core::{
    BandInfo, ClassInfo, Grid, Items, Labels, Matrix, Model, NodeError, Raster, Value, ValueType,
};
use ndarray::{ArrayView, ArrayView2, ArrayView4, ArrayViewD, Dimension};

use crate::abi::FlowValue;
use crate::wire;

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
            scaling: Default::default(),
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

/// An element type of a value's arrays, as found in an [`ArrayRef`].
trait FromArrayRef: Element {
    fn from_ref<'a>(r: &ArrayRef<'a>) -> Option<ArrayViewD<'a, Self>>;
}

macro_rules! from_array_ref {
    ($($t:ty => $variant:ident),*) => {$(
        impl FromArrayRef for $t {
            fn from_ref<'a>(r: &ArrayRef<'a>) -> Option<ArrayViewD<'a, Self>> {
                match r {
                    ArrayRef::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }
    )*};
}

from_array_ref!(f32 => F32, u16 => U16, u8 => U8, bool => Bool);

/// The array called `name`, as a view of `D` dimensions.
fn take<'a, T: FromArrayRef, D: Dimension>(
    arrays: &[NamedArray<'a>],
    name: &str,
) -> Result<ArrayView<'a, T, D>, String> {
    let a = arrays
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| format!("the value has no `{name}` array"))?;
    let view = T::from_ref(&a.array).ok_or_else(|| {
        format!(
            "array `{name}` has dtype {}, expected {}",
            a.array.dtype().name(),
            T::DTYPE.name()
        )
    })?;
    let ndim = view.ndim();
    view.into_dimensionality::<D>().map_err(|_| {
        format!(
            "array `{name}` has {ndim} dimensions, expected {}",
            D::NDIM.unwrap_or(0)
        )
    })
}

impl<'a> ValueView<'a> {
    /// A view of a value's parts: views for rasters, matrices and class maps; the rest is small
    /// and owned (a model's centroids are copied).
    ///
    /// # Errors
    /// When an array the meta names is missing or of another dtype or rank.
    pub fn from_parts(meta: ValueMeta, arrays: Vec<NamedArray<'a>>) -> Result<Self, String> {
        Ok(match meta {
            ValueMeta::Items { collection } => ValueView::Items(Items { collection }),
            ValueMeta::Json { value } => ValueView::Json(value),
            ValueMeta::Raster { grid, bands, times } => ValueView::Raster(RasterView {
                data: take(&arrays, "data")?,
                grid,
                bands,
                times,
            }),
            ValueMeta::Matrix { grid, features, .. } => ValueView::Matrix(MatrixView {
                data: take(&arrays, "data")?,
                valid: take(&arrays, "valid")?,
                features,
                grid,
            }),
            ValueMeta::Labels {
                grid,
                nodata,
                classes,
            } => ValueView::Labels(LabelsView {
                data: take(&arrays, "data")?,
                nodata,
                classes,
                grid,
            }),
            ValueMeta::Deferred { .. } => {
                return Err(
                    "a value computed window by window reaches a plugin only as its windows".into(),
                )
            }
            meta @ ValueMeta::Model { .. } => {
                match Value::assemble(meta, &mut OwnedArrays::from_views(&arrays))
                    .map_err(|e| e.to_string())?
                {
                    Value::Model(model) => ValueView::Model(model),
                    other => return Err(format!("a model's meta made a {}", other.value_type())),
                }
            }
        })
    }

    /// A view of `value`, which stays in place (for tests of a plugin's nodes).
    ///
    /// # Errors
    /// When the value's arrays do not fit it (a model whose centroids do not match its features).
    pub fn of(value: &'a Value) -> Result<Self, String> {
        let (meta, arrays) = value.split();
        ValueView::from_parts(meta, arrays)
    }
}

/// Views of a [`FlowValue`] lent by the host.
///
/// # Safety
/// Every pointer in `v` must be valid, unmutated, for `'a` (the host lends inputs for the whole
/// `run` call), and its `bool` arrays must hold only 0 and 1.
pub(crate) unsafe fn view_value<'a>(v: &FlowValue) -> Result<ValueView<'a>, String> {
    // SAFETY: forwarded to the caller's guarantee.
    let meta = unsafe { wire::meta(v) }?;
    // SAFETY: forwarded to the caller's guarantee.
    let table = unsafe { wire::arrays(v) }?;
    // SAFETY: forwarded to the caller's guarantee (valid, unmutated, 0/1 bools, for 'a).
    let arrays = unsafe { wire::named_views(&meta, table) }?;
    ValueView::from_parts(meta, arrays)
}

/// The inputs of one plugin node run, by port name: views of the host's values (the plugin side
/// of `flow_core::Inputs`).
#[derive(Debug, Clone, Default)]
pub struct PluginInputs<'a> {
    values: BTreeMap<String, ValueView<'a>>,
}

impl<'a> PluginInputs<'a> {
    /// Builds inputs from `(port, value)` pairs (for tests of a plugin's nodes).
    pub fn new(values: impl IntoIterator<Item = (String, ValueView<'a>)>) -> Self {
        PluginInputs {
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
        impl<'a> PluginInputs<'a> {
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
    use crate::wire::Lent;
    use ndarray::Array2;

    fn grid() -> Grid {
        Grid::north_up("EPSG:32618", 0.0, 10.0, 1.0, 3, 2)
    }

    #[test]
    fn a_lent_value_is_viewed_without_copying() {
        let labels = Labels {
            data: Array2::from_shape_fn((2, 3), |(y, x)| (y * 3 + x) as u16),
            nodata: 7,
            classes: vec![],
            grid: grid(),
        };
        let value = Value::Labels(labels.clone());
        let lent = Lent::new(&value).unwrap();
        let fv = lent.flow_value();
        // SAFETY: `value` and `lent` outlive the view.
        let view = unsafe { view_value(&fv) }.unwrap();
        let inputs = PluginInputs::new([("input".to_string(), view)]);
        let l = inputs.labels("input").unwrap();
        let Value::Labels(lent_labels) = &value else {
            unreachable!()
        };
        assert_eq!(l.data.as_ptr(), lent_labels.data.as_ptr(), "no copy");
        assert_eq!(l.to_owned(), labels);
        assert!(inputs.raster("input").is_err());
        assert!(inputs.labels_opt("other").unwrap().is_none());
    }

    #[test]
    fn every_value_type_has_a_view() {
        for v in &flow_core::meta::examples() {
            let view = ValueView::of(v).unwrap();
            assert_eq!(view.value_type(), v.value_type());
            let owned = match &view {
                ValueView::Matrix(m) => Value::Matrix(m.to_owned()),
                ValueView::Model(m) => Value::Model(m.clone()),
                ValueView::Raster(r) => Value::Raster(r.to_owned()),
                ValueView::Json(j) => Value::Json(j.clone()),
                ValueView::Items(i) => Value::Items(i.clone()),
                ValueView::Labels(l) => Value::Labels(l.to_owned()),
            };
            assert!(flow_core::meta::same(&owned, v), "{owned:?} != {v:?}");
        }
    }

    #[test]
    fn parts_that_do_not_fit_the_meta_are_errors() {
        let data = Array2::<f32>::zeros((2, 3));
        let meta = ValueMeta::Labels {
            grid: grid(),
            nodata: 0,
            classes: vec![],
        };
        let wrong = vec![NamedArray {
            name: "data",
            array: ArrayRef::F32(data.view().into_dyn()),
        }];
        let e = ValueView::from_parts(meta.clone(), wrong).unwrap_err();
        assert!(e.contains("dtype f32, expected u16"), "{e}");
        let e = ValueView::from_parts(meta, vec![]).unwrap_err();
        assert!(e.contains("no `data` array"), "{e}");
    }
}
