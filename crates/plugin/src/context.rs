//! The run context across the boundary: [`ContextInfo`] (plain data, as JSON) plus the host's
//! cancel flag and warning list (as callbacks), on both sides.
//!
//! - Host side: `HostContext` lends a `flow_core::RunContext` as a [`FlowRunContext`] for one
//!   call. Its callbacks read the context's cancel flag (an atomic load) and push to its warning
//!   list (a mutex), so they are safe to call from any thread, concurrently, for as long as the
//!   call lasts.
//! - Plugin side: [`PluginContext`] is what a plugin node receives; `is_cancelled`,
//!   `check_cancelled` and `warn` reach the host through those callbacks. It is `Sync`, so a node
//!   may poll it from its own worker threads (scoped to the call).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use flow_core::{NodeError, RunContext};
use serde::{Deserialize, Serialize};

use crate::abi::{FlowRunContext, FlowStr};

/// The plain data of a run context, as it crosses (serde JSON in
/// [`FlowRunContext::info_json`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextInfo {
    /// The node's id in the recipe.
    pub node_id: String,
    /// Where outputs go (`--out`).
    pub out_dir: PathBuf,
    /// The directory of the recipe file, for relative paths in params.
    pub recipe_dir: PathBuf,
    /// A directory for materialized datasets (inside the cache directory).
    pub data_dir: PathBuf,
    /// Worker threads the node may use.
    pub threads: usize,
    /// Whether the user asked to refresh live (TTL-cached) results.
    pub refresh: bool,
}

impl ContextInfo {
    /// The data of `ctx`.
    pub fn of(ctx: &RunContext) -> Self {
        ContextInfo {
            node_id: ctx.node_id.clone(),
            out_dir: ctx.out_dir.clone(),
            recipe_dir: ctx.recipe_dir.clone(),
            data_dir: ctx.data_dir.clone(),
            threads: ctx.threads,
            refresh: ctx.refresh,
        }
    }
}

/// A `flow_core::RunContext` lent to a plugin for one call (host side).
pub(crate) struct HostContext<'c> {
    ctx: &'c RunContext,
    info_json: String,
}

impl<'c> HostContext<'c> {
    /// Prepares `ctx` for lending.
    pub(crate) fn new(ctx: &'c RunContext) -> Result<Self, String> {
        let info_json = serde_json::to_string(&ContextInfo::of(ctx))
            .map_err(|e| format!("the run context cannot be written as JSON: {e}"))?;
        Ok(HostContext { ctx, info_json })
    }

    /// The ABI form; valid while `self` is neither moved nor dropped.
    pub(crate) fn flow(&self) -> FlowRunContext {
        FlowRunContext {
            info_json: FlowStr::borrow(&self.info_json),
            host: (self.ctx as *const RunContext).cast::<c_void>(),
            is_cancelled: host_is_cancelled,
            warn: host_warn,
        }
    }
}

/// [`FlowRunContext::is_cancelled`] of the host.
///
/// # Safety
/// `host` is the `RunContext` of a live [`HostContext`].
unsafe extern "C" fn host_is_cancelled(host: *const c_void) -> u32 {
    if host.is_null() {
        return 0;
    }
    // SAFETY: the caller passes back the pointer of `HostContext::flow`, alive for the call;
    // `RunContext` is Sync and `is_cancelled` is an atomic load.
    let ctx = unsafe { &*host.cast::<RunContext>() };
    u32::from(ctx.is_cancelled())
}

/// [`FlowRunContext::warn`] of the host.
///
/// # Safety
/// `host` is the `RunContext` of a live [`HostContext`]; `message` is readable for the call.
unsafe extern "C" fn host_warn(host: *const c_void, message: FlowStr) {
    if host.is_null() {
        return;
    }
    // SAFETY: as for `host_is_cancelled`; `RunContext::warn` locks a mutex, so concurrent calls
    // are fine. The message is copied before the call returns.
    let ctx = unsafe { &*host.cast::<RunContext>() };
    // SAFETY: the caller guarantees `message` is readable for the call.
    let bytes = unsafe { message.as_bytes() }.unwrap_or_default();
    let text = String::from_utf8_lossy(bytes).into_owned();
    // Never unwind into the plugin.
    let _ = catch_unwind(AssertUnwindSafe(|| ctx.warn(text)));
}

/// The host's callbacks for one call (plugin side).
#[derive(Clone, Copy)]
struct HostLink {
    host: *const c_void,
    is_cancelled: crate::abi::IsCancelledFn,
    warn: crate::abi::WarnFn,
}

/// What a running plugin node may know of its run: the plugin side of `flow_core::RunContext`.
///
/// flow hands a node `&PluginContext` for the duration of one call (`run`, `key_material`,
/// `is_fresh`). [`is_cancelled`](PluginContext::is_cancelled) reads the run's cancel flag live
/// (set on Ctrl-C or when another node fails): poll it between steps of a long computation, from
/// any thread of the call, and return [`NodeError::Cancelled`] (what
/// [`check_cancelled`](PluginContext::check_cancelled) gives) to stop. Warnings reach the run
/// report as they are made, even when the node then fails.
///
/// [`PluginContext::new`] makes a context of its own, not linked to flow, for tests of a
/// plugin's nodes.
pub struct PluginContext {
    /// The node's id in the recipe.
    pub node_id: String,
    /// Where outputs go (`--out`).
    pub out_dir: PathBuf,
    /// The directory of the recipe file, for relative paths in params.
    pub recipe_dir: PathBuf,
    /// A directory for materialized datasets (inside flow's cache directory).
    pub data_dir: PathBuf,
    /// Worker threads the node may use.
    pub threads: usize,
    /// Whether the user asked to refresh live (TTL-cached) results.
    pub refresh: bool,
    host: Option<HostLink>,
    cancelled: Arc<AtomicBool>,
    warnings: Mutex<Vec<String>>,
}

