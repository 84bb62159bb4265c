//! One description of a value: its metadata as a serde-derived [`ValueMeta`], plus its arrays,
//! walked by name as [`ArrayRef`]s.
//!
//! Everything that turns a [`Value`] into something else and back goes through here: the cache's
//! `.npy` + JSON store ([`crate::store`]), the run report's summaries ([`crate::summary`]) and the
//! plugin wire format (`flow-plugin`), so that the shape of a value is written down once.
//!
//! - [`Value::split`] gives the metadata and borrowed views of the arrays, without copying.
//! - [`Value::assemble`] rebuilds a value from metadata and an [`ArraySource`] that yields each
//!   array by name (decoded `.npy` files, or a plugin's lent buffers).
//!
//! # Example
//!
//! ```
//! use flow_core::meta::{ArrayRef, ValueMeta};
//! use flow_core::{Grid, Labels, Value};
//!
//! let labels = Value::Labels(Labels {
//!     data: ndarray::Array2::zeros((2, 3)),
//!     nodata: 65535,
//!     classes: vec![],
//!     grid: Grid::north_up("EPSG:32618", 0.0, 20.0, 10.0, 3, 2),
//! });
//! let (meta, arrays) = labels.split();
//! assert!(matches!(meta, ValueMeta::Labels { nodata: 65535, .. }));
//! assert_eq!(arrays[0].name, "data");
//! assert!(matches!(arrays[0].array, ArrayRef::U16(_)));
//! ```

use ndarray::{ArrayD, ArrayViewD, Dimension, Ix2, Ix4};
use serde::{Deserialize, Serialize};

use crate::grid::Grid;
use crate::value::{BandInfo, ClassInfo, Items, Labels, Matrix, Model, Raster, Value, ValueType};

/// What a value is, without its arrays. Serialized with a `type` tag (`{"type": "Raster", ...}`):
/// this is the cache's `value.json` and the plugin wire format's meta text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ValueMeta {
    /// A STAC ItemCollection; it has no arrays.
    Items {
        /// The GeoJSON FeatureCollection.
        collection: serde_json::Value,
    },
    /// Small structured data; it has no arrays.
    Json {
        /// The data.
        value: serde_json::Value,
    },
    /// A raster cube; its array is `data` (f32, 4-d).
    Raster {
        /// The grid of the last two axes.
        grid: Grid,
        /// One entry per band.
        bands: Vec<BandInfo>,
        /// One RFC 3339 datetime per time step.
        times: Vec<String>,
    },
    /// A feature matrix; its arrays are `data` (f32, 2-d) and `valid` (bool, 2-d).
    Matrix {
        /// The grid the pixels came from.
        grid: Grid,
        /// Feature names, one per column.
        features: Vec<String>,
        /// How each feature was rescaled, or empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scaling: Vec<Option<crate::value::Scaling>>,
    },
    /// A fitted model; its array is `centroids` (f32, 2-d).
    Model {
        /// Everything but the centroids.
        model: Model,
    },
    /// A class map; its array is `data` (u16, 2-d).
    Labels {
        /// The grid.
        grid: Grid,
        /// The value that marks pixels without a class.
        nodata: u16,
        /// The classes, in id order.
        classes: Vec<ClassInfo>,
    },
    /// A value computed window by window ([`crate::deferred`]); it has no arrays.
    Deferred {
        /// The value's own metadata (its type, grid, bands or features).
        template: Box<ValueMeta>,
        /// The window side.
        window: usize,
        /// How each window is computed ([`crate::deferred::Deferred::expr_json`]); `null` when
        /// it holds values that cannot be written as JSON (such a value is never stored).
        expr: serde_json::Value,
    },
}

