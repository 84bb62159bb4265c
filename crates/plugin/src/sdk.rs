//! The plugin-author side: the [`PluginKind`] / [`PluginNode`] traits a plugin implements, and
//! the machinery behind [`export_plugin!`](crate::export_plugin) that exposes them through the C
//! ABI.
//!
//! Authors never write `unsafe`: they implement the traits (the same methods as the built-in
//! `flow_core::NodeKind` / `flow_core::Node`, except that nodes receive a [`PluginContext`] and
//! [`PluginInputs`] of views) and call the macro once. Every exported function catches panics, so
//! a plugin bug becomes an error status with the panic message, never an abort of flow.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use flow_core::{Caching, NodeError, ParamError, ParamSpec, Params, Signature, Value};

use crate::abi::{
    FlowBuf, FlowInput, FlowNodeHandle, FlowPluginV2, FlowRunContext, FlowStatus, FlowStr,
    FlowValue, CACHING_NEVER, CACHING_STORE, CACHING_TTL, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use crate::buf;
use crate::context::PluginContext;
use crate::error::{node_error_to_json, param_error_to_json};
use crate::kinds::{kinds_to_json, KindInfo};
use crate::views::{view_value, PluginInputs, ValueView};

/// A kind of node a plugin provides: the plugin side of `flow_core::NodeKind`, with the same
/// methods.
pub trait PluginKind: Send + Sync {
    /// The name used in recipes.
    fn name(&self) -> &str;
    /// Bumped whenever the kind's outputs change for the same inputs and params.
    fn version(&self) -> u32;
    /// One paragraph for `flow nodes`.
    fn doc(&self) -> &str;
    /// Ports and output type.
    fn signature(&self) -> Signature;
    /// The parameter schema; `flow validate` checks recipes against it.
    fn params(&self) -> Vec<ParamSpec>;
    /// Builds a node from params that passed the schema (defaults filled in).
    ///
    /// # Errors
    /// A [`ParamError`] when a value has the right type but is not acceptable; name the param
    /// ([`ParamError::new`]) so that `flow validate` points at it.
    fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError>;
    /// True when each output pixel depends only on the same pixel of the inputs.
    fn pixel_local(&self) -> bool {
        false
    }
    /// Params that change how a node works but not what it outputs (timeouts, retries); they
    /// are left out of the cache key, so changing them reuses the cached output.
    fn unkeyed_params(&self) -> &[&str] {
        &[]
    }
}

/// A built plugin node: the plugin side of `flow_core::Node`, with a [`PluginContext`] and
/// [`PluginInputs`] of views.
pub trait PluginNode: Send + Sync {
    /// Computes the output. The input arrays are views of flow's memory (no copy); the returned
    /// value is copied once by flow into its own memory, after flow checked that its arrays fit
    /// its metadata (an array that does not match its grid is a plugin error, exit code 6).
    ///
    /// Poll [`PluginContext::check_cancelled`] between long steps: it turns true when the user
    /// presses Ctrl-C or another node fails.
    ///
    /// # Errors
    /// A [`NodeError`]; its variant decides flow's exit code as for built-in nodes.
    fn run(&self, ctx: &PluginContext, inputs: &PluginInputs<'_>) -> Result<Value, NodeError>;

    /// How flow caches the output.
    fn caching(&self) -> Caching {
        Caching::Store
    }

    /// Extra material for the cache key that params and inputs do not capture (the bytes of a
    /// local file the node reads). Called before the cache lookup.
    ///
    /// # Errors
    /// When that material cannot be read.
    fn key_material(&self, _ctx: &PluginContext) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(None)
    }

    /// Whether a cached output can still be used; nodes with side effects check that what they
    /// wrote is still there. `cached` is a view of flow's cached value.
    fn is_fresh(&self, _ctx: &PluginContext, _cached: &ValueView<'_>) -> bool {
        true
    }
}

/// Implemented by the type `export_plugin!` generates; not for direct use.
#[doc(hidden)]
pub trait Plugin {
    /// The plugin's name.
    const NAME: &'static str;
    /// The plugin's version.
    const VERSION: &'static str;
    /// Its node kinds.
    fn kinds() -> Vec<Box<dyn PluginKind>>;
}

/// The descriptor of plugin `P`; `export_plugin!` puts it in the exported static.
#[doc(hidden)]
pub const fn descriptor<P: Plugin>(abi_version: u32) -> FlowPluginV2 {
    FlowPluginV2 {
        abi_version,
        name: FlowStr::from_static(P::NAME),
        version: FlowStr::from_static(P::VERSION),
        describe: describe::<P>,
        build: build::<P>,
        run: run_node,
        key_material,
        is_fresh,
        drop_node,
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Runs `f`, turning an `Err(text)` into [`STATUS_ERROR`] and a panic into [`STATUS_PANIC`],
/// with the text in `msg`.
///
/// # Safety
/// `msg` is null or a writable, empty [`FlowBuf`].
unsafe fn guarded(msg: *mut FlowBuf, f: impl FnOnce() -> Result<(), String>) -> FlowStatus {
    let (status, text) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return STATUS_OK,
        Ok(Err(text)) => (STATUS_ERROR, text),
        Err(payload) => {
            let text = panic_message(payload.as_ref());
            // Dropping a payload can itself panic; never let that unwind into the host.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            (STATUS_PANIC, text)
        }
    };
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { buf::put(msg, text.into_bytes()) };
    status
}

fn info_of(kind: &dyn PluginKind) -> KindInfo {
    KindInfo {
        name: kind.name().to_string(),
        version: kind.version(),
        doc: kind.doc().to_string(),
        pixel_local: kind.pixel_local(),
        unkeyed_params: kind
            .unkeyed_params()
            .iter()
            .map(|p| p.to_string())
            .collect(),
        signature: kind.signature(),
        params: kind.params(),
    }
}

/// A [`NodeError::Plugin`] as the JSON of an error status.
fn plugin_failure(message: String) -> String {
    node_error_to_json(&NodeError::Plugin(message)).to_string()
}

/// `describe` of plugin `P`.
///
/// # Safety
/// `out` is null or a writable, empty [`FlowBuf`].
unsafe extern "C" fn describe<P: Plugin>(out: *mut FlowBuf) -> FlowStatus {
    // SAFETY: `out` is as `guarded` requires; it is written once, by `guarded` or here.
    unsafe {
        guarded(out, || {
            let kinds: Vec<KindInfo> = P::kinds().iter().map(|k| info_of(k.as_ref())).collect();
            buf::put(out, kinds_to_json(&kinds)?.into_bytes());
            Ok(())
        })
    }
}

/// `build` of plugin `P`.
///
/// # Safety
/// `kind` and `params_json` are readable for the call; `out` is writable; `msg` is null or a
/// writable, empty [`FlowBuf`].
unsafe extern "C" fn build<P: Plugin>(
    kind: FlowStr,
    params_json: FlowStr,
    out: *mut FlowNodeHandle,
    msg: *mut FlowBuf,
) -> FlowStatus {
    // SAFETY: the pointers are as the caller guarantees; `out` is written only on success.
    unsafe {
        guarded(msg, || {
            let param_error = |e: ParamError| param_error_to_json(&e).to_string();
            let name = kind
                .as_str()
                .ok_or_else(|| param_error(ParamError::general("kind name is not UTF-8")))?;
            let params: Params = params_json
                .as_str()
                .and_then(|t| serde_json::from_str(t).ok())
                .ok_or_else(|| param_error(ParamError::general("params are not a JSON object")))?;
            let kinds = P::kinds();
            let k = kinds.iter().find(|k| k.name() == name).ok_or_else(|| {
                param_error(ParamError::general(format!("plugin has no kind `{name}`")))
            })?;
            let node = k.build(&params).map_err(param_error)?;
            let (caching, ttl_secs) = match node.caching() {
                Caching::Store => (CACHING_STORE, 0),
                Caching::Ttl(s) => (CACHING_TTL, s),
                Caching::Never => (CACHING_NEVER, 0),
            };
            if out.is_null() {
                return Err(param_error(ParamError::general("null out-parameter")));
            }
            // A thin pointer to the fat `Box<dyn PluginNode>`.
            let node: Box<Box<dyn PluginNode>> = Box::new(node);
            out.write(FlowNodeHandle {
                node: Box::into_raw(node).cast::<c_void>(),
                caching,
                ttl_secs,
            });
            Ok(())
        })
    }
}

/// The node behind a handle made by `build`.
///
/// # Safety
/// `node` is null or was made by `build` of this library and not dropped; the returned borrow
/// ends before `drop_node` is called on it.
unsafe fn node_ref<'n>(node: *const c_void) -> Result<&'n dyn PluginNode, String> {
    if node.is_null() {
        return Err(plugin_failure("null node".into()));
    }
    // SAFETY: `node` is the `Box<Box<dyn PluginNode>>` leaked by `build`, by the caller's
    // guarantee.
    Ok(unsafe { (*node.cast::<Box<dyn PluginNode>>()).as_ref() })
}

/// `run`, shared by every plugin.
///
/// # Safety
/// `node` was made by `build` of this library and not dropped; `ctx` is a context lent for the
/// call; `inputs` points to `n_inputs` readable inputs whose values stay valid for the call; `out`
/// is writable; `msg` is null or a writable, empty [`FlowBuf`].
unsafe extern "C" fn run_node(
    node: *const c_void,
    ctx: *const FlowRunContext,
    inputs: *const FlowInput,
    n_inputs: usize,
    out: *mut FlowValue,
    msg: *mut FlowBuf,
) -> FlowStatus {
    // SAFETY: every pointer is as the caller guarantees; the node is borrowed only for the call.
    unsafe {
        guarded(msg, || {
            let node = node_ref(node)?;
            if out.is_null() {
                return Err(plugin_failure("null out-parameter".into()));
            }
            let ctx = PluginContext::from_host(ctx).map_err(plugin_failure)?;
            let raw: &[FlowInput] = if n_inputs == 0 {
                &[]
            } else if inputs.is_null() || !inputs.is_aligned() {
                return Err(plugin_failure("null or misaligned inputs".into()));
            } else {
                std::slice::from_raw_parts(inputs, n_inputs)
            };
            let mut views = Vec::with_capacity(raw.len());
            for input in raw {
                let port = input
                    .port
                    .as_str()
                    .ok_or_else(|| plugin_failure("port name is not UTF-8".into()))?;
                let view = view_value(&input.value)
                    .map_err(|e| plugin_failure(format!("input `{port}`: {e}")))?;
                views.push((port.to_string(), view));
            }
            let inputs = PluginInputs::new(views);
            let value = node
                .run(&ctx, &inputs)
                .map_err(|e| node_error_to_json(&e).to_string())?;
            let given = crate::wire::give(value)
                .map_err(|e| plugin_failure(format!("the output cannot be handed over: {e}")))?;
            out.write(given);
            Ok(())
        })
    }
}

/// `key_material`, shared by every plugin.
///
/// # Safety
/// As for [`run_node`]; `present` and `out` are writable.
unsafe extern "C" fn key_material(
    node: *const c_void,
    ctx: *const FlowRunContext,
    present: *mut u32,
    out: *mut FlowBuf,
    msg: *mut FlowBuf,
) -> FlowStatus {
    // SAFETY: every pointer is as the caller guarantees; the node is borrowed only for the call.
    unsafe {
        guarded(msg, || {
            let node = node_ref(node)?;
            if present.is_null() || out.is_null() {
                return Err(plugin_failure("null out-parameter".into()));
            }
            let ctx = PluginContext::from_host(ctx).map_err(plugin_failure)?;
            match node
                .key_material(&ctx)
                .map_err(|e| node_error_to_json(&e).to_string())?
            {
                Some(bytes) => {
                    buf::put(out, bytes);
                    present.write(1);
                }
                None => present.write(0),
            }
            Ok(())
        })
    }
}

/// `is_fresh`, shared by every plugin.
///
/// # Safety
/// As for [`run_node`]; `cached` is a value lent for the call; `fresh` is writable.
unsafe extern "C" fn is_fresh(
    node: *const c_void,
    ctx: *const FlowRunContext,
    cached: *const FlowValue,
    fresh: *mut u32,
    msg: *mut FlowBuf,
) -> FlowStatus {
    // SAFETY: every pointer is as the caller guarantees; the node is borrowed only for the call.
    unsafe {
        guarded(msg, || {
            let node = node_ref(node)?;
            if fresh.is_null() || cached.is_null() || !cached.is_aligned() {
                return Err(plugin_failure("null or misaligned parameter".into()));
            }
            let ctx = PluginContext::from_host(ctx).map_err(plugin_failure)?;
            let view = view_value(&*cached)
                .map_err(|e| plugin_failure(format!("the cached value: {e}")))?;
            fresh.write(u32::from(node.is_fresh(&ctx, &view)));
            Ok(())
        })
    }
}

/// `drop_node`, shared by every plugin.
///
/// # Safety
/// `node` was made by `build` of this library and is dropped once.
unsafe extern "C" fn drop_node(node: *mut c_void) {
    if node.is_null() {
        return;
    }
    // SAFETY: `node` is the `Box<Box<dyn PluginNode>>` leaked by `build`; taken back once. A panic
    // in a Drop impl is caught so that it never unwinds into the host.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
        drop(Box::from_raw(node.cast::<Box<dyn PluginNode>>()))
    }));
}

