//! `flow_core::Value` <-> [`FlowValue`], derived from `flow_core::meta`: the meta text is the
//! serde JSON of the value's [`ValueMeta`], the array table is built from the [`NamedArray`]s of
//! `Value::split` (pointer + shape + dtype, no copy), and the receiving side reads the table back
//! by the names and dtypes of [`ValueMeta::array_layout`].
//!
//! - [`Lent::new`] describes a value without copying its arrays (unless one is not in standard
//!   C order, which values made by flow never are; such an array is copied once, into the `Lent`).
//! - [`give`] hands a value over with a `release` that frees it (a plugin's output).
//! - [`to_value`] rebuilds an owned value with `Value::assemble` through [`LentArrays`], an
//!   [`ArraySource`] over the lent buffers: one copy of each array, every array checked against
//!   the meta (dtype, rank, grid size) before it is used.
//! - [`named_views`] gives views of the lent buffers, named as in the meta's layout: no copy (what
//!   the SDK hands to a plugin's node).

use std::any::Any;
use std::ffi::c_void;

use flow_core::meta::{ArrayRef, ArraySource, Element, NamedArray, ValueMeta};
use flow_core::{Dtype, Value};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::abi::{dtype_code, dtype_code_name, FlowArray, FlowStr, FlowValue, MAX_DIMS};

/// A value described for the other side: the meta text and a table of arrays that point into
/// the value (or into copies held here). It borrows the value's array buffers by raw pointer: the
/// value's arrays must not be dropped or mutated while the `Lent` (or a [`FlowValue`] made from
/// it) is in use. Moving the value is fine: an ndarray's heap buffer does not move with it.
pub(crate) struct Lent {
    meta: String,
    arrays: Vec<FlowArray>,
    /// Contiguous copies of arrays that were not in standard layout.
    copies: Vec<Box<dyn Any + Send + Sync>>,
}

// SAFETY: the raw pointers in `arrays` point into buffers of a `Value` (Send + Sync, not mutated
// while lent) or into `copies` (Send + Sync); a `Lent` is only read.
unsafe impl Send for Lent {}
// SAFETY: as above.
unsafe impl Sync for Lent {}

impl Lent {
    /// Describes `value`: its meta as JSON, its arrays by pointer.
    ///
    /// # Errors
    /// When the meta cannot be written as JSON, or an array has more than [`MAX_DIMS`]
    /// dimensions.
    pub(crate) fn new(value: &Value) -> Result<Lent, String> {
        let (meta, arrays) = value.split();
        let mut lent = Lent {
            meta: serde_json::to_string(&meta)
                .map_err(|e| format!("the value's meta cannot be written as JSON: {e}"))?,
            arrays: Vec::with_capacity(arrays.len()),
            copies: Vec::new(),
        };
        for a in &arrays {
            match &a.array {
                ArrayRef::F32(v) => lent.push(a.name, v),
                ArrayRef::U16(v) => lent.push(a.name, v),
                ArrayRef::U8(v) => lent.push(a.name, v),
                ArrayRef::Bool(v) => lent.push(a.name, v),
            }?;
        }
        Ok(lent)
    }