impl ValueMeta {
    /// The type of the value this describes.
    pub fn value_type(&self) -> ValueType {
        match self {
            ValueMeta::Items { .. } => ValueType::Items,
            ValueMeta::Json { .. } => ValueType::Json,
            ValueMeta::Raster { .. } => ValueType::Raster,
            ValueMeta::Matrix { .. } => ValueType::Matrix,
            ValueMeta::Model { .. } => ValueType::Model,
            ValueMeta::Labels { .. } => ValueType::Labels,
            ValueMeta::Deferred { template, .. } => template.value_type(),
        }
    }

    /// The arrays a value of this type holds: `(name, element type, number of dimensions)`.
    pub fn array_layout(&self) -> &'static [(&'static str, Dtype, usize)] {
        match self {
            ValueMeta::Items { .. } | ValueMeta::Json { .. } | ValueMeta::Deferred { .. } => &[],
            ValueMeta::Raster { .. } => &[("data", Dtype::F32, 4)],
            ValueMeta::Matrix { .. } => &[("data", Dtype::F32, 2), ("valid", Dtype::Bool, 2)],
            ValueMeta::Model { .. } => &[("centroids", Dtype::F32, 2)],
            ValueMeta::Labels { .. } => &[("data", Dtype::U16, 2)],
        }
    }
}

/// The element type of an array that a value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit float (pixels, features, centroids).
    F32,
    /// 16-bit unsigned integer (class ids).
    U16,
    /// Byte.
    U8,
    /// Boolean, one byte each, 0 or 1 (validity masks).
    Bool,
}

impl Dtype {
    /// The name used in messages (`f32`, `u16`, `u8`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::U16 => "u16",
            Dtype::U8 => "u8",
            Dtype::Bool => "bool",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::U16 => 2,
            Dtype::U8 | Dtype::Bool => 1,
        }
    }
}

/// An element type that a value's arrays may hold.
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// Its [`Dtype`].
    const DTYPE: Dtype;
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl Element for u16 {
    const DTYPE: Dtype = Dtype::U16;
}
impl Element for u8 {
    const DTYPE: Dtype = Dtype::U8;
}
impl Element for bool {
    const DTYPE: Dtype = Dtype::Bool;
}

/// A borrowed view of one of a value's arrays, typed by its element.
#[derive(Debug, Clone)]
pub enum ArrayRef<'a> {
    /// An f32 array.
    F32(ArrayViewD<'a, f32>),
    /// A u16 array.
    U16(ArrayViewD<'a, u16>),
    /// A u8 array.
    U8(ArrayViewD<'a, u8>),
    /// A bool array.
    Bool(ArrayViewD<'a, bool>),
}

impl ArrayRef<'_> {
    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            ArrayRef::F32(_) => Dtype::F32,
            ArrayRef::U16(_) => Dtype::U16,
            ArrayRef::U8(_) => Dtype::U8,
            ArrayRef::Bool(_) => Dtype::Bool,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            ArrayRef::F32(a) => a.shape(),
            ArrayRef::U16(a) => a.shape(),
            ArrayRef::U8(a) => a.shape(),
            ArrayRef::Bool(a) => a.shape(),
        }
    }
}

/// One named array of a value.
#[derive(Debug, Clone)]
pub struct NamedArray<'a> {
    /// `data`, `valid` or `centroids` (see [`ValueMeta::array_layout`]).
    pub name: &'static str,
    /// A view of it.
    pub array: ArrayRef<'a>,
}

/// Where [`Value::assemble`] gets each array from.
pub trait ArraySource {
    /// The array called `name` with elements of type `T`, owned; its number of dimensions is
    /// checked by the caller.
    ///
    /// # Errors
    /// A message when the array is missing, of another element type, or unreadable.
    fn array<T: Element>(&mut self, name: &str) -> Result<ArrayD<T>, String>;
}

/// Why metadata and arrays do not make a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct AssembleError(pub String);

fn named<'a, T, D>(name: &'static str, a: &'a ndarray::Array<T, D>) -> NamedArray<'a>
where
    T: Element,
    D: Dimension,
    ArrayViewD<'a, T>: Into<ArrayRef<'a>>,
{
    NamedArray {
        name,
        array: a.view().into_dyn().into(),
    }
}

