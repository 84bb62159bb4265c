//! The traits every node kind implements, built-in or from a plugin.
//!
//! A [`NodeKind`] is the factory: it declares a [`Signature`] and a parameter schema, and builds a
//! [`Node`] from parameters that passed the schema (the "params -> valid params" step). A
//! [`Node`] is immutable and runs on whole inputs; pixel-local kinds say so with
//! [`NodeKind::pixel_local`], so that the engine can later run them per window of the grid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{NodeError, ParamError};
use crate::schema::{ParamSpec, Params};
use crate::value::{Items, Labels, Matrix, Model, Raster, Value, ValueType};

/// One named, typed input port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Port {
    /// The port name, used in `inputs = { name = "node" }`.
    pub name: String,
    /// The accepted type.
    #[serde(rename = "type")]
    pub ty: ValueType,
    /// Whether the recipe must connect it.
    pub required: bool,
    /// One line on what it takes.
    pub doc: String,
}

impl Port {
    /// A required port.
    pub fn required(name: &str, ty: ValueType, doc: &str) -> Self {
        Port {
            name: name.into(),
            ty,
            required: true,
            doc: doc.into(),
        }
    }

    /// An optional port.
    pub fn optional(name: &str, ty: ValueType, doc: &str) -> Self {
        Port {
            name: name.into(),
            ty,
            required: false,
            doc: doc.into(),
        }
    }
}

/// A node kind's input ports and output type. `input = "x"` in a recipe connects the first port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// Input ports, in order.
    pub inputs: Vec<Port>,
    /// The type of the single output.
    pub output: ValueType,
}

/// Where a node kind comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "origin", rename_all = "lowercase")]
pub enum Origin {
    /// Compiled into flow.
    Builtin,
    /// Loaded from a plugin library.
    Plugin {
        /// The plugin's name.
        name: String,
        /// The plugin's version.
        version: String,
        /// The ABI version it was built against.
        abi: u32,
        /// The library it was loaded from.
        path: PathBuf,
    },
}

/// How the engine caches a node's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Store the output under its key and reuse it while it verifies.
    Store,
    /// Store it, but treat it as a miss once it is older than this many seconds (live searches).
    Ttl(u64),
    /// Never store or reuse it (it is cheap, or it must be fresh like signed URLs). Its key is still
    /// computed from kind, params and inputs, so nodes downstream of it keep stable keys.
    Never,
}

/// A kind of node: the factory behind `kind = "..."` in a recipe.
pub trait NodeKind: Send + Sync {
    /// The name used in recipes (`stack`, `kmeans-fit`).
    fn name(&self) -> &str;
    /// Bumped whenever the kind's outputs change for the same inputs and params, so that old cache
    /// entries stop matching.
    fn version(&self) -> u32;
    /// One paragraph for `flow nodes`.
    fn doc(&self) -> &str;
    /// Ports and output type.
    fn signature(&self) -> Signature;
    /// The parameter schema.
    fn params(&self) -> Vec<ParamSpec>;
    /// Builds a node from params that passed the schema (defaults already filled in).
    ///
    /// # Errors
    /// A [`ParamError`] when a value is of the right type but not acceptable (k = 0, say).
    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError>;
    /// True when each output pixel depends only on the same pixel of the inputs.
    fn pixel_local(&self) -> bool {
        false
    }
    /// Params that change how a node works but not what it outputs (timeouts, retries, how long
    /// a result stays cached). They are left out of the cache key, so changing them reuses the
    /// cached output.
    fn unkeyed_params(&self) -> &[&str] {
        &[]
    }
    /// Where the kind comes from.
    fn origin(&self) -> Origin {
        Origin::Builtin
    }
    /// Whether a recipe may connect an input under `port`, a name the signature does not
    /// declare: `Some(Ok(ty))` accepts it as a port of type `ty`, `Some(Err(why))` refuses the
    /// name and says why, `None` (the default) knows only the declared ports. `script` takes
    /// inputs under names of the recipe's choosing.
    fn open_port(&self, _port: &str) -> Option<Result<ValueType, String>> {
        None
    }
}

/// A node built from validated params, ready to run.
pub trait Node: Send + Sync {
    /// Computes the output from the inputs. Runs on a blocking thread: it may use rayon or block on
    /// I/O; it should check [`RunContext::check_cancelled`] between long steps.
    ///
    /// # Errors
    /// A [`NodeError`] whose variant decides the exit code.
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError>;

    /// How the output is cached.
    fn caching(&self) -> Caching {
        Caching::Store
    }