    fn push<T: Element>(
        &mut self,
        name: &'static str,
        a: &ArrayViewD<'_, T>,
    ) -> Result<(), String> {
        if a.ndim() > MAX_DIMS {
            return Err(format!(
                "array `{name}` has {} dimensions, more than the {MAX_DIMS} the ABI carries",
                a.ndim()
            ));
        }
        let mut shape = [0u64; MAX_DIMS];
        for (s, &d) in shape.iter_mut().zip(a.shape()) {
            *s = d as u64;
        }
        let data: *const T = match a.as_slice() {
            Some(s) => s.as_ptr(),
            None => {
                let copy: Box<Vec<T>> = Box::new(a.iter().copied().collect());
                let ptr = copy.as_ptr();
                self.copies.push(copy);
                ptr
            }
        };
        self.arrays.push(FlowArray {
            name: FlowStr::from_static(name),
            dtype: dtype_code(T::DTYPE),
            ndim: a.ndim() as u32,
            shape,
            data: data.cast::<c_void>(),
        });
        Ok(())
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
struct Given {
    _value: Value,
    lent: Lent,
}

/// Hands `value` over as a [`FlowValue`] that owns it; its `release` frees it, once.
///
/// # Errors
/// As for [`Lent::new`].
pub(crate) fn give(value: Value) -> Result<FlowValue, String> {
    let lent = Lent::new(&value)?;
    let given = Box::new(Given {
        _value: value,
        lent,
    });
    let mut fv = given.lent.flow_value();
    fv.private_data = Box::into_raw(given).cast::<c_void>();
    fv.release = Some(release_given);
    Ok(fv)
}

/// Frees a value made by [`give`].
///
/// # Safety
/// `value` must be a value made by [`give`] in this library, not yet released.
unsafe extern "C" fn release_given(value: *mut FlowValue) {
    if value.is_null() {
        return;
    }
    // SAFETY: private_data is the `Box<Given>` leaked by `give`; it is taken back once and the
    // struct is reset so that a second call finds nothing to free.
    unsafe {
        let given = (*value).private_data.cast::<Given>();
        if !given.is_null() {
            drop(Box::from_raw(given));
        }
        *value = FlowValue::empty();
    }
}

/// The meta of a [`FlowValue`].
///
/// # Safety
/// `v.meta_json` must point to readable bytes valid for the call.
pub(crate) unsafe fn meta(v: &FlowValue) -> Result<ValueMeta, String> {
    // SAFETY: forwarded to the caller's guarantee.
    let text = unsafe { v.meta_json.as_str() }.ok_or("the value's meta is not UTF-8")?;
    serde_json::from_str(text).map_err(|e| format!("the value's meta is not a ValueMeta: {e}"))
}

/// The array table of a [`FlowValue`].
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

/// The array called `name`.
///
/// # Safety
/// Each array's `name` must point to readable bytes.
unsafe fn find<'t>(arrays: &'t [FlowArray], name: &str) -> Result<&'t FlowArray, String> {
    arrays
        .iter()
        // SAFETY: forwarded to the caller's guarantee.
        .find(|a| unsafe { a.name.as_str() } == Some(name))
        .ok_or_else(|| format!("the value has no `{name}` array"))
}

/// Checks `a` against `dtype` and the limits of the ABI; returns its shape and element count.
fn check(a: &FlowArray, dtype: Dtype) -> Result<(Vec<usize>, usize), String> {
    if a.dtype != dtype_code(dtype) {
        return Err(format!(
            "has dtype {}, expected {}",
            dtype_code_name(a.dtype),
            dtype.name()
        ));
    }
    let ndim = a.ndim as usize;
    if ndim > MAX_DIMS {
        return Err(format!("has {ndim} dimensions, more than {MAX_DIMS}"));
    }
    let mut shape = Vec::with_capacity(ndim);
    let mut len: usize = 1;
    for &d in &a.shape[..ndim] {
        let d = usize::try_from(d).map_err(|_| "has a dimension too large".to_string())?;
        len = len
            .checked_mul(d)
            .ok_or_else(|| "has a size that overflows".to_string())?;
        shape.push(d);
    }
    if len.saturating_mul(dtype.size()) > isize::MAX as usize {
        return Err("has a size that overflows".into());
    }
    if len > 0 && (a.data.is_null() || a.data.align_offset(dtype.size()) != 0) {
        return Err("has a null or misaligned data pointer".into());
    }
    Ok((shape, len))
}

/// A view of `a` as elements of `T`, whose shape and pointer [`check`] accepted for a dtype of
/// `T`'s size.
///
/// # Safety
/// `a.data` must point to `len` initialized elements that are valid values of `T`, in C order,
/// not mutated and valid for `'a`.
unsafe fn view_checked<'a, T>(a: &FlowArray, shape: &[usize], len: usize) -> ArrayViewD<'a, T> {
    // An empty array reads no memory: a dangling, aligned pointer will do.
    let ptr = if len == 0 {
        std::ptr::NonNull::<T>::dangling().as_ptr().cast_const()
    } else {
        a.data.cast::<T>()
    };
    // SAFETY: `check` accepted a non-null, aligned pointer to `len` elements whose byte size fits
    // isize (or there are none); the caller guarantees they are valid values of T, C-ordered
    // (the default strides of `from_shape_ptr`) and valid for 'a.
    unsafe { ArrayViewD::from_shape_ptr(IxDyn(shape), ptr) }
}

/// An [`ArraySource`] over a lent array table: each array is checked ([`check`]) and copied
/// once into an owned array. `bool` arrays are read as bytes (any non-zero byte is true), so a
/// plugin cannot hand over an invalid `bool`.
pub(crate) struct LentArrays<'t> {
    arrays: &'t [FlowArray],
}

impl<'t> LentArrays<'t> {
    /// A source over `arrays`.
    ///
    /// # Safety
    /// Every array's name and data must be readable as it describes, unmutated, while the source
    /// is used.
    pub(crate) unsafe fn new(arrays: &'t [FlowArray]) -> Self {
        LentArrays { arrays }
    }
}