macro_rules! array_ref_from {
    ($($t:ty => $variant:ident),*) => {
        $(impl<'a> From<ArrayViewD<'a, $t>> for ArrayRef<'a> {
            fn from(v: ArrayViewD<'a, $t>) -> Self {
                ArrayRef::$variant(v)
            }
        })*
    };
}

array_ref_from!(f32 => F32, u16 => U16, u8 => U8, bool => Bool);

/// Takes array `name` from `source` and checks that it has `D`'s number of dimensions.
fn take<T, D, S>(source: &mut S, name: &str) -> Result<ndarray::Array<T, D>, AssembleError>
where
    T: Element,
    D: Dimension,
    S: ArraySource,
{
    let a = source
        .array::<T>(name)
        .map_err(|e| AssembleError(format!("array `{name}`: {e}")))?;
    let ndim = a.ndim();
    a.into_dimensionality::<D>().map_err(|_| {
        AssembleError(format!(
            "array `{name}` has {ndim} dimensions, expected {}",
            D::NDIM.unwrap_or(0)
        ))
    })
}

/// Checks that an array's last two axes are the grid's `(height, width)`.
fn check_grid(name: &str, shape: &[usize], grid: &Grid) -> Result<(), AssembleError> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    if (h, w) != (grid.height, grid.width) {
        return Err(AssembleError(format!(
            "array `{name}` is {h} x {w} pixels but its grid is {} x {}",
            grid.height, grid.width
        )));
    }
    Ok(())
}

impl Value {
    /// Splits the value into its metadata and views of its arrays, without copying.
    pub fn split(&self) -> (ValueMeta, Vec<NamedArray<'_>>) {
        match self {
            Value::Items(items) => (
                ValueMeta::Items {
                    collection: items.collection.clone(),
                },
                vec![],
            ),
            Value::Json(v) => (ValueMeta::Json { value: v.clone() }, vec![]),
            Value::Deferred(d) => (
                ValueMeta::Deferred {
                    template: Box::new(d.template.split().0),
                    window: d.window,
                    expr: d.expr_json().unwrap_or(serde_json::Value::Null),
                },
                vec![],
            ),
            Value::Raster(r) => (
                ValueMeta::Raster {
                    grid: r.grid.clone(),
                    bands: r.bands.clone(),
                    times: r.times.clone(),
                },
                vec![named("data", &r.data)],
            ),
            Value::Matrix(m) => (
                ValueMeta::Matrix {
                    grid: m.grid.clone(),
                    features: m.features.clone(),
                    scaling: m.scaling.clone(),
                },
                vec![named("data", &m.data), named("valid", &m.valid)],
            ),
            Value::Model(m) => (
                ValueMeta::Model { model: m.clone() },
                vec![named("centroids", &m.centroids)],
            ),
            Value::Labels(l) => (
                ValueMeta::Labels {
                    grid: l.grid.clone(),
                    nodata: l.nodata,
                    classes: l.classes.clone(),
                },
                vec![named("data", &l.data)],
            ),
        }
    }

