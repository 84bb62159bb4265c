//! The `#[repr(C)]` types that cross between flow and a plugin library: ABI version 2.
//!
//! Rules of the boundary (datafusion-ffi style):
//!
//! - The library exports one **data** symbol, [`ENTRY_SYMBOL`] (`flow_plugin_entry`), a
//!   [`FlowPluginV2`] descriptor. Every descriptor version starts with `abi_version: u32`
//!   ([`FlowPluginHeader`]); the host reads that field, and only that field, first, and refuses a
//!   library whose version is not [`ABI_VERSION`]. Because the entry is data, not a function,
//!   nothing of a refused library ever runs.
//! - Only `#[repr(C)]` structs, integers, raw pointers and `extern "C"` function pointers cross.
//!   No `String`, `Vec`, `Box<dyn Trait>`, `bool` or Rust enum: a status is an `i32`
//!   ([`FlowStatus`]) and a flag a `u32`, so an unexpected number from the other side is not
//!   undefined behaviour.
//! - Text crosses as UTF-8 [`FlowStr`] (borrowed) or [`FlowBuf`] (owned by its producer, freed by
//!   calling its `release`). Structured data crosses as the serde JSON of flow-core's own types:
//!   node kinds as [`crate::kinds::KindInfo`] (whose signature and params are
//!   `flow_core::Signature` and `flow_core::ParamSpec`), a value's meta as
//!   `flow_core::meta::ValueMeta`, the run context as [`crate::context::ContextInfo`].
//! - Values cross as [`FlowValue`]: the serde JSON of the value's `ValueMeta` plus the arrays of
//!   `Value::split`, each as pointer + dtype + shape ([`FlowArray`]) into memory the producer
//!   owns; the producer frees it through the value's `release` callback. Nothing is copied on the
//!   way into a plugin; the host copies a plugin's output once, through `Value::assemble`, which
//!   checks every array against the meta, then releases it.
//! - The run context ([`FlowRunContext`]) carries two host callbacks: `is_cancelled` (the run's
//!   cancel flag) and `warn` (a warning for the run report). Both may be called from any thread,
//!   concurrently, until the plugin call they were passed to returns.
//! - Every function a plugin exports catches panics and reports them as [`STATUS_PANIC`].

use std::ffi::c_void;

use flow_core::Dtype;

/// The ABI version this crate speaks. Bump it on any change to a type in this module.
///
/// Version 1 passed the run context as JSON without the cancel flag, returned warnings in the
/// message buffer, and had no `key_material` / `is_fresh`; version 2 is this module.
pub const ABI_VERSION: u32 = 2;

/// The name of the exported descriptor symbol (a `static`, not a function).
pub const ENTRY_SYMBOL: &str = "flow_plugin_entry";

/// A status returned by every plugin function. Plain `i32`, never a Rust enum.
pub type FlowStatus = i32;
/// Success; out-parameters are filled.
pub const STATUS_OK: FlowStatus = 0;
/// The call failed; the message buffer holds a JSON error (see [`crate::error`] for its shape).
pub const STATUS_ERROR: FlowStatus = 1;
/// The plugin panicked; the message buffer holds the panic message as plain text.
pub const STATUS_PANIC: FlowStatus = 2;

/// Element type of a [`FlowArray`]. Plain `u32`; see [`dtype_code`] / [`dtype_of_code`].
pub type FlowDtype = u32;
/// `f32`.
pub const DTYPE_F32: FlowDtype = 1;
/// `u16`.
pub const DTYPE_U16: FlowDtype = 2;
/// `u8`.
pub const DTYPE_U8: FlowDtype = 3;
/// `bool`, one byte, 0 or 1.
pub const DTYPE_BOOL: FlowDtype = 4;

/// `flow_core::Dtype` <-> ABI dtype code: the one table both directions read.
const DTYPES: [(Dtype, FlowDtype); 4] = [
    (Dtype::F32, DTYPE_F32),
    (Dtype::U16, DTYPE_U16),
    (Dtype::U8, DTYPE_U8),
    (Dtype::Bool, DTYPE_BOOL),
];

/// The ABI code of `dtype`.
pub fn dtype_code(dtype: Dtype) -> FlowDtype {
    DTYPES
        .iter()
        .find(|(d, _)| *d == dtype)
        .map_or(0, |&(_, code)| code)
}

/// The dtype of an ABI code, or `None` for a code this ABI does not define.
pub fn dtype_of_code(code: FlowDtype) -> Option<Dtype> {
    DTYPES.iter().find(|(_, c)| *c == code).map(|&(d, _)| d)
}

/// The name of a dtype code, for messages.
pub fn dtype_code_name(code: FlowDtype) -> String {
    match dtype_of_code(code) {
        Some(d) => d.name().to_string(),
        None => format!("unknown dtype #{code}"),
    }
}

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
    /// The array's name in `flow_core::meta::ValueMeta::array_layout` (`data`, `valid`,
    /// `centroids`).
    pub name: FlowStr,
    /// One of the `DTYPE_*` constants.
    pub dtype: FlowDtype,
    /// Number of dimensions used in `shape` (0 to [`MAX_DIMS`]).
    pub ndim: u32,
    /// The extent of each dimension; entries past `ndim` are 0.
    pub shape: [u64; MAX_DIMS],
    /// The first element, aligned for `dtype` (may dangle when the array is empty).
    pub data: *const c_void,
}