impl ArraySource for LentArrays<'_> {
    fn array<T: Element>(&mut self, name: &str) -> Result<ArrayD<T>, String> {
        // SAFETY: `new`'s contract: names and data are readable while the source is used.
        let a = unsafe { find(self.arrays, name) }?;
        let (shape, len) = check(a, T::DTYPE)?;
        let owned: Box<dyn Any> = if T::DTYPE == Dtype::Bool {
            // SAFETY: `check` accepted the shape and pointer for 1-byte elements; any byte is a
            // valid u8, and `new`'s contract keeps the bytes readable for this call.
            let bytes = unsafe { view_checked::<u8>(a, &shape, len) };
            Box::new(bytes.mapv(|b| b != 0))
        } else {
            // SAFETY: `check` accepted the shape and pointer for T; T is f32, u16 or u8, for which
            // every bit pattern is valid; `new`'s contract keeps the data readable for this call.
            Box::new(unsafe { view_checked::<T>(a, &shape, len) }.to_owned())
        };
        owned
            .downcast::<ArrayD<T>>()
            .map(|b| *b)
            .map_err(|_| format!("cannot read {} elements", T::DTYPE.name()))
    }
}

/// Rebuilds an owned value from a [`FlowValue`] with `Value::assemble`, copying each array once
/// and checking it against the meta.
///
/// # Safety
/// Every pointer in `v` must be valid as the producer promised (until its release).
pub(crate) unsafe fn to_value(v: &FlowValue) -> Result<Value, String> {
    // SAFETY: forwarded to the caller's guarantee.
    let meta = unsafe { meta(v) }?;
    // SAFETY: forwarded to the caller's guarantee.
    let arrays = unsafe { arrays(v) }?;
    // SAFETY: forwarded to the caller's guarantee; the source is dropped before this returns.
    let mut source = unsafe { LentArrays::new(arrays) };
    Value::assemble(meta, &mut source).map_err(|e| e.to_string())
}

