//! `flow_core::Value` <-> [`FlowValue`]: the same parts as `flow_core::store` (JSON meta + named
//! arrays), with arrays lent by pointer instead of encoded.
//!
//! - [`Lent::new`] describes a value without copying its arrays (unless one is not in standard
//!   C order, which values made by flow never are; such an array is copied once, into the `Lent`).
//! - [`to_value`] rebuilds an owned value from a [`FlowValue`]: one copy of each array.
//! - [`view`] gives an `ndarray` view of one [`FlowArray`]: no copy.

use std::ffi::c_void;

use flow_core::{ClassInfo, Grid, Items, Labels, Matrix, Model, Raster, Value};
use ndarray::{Array, ArrayView, Dimension, IxDyn, ShapeBuilder};
use serde_json::json;

use crate::abi::{
    FlowArray, FlowDtype, FlowStr, FlowValue, DTYPE_BOOL, DTYPE_F32, DTYPE_U16, DTYPE_U8, MAX_DIMS,
};

/// An element type that can cross the boundary.
pub trait Element: Copy + 'static {
    /// Its dtype code.
    const DTYPE: FlowDtype;
}
impl Element for f32 {
    const DTYPE: FlowDtype = DTYPE_F32;
}
impl Element for u16 {
    const DTYPE: FlowDtype = DTYPE_U16;
}
impl Element for u8 {
    const DTYPE: FlowDtype = DTYPE_U8;
}
impl Element for bool {
    const DTYPE: FlowDtype = DTYPE_BOOL;
}

/// The name of a dtype code, for messages.
pub fn dtype_name(d: FlowDtype) -> String {
    match d {
        DTYPE_F32 => "f32".into(),
        DTYPE_U16 => "u16".into(),
        DTYPE_U8 => "u8".into(),
        DTYPE_BOOL => "bool".into(),
        other => format!("dtype #{other}"),
    }
}

/// A value described for the other side: the meta text and a table of arrays that point into
/// the value (or into copies held here). It borrows the value's array buffers by raw pointer: the
/// value's arrays must not be dropped or mutated while the `Lent` (or a [`FlowValue`] made from
/// it) is in use. Moving the value is fine: an ndarray's heap buffer does not move with it.
pub(crate) struct Lent {
    meta: String,
    arrays: Vec<FlowArray>,
    /// Contiguous copies of arrays that were not in standard layout.
    _copies: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

// SAFETY: the raw pointers in `arrays` point into buffers of a `Value` (Send + Sync, not mutated
// while lent) or into `_copies` (Send + Sync); a `Lent` is only read.
unsafe impl Send for Lent {}
// SAFETY: as above.
unsafe impl Sync for Lent {}

impl Lent {
    /// Describes `value`.
    pub(crate) fn new(value: &Value) -> Lent {
        let mut lent = Lent {
            meta: String::new(),
            arrays: Vec::new(),
            _copies: Vec::new(),
        };
        let meta = match value {
            Value::Items(items) => json!({"type": "Items", "collection": items.collection}),
            Value::Json(v) => json!({"type": "Json", "value": v}),
            Value::Raster(r) => {
                lent.push("data", &r.data);
                json!({"type": "Raster", "grid": r.grid, "bands": r.bands, "times": r.times})
            }
            Value::Matrix(m) => {
                lent.push("data", &m.data);
                lent.push("valid", &m.valid);
                json!({"type": "Matrix", "grid": m.grid, "features": m.features})
            }
            Value::Model(m) => {
                lent.push("centroids", &m.centroids);
                json!({"type": "Model", "model": m})
            }
            Value::Labels(l) => {
                lent.push("data", &l.data);
                json!({"type": "Labels", "grid": l.grid, "nodata": l.nodata, "classes": l.classes})
            }
        };
        lent.meta = meta.to_string();
        lent
    }

