//! The `#[repr(C)]` types that cross between flow and a plugin library: ABI version 1.
//!
//! Rules of the boundary (datafusion-ffi style):
//!
//! - The library exports one **data** symbol, [`ENTRY_SYMBOL`] (`flow_plugin_entry`), a
//!   [`FlowPluginV1`] descriptor. Every descriptor version starts with `abi_version: u32`
//!   ([`FlowPluginHeader`]); the host reads that field, and only that field, first, and refuses a
//!   library whose version is not [`ABI_VERSION`]. Because the entry is data, not a function,
//!   nothing of a refused library ever runs.
//! - Only `#[repr(C)]` structs, integers, raw pointers and `extern "C"` function pointers cross.
//!   No `String`, `Vec`, `Box<dyn Trait>` or Rust enum: a status is an `i32` ([`FlowStatus`]),
//!   never a Rust enum, so an unexpected number from the other side is not undefined behaviour.
//! - Text crosses as UTF-8 [`FlowStr`] (borrowed) or [`FlowBuf`] (owned by its producer, freed by
//!   calling its `release`). Node kinds, signatures, params schemas, params, contexts and errors
//!   are JSON text.
//! - Values cross as [`FlowValue`]: the same parts as `flow_core::store` (a JSON `meta` plus named
//!   arrays), but each array is a pointer + dtype + shape ([`FlowArray`]) into memory the producer
//!   owns; the producer frees it through the value's `release` callback. Nothing is copied on the
//!   way into a plugin; the host copies a plugin's output once, into its own allocation, then
//!   releases it.
//! - Every function a plugin exports catches panics and reports them as [`STATUS_PANIC`].

use std::ffi::c_void;

/// The ABI version this crate speaks. Bump it on any change to a type in this module.
pub const ABI_VERSION: u32 = 1;

/// The name of the exported descriptor symbol (a `static`, not a function).
pub const ENTRY_SYMBOL: &str = "flow_plugin_entry";

/// A status returned by every plugin function. Plain `i32`, never a Rust enum.
pub type FlowStatus = i32;
/// Success; out-parameters are filled.
pub const STATUS_OK: FlowStatus = 0;
/// The call failed; the message buffer holds a JSON error (see [`crate::parts`] for its shape).
pub const STATUS_ERROR: FlowStatus = 1;
/// The plugin panicked; the message buffer holds the panic message as plain text.
pub const STATUS_PANIC: FlowStatus = 2;

/// Element type of a [`FlowArray`]. Plain `u32`.
pub type FlowDtype = u32;
/// `f32`.
pub const DTYPE_F32: FlowDtype = 1;
/// `u16`.
pub const DTYPE_U16: FlowDtype = 2;
/// `u8`.
pub const DTYPE_U8: FlowDtype = 3;
/// `bool`, one byte, 0 or 1.
pub const DTYPE_BOOL: FlowDtype = 4;

/// Most dimensions an array may have (a raster is `time x band x y x x`).
pub const MAX_DIMS: usize = 4;

/// Caching modes of a built node, as returned in [`FlowNodeHandle::caching`].
pub const CACHING_STORE: u32 = 0;
/// Cache with a time-to-live of [`FlowNodeHandle::ttl_secs`].
pub const CACHING_TTL: u32 = 1;
/// Never cache.
pub const CACHING_NEVER: u32 = 2;

/// What every descriptor version begins with: the only field the host reads before it knows the
/// version.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlowPluginHeader {
    /// The ABI version the library was built for.
    pub abi_version: u32,
}