    /// Extra material for the cache key that params and inputs do not capture, such as the
    /// contents of a local file the node reads. Called before the cache lookup.
    ///
    /// # Errors
    /// When that material cannot be read.
    fn key_material(&self, _ctx: &RunContext) -> Result<Option<Vec<u8>>, NodeError> {
        Ok(None)
    }

    /// True when the node handles deferred inputs itself ([`crate::deferred`]): it reads them
    /// window by window (gathering statistics or a sample, writing a file). Other nodes that
    /// are not pixel-local get deferred inputs computed whole first.
    fn takes_deferred(&self) -> bool {
        false
    }

    /// The files this node writes, relative to the output directory (`write`'s path and its
    /// sidecars). A recipe in which two nodes write the same file does not validate.
    fn writes(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Whether a cached output can still be used; nodes with side effects (`write`) check that
    /// what they wrote is still there.
    fn is_fresh(&self, _ctx: &RunContext, _cached: &Value) -> bool {
        true
    }

    /// Whether `source`, which this node recorded when it computed a cached output (see
    /// [`RunContext::record_source`]), differs now from what it read: `Some(true)` makes the
    /// cached output a miss, `None` means it cannot tell (a server that refuses the question, no
    /// network) and keeps the cached output. Called when keys are resolved, before the cache is
    /// used; it may block (on a HEAD request, say), but briefly.
    ///
    /// The default checks local files ([`Source::changed`]) and cannot tell for remote ones;
    /// nodes that read remote files override it to ask the server again.
    fn source_changed(&self, source: &Source) -> Option<bool> {
        source.changed()
    }

    /// What this node will output and what running it costs, from what is known of its inputs
    /// before anything is read ([`crate::estimate`]). `None`, the default, leaves it to the
    /// engine: a small output for items, models and JSON, for a pixel-local node the shape of
    /// its first array input, otherwise unknown.
    fn estimate(&self, _known: &crate::estimate::Known) -> Option<crate::estimate::Estimate> {
        None
    }

    /// The type of this node's output when its params decide it (`script`'s `output`), for a
    /// kind whose signature says [`ValueType::Any`]; `None`, the default, means the kind's
    /// [`Signature::output`].
    fn output_type(&self) -> Option<ValueType> {
        None
    }
}

/// The inputs of one node run, by port name.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    values: BTreeMap<String, Arc<Value>>,
}

impl Inputs {
    /// Builds inputs from `(port, value)` pairs.
    pub fn new(values: impl IntoIterator<Item = (String, Arc<Value>)>) -> Self {
        Inputs {
            values: values.into_iter().collect(),
        }
    }

    /// The value on `port`, if connected.
    pub fn get(&self, port: &str) -> Option<&Value> {
        self.values.get(port).map(|v| v.as_ref())
    }

    /// The value on a required port.
    ///
    /// # Errors
    /// [`NodeError::Input`] when the port is not connected.
    pub fn value(&self, port: &str) -> Result<&Value, NodeError> {
        self.get(port).ok_or_else(|| NodeError::Input {
            port: port.into(),
            message: "not connected".into(),
        })
    }

    /// The shared value on `port`, to pass on without copying it.
    pub fn get_shared(&self, port: &str) -> Option<&Arc<Value>> {
        self.values.get(port)
    }

    /// Ports and the shared values themselves, to pass on without copying them.
    pub fn shared(&self) -> impl Iterator<Item = (&str, &Arc<Value>)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Ports and values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }
}