    /// Rebuilds a value from its metadata and its arrays, checking that every array has the
    /// rank, and every raster-like array the grid size, that the metadata says.
    ///
    /// # Errors
    /// [`AssembleError`] when an array is missing or does not fit the metadata.
    pub fn assemble<S: ArraySource>(
        meta: ValueMeta,
        source: &mut S,
    ) -> Result<Value, AssembleError> {
        Ok(match meta {
            ValueMeta::Items { collection } => Value::Items(Items { collection }),
            ValueMeta::Deferred {
                template,
                window,
                expr,
            } => Value::Deferred(
                crate::deferred::Deferred::from_parts(*template, window, &expr)
                    .map_err(AssembleError)?,
            ),
            ValueMeta::Json { value } => Value::Json(value),
            ValueMeta::Raster { grid, bands, times } => {
                let data = take::<f32, Ix4, _>(source, "data")?;
                check_grid("data", data.shape(), &grid)?;
                let (t, b) = (data.shape()[0], data.shape()[1]);
                if b != bands.len() || t != times.len() {
                    return Err(AssembleError(format!(
                        "array `data` has {t} times x {b} bands but the metadata names {} times \
                         and {} bands",
                        times.len(),
                        bands.len()
                    )));
                }
                Value::Raster(Raster {
                    data,
                    grid,
                    bands,
                    times,
                })
            }
            ValueMeta::Matrix {
                grid,
                features,
                scaling,
            } => {
                let data = take::<f32, Ix2, _>(source, "data")?;
                let valid = take::<bool, Ix2, _>(source, "valid")?;
                check_grid("valid", valid.shape(), &grid)?;
                let n_valid = valid.iter().filter(|&&v| v).count();
                if data.nrows() != n_valid || data.ncols() != features.len() {
                    return Err(AssembleError(format!(
                        "array `data` is {} x {} but the mask has {n_valid} valid pixels and \
                         the metadata names {} features",
                        data.nrows(),
                        data.ncols(),
                        features.len()
                    )));
                }
                if !scaling.is_empty() && scaling.len() != features.len() {
                    return Err(AssembleError(format!(
                        "the metadata records the scaling of {} features but names {}",
                        scaling.len(),
                        features.len()
                    )));
                }
                Value::Matrix(Matrix {
                    data,
                    features,
                    valid,
                    grid,
                    scaling,
                })
            }
            ValueMeta::Model { mut model } => {
                let centroids = take::<f32, Ix2, _>(source, "centroids")?;
                if centroids.ncols() != model.features.len() {
                    return Err(AssembleError(format!(
                        "array `centroids` has {} columns but the model names {} features",
                        centroids.ncols(),
                        model.features.len()
                    )));
                }
                model.centroids = centroids;
                Value::Model(model)
            }
            ValueMeta::Labels {
                grid,
                nodata,
                classes,
            } => {
                let data = take::<u16, Ix2, _>(source, "data")?;
                check_grid("data", data.shape(), &grid)?;
                Value::Labels(Labels {
                    data,
                    nodata,
                    classes,
                    grid,
                })
            }
        })
    }
}

/// An [`ArraySource`] over arrays already in memory, by name (for tests and simple callers).
#[derive(Debug, Default)]
pub struct OwnedArrays {
    f32s: Vec<(String, ArrayD<f32>)>,
    u16s: Vec<(String, ArrayD<u16>)>,
    u8s: Vec<(String, ArrayD<u8>)>,
    bools: Vec<(String, ArrayD<bool>)>,
}