/// A borrowed UTF-8 string: pointer + length, no terminator. Valid for as long as its owner
/// says (the descriptor's strings: forever; arguments: for the call).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlowStr {
    /// First byte (may dangle when `len` is 0).
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl FlowStr {
    /// Borrows a string that lives forever.
    pub const fn from_static(s: &'static str) -> Self {
        FlowStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Borrows `s` for as long as the caller keeps it alive.
    pub fn borrow(s: &str) -> Self {
        FlowStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The bytes, or `None` for a null pointer with a non-zero length.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged for `'a`.
    pub unsafe fn as_bytes<'a>(self) -> Option<&'a [u8]> {
        if self.len == 0 {
            return Some(&[]);
        }
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: non-null, and the caller guarantees `len` readable bytes living for 'a.
        Some(unsafe { std::slice::from_raw_parts(self.ptr, self.len) })
    }

    /// The text, or `None` when the pointer is null or the bytes are not UTF-8.
    ///
    /// # Safety
    /// As for [`FlowStr::as_bytes`].
    pub unsafe fn as_str<'a>(self) -> Option<&'a str> {
        // SAFETY: forwarded to the caller's guarantee.
        unsafe { self.as_bytes() }.and_then(|b| std::str::from_utf8(b).ok())
    }
}

/// Bytes owned by their producer, handed to a consumer that calls `release` exactly once when
/// done (after which no field may be used). A zeroed buffer (`release` = None) is empty.
#[repr(C)]
#[derive(Debug)]
pub struct FlowBuf {
    /// First byte.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
    /// The producer's bookkeeping; opaque to the consumer.
    pub private_data: *mut c_void,
    /// Frees the buffer; `None` when there is nothing to free.
    pub release: Option<unsafe extern "C" fn(buf: *mut FlowBuf)>,
}

impl FlowBuf {
    /// An empty buffer, used to initialize out-parameters.
    pub const fn empty() -> Self {
        FlowBuf {
            ptr: std::ptr::null(),
            len: 0,
            private_data: std::ptr::null_mut(),
            release: None,
        }
    }
}

/// One array of a [`FlowValue`]: a C-order (row-major, contiguous) block of `shape` elements of
/// `dtype` at `data`, owned by whoever produced the value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlowArray {
    /// The part's name (`data`, `valid`, `centroids`), as in `flow_core::store` minus `.npy`.
    pub name: FlowStr,
    /// One of the `DTYPE_*` constants.
    pub dtype: FlowDtype,
    /// Number of dimensions used in `shape` (1 to [`MAX_DIMS`]).
    pub ndim: u32,
    /// The extent of each dimension; entries past `ndim` are 0.
    pub shape: [u64; MAX_DIMS],
    /// The first element, aligned for `dtype` (may dangle when the array is empty).
    pub data: *const c_void,
}

/// A value: JSON meta (the `value.json` of `flow_core::store`, e.g.
/// `{"type": "Labels", "grid": ..., "nodata": ..., "classes": ...}`) plus arrays by pointer.
#[repr(C)]
#[derive(Debug)]
pub struct FlowValue {
    /// The meta JSON, valid until `release`.
    pub meta_json: FlowStr,
    /// `n_arrays` arrays, valid until `release`.
    pub arrays: *const FlowArray,
    /// Number of arrays.
    pub n_arrays: usize,
    /// The producer's bookkeeping; opaque to the consumer.
    pub private_data: *mut c_void,
    /// Frees everything above; called once by the party the value was handed to (for a node's
    /// output: the host). Inputs lent to `run` are released by the host after the call.
    pub release: Option<unsafe extern "C" fn(value: *mut FlowValue)>,
}

impl FlowValue {
    /// An empty value, used to initialize out-parameters.
    pub const fn empty() -> Self {
        FlowValue {
            meta_json: FlowStr {
                ptr: std::ptr::null(),
                len: 0,
            },
            arrays: std::ptr::null(),
            n_arrays: 0,
            private_data: std::ptr::null_mut(),
            release: None,
        }
    }
}

/// One input of a node run: the port name and the value lent for the duration of the call.
#[repr(C)]
#[derive(Debug)]
pub struct FlowInput {
    /// The port name.
    pub port: FlowStr,
    /// The value; the plugin must not release it nor keep pointers into it after `run` returns.
    pub value: FlowValue,
}

/// A node built by a plugin: an opaque pointer plus how its output is cached.
#[repr(C)]
#[derive(Debug)]
pub struct FlowNodeHandle {
    /// The plugin's node; passed back to `run` and, once, to `drop_node`.
    pub node: *mut c_void,
    /// One of the `CACHING_*` constants.
    pub caching: u32,
    /// Seconds, when `caching` is [`CACHING_TTL`].
    pub ttl_secs: u64,
}

/// `describe(out)`: on [`STATUS_OK`], `out` holds the kinds JSON (see [`crate::kinds`]);
/// otherwise the error.
pub type DescribeFn = unsafe extern "C" fn(out: *mut FlowBuf) -> FlowStatus;

/// `build(kind, params_json, out, msg)`: builds a node of `kind` from params (a JSON object that
/// passed the kind's schema, defaults filled in). On [`STATUS_OK`] `out` is filled; on
/// [`STATUS_ERROR`] `msg` holds a JSON `ParamError` (`{"param", "message", "help"}`).
pub type BuildFn = unsafe extern "C" fn(
    kind: FlowStr,
    params_json: FlowStr,
    out: *mut FlowNodeHandle,
    msg: *mut FlowBuf,
) -> FlowStatus;

/// `run(node, ctx_json, inputs, n_inputs, out, msg)`: runs a built node. On [`STATUS_OK`] `out`
/// holds the output (the host releases it) and `msg` the warnings (a JSON array of strings, or
/// empty); on [`STATUS_ERROR`] `msg` holds a JSON `NodeError`; on [`STATUS_PANIC`] the message.
pub type RunFn = unsafe extern "C" fn(
    node: *const c_void,
    ctx_json: FlowStr,
    inputs: *const FlowInput,
    n_inputs: usize,
    out: *mut FlowValue,
    msg: *mut FlowBuf,
) -> FlowStatus;

/// `drop_node(node)`: frees a node made by `build`; called once.
pub type DropNodeFn = unsafe extern "C" fn(node: *mut c_void);

/// The descriptor a plugin exports as [`ENTRY_SYMBOL`], ABI version 1.
#[repr(C)]
#[derive(Debug)]
pub struct FlowPluginV1 {
    /// Always first: the ABI version (1 for this layout).
    pub abi_version: u32,
    /// The plugin's name, static.
    pub name: FlowStr,
    /// The plugin's version, static.
    pub version: FlowStr,
    /// Lists the node kinds.
    pub describe: DescribeFn,
    /// Builds a node.
    pub build: BuildFn,
    /// Runs a node.
    pub run: RunFn,
    /// Frees a node.
    pub drop_node: DropNodeFn,
}

// SAFETY: the descriptor is immutable after construction; its pointers refer to `'static` strings
// and its function pointers to code, so sharing it between threads cannot race.
unsafe impl Sync for FlowPluginV1 {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for FlowPluginV1 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_first_field_of_the_descriptor() {
        assert_eq!(std::mem::offset_of!(FlowPluginV1, abi_version), 0);
        assert_eq!(std::mem::offset_of!(FlowPluginHeader, abi_version), 0);
    }

    #[test]
    fn flow_str_handles_empty_null_and_bad_utf8() {
        let s = FlowStr {
            ptr: std::ptr::null(),
            len: 0,
        };
        // SAFETY: an empty string reads no memory.
        assert_eq!(unsafe { s.as_str() }, Some(""));
        let s = FlowStr {
            ptr: std::ptr::null(),
            len: 3,
        };
        // SAFETY: a null pointer is refused before any read.
        assert_eq!(unsafe { s.as_str() }, None);
        let bytes = [0xffu8, 0xfe];
        let s = FlowStr {
            ptr: bytes.as_ptr(),
            len: 2,
        };
        // SAFETY: `bytes` lives for the whole test.
        assert_eq!(unsafe { s.as_str() }, None);
    }
}