macro_rules! typed_input {
    ($fn:ident, $opt:ident, $variant:ident, $ty:ty) => {
        impl Inputs {
            #[doc = concat!("The ", stringify!($variant), " on a required port.\n\n# Errors\n[`NodeError::Input`] when it is missing or of another type.")]
            pub fn $fn(&self, port: &str) -> Result<&$ty, NodeError> {
                match self.value(port)? {
                    Value::$variant(v) => Ok(v),
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

typed_input!(items, items_opt, Items, Items);
typed_input!(raster, raster_opt, Raster, Raster);
typed_input!(matrix, matrix_opt, Matrix, Matrix);
typed_input!(model, model_opt, Model, Model);
typed_input!(labels, labels_opt, Labels, Labels);

/// A source of named datasets that recipes can ask for by `builtin:NAME` (the offline Timberlea
/// scene, say). A provider materializes its files under the given directory on first use.
pub trait DatasetProvider: Send + Sync {
    /// Writes the dataset into `dir` (which exists and is empty) and returns the path a node
    /// should read (e.g. an ItemCollection JSON inside it).
    ///
    /// # Errors
    /// When the dataset cannot be generated.
    fn materialize(&self, dir: &Path) -> Result<PathBuf, NodeError>;
    /// A version string: a new version materializes into a new directory.
    fn version(&self) -> &str;
}

/// Named dataset providers, available to nodes through [`RunContext::datasets`].
#[derive(Clone, Default)]
pub struct Datasets {
    providers: BTreeMap<String, Arc<dyn DatasetProvider>>,
}

impl Datasets {
    /// Registers `provider` under `name`.
    pub fn add(&mut self, name: &str, provider: Arc<dyn DatasetProvider>) {
        self.providers.insert(name.into(), provider);
    }

    /// The provider called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn DatasetProvider>> {
        self.providers.get(name)
    }

    /// Names of all providers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Datasets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.providers.keys()).finish()
    }
}

/// A file or URL a node read, with what identifies the version it read. The engine stores a
/// node's sources with its cached output; a cached output whose source changed since (as
/// [`Node::source_changed`] tells) is recomputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Source {
    /// The local path or the URL (without secrets in it).
    pub location: String,
    /// Its size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// What names its version: a local file's modification time (nanoseconds since the epoch), a
    /// remote file's ETag or Last-Modified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// True for a local file, whose version the engine can check again without a network.
    #[serde(default)]
    pub local: bool,
    /// What reading `location` again takes when the URL read carried more than it (a signature
    /// or token in its query, which `location` leaves out): `signer:ID` when a signer of
    /// [`crate::signer`] made it, `query` otherwise. None when `location` itself was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

impl Source {
    /// A local file as it is now: its size and modification time.
    ///
    /// # Errors
    /// When the file cannot be examined.
    pub fn local_file(path: &Path) -> std::io::Result<Source> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos().to_string());
        Ok(Source {
            location: path.display().to_string(),
            size: Some(meta.len()),
            version: mtime,
            local: true,
            credentials: None,
        })
    }

    /// For a local file: whether it differs now from when it was read (a missing file has
    /// changed). `None` for a remote source: only the node that read it knows how to ask its
    /// server again ([`Node::source_changed`]).
    pub fn changed(&self) -> Option<bool> {
        if !self.local {
            return None;
        }
        Some(match Source::local_file(Path::new(&self.location)) {
            Ok(now) => now.size != self.size || now.version != self.version,
            Err(_) => true,
        })
    }
}

/// A progress callback: node id, units done, total units.
type ProgressFn = dyn Fn(&str, u64, u64) + Send + Sync;

/// Where a node's progress goes: called with the node id, the units done and the total.
#[derive(Clone)]
pub struct ProgressSink(Arc<ProgressFn>);

impl ProgressSink {
    /// A sink that calls `f(node_id, done, total)`.
    pub fn new(f: impl Fn(&str, u64, u64) + Send + Sync + 'static) -> Self {
        ProgressSink(Arc::new(f))
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

/// What a running node may know of its run.
#[derive(Debug, Clone)]
pub struct RunContext {
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
    /// Named datasets.
    pub datasets: Datasets,
    cancelled: Arc<AtomicBool>,
    warnings: Arc<Mutex<Vec<String>>>,
    progress: Option<ProgressSink>,
    sources: Arc<Mutex<Vec<Source>>>,
    incomplete: Arc<Mutex<Option<String>>>,
    window: Option<crate::window::Window>,
    registry: Option<Arc<crate::Registry>>,
    window_size: Option<usize>,
    memory_limit: Option<u64>,
    work: Arc<Work>,
    coarsen: usize,
}

/// The work a node did, for the run report: windows computed, their pixels, and pixel bytes
/// read from files (see [`crate::estimate`]). Shared by the contexts of its windows.
#[derive(Debug, Default)]
pub struct Work {
    windows: AtomicU64,
    pixels: AtomicU64,
    read_bytes: AtomicU64,
}

impl Work {
    /// Windows computed.
    pub fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    /// Pixels of the windows computed.
    pub fn pixels(&self) -> u64 {
        self.pixels.load(Ordering::Relaxed)
    }

    /// Pixel bytes read from files.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes.load(Ordering::Relaxed)
    }
}

impl RunContext {
    /// A context for node `node_id`.
    pub fn new(node_id: &str, out_dir: PathBuf, recipe_dir: PathBuf, data_dir: PathBuf) -> Self {
        RunContext {
            node_id: node_id.into(),
            out_dir,
            recipe_dir,
            data_dir,
            threads: 1,
            refresh: false,
            datasets: Datasets::default(),
            cancelled: Arc::new(AtomicBool::new(false)),
            warnings: Arc::default(),
            progress: None,
            sources: Arc::default(),
            incomplete: Arc::default(),
            window: None,
            registry: None,
            window_size: None,
            memory_limit: None,
            work: Arc::default(),
            coarsen: 1,
        }
    }

    /// How many times coarser than its own grid a source node reads (1: its own grid): a
    /// picture-sized version of a large value is computed from sources read at a coarser grid
    /// ([`crate::deferred::Deferred::materialize_every`]), which lets GDAL use overviews.
    pub fn coarsen(&self) -> usize {
        self.coarsen
    }

    /// This context with sources reading `step` times coarser (see [`RunContext::coarsen`]).
    pub fn coarser(&self, step: usize) -> RunContext {
        let mut c = self.clone();
        c.coarsen = self.coarsen.saturating_mul(step.max(1));
        c
    }

    /// The run's memory limit in bytes (`--memory-limit`), which source nodes keep their
    /// whole outputs well below, computing larger ones window by window.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// Sets the memory limit (see [`RunContext::memory_limit`]).
    pub fn with_memory_limit(mut self, bytes: Option<u64>) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The work this node did so far (see [`Work`]).
    pub fn work(&self) -> &Work {
        &self.work
    }

    /// Counts a window of `pixels` pixels computed.
    pub fn count_window(&self, pixels: usize) {
        self.work.windows.fetch_add(1, Ordering::Relaxed);
        self.work.pixels.fetch_add(pixels as u64, Ordering::Relaxed);
    }

    /// Counts `bytes` of pixels read from a file.
    pub fn count_read(&self, bytes: u64) {
        self.work.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The window of its grid a source node (`stack`) produces, when the node runs as part of a
    /// windowed evaluation; `None` for the whole grid.
    pub fn window(&self) -> Option<crate::window::Window> {
        self.window
    }

    /// This context for one window of a windowed evaluation (see [`RunContext::window`]).
    pub fn for_window(&self, window: crate::window::Window) -> RunContext {
        let mut c = self.clone();
        c.window = Some(window);
        c
    }

    /// The kinds known to this run, which windowed evaluation rebuilds nodes from.
    pub fn registry(&self) -> Option<&Arc<crate::Registry>> {
        self.registry.as_ref()
    }

    /// Gives the context the run's kinds (see [`RunContext::registry`]).
    pub fn with_registry(mut self, registry: Arc<crate::Registry>) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The window side the user asked for (`--window`), if any: a source node whose output is
    /// larger than one window hands out a deferred value computed window by window.
    pub fn window_size(&self) -> Option<usize> {
        self.window_size
    }

    /// Sets the window side (see [`RunContext::window_size`]).
    pub fn with_window_size(mut self, size: Option<usize>) -> Self {
        self.window_size = size;
        self
    }

    /// Records a file or URL this node read (see [`Source`]). Files of a materialized builtin
    /// dataset (under the data directory) are not recorded: a dataset never changes at its
    /// version, which keys already hold, and its path differs from one machine (one cache
    /// directory) to another, so recording it would make every other machine see it changed.
    pub fn record_source(&self, source: Source) {
        if source.local && std::path::Path::new(&source.location).starts_with(&self.data_dir) {
            return;
        }
        if let Ok(mut s) = self.sources.lock() {
            // A windowed run reads a file once per window: it is one source.
            if !s.contains(&source) {
                s.push(source);
            }
        }
    }

    /// The sources recorded so far.
    pub fn sources(&self) -> Vec<Source> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Says that this node's output is incomplete (an asset replaced by nodata after a failed
    /// read, say): it is used for this run but never cached as if it were complete.
    pub fn mark_incomplete(&self, why: impl Into<String>) {
        if let Ok(mut i) = self.incomplete.lock() {
            i.get_or_insert_with(|| why.into());
        }
    }

    /// Why the output is incomplete, if it is.
    pub fn incomplete(&self) -> Option<String> {
        self.incomplete.lock().ok().and_then(|i| i.clone())
    }

    /// Sends this node's progress to `sink`.
    pub fn with_progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Reports that `done` of `total` units of work (bands read, restarts fitted, windows
    /// written) are done. Cheap; long nodes call it as they go.
    pub fn progress(&self, done: u64, total: u64) {
        if let Some(sink) = &self.progress {
            (sink.0)(&self.node_id, done, total);
        }
    }

    /// Shares `flag` as this run's cancellation flag.
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancelled = flag;
        self
    }

    /// True once the run is being cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
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

    /// Records a warning for the run report; the engine logs it when the node finishes.
    pub fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        if let Ok(mut w) = self.warnings.lock() {
            w.push(message);
        }
    }

    /// The warnings recorded so far.
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