impl OwnedArrays {
    /// Copies every array of `arrays` (as made by [`Value::split`]).
    pub fn from_views(arrays: &[NamedArray<'_>]) -> Self {
        let mut out = OwnedArrays::default();
        for a in arrays {
            let name = a.name.to_string();
            match &a.array {
                ArrayRef::F32(v) => out.f32s.push((name, v.to_owned())),
                ArrayRef::U16(v) => out.u16s.push((name, v.to_owned())),
                ArrayRef::U8(v) => out.u8s.push((name, v.to_owned())),
                ArrayRef::Bool(v) => out.bools.push((name, v.to_owned())),
            }
        }
        out
    }
}

impl ArraySource for OwnedArrays {
    fn array<T: Element>(&mut self, name: &str) -> Result<ArrayD<T>, String> {
        fn pick<U: Clone + 'static, T: 'static>(
            list: &mut Vec<(String, ArrayD<U>)>,
            name: &str,
        ) -> Option<ArrayD<T>> {
            let i = list.iter().position(|(n, _)| n == name)?;
            let (_, a) = list.swap_remove(i);
            let boxed: Box<dyn std::any::Any> = Box::new(a);
            boxed.downcast::<ArrayD<T>>().ok().map(|b| *b)
        }
        let found = match T::DTYPE {
            Dtype::F32 => pick::<f32, T>(&mut self.f32s, name),
            Dtype::U16 => pick::<u16, T>(&mut self.u16s, name),
            Dtype::U8 => pick::<u8, T>(&mut self.u8s, name),
            Dtype::Bool => pick::<bool, T>(&mut self.bools, name),
        };
        found.ok_or_else(|| format!("no {} array called `{name}`", T::DTYPE.name()))
    }
}

/// One small value of every type (a raster with a NaN, a matrix with a mask, a K-Means model and
/// a classifier model, a class map, items, JSON) on a 3 x 2 grid: the fixture for tests of code that moves values around
/// (the store, the plugin wire format).
pub fn examples() -> Vec<Value> {
    use ndarray::{Array2, Array4};
    let grid = Grid::north_up("EPSG:32618", 0.0, 10.0, 1.0, 3, 2);
    vec![
        Value::Items(Items::from_features(vec![serde_json::json!({"id": "a"})])),
        Value::Json(serde_json::json!({"x": 1})),
        Value::Raster(Raster {
            data: Array4::from_shape_fn((1, 2, 2, 3), |(_, b, y, x)| {
                if x == 1 && y == 0 {
                    f32::NAN
                } else {
                    (b * 10 + y * 3 + x) as f32
                }
            }),
            grid: grid.clone(),
            bands: vec![
                BandInfo {
                    scaling: Default::default(),
                    name: "B04".into(),
                    common_name: Some("red".into()),
                    wavelength: Some(0.665),
                },
                BandInfo::default(),
            ],
            times: vec!["2021-08-03T00:00:00Z".into()],
        }),
        Value::Matrix(Matrix {
            scaling: Default::default(),
            data: Array2::from_elem((4, 2), 0.5),
            features: vec!["a".into(), "b".into()],
            valid: Array2::from_shape_fn((2, 3), |(y, x)| x != y),
            grid: grid.clone(),
        }),
        Value::Model(Model {
            scaling: Default::default(),
            centroids: Array2::from_elem((2, 2), 1.5),
            features: vec!["a".into(), "b".into()],
            inertia: 3.25,
            iterations: 7,
            seed: 42,
            counts: vec![1, 3],
            info: serde_json::json!({"init": "k-means++"}),
            classifier: None,
        }),
        Value::Model(Model {
            scaling: Default::default(),
            centroids: Array2::from_shape_vec((2, 2), vec![0.25, 1.0, 0.75, -1e-7]).unwrap(),
            features: vec!["a".into(), "b".into()],
            inertia: 0.5,
            iterations: 0,
            seed: 7,
            counts: vec![3, 2],
            info: serde_json::json!({"samples_per_class": 5}),
            classifier: Some(Box::new(crate::classifier::Classifier {
                method: "decision-tree".into(),
                classes: vec![
                    ClassInfo {
                        id: 2,
                        name: "water".into(),
                        color: [0, 0, 255],
                    },
                    ClassInfo {
                        id: 5,
                        name: "forest".into(),
                        color: [0, 128, 0],
                    },
                ],
                trees: vec![crate::classifier::Tree {
                    feature: vec![1, -1, -1],
                    threshold: vec![0.1 + 1e-7, 0.0, 0.0],
                    left: vec![1, 0, 0],
                    right: vec![2, 0, 0],
                    class: vec![0, 0, 1],
                }],
                holdout: crate::classifier::Holdout::of(&[0, 1, 1], &[0, 1, 0], 2),
            })),
        }),
        Value::Labels(Labels {
            data: Array2::from_shape_fn((2, 3), |(y, x)| (y * 3 + x) as u16),
            nodata: 65535,
            classes: vec![ClassInfo {
                id: 0,
                name: "class 0".into(),
                color: [1, 2, 3],
            }],
            grid,
        }),
    ]
}

/// True when two values are equal, NaN pixels included (compared bit for bit).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Raster(x), Value::Raster(y)) => {
            x.data.shape() == y.data.shape()
                && x.data
                    .iter()
                    .zip(y.data.iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits())
                && (&x.grid, &x.bands, &x.times) == (&y.grid, &y.bands, &y.times)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array4};

    fn grid() -> Grid {
        Grid::north_up("EPSG:32618", 0.0, 20.0, 10.0, 3, 2)
    }

    fn raster(t: usize, b: usize, h: usize, w: usize) -> Value {
        Value::Raster(Raster {
            data: Array4::zeros((t, b, h, w)),
            grid: grid(),
            bands: vec![BandInfo::default(); b],
            times: vec!["2021-08-03T00:00:00Z".into(); t],
        })
    }

    fn reassemble(meta: ValueMeta, v: &Value) -> Result<Value, AssembleError> {
        let (_, arrays) = v.split();
        Value::assemble(meta, &mut OwnedArrays::from_views(&arrays))
    }

    #[test]
    fn split_then_assemble_is_the_identity() {
        let v = raster(1, 2, 2, 3);
        let (meta, _) = v.split();
        assert_eq!(reassemble(meta, &v).unwrap(), v);
    }

    #[test]
    fn meta_json_keeps_the_type_tag_and_fields() {
        let (meta, _) = raster(1, 1, 2, 3).split();
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(json["type"], "Raster");
        assert_eq!(json["grid"]["width"], 3);
        assert_eq!(serde_json::from_value::<ValueMeta>(json).unwrap(), meta);
    }

    #[test]
    fn arrays_that_do_not_fit_the_grid_are_refused() {
        let (meta, _) = raster(1, 1, 2, 3).split();
        let e = reassemble(meta, &raster(1, 1, 4, 3)).unwrap_err();
        assert!(e.0.contains("4 x 3 pixels but its grid is 2 x 3"), "{e}");
    }

    #[test]
    fn band_and_time_counts_must_match_the_metadata() {
        let (meta, _) = raster(1, 2, 2, 3).split();
        let e = reassemble(meta, &raster(2, 2, 2, 3)).unwrap_err();
        assert!(e.0.contains("2 times x 2 bands"), "{e}");
    }

    #[test]
    fn a_matrix_needs_one_row_per_valid_pixel() {
        let m = Value::Matrix(Matrix {
            scaling: Default::default(),
            data: Array2::zeros((5, 1)),
            features: vec!["a".into()],
            valid: Array2::from_elem((2, 3), true),
            grid: grid(),
        });
        let (meta, _) = m.split();
        let e = reassemble(meta, &m).unwrap_err();
        assert!(e.0.contains("6 valid pixels"), "{e}");
    }

    #[test]
    fn wrong_element_type_or_missing_array_is_an_error() {
        let labels = Value::Labels(Labels {
            data: Array2::zeros((2, 3)),
            nodata: 0,
            classes: vec![],
            grid: grid(),
        });
        let (meta, _) = labels.split();
        // A raster's f32 `data` where u16 labels are expected.
        let e = reassemble(meta.clone(), &raster(1, 1, 2, 3)).unwrap_err();
        assert!(e.0.contains("no u16 array called `data`"), "{e}");
        let e = Value::assemble(meta, &mut OwnedArrays::default()).unwrap_err();
        assert!(e.0.contains("array `data`"), "{e}");
    }

    #[test]
    fn layout_names_every_array_that_split_returns() {
        let v = raster(1, 1, 2, 3);
        let (meta, arrays) = v.split();
        let layout: Vec<_> = meta.array_layout().iter().map(|l| (l.0, l.1)).collect();
        let got: Vec<_> = arrays.iter().map(|a| (a.name, a.array.dtype())).collect();
        assert_eq!(layout, got);
    }
}