/// A value: the serde JSON of its `flow_core::meta::ValueMeta` (the cache's `value.json`, e.g.
/// `{"type": "Labels", "grid": ..., "nodata": ..., "classes": ...}`) plus its arrays by pointer.
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
    /// Frees everything above; called exactly once by the party the value was handed to (for a
    /// node's output: the host). Values lent for the duration of a call (a node's inputs, the
    /// cached value of `is_fresh`) have no `release`: their owner frees them after the call.
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
    /// The plugin's node; passed back to `run`, `key_material`, `is_fresh` and, once, to
    /// `drop_node`.
    pub node: *mut c_void,
    /// One of the `CACHING_*` constants.
    pub caching: u32,
    /// Seconds, when `caching` is [`CACHING_TTL`].
    pub ttl_secs: u64,
}

/// `is_cancelled(host)`: non-zero once the run is being cancelled (Ctrl-C, or another node
/// failed). A relaxed atomic load on the host's flag: cheap enough to poll in a loop.
pub type IsCancelledFn = unsafe extern "C" fn(host: *const c_void) -> u32;

/// `warn(host, message)`: records a warning (UTF-8) for the node in the run report.
pub type WarnFn = unsafe extern "C" fn(host: *const c_void, message: FlowStr);

/// The context of one call into a node (`run`, `key_material`, `is_fresh`), lent by the host for
/// the duration of that call.
///
/// Thread safety: `is_cancelled` and `warn` may be called from any thread, concurrently, at any
/// time until the call they were passed to returns (the host's state behind `host` is an atomic
/// flag and a mutex-guarded list). They must not be called after it returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FlowRunContext {
    /// The serde JSON of [`crate::context::ContextInfo`]: node id, output, recipe and data
    /// directories, threads, refresh.
    pub info_json: FlowStr,
    /// The host's state; passed back to the callbacks, opaque to the plugin.
    pub host: *const c_void,
    /// Reads the run's cancel flag.
    pub is_cancelled: IsCancelledFn,
    /// Records a warning.
    pub warn: WarnFn,
}

/// `describe(out)`: on [`STATUS_OK`], `out` holds the kinds: the serde JSON of a list of
/// [`crate::kinds::KindInfo`]; otherwise the error.
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

/// `run(node, ctx, inputs, n_inputs, out, msg)`: runs a built node. On [`STATUS_OK`] `out`
/// holds the output (the host releases it); on [`STATUS_ERROR`] `msg` holds a JSON `NodeError`
/// (`{"kind": "cancelled"}` when the node stopped because `ctx` said so); on [`STATUS_PANIC`] the
/// message. Warnings go through `ctx.warn` as they happen, whatever the outcome.
pub type RunFn = unsafe extern "C" fn(
    node: *const c_void,
    ctx: *const FlowRunContext,
    inputs: *const FlowInput,
    n_inputs: usize,
    out: *mut FlowValue,
    msg: *mut FlowBuf,
) -> FlowStatus;

/// `key_material(node, ctx, present, out, msg)`: extra bytes for the node's cache key. On
/// [`STATUS_OK`], `*present` is 1 and `out` holds the bytes (the host releases them), or
/// `*present` is 0 and `out` is untouched (no material); on [`STATUS_ERROR`] `msg` holds a JSON
/// `NodeError`.
pub type KeyMaterialFn = unsafe extern "C" fn(
    node: *const c_void,
    ctx: *const FlowRunContext,
    present: *mut u32,
    out: *mut FlowBuf,
    msg: *mut FlowBuf,
) -> FlowStatus;

/// `is_fresh(node, ctx, cached, fresh, msg)`: whether a cached output (lent for the call) can
/// still be used. On [`STATUS_OK`], `*fresh` is 1 (use it) or 0 (recompute); any other status
/// makes the host recompute.
pub type IsFreshFn = unsafe extern "C" fn(
    node: *const c_void,
    ctx: *const FlowRunContext,
    cached: *const FlowValue,
    fresh: *mut u32,
    msg: *mut FlowBuf,
) -> FlowStatus;

/// `drop_node(node)`: frees a node made by `build`; called once.
pub type DropNodeFn = unsafe extern "C" fn(node: *mut c_void);

/// The descriptor a plugin exports as [`ENTRY_SYMBOL`], ABI version 2.
#[repr(C)]
#[derive(Debug)]
pub struct FlowPluginV2 {
    /// Always first: the ABI version (2 for this layout).
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
    /// A node's extra cache-key material.
    pub key_material: KeyMaterialFn,
    /// Whether a node's cached output is still usable.
    pub is_fresh: IsFreshFn,
    /// Frees a node.
    pub drop_node: DropNodeFn,
}

// SAFETY: the descriptor is immutable after construction; its pointers refer to `'static` strings
// and its function pointers to code, so sharing it between threads cannot race.
unsafe impl Sync for FlowPluginV2 {}
// SAFETY: as above; nothing in it is tied to a thread.
unsafe impl Send for FlowPluginV2 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_first_field_of_the_descriptor() {
        assert_eq!(std::mem::offset_of!(FlowPluginV2, abi_version), 0);
        assert_eq!(std::mem::offset_of!(FlowPluginHeader, abi_version), 0);
    }

    #[test]
    fn every_dtype_has_one_code_and_back() {
        for d in [Dtype::F32, Dtype::U16, Dtype::U8, Dtype::Bool] {
            let code = dtype_code(d);
            assert_ne!(code, 0);
            assert_eq!(dtype_of_code(code), Some(d));
            assert_eq!(dtype_code_name(code), d.name());
        }
        assert_eq!(dtype_of_code(0), None);
        assert_eq!(dtype_code_name(9), "unknown dtype #9");
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
