//! The host side: loads plugin libraries and wraps their kinds as `flow_core::NodeKind`s
//! ([`ForeignKind`]) and their nodes as `flow_core::Node`s ([`ForeignNode`]).
//!
//! A library is opened with libloading and never unloaded (its `Library` is leaked), so the
//! `'static` descriptor and every node built from it stay valid for the life of the process.
//! Loading the same file twice in one process returns the first load.

use std::collections::BTreeSet;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flow_core::{
    Caching, Inputs, Node, NodeError, NodeKind, Origin, ParamError, ParamSpec, Params, Registry,
    RunContext, Signature, Value, ValueType,
};

use crate::abi::{
    FlowBuf, FlowInput, FlowNodeHandle, FlowPluginHeader, FlowPluginV2, FlowStr, FlowValue,
    ABI_VERSION, CACHING_NEVER, CACHING_TTL, ENTRY_SYMBOL, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use crate::buf::Received;
use crate::context::HostContext;
use crate::error::{node_error_from_json, param_error_from_json, PluginError};
use crate::kinds::{kinds_from_json, KindInfo};
use crate::wire::{self, Lent};

/// A loaded plugin library.
#[derive(Debug)]
pub struct PluginLibrary {
    desc: &'static FlowPluginV2,
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The library it was loaded from (canonical path).
    pub path: PathBuf,
    /// Its node kinds.
    pub kinds: Vec<KindInfo>,
}

/// Libraries loaded so far in this process, by canonical path.
static LOADED: Mutex<Vec<Arc<PluginLibrary>>> = Mutex::new(Vec::new());

/// Loads the plugin library at `path` (once per process).
///
/// Reads the descriptor's ABI version, and nothing else, before anything of the library runs; a
/// library for another ABI version is refused without calling into it.
///
/// # Errors
/// [`PluginError::Load`] when the file is missing or not a loadable library,
/// [`PluginError::NoEntry`] without the entry symbol, [`PluginError::AbiMismatch`],
/// [`PluginError::Malformed`] or [`PluginError::Panicked`] when its kinds cannot be read.
pub fn load(path: &Path) -> Result<Arc<PluginLibrary>, PluginError> {
    let canonical = path.canonicalize().map_err(|e| PluginError::Load {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = loaded.iter().find(|p| p.path == canonical) {
        return Ok(p.clone());
    }
    if !canonical.is_file() {
        return Err(PluginError::Load {
            path: canonical,
            reason: "not a file".into(),
        });
    }
    check_trusted(&canonical)?;
    // A library for another ABI is refused before it is opened, so none of its code runs (not
    // even its initializers), when the version can be read from the file.
    if let Some(found) = abi_version_in_file(&canonical) {
        if found != ABI_VERSION {
            return Err(PluginError::AbiMismatch {
                path: canonical,
                expected: ABI_VERSION,
                found,
            });
        }
    }
    // SAFETY: loading a library runs its initializers. flow only loads paths the user named
    // (--plugin, the recipe's `plugins`, FLOW_PLUGIN_PATH); running their code is the point.
    let library =
        unsafe { libloading::Library::new(&canonical) }.map_err(|e| PluginError::Load {
            path: canonical.clone(),
            reason: error_chain(&e),
        })?;
    // SAFETY: the symbol is looked up as a data address; nothing is called and nothing is read
    // through it here.
    let entry: *const FlowPluginHeader =
        match unsafe { library.get::<*const FlowPluginHeader>(ENTRY_SYMBOL.as_bytes()) } {
            Ok(sym) => *sym,
            Err(_) => return Err(PluginError::NoEntry { path: canonical }),
        };
    // Never unloaded: the descriptor and the code of its nodes must outlive every use.
    std::mem::forget(library);
    // SAFETY: `entry` is the address of the exported `flow_plugin_entry` static of a library that
    // stays loaded forever; every descriptor version begins with a `u32` ABI version, which is all
    // `from_descriptor` reads before checking it.
    let plugin = unsafe { from_descriptor(entry, canonical) }?;
    let plugin = Arc::new(plugin);
    loaded.push(plugin.clone());
    Ok(plugin)
}

/// The ABI version a library declares, read from the file without loading it: the first `u32`
/// of the data behind its exported `flow_plugin_entry` symbol (ELF). `None` when the file is
/// not an ELF library with that symbol in file-backed data; the loader then finds out by
/// opening it.
fn abi_version_in_file(path: &Path) -> Option<u32> {
    use object::{Object, ObjectSection, ObjectSymbol};
    const MAX_LIBRARY_BYTES: u64 = 1 << 30;
    if std::fs::metadata(path).ok()?.len() > MAX_LIBRARY_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let file = object::File::parse(&*bytes).ok()?;
    let symbol = file
        .dynamic_symbols()
        .find(|s| s.name() == Ok(ENTRY_SYMBOL))?;
    let address = symbol.address();
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    let (offset, size) = section.file_range()?;
    let at = address.checked_sub(section.address())?;
    if at + 4 > size {
        return None;
    }
    let start = usize::try_from(offset + at).ok()?;
    let raw: [u8; 4] = bytes.get(start..start + 4)?.try_into().ok()?;
    Some(if file.is_little_endian() {
        u32::from_le_bytes(raw)
    } else {
        u32::from_be_bytes(raw)
    })
}

/// Refuses a library that someone other than its owner could have replaced: one that anyone
/// may write, that sits in a directory anyone may write (without the sticky bit), or that
/// belongs to another user than the one running flow (root's files are trusted). Loading runs
/// the library's code, so this is checked before it is opened.
#[cfg(unix)]
fn check_trusted(path: &Path) -> Result<(), PluginError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |reason: String| PluginError::Untrusted {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(e.to_string()))?;
    if meta.mode() & 0o002 != 0 {
        return Err(refuse("anyone may write it".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc_geteuid() };
    if meta.uid() != me && meta.uid() != 0 {
        return Err(refuse(format!(
            "it belongs to user {} and flow runs as user {me}",
            meta.uid()
        )));
    }
    if let Some(dir) = path.parent() {
        let d = std::fs::metadata(dir).map_err(|e| refuse(e.to_string()))?;
        if d.mode() & 0o002 != 0 && d.mode() & 0o1000 == 0 {
            return Err(refuse(format!(
                "its directory {} may be written by anyone",
                dir.display()
            )));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_trusted(_: &Path) -> Result<(), PluginError> {
    Ok(())
}

#[cfg(unix)]
extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// An error and its sources, `: `-separated (libloading's own message is only "dlopen failed").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Checks the ABI version at `entry`, then reads the rest of the descriptor and the kinds.
///
/// # Safety
/// `entry` must point to a descriptor that begins with a `u32` ABI version and that, when the
/// version is [`ABI_VERSION`], is a [`FlowPluginV2`] valid for the rest of the process.
pub unsafe fn from_descriptor(
    entry: *const FlowPluginHeader,
    path: PathBuf,
) -> Result<PluginLibrary, PluginError> {
    if entry.is_null() || !entry.is_aligned() {
        return Err(PluginError::Malformed {
            path,
            message: "the entry symbol is null or misaligned".into(),
        });
    }
    // SAFETY: non-null, aligned, and the caller guarantees a u32 there; only this field is read.
    let found = unsafe { entry.read().abi_version };
    if found != ABI_VERSION {
        return Err(PluginError::AbiMismatch {
            path,
            expected: ABI_VERSION,
            found,
        });
    }
    // SAFETY: the version matches, so the caller guarantees a `'static` FlowPluginV2 here.
    let desc: &'static FlowPluginV2 = unsafe { &*entry.cast::<FlowPluginV2>() };
    let text = |s: FlowStr, what: &str| {
        // SAFETY: the descriptor's strings are static in the library, which is never unloaded.
        unsafe { s.as_str() }
            .map(String::from)
            .ok_or_else(|| PluginError::Malformed {
                path: path.clone(),
                message: format!("its {what} is not UTF-8"),
            })
    };
    let name = text(desc.name, "name")?;
    let version = text(desc.version, "version")?;
    let mut out = Received::new();
    // SAFETY: `describe` is the plugin's function for this ABI; `out` is an empty, writable buffer.
    let status = unsafe { (desc.describe)(&mut out.0) };
    let kinds = match status {
        STATUS_OK => kinds_from_json(&out.text()).map_err(|message| PluginError::Malformed {
            path: path.clone(),
            message,
        })?,
        STATUS_PANIC => {
            return Err(PluginError::Panicked {
                plugin: name,
                message: out.text(),
            })
        }
        other => {
            return Err(PluginError::Malformed {
                path,
                message: format!("describe failed (status {other}): {}", out.text()),
            })
        }
    };
    Ok(PluginLibrary {
        desc,
        name,
        version,
        path,
        kinds,
    })
}

/// What [`load_into`] loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPlugin {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The library.
    pub path: PathBuf,
    /// The kinds it registered.
    pub kinds: Vec<String>,
}

/// Loads every library in `paths` (each once) and registers its kinds in `registry`.
///
/// # Errors
/// The first [`PluginError`]; a kind whose name is taken is [`PluginError::DuplicateKind`].
pub fn load_into(
    registry: &mut Registry,
    paths: &[PathBuf],
) -> Result<Vec<LoadedPlugin>, PluginError> {
    let mut done: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for path in paths {
        let plugin = load(path)?;
        if done.contains(&plugin.path) {
            continue;
        }
        done.push(plugin.path.clone());
        register(registry, &plugin)?;
        out.push(LoadedPlugin {
            name: plugin.name.clone(),
            version: plugin.version.clone(),
            path: plugin.path.clone(),
            kinds: plugin.kinds.iter().map(|k| k.name.clone()).collect(),
        });
    }
    Ok(out)
}

/// Registers every kind of `plugin`.
///
/// # Errors
/// [`PluginError::DuplicateKind`] when a kind's name is taken.
pub fn register(registry: &mut Registry, plugin: &Arc<PluginLibrary>) -> Result<(), PluginError> {
    for info in &plugin.kinds {
        registry
            .register(Arc::new(ForeignKind::new(plugin.clone(), info.clone())))
            .map_err(|e| PluginError::DuplicateKind {
                path: plugin.path.clone(),
                kind: e.0,
            })?;
    }
    Ok(())
}

/// `name` as a `&'static str`, each distinct name allocated once per process (for
/// `NodeKind::unkeyed_params`, which lends `&str`s; libraries are never unloaded either).
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(n);
    n
}

/// A plugin's node kind as flow sees it: a `flow_core::NodeKind` that forwards to the plugin.
pub struct ForeignKind {
    plugin: Arc<PluginLibrary>,
    info: KindInfo,
    unkeyed: Vec<&'static str>,
}

impl ForeignKind {
    /// The kind `info` of `plugin`.
    pub fn new(plugin: Arc<PluginLibrary>, info: KindInfo) -> Self {
        let unkeyed = info.unkeyed_params.iter().map(|p| intern(p)).collect();
        ForeignKind {
            plugin,
            info,
            unkeyed,
        }
    }
}

impl NodeKind for ForeignKind {
    fn name(&self) -> &str {
        &self.info.name
    }

    fn version(&self) -> u32 {
        self.info.version
    }

    fn doc(&self) -> &str {
        &self.info.doc
    }

    fn signature(&self) -> Signature {
        self.info.signature.clone()
    }

    fn params(&self) -> Vec<ParamSpec> {
        self.info.params.clone()
    }

    fn pixel_local(&self) -> bool {
        self.info.pixel_local
    }

    fn unkeyed_params(&self) -> &[&str] {
        &self.unkeyed
    }

    fn origin(&self) -> Origin {
        Origin::Plugin {
            name: self.plugin.name.clone(),
            version: self.plugin.version.clone(),
            abi: ABI_VERSION,
            path: self.plugin.path.clone(),
        }
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let plugin = &self.plugin.name;
        let params_json = serde_json::to_string(params).map_err(|e| {
            ParamError::general(format!("params cannot be sent to the plugin: {e}"))
        })?;
        let mut handle = FlowNodeHandle {
            node: std::ptr::null_mut(),
            caching: 0,
            ttl_secs: 0,
        };
        let mut msg = Received::new();
        // SAFETY: the plugin's `build` for this ABI; both strings outlive the call, `handle` and
        // `msg` are writable and empty.
        let status = unsafe {
            (self.plugin.desc.build)(
                FlowStr::borrow(&self.info.name),
                FlowStr::borrow(&params_json),
                &mut handle,
                &mut msg.0,
            )
        };
        match status {
            STATUS_OK if !handle.node.is_null() => Ok(Box::new(ForeignNode {
                plugin: self.plugin.clone(),
                output: self.info.signature.output,
                node: handle.node,
                caching: match handle.caching {
                    CACHING_TTL => Caching::Ttl(handle.ttl_secs),
                    CACHING_NEVER => Caching::Never,
                    _ => Caching::Store,
                },
            })),
            STATUS_OK => Err(ParamError::plugin_fault(format!(
                "plugin `{plugin}` built no node"
            ))),
            STATUS_ERROR => Err(param_error_from_json(plugin, &msg.text())),
            STATUS_PANIC => Err(ParamError::plugin_fault(
                PluginError::Panicked {
                    plugin: plugin.clone(),
                    message: msg.text(),
                }
                .to_string(),
            )),
            other => Err(ParamError::plugin_fault(format!(
                "plugin `{plugin}` returned unknown status {other}"
            ))),
        }
    }
}

/// A node built by a plugin, as flow sees it: a `flow_core::Node` that forwards `run`,
/// `key_material` and `is_fresh` to the plugin, lending it the run context (with the cancel
/// flag) for each call.
pub struct ForeignNode {
    plugin: Arc<PluginLibrary>,
    output: ValueType,
    node: *mut c_void,
    caching: Caching,
}

// SAFETY: the plugin's node is a `Box<dyn flow_plugin::PluginNode>`, which is `Send + Sync` by
// the trait's bounds; the calls only borrow it, `drop_node` frees it once, from `Drop`.
unsafe impl Send for ForeignNode {}
// SAFETY: as above.
unsafe impl Sync for ForeignNode {}

impl Drop for ForeignNode {
    fn drop(&mut self) {
        // SAFETY: `node` came from this plugin's `build` and is dropped exactly once, here.
        unsafe { (self.plugin.desc.drop_node)(self.node) };
    }
}

/// A value received from a plugin; released exactly once, when dropped.
struct ReceivedValue(FlowValue);

impl Drop for ReceivedValue {
    fn drop(&mut self) {
        if let Some(release) = self.0.release.take() {
            // SAFETY: the plugin handed this value over with this callback; called once (taken
            // out of the struct first).
            unsafe { release(&mut self.0) };
        }
    }
}

impl ForeignNode {
    fn failed(&self, message: String) -> NodeError {
        PluginError::Failed {
            plugin: self.plugin.name.clone(),
            message,
        }
        .into()
    }

    /// The error of a call that did not return [`STATUS_OK`].
    fn status_error(&self, status: i32, msg: &Received) -> NodeError {
        match status {
            STATUS_ERROR => node_error_from_json(&self.plugin.name, &msg.text()),
            STATUS_PANIC => PluginError::Panicked {
                plugin: self.plugin.name.clone(),
                message: msg.text(),
            }
            .into(),
            other => self.failed(format!("returned unknown status {other}")),
        }
    }

    fn lend<'c>(&self, ctx: &'c RunContext) -> Result<HostContext<'c>, NodeError> {
        HostContext::new(ctx).map_err(|e| self.failed(e))
    }
}

impl Node for ForeignNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        ctx.check_cancelled()?;
        // Inputs are lent: pointers into the host's arrays, valid until this function returns.
        let lent: Vec<(&str, Lent)> = inputs
            .iter()
            .map(|(p, v)| Lent::new(v).map(|l| (p, l)))
            .collect::<Result<_, _>>()
            .map_err(|e| self.failed(format!("an input cannot be lent: {e}")))?;
        let raw: Vec<FlowInput> = lent
            .iter()
            .map(|(port, l)| FlowInput {
                port: FlowStr::borrow(port),
                value: l.flow_value(),
            })
            .collect();
        let host = self.lend(ctx)?;
        let flow_ctx = host.flow();
        let mut out = ReceivedValue(FlowValue::empty());
        let mut msg = Received::new();
        // SAFETY: `node` is live (dropped only in Drop); `flow_ctx` (and the context it points
        // to), `raw` and the `lent` values it points into outlive the call; `out` and `msg` are
        // writable and empty.
        let status = unsafe {
            (self.plugin.desc.run)(
                self.node,
                &flow_ctx,
                raw.as_ptr(),
                raw.len(),
                &mut out.0,
                &mut msg.0 as *mut FlowBuf,
            )
        };
        if status != STATUS_OK {
            return Err(self.status_error(status, &msg));
        }
        // SAFETY: on success the plugin filled `out`, valid until we release it (on drop, right
        // after the copy, whatever its outcome).
        let value = unsafe { wire::to_value(&out.0) };
        drop(out);
        let value = value.map_err(|e| self.failed(format!("returned a malformed value: {e}")))?;
        if self.output != ValueType::Any && value.value_type() != self.output {
            return Err(self.failed(format!(
                "returned a {} where its signature says {}",
                value.value_type(),
                self.output
            )));
        }
        Ok(value)
    }

    fn caching(&self) -> Caching {
        self.caching
    }

    fn key_material(&self, ctx: &RunContext) -> Result<Option<Vec<u8>>, NodeError> {
        let host = self.lend(ctx)?;
        let flow_ctx = host.flow();
        let mut present = 0u32;
        let mut out = Received::new();
        let mut msg = Received::new();
        // SAFETY: `node` is live; `flow_ctx` and its context outlive the call; the
        // out-parameters are writable and empty.
        let status = unsafe {
            (self.plugin.desc.key_material)(
                self.node,
                &flow_ctx,
                &mut present,
                &mut out.0,
                &mut msg.0,
            )
        };
        match status {
            STATUS_OK if present != 0 => Ok(Some(out.bytes().to_vec())),
            STATUS_OK => Ok(None),
            other => Err(self.status_error(other, &msg)),
        }
    }

    fn is_fresh(&self, ctx: &RunContext, cached: &Value) -> bool {
        // A cached value that cannot be lent, or a plugin that fails to answer, means recompute:
        // running the node again is always correct.
        let Ok(lent) = Lent::new(cached) else {
            return false;
        };
        let Ok(host) = self.lend(ctx) else {
            return false;
        };
        let flow_ctx = host.flow();
        let value = lent.flow_value();
        let mut fresh = 0u32;
        let mut msg = Received::new();
        // SAFETY: `node` is live; `flow_ctx`, `value` and what they point to outlive the call;
        // `fresh` and `msg` are writable.
        let status = unsafe {
            (self.plugin.desc.is_fresh)(self.node, &flow_ctx, &value, &mut fresh, &mut msg.0)
        };
        if status != STATUS_OK {
            ctx.warn(format!("{}; recomputing", self.status_error(status, &msg)));
            return false;
        }
        fresh != 0
    }
}