/// Exports a plugin: its name, version and node kinds, as the `flow_plugin_entry` descriptor.
///
/// ```ignore
/// flow_plugin::export_plugin! {
///     name: "majority-filter",
///     version: env!("CARGO_PKG_VERSION"),
///     kinds: [MajorityFilterKind],
/// }
/// ```
///
/// Each entry of `kinds` is an expression whose type implements [`PluginKind`]; the list is built
/// afresh whenever flow asks for it, so keep constructing a kind cheap.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, version: $version:expr, kinds: [$($kind:expr),* $(,)?] $(,)?) => {
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static flow_plugin_entry: $crate::abi::FlowPluginV2 =
            $crate::export_plugin!(@descriptor $crate::abi::ABI_VERSION, $name, $version, [$($kind),*]);
    };
    // For flow's own tests: a descriptor in a named static, not exported.
    (@static $vis:vis $ident:ident, name: $name:expr, version: $version:expr, kinds: [$($kind:expr),* $(,)?] $(,)?) => {
        $vis static $ident: $crate::abi::FlowPluginV2 =
            $crate::export_plugin!(@descriptor $crate::abi::ABI_VERSION, $name, $version, [$($kind),*]);
    };
    (@descriptor $abi:expr, $name:expr, $version:expr, [$($kind:expr),*]) => {{
        struct __FlowPlugin;
        impl $crate::sdk::Plugin for __FlowPlugin {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;
            fn kinds() -> ::std::vec::Vec<::std::boxed::Box<dyn $crate::sdk::PluginKind>> {
                ::std::vec![$(::std::boxed::Box::new($kind) as ::std::boxed::Box<dyn $crate::sdk::PluginKind>),*]
            }
        }
        $crate::sdk::descriptor::<__FlowPlugin>($abi)
    }};
}
