//! The plugin-author side: the [`NodeKind`] / [`Node`] traits a plugin implements, and the
//! machinery behind [`export_plugin!`](crate::export_plugin) that exposes them through the C ABI.
//!
//! Authors never write `unsafe`: they implement the traits (the same shape as the built-in
//! `flow_core::NodeKind` / `flow_core::Node`, except that `run` receives [`Inputs`] of views) and
//! call the macro once. Every exported function catches panics, so a plugin bug becomes an error
//! status with the panic message, never an abort of flow.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use flow_core::{Caching, NodeError, ParamError, ParamSpec, Params, RunContext, Signature, Value};

use crate::abi::{
    FlowBuf, FlowInput, FlowNodeHandle, FlowPluginV1, FlowStatus, FlowStr, FlowValue,
    CACHING_NEVER, CACHING_STORE, CACHING_TTL, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use crate::buf;
use crate::error::{node_error_to_json, param_error_to_json};
use crate::kinds::{kind_to_json, KindInfo};
use crate::views::{view_value, Inputs};

/// A kind of node a plugin provides: the same methods as `flow_core::NodeKind`.
pub trait NodeKind: Send + Sync {
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
    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError>;
    /// True when each output pixel depends only on the same pixel of the inputs.
    fn pixel_local(&self) -> bool {
        false
    }
}

/// A built plugin node: the same shape as `flow_core::Node`, with [`Inputs`] of views.
pub trait Node: Send + Sync {
    /// Computes the output. The input arrays are views of flow's memory (no copy); the returned
    /// value is copied once by flow into its own memory.
    ///
    /// # Errors
    /// A [`NodeError`]; its variant decides flow's exit code as for built-in nodes.
    fn run(&self, ctx: &RunContext, inputs: &Inputs<'_>) -> Result<Value, NodeError>;

    /// How flow caches the output.
    fn caching(&self) -> Caching {
        Caching::Store
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
    fn kinds() -> Vec<Box<dyn NodeKind>>;
}

/// The descriptor of plugin `P`; `export_plugin!` puts it in the exported static.
#[doc(hidden)]
pub const fn descriptor<P: Plugin>(abi_version: u32) -> FlowPluginV1 {
    FlowPluginV1 {
        abi_version,
        name: FlowStr::from_static(P::NAME),
        version: FlowStr::from_static(P::VERSION),
        describe: describe::<P>,
        build: build::<P>,
        run: run_node,
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

fn info_of(kind: &dyn NodeKind) -> KindInfo {
    KindInfo {
        name: kind.name().to_string(),
        version: kind.version(),
        doc: kind.doc().to_string(),
        pixel_local: kind.pixel_local(),
        signature: kind.signature(),
        params: kind.params(),
    }
}

/// `describe` of plugin `P`.
///
/// # Safety
/// `out` is null or a writable, empty [`FlowBuf`].
unsafe extern "C" fn describe<P: Plugin>(out: *mut FlowBuf) -> FlowStatus {
    // SAFETY: `out` is as `guarded` requires; it is written once, by `guarded` or here.
    unsafe {
        guarded(out, || {
            let kinds: Vec<_> = P::kinds()
                .iter()
                .map(|k| kind_to_json(&info_of(k.as_ref())))
                .collect();
            buf::put(
                out,
                serde_json::Value::Array(kinds).to_string().into_bytes(),
            );
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
            // A thin pointer to the fat `Box<dyn Node>`.
            let node: Box<Box<dyn Node>> = Box::new(node);
            out.write(FlowNodeHandle {
                node: Box::into_raw(node).cast::<c_void>(),
                caching,
                ttl_secs,
            });
            Ok(())
        })
    }
}

fn context(ctx_json: &str) -> Result<RunContext, String> {
    let j: serde_json::Value =
        serde_json::from_str(ctx_json).map_err(|e| format!("context is not JSON: {e}"))?;
    let s = |k: &str| {
        j.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut ctx = RunContext::new(
        &s("node_id"),
        PathBuf::from(s("out_dir")),
        PathBuf::from(s("recipe_dir")),
        PathBuf::from(s("data_dir")),
    );
    ctx.threads = j
        .get("threads")
        .and_then(|v| v.as_u64())
        .unwrap_or(1)
        .max(1) as usize;
    ctx.refresh = j.get("refresh").and_then(|v| v.as_bool()).unwrap_or(false);
    Ok(ctx)
}

/// `run`, shared by every plugin.
///
/// # Safety
/// `node` was made by `build` of this library and not dropped; `ctx_json` is readable; `inputs`
/// points to `n_inputs` readable inputs whose values stay valid for the call; `out` is writable;
/// `msg` is null or a writable, empty [`FlowBuf`].
unsafe extern "C" fn run_node(
    node: *const c_void,
    ctx_json: FlowStr,
    inputs: *const FlowInput,
    n_inputs: usize,
    out: *mut FlowValue,
    msg: *mut FlowBuf,
) -> FlowStatus {
    // SAFETY: every pointer is as the caller guarantees; `node` is the `Box<Box<dyn Node>>`
    // leaked by `build`, borrowed here only for the call.
    unsafe {
        guarded(msg, || {
            let failed = |m: String| node_error_to_json(&NodeError::Plugin(m)).to_string();
            if node.is_null() || out.is_null() {
                return Err(failed("null node or out-parameter".into()));
            }
            let node: &dyn Node = (*node.cast::<Box<dyn Node>>()).as_ref();
            let ctx = context(ctx_json.as_str().unwrap_or("{}")).map_err(failed)?;
            let raw: &[FlowInput] = if n_inputs == 0 {
                &[]
            } else if inputs.is_null() {
                return Err(failed("null inputs".into()));
            } else {
                std::slice::from_raw_parts(inputs, n_inputs)
            };
            let mut views = Vec::with_capacity(raw.len());
            for input in raw {
                let port = input
                    .port
                    .as_str()
                    .ok_or_else(|| failed("port name is not UTF-8".into()))?;
                let view =
                    view_value(&input.value).map_err(|e| failed(format!("input `{port}`: {e}")))?;
                views.push((port.to_string(), view));
            }
            let inputs = Inputs::new(views);
            let value = node
                .run(&ctx, &inputs)
                .map_err(|e| node_error_to_json(&e).to_string())?;
            out.write(crate::parts::give(value));
            let warnings = ctx.warnings();
            if !warnings.is_empty() {
                buf::put(msg, serde_json::json!(warnings).to_string().into_bytes());
            }
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
    // SAFETY: `node` is the `Box<Box<dyn Node>>` leaked by `build`; taken back once. A panic in a
    // Drop impl is caught so that it never unwinds into the host.
    let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
        drop(Box::from_raw(node.cast::<Box<dyn Node>>()))
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
/// Each entry of `kinds` is an expression whose type implements [`NodeKind`]; the list is built
/// afresh whenever flow asks for it, so keep constructing a kind cheap.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, version: $version:expr, kinds: [$($kind:expr),* $(,)?] $(,)?) => {
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static flow_plugin_entry: $crate::abi::FlowPluginV1 =
            $crate::export_plugin!(@descriptor $crate::abi::ABI_VERSION, $name, $version, [$($kind),*]);
    };
    // For flow's own tests: a descriptor with another ABI version.
    (@abi_version $abi:expr, name: $name:expr, version: $version:expr, kinds: [$($kind:expr),* $(,)?] $(,)?) => {
        #[doc(hidden)]
        #[no_mangle]
        #[allow(non_upper_case_globals)]
        pub static flow_plugin_entry: $crate::abi::FlowPluginV1 =
            $crate::export_plugin!(@descriptor $abi, $name, $version, [$($kind),*]);
    };
    // For flow's own tests: a descriptor in a named static, not exported.
    (@static $vis:vis $ident:ident, name: $name:expr, version: $version:expr, kinds: [$($kind:expr),* $(,)?] $(,)?) => {
        $vis static $ident: $crate::abi::FlowPluginV1 =
            $crate::export_plugin!(@descriptor $crate::abi::ABI_VERSION, $name, $version, [$($kind),*]);
    };
    (@descriptor $abi:expr, $name:expr, $version:expr, [$($kind:expr),*]) => {{
        struct __FlowPlugin;
        impl $crate::sdk::Plugin for __FlowPlugin {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;
            fn kinds() -> ::std::vec::Vec<::std::boxed::Box<dyn $crate::sdk::NodeKind>> {
                ::std::vec![$(::std::boxed::Box::new($kind) as ::std::boxed::Box<dyn $crate::sdk::NodeKind>),*]
            }
        }
        $crate::sdk::descriptor::<__FlowPlugin>($abi)
    }};
}