    fn push<T, D>(&mut self, name: &'static str, a: &Array<T, D>)
    where
        T: Element + Send + Sync,
        D: Dimension,
    {
        let mut shape = [0u64; MAX_DIMS];
        for (s, &d) in shape.iter_mut().zip(a.shape()) {
            *s = d as u64;
        }
        let data: *const T = match a.as_slice() {
            Some(s) => s.as_ptr(),
            None => {
                let copy: Box<Vec<T>> = Box::new(a.iter().copied().collect());
                let ptr = copy.as_ptr();
                self._copies.push(copy);
                ptr
            }
        };
        self.arrays.push(FlowArray {
            name: FlowStr::from_static(name),
            dtype: T::DTYPE,
            ndim: a.ndim().min(MAX_DIMS) as u32,
            shape,
            data: data.cast::<c_void>(),
        });
    }

    /// A [`FlowValue`] pointing into this `Lent`, with no release callback (the owner of the
    /// `Lent` frees it). Valid while `self` is neither moved nor dropped.
    pub(crate) fn flow_value(&self) -> FlowValue {
        FlowValue {
            meta_json: FlowStr::borrow(&self.meta),
            arrays: self.arrays.as_ptr(),
            n_arrays: self.arrays.len(),
            private_data: std::ptr::null_mut(),
            release: None,
        }
    }
}

/// A value and its description, boxed together so that a plugin can hand it to the host and
/// free it from `release`.
pub(crate) struct Owned {
    _value: Value,
    lent: Lent,
}

/// Hands `value` over as a [`FlowValue`] that owns it; its `release` frees it.
pub(crate) fn give(value: Value) -> FlowValue {
    let lent = Lent::new(&value);
    let owned = Box::new(Owned {
        _value: value,
        lent,
    });
    let mut fv = owned.lent.flow_value();
    fv.private_data = Box::into_raw(owned).cast::<c_void>();
    fv.release = Some(release_owned);
    fv
}

/// Frees a value made by [`give`].
///
/// # Safety
/// `value` must be a value made by [`give`] in this library, not yet released.
unsafe extern "C" fn release_owned(value: *mut FlowValue) {
    if value.is_null() {
        return;
    }
    // SAFETY: private_data is the `Box<Owned>` leaked by `give`; it is taken back once and the
    // struct is reset so that a second call finds nothing to free.
    unsafe {
        let owned = (*value).private_data.cast::<Owned>();
        if !owned.is_null() {
            drop(Box::from_raw(owned));
        }
        *value = FlowValue::empty();
    }
}

/// The arrays of a [`FlowValue`].
///
/// # Safety
/// `v.arrays` must point to `v.n_arrays` readable [`FlowArray`]s valid for `'a`.
pub(crate) unsafe fn arrays<'a>(v: &FlowValue) -> Result<&'a [FlowArray], String> {
    if v.n_arrays == 0 {
        return Ok(&[]);
    }
    if v.arrays.is_null() || !v.arrays.is_aligned() {
        return Err("the value's array table is null or misaligned".into());
    }
    // SAFETY: non-null and aligned; the caller guarantees n_arrays readable entries for 'a.
    Ok(unsafe { std::slice::from_raw_parts(v.arrays, v.n_arrays) })
}

/// The meta JSON of a [`FlowValue`].
///
/// # Safety
/// `v.meta_json` must point to readable bytes valid for the call.
pub(crate) unsafe fn meta(v: &FlowValue) -> Result<serde_json::Value, String> {
    // SAFETY: forwarded to the caller's guarantee.
    let text = unsafe { v.meta_json.as_str() }.ok_or("the value's meta is not UTF-8")?;
    serde_json::from_str(text).map_err(|e| format!("the value's meta is not JSON: {e}"))
}

/// Finds the array called `name`.
///
/// # Safety
/// Each array's `name` must point to readable bytes.
pub(crate) unsafe fn find<'a>(
    arrays: &'a [FlowArray],
    name: &str,
) -> Result<&'a FlowArray, String> {
    arrays
        .iter()
        // SAFETY: forwarded to the caller's guarantee.
        .find(|a| unsafe { a.name.as_str() } == Some(name))
        .ok_or_else(|| format!("the value has no `{name}` array"))
}

/// Checks dtype, rank, size and pointer of `a`; returns the shape and element count.
fn check<T: Element>(a: &FlowArray, ndim: usize) -> Result<(Vec<usize>, usize), String> {
    if a.dtype != T::DTYPE {
        return Err(format!(
            "array has dtype {}, expected {}",
            dtype_name(a.dtype),
            dtype_name(T::DTYPE)
        ));
    }
    if a.ndim as usize != ndim {
        return Err(format!("array has {} dimensions, expected {ndim}", a.ndim));
    }
    let mut shape = Vec::with_capacity(ndim);
    let mut len: usize = 1;
    for &d in &a.shape[..ndim] {
        let d = usize::try_from(d).map_err(|_| "array dimension too large".to_string())?;
        len = len
            .checked_mul(d)
            .ok_or_else(|| "array size overflows".to_string())?;
        shape.push(d);
    }
    if len.saturating_mul(std::mem::size_of::<T>()) > isize::MAX as usize {
        return Err("array size overflows".into());
    }
    if len > 0 && (a.data.is_null() || !a.data.cast::<T>().is_aligned()) {
        return Err("array data pointer is null or misaligned".into());
    }
    Ok((shape, len))
}