// SAFETY: the only non-Send/Sync field is `host`, whose callbacks the ABI requires to be callable
// from any thread, concurrently, while the call lasts; a host-linked context is only made by the
// SDK inside a call, handed out by reference and dropped before the call returns (it is neither
// Clone nor constructible with a link from outside this crate).
unsafe impl Send for PluginContext {}
// SAFETY: as above; the other fields are atomics, mutexes and plain data.
unsafe impl Sync for PluginContext {}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("node_id", &self.node_id)
            .field("out_dir", &self.out_dir)
            .field("recipe_dir", &self.recipe_dir)
            .field("data_dir", &self.data_dir)
            .field("threads", &self.threads)
            .field("refresh", &self.refresh)
            .field("linked_to_flow", &self.host.is_some())
            .finish()
    }
}

impl PluginContext {
    /// A context not linked to flow (for tests): its own cancel flag, warnings kept here.
    pub fn new(node_id: &str, out_dir: PathBuf, recipe_dir: PathBuf, data_dir: PathBuf) -> Self {
        PluginContext {
            node_id: node_id.into(),
            out_dir,
            recipe_dir,
            data_dir,
            threads: 1,
            refresh: false,
            host: None,
            cancelled: Arc::new(AtomicBool::new(false)),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Uses `flag` as the cancel flag of a context made by [`PluginContext::new`].
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancelled = flag;
        self
    }

    /// The context of one call from the host.
    ///
    /// # Safety
    /// `ctx` is null or points to a [`FlowRunContext`] readable for the call, whose callbacks
    /// stay callable until the returned context is dropped.
    pub(crate) unsafe fn from_host(ctx: *const FlowRunContext) -> Result<Self, String> {
        if ctx.is_null() || !ctx.is_aligned() {
            return Err("the run context is null or misaligned".into());
        }
        // SAFETY: non-null, aligned, and readable for the call by the caller's guarantee.
        let raw = unsafe { ctx.read() };
        // SAFETY: as above, the info text is readable for the call.
        let text = unsafe { raw.info_json.as_str() }.ok_or("the run context is not UTF-8")?;
        let info: ContextInfo = serde_json::from_str(text)
            .map_err(|e| format!("the run context is not a ContextInfo: {e}"))?;
        let mut ctx =
            PluginContext::new(&info.node_id, info.out_dir, info.recipe_dir, info.data_dir);
        ctx.threads = info.threads.max(1);
        ctx.refresh = info.refresh;
        ctx.host = Some(HostLink {
            host: raw.host,
            is_cancelled: raw.is_cancelled,
            warn: raw.warn,
        });
        Ok(ctx)
    }

    /// True once the run is being cancelled (Ctrl-C, or another node failed).
    pub fn is_cancelled(&self) -> bool {
        match self.host {
            // SAFETY: a linked context lives only during the host's call, while the callback and
            // its state are valid; the callback is thread-safe by the ABI.
            Some(link) => unsafe { (link.is_cancelled)(link.host) != 0 },
            None => self.cancelled.load(Ordering::Relaxed),
        }
    }

    /// Returns [`NodeError::Cancelled`] once the run is being cancelled.
    ///
    /// # Errors
    /// When cancelled.
    pub fn check_cancelled(&self) -> Result<(), NodeError> {
        if self.is_cancelled() {
            Err(NodeError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Records a warning for the run report.
    pub fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(link) = self.host {
            // SAFETY: as in `is_cancelled`; the message is borrowed for the call only.
            unsafe { (link.warn)(link.host, FlowStr::borrow(&message)) };
        }
        if let Ok(mut w) = self.warnings.lock() {
            w.push(message);
        }
    }

    /// The warnings recorded through this context so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Resolves a path param: absolute paths stay, relative ones are taken from the recipe's
    /// directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.recipe_dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_context_carries_the_data_the_flag_and_the_warnings() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut run = RunContext::new("n1", "/out".into(), "/recipes".into(), "/data".into())
            .with_cancel_flag(flag.clone());
        run.threads = 3;
        run.refresh = true;
        let host = HostContext::new(&run).unwrap();
        let raw = host.flow();
        // SAFETY: `raw` and `run` outlive `ctx`.
        let ctx = unsafe { PluginContext::from_host(&raw) }.unwrap();
        assert_eq!(
            (ctx.node_id.as_str(), ctx.threads, ctx.refresh),
            ("n1", 3, true)
        );
        assert_eq!(ctx.resolve("a.tif"), PathBuf::from("/recipes/a.tif"));
        assert!(!ctx.is_cancelled());
        std::thread::scope(|s| {
            s.spawn(|| ctx.warn("from a worker thread"));
        });
        flag.store(true, Ordering::Relaxed);
        assert!(ctx.is_cancelled(), "the host's flag is read live");
        assert!(matches!(ctx.check_cancelled(), Err(NodeError::Cancelled)));
        assert_eq!(run.warnings(), vec!["from a worker thread".to_string()]);
    }

    #[test]
    fn a_standalone_context_has_its_own_flag() {
        let flag = Arc::new(AtomicBool::new(false));
        let ctx = PluginContext::new("t", "/o".into(), "/r".into(), "/d".into())
            .with_cancel_flag(flag.clone());
        assert!(ctx.check_cancelled().is_ok());
        flag.store(true, Ordering::Relaxed);
        assert!(ctx.is_cancelled());
        ctx.warn("w");
        assert_eq!(ctx.warnings(), vec!["w".to_string()]);
        // SAFETY: a null context is refused before anything is read.
        assert!(unsafe { PluginContext::from_host(std::ptr::null()) }.is_err());
    }
}