/// Views of the arrays of `meta`'s layout in a lent table, without copying, under the layout's
/// names.
///
/// # Safety
/// Every array's name and data must be readable as it describes, unmutated, for `'a`; `bool`
/// arrays must hold only 0 and 1 (the host lends flow's own `bool` arrays).
pub(crate) unsafe fn named_views<'a>(
    meta: &ValueMeta,
    table: &[FlowArray],
) -> Result<Vec<NamedArray<'a>>, String> {
    let mut out = Vec::new();
    for &(name, dtype, _) in meta.array_layout() {
        // SAFETY: forwarded to the caller's guarantee.
        let a = unsafe { find(table, name) }?;
        let (shape, len) = check(a, dtype).map_err(|e| format!("array `{name}` {e}"))?;
        // SAFETY: `check` accepted the shape and pointer for `dtype`, the element type of each
        // arm; the caller guarantees valid, unmutated elements for 'a.
        let array = unsafe {
            match dtype {
                Dtype::F32 => ArrayRef::F32(view_checked(a, &shape, len)),
                Dtype::U16 => ArrayRef::U16(view_checked(a, &shape, len)),
                Dtype::U8 => ArrayRef::U8(view_checked(a, &shape, len)),
                Dtype::Bool => ArrayRef::Bool(view_checked(a, &shape, len)),
            }
        };
        out.push(NamedArray { name, array });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{DTYPE_F32, DTYPE_U16};
    use flow_core::{Grid, Labels};
    use ndarray::Array2;

    fn grid() -> Grid {
        Grid::north_up("EPSG:32618", 0.0, 10.0, 1.0, 3, 2)
    }

    fn release(fv: &mut FlowValue) {
        let release = fv.release.take().unwrap();
        // SAFETY: released once.
        unsafe { release(fv) };
    }

    #[test]
    fn every_value_type_round_trips_through_give_and_to_value() {
        for v in flow_core::meta::examples() {
            let mut fv = give(v.clone()).unwrap();
            // The meta text is exactly the serde JSON of the value's ValueMeta.
            // SAFETY: `fv` is live until released below.
            let text = unsafe { fv.meta_json.as_str() }.unwrap();
            assert_eq!(text, serde_json::to_string(&v.split().0).unwrap());
            // SAFETY: `fv` was made by `give` and is released right after.
            let back = unsafe { to_value(&fv) }.unwrap();
            assert!(flow_core::meta::same(&v, &back), "{v:?} != {back:?}");
            release(&mut fv);
            assert!(fv.private_data.is_null() && fv.release.is_none());
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
        let lent = Lent::new(&Value::Labels(t.clone())).unwrap();
        // SAFETY: `lent` and `t` outlive the read.
        let back = unsafe { to_value(&lent.flow_value()) }.unwrap();
        assert_eq!(back, Value::Labels(t));
    }

    #[test]
    fn views_point_into_the_lent_buffers() {
        let value = Value::Labels(Labels {
            data: Array2::from_shape_fn((2, 3), |(y, x)| (y * 3 + x) as u16),
            nodata: 7,
            classes: vec![],
            grid: grid(),
        });
        let lent = Lent::new(&value).unwrap();
        let fv = lent.flow_value();
        // SAFETY: `value` and `lent` outlive the views.
        let (meta, table) = unsafe { (meta(&fv).unwrap(), arrays(&fv).unwrap()) };
        // SAFETY: as above.
        let views = unsafe { named_views(&meta, table) }.unwrap();
        let Value::Labels(l) = &value else {
            unreachable!()
        };
        let ArrayRef::U16(v) = &views[0].array else {
            panic!("{views:?}")
        };
        assert_eq!(v.as_ptr(), l.data.as_ptr(), "no copy");
        assert_eq!(v.shape(), &[2, 3]);
    }

    /// The meta of a labels value on `grid`.
    fn labels_meta(grid: &Grid) -> String {
        serde_json::to_string(&ValueMeta::Labels {
            grid: grid.clone(),
            nodata: 0,
            classes: vec![],
        })
        .unwrap()
    }

    fn decode(meta: &str, a: FlowArray) -> Result<Value, String> {
        let table = [a];
        let fv = FlowValue {
            meta_json: FlowStr::borrow(meta),
            arrays: table.as_ptr(),
            n_arrays: 1,
            private_data: std::ptr::null_mut(),
            release: None,
        };
        // SAFETY: `meta`, `table` and whatever `a` points at outlive the call.
        unsafe { to_value(&fv) }
    }

    #[test]
    fn arrays_that_do_not_fit_the_meta_are_refused_not_read() {
        let pixels = [0u16; 9];
        let ok = FlowArray {
            name: FlowStr::from_static("data"),
            dtype: DTYPE_U16,
            ndim: 2,
            shape: [3, 3, 0, 0],
            data: pixels.as_ptr().cast(),
        };
        let three = Grid::north_up("EPSG:4326", 0.0, 0.0, 1.0, 3, 3);
        let meta = labels_meta(&three);
        assert!(decode(&meta, ok).is_ok());
        let cases = [
            (
                FlowArray {
                    dtype: DTYPE_F32,
                    ..ok
                },
                "has dtype f32, expected u16",
            ),
            (FlowArray { dtype: 77, ..ok }, "unknown dtype #77"),
            (
                FlowArray {
                    ndim: 3,
                    shape: [1, 3, 3, 0],
                    ..ok
                },
                "3 dimensions, expected 2",
            ),
            (FlowArray { ndim: 9, ..ok }, "more than 4"),
            (
                FlowArray {
                    shape: [u64::MAX, 3, 0, 0],
                    ..ok
                },
                "overflows",
            ),
            (
                FlowArray {
                    data: std::ptr::null(),
                    ..ok
                },
                "null or misaligned",
            ),
            (
                FlowArray {
                    name: FlowStr::from_static("other"),
                    ..ok
                },
                "no `data` array",
            ),
        ];
        for (a, want) in cases {
            let e = decode(&meta, a).unwrap_err();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        // The right dtype and rank on another grid.
        let four = Grid::north_up("EPSG:4326", 0.0, 0.0, 1.0, 4, 4);
        let meta4 = labels_meta(&four);
        let e = decode(&meta4, ok).unwrap_err();
        assert!(e.contains("3 x 3 pixels but its grid is 4 x 4"), "{e}");
        let e = decode("{\"type\": \"Nope\"}", ok).unwrap_err();
        assert!(e.contains("not a ValueMeta"), "{e}");
    }

    #[test]
    fn bool_arrays_from_a_plugin_are_read_as_bytes() {
        let bytes = [0u8, 1, 2, 255, 0, 9];
        let a = FlowArray {
            name: FlowStr::from_static("valid"),
            dtype: crate::abi::DTYPE_BOOL,
            ndim: 2,
            shape: [2, 3, 0, 0],
            data: bytes.as_ptr().cast(),
        };
        // SAFETY: `bytes` outlives the source.
        let mut source = unsafe { LentArrays::new(std::slice::from_ref(&a)) };
        let got = source.array::<bool>("valid").unwrap();
        assert_eq!(
            got.iter().copied().collect::<Vec<_>>(),
            vec![false, true, true, true, false, true]
        );
        assert!(source.array::<u8>("valid").is_err());
    }
}