/// A view of `a`, without copying.
///
/// # Safety
/// `a.data` must point to `shape`'s product of initialized elements of type `T` (for `bool`: bytes
/// that are 0 or 1), in C order, not mutated and valid for `'a`.
pub(crate) unsafe fn view<'a, T: Element, D: Dimension>(
    a: &FlowArray,
) -> Result<ArrayView<'a, T, D>, String> {
    let ndim = D::NDIM.unwrap_or(a.ndim as usize);
    let (shape, len) = check::<T>(a, ndim)?;
    let view: ArrayView<'a, T, IxDyn> = if len == 0 {
        ArrayView::from_shape(IxDyn(&shape), &[]).map_err(|e| e.to_string())?
    } else {
        // SAFETY: checked above: non-null, aligned, `len` elements whose byte size fits isize;
        // the caller guarantees they are initialized, C-ordered and valid for 'a.
        unsafe {
            ArrayView::from_shape_ptr(IxDyn(&shape).strides(c_strides(&shape)), a.data.cast::<T>())
        }
    };
    view.into_dimensionality::<D>().map_err(|e| e.to_string())
}

fn c_strides(shape: &[usize]) -> IxDyn {
    let mut strides = vec![0usize; shape.len()];
    let mut s = 1usize;
    for (st, &d) in strides.iter_mut().zip(shape).rev() {
        *st = s;
        s = s.saturating_mul(d.max(1));
    }
    IxDyn(&strides)
}

/// An owned copy of `a` (the one copy the host makes of a plugin's output). `bool` arrays are
/// read as bytes (any non-zero byte is true), so a plugin cannot hand over an invalid `bool`.
///
/// # Safety
/// `a.data` must point to `shape`'s product of initialized elements, valid for the call.
pub(crate) unsafe fn copy<T: Element, D: Dimension>(a: &FlowArray) -> Result<Array<T, D>, String> {
    // SAFETY: forwarded to the caller's guarantee.
    let v = unsafe { view::<T, D>(a) }?;
    Ok(v.to_owned())
}

/// An owned copy of a `bool` array, read through bytes.
///
/// # Safety
/// As for [`copy`].
unsafe fn copy_bool<D: Dimension>(a: &FlowArray) -> Result<Array<bool, D>, String> {
    let as_bytes = FlowArray {
        dtype: if a.dtype == DTYPE_BOOL {
            DTYPE_U8
        } else {
            a.dtype
        },
        ..*a
    };
    // SAFETY: forwarded to the caller's guarantee; bytes are valid u8 whatever their value.
    let v = unsafe { view::<u8, D>(&as_bytes) }?;
    Ok(v.mapv(|b| b != 0))
}

/// Field `name` of a value's JSON metadata, deserialized.
pub(crate) fn field<T: serde::de::DeserializeOwned>(
    meta: &serde_json::Value,
    name: &str,
) -> Result<T, String> {
    serde_json::from_value(meta.get(name).cloned().unwrap_or(serde_json::Value::Null))
        .map_err(|e| format!("meta field `{name}`: {e}"))
}

/// The `type` of a value's meta.
pub(crate) fn meta_type(meta: &serde_json::Value) -> &str {
    meta.get("type").and_then(|t| t.as_str()).unwrap_or("")
}

/// Rebuilds an owned value from a [`FlowValue`], copying each array once.
///
/// # Safety
/// Every pointer in `v` must be valid as the producer promised (until its release).
pub(crate) unsafe fn to_value(v: &FlowValue) -> Result<Value, String> {
    // SAFETY: forwarded to the caller's guarantee, here and below.
    let meta = unsafe { meta(v) }?;
    let arrays = unsafe { arrays(v) }?;
    let get = |name: &str| unsafe { find(arrays, name) };
    Ok(match meta_type(&meta) {
        "Items" => Value::Items(Items {
            collection: meta.get("collection").cloned().unwrap_or_default(),
        }),
        "Json" => Value::Json(meta.get("value").cloned().unwrap_or_default()),
        "Raster" => Value::Raster(Raster {
            data: unsafe { copy(get("data")?) }?,
            grid: field::<Grid>(&meta, "grid")?,
            bands: field(&meta, "bands")?,
            times: field(&meta, "times")?,
        }),
        "Matrix" => Value::Matrix(Matrix {
            data: unsafe { copy(get("data")?) }?,
            valid: unsafe { copy_bool(get("valid")?) }?,
            grid: field(&meta, "grid")?,
            features: field(&meta, "features")?,
        }),
        "Model" => {
            let mut model: Model = field(&meta, "model")?;
            model.centroids = unsafe { copy(get("centroids")?) }?;
            Value::Model(model)
        }
        "Labels" => Value::Labels(Labels {
            data: unsafe { copy(get("data")?) }?,
            nodata: field(&meta, "nodata")?,
            classes: field::<Vec<ClassInfo>>(&meta, "classes")?,
            grid: field(&meta, "grid")?,
        }),
        other => return Err(format!("unknown value type `{other}`")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array4};

    fn grid() -> Grid {
        Grid::north_up("EPSG:32618", 0.0, 10.0, 1.0, 3, 2)
    }

    #[test]
    fn every_value_type_round_trips_through_give_and_to_value() {
        let values = vec![
            Value::Items(Items::from_features(vec![json!({"id": "a"})])),
            Value::Json(json!({"x": 1})),
            Value::Raster(Raster {
                data: Array4::from_shape_fn((1, 2, 2, 3), |(_, b, y, x)| {
                    (b * 10 + y * 3 + x) as f32
                }),
                grid: grid(),
                bands: vec![Default::default(), Default::default()],
                times: vec!["2021-08-03T00:00:00Z".into()],
            }),
            Value::Matrix(Matrix {
                data: Array2::from_elem((4, 2), 0.5),
                features: vec!["a".into(), "b".into()],
                valid: Array2::from_shape_fn((2, 3), |(y, x)| x != y),
                grid: grid(),
            }),
            Value::Model(Model {
                centroids: Array2::from_elem((2, 2), 1.5),
                features: vec!["a".into(), "b".into()],
                inertia: 3.25,
                iterations: 7,
                seed: 42,
                counts: vec![1, 3],
                info: json!({"init": "k-means++"}),
            }),
            Value::Labels(Labels {
                data: Array2::from_shape_fn((2, 3), |(y, x)| (y * 3 + x) as u16),
                nodata: 65535,
                classes: vec![],
                grid: grid(),
            }),
        ];
        for v in values {
            let mut fv = give(v.clone());
            // SAFETY: `fv` was made by `give` and is released right after.
            let back = unsafe { to_value(&fv) }.unwrap();
            assert_eq!(v, back);
            let release = fv.release.unwrap();
            // SAFETY: released once.
            unsafe { release(&mut fv) };
            assert!(fv.private_data.is_null());
        }
    }

    #[test]
    fn a_transposed_array_is_lent_in_c_order() {
        let data = Array2::from_shape_fn((3, 2), |(y, x)| (y * 2 + x) as u16);
        let t = Labels {
            data: data.reversed_axes(),
            nodata: 9,
            classes: vec![],
            grid: Grid::north_up("EPSG:4326", 0.0, 0.0, 1.0, 3, 2),
        };
        assert!(t.data.as_slice().is_none());
        let lent = Lent::new(&Value::Labels(t.clone()));
        // SAFETY: `lent` and `t` outlive the read.
        let back = unsafe { to_value(&lent.flow_value()) }.unwrap();
        assert_eq!(back, Value::Labels(t));
    }

    #[test]
    fn bad_arrays_are_refused_not_read() {
        let base = FlowArray {
            name: FlowStr::from_static("data"),
            dtype: DTYPE_U16,
            ndim: 2,
            shape: [2, 2, 0, 0],
            data: std::ptr::null(),
        };
        // SAFETY: each array is refused before its pointer is read.
        unsafe {
            assert!(view::<u16, ndarray::Ix2>(&base)
                .unwrap_err()
                .contains("null"));
            let wrong = FlowArray {
                dtype: DTYPE_F32,
                ..base
            };
            assert!(view::<u16, ndarray::Ix2>(&wrong)
                .unwrap_err()
                .contains("dtype f32"));
            let huge = FlowArray {
                shape: [u64::MAX, 3, 0, 0],
                ..base
            };
            assert!(view::<u16, ndarray::Ix2>(&huge).is_err());
            let rank = FlowArray { ndim: 3, ..base };
            assert!(view::<u16, ndarray::Ix2>(&rank).is_err());
        }
    }
}
