//! The execution of one node on a blocking thread: load its cached output, or run it and store
//! what it computed.

use std::sync::Arc;

use flow_core::{Caching, Inputs, NodeError, RunContext, Value};
use flow_recipe::PlanNode;

use crate::cache::{Cache, Lookup};
use crate::deferred;
use crate::key::Key;

/// Everything one node needs to load or run, moved onto a blocking thread.
pub(super) struct Job {
    /// The node.
    pub(super) node: PlanNode,
    /// Its context (directories, cancel flag, warnings).
    pub(super) ctx: RunContext,
    /// Its cache key.
    pub(super) key: Key,
    /// The cache, if any.
    pub(super) cache: Option<Cache>,
    /// How its output is cached.
    pub(super) caching: Caching,
    /// True to load the cached output rather than run.
    pub(super) loading: bool,
    /// Its inputs (empty when loading).
    pub(super) inputs: Inputs,
}

/// What became of a job.
pub(super) enum Outcome {
    /// The cached output, loaded and still fresh.
    Loaded(Box<Value>),
    /// The cached output cannot be used; the node must be computed. `warn` is false when that
    /// is expected (a `write` whose files are not in this output directory as cached) and true
    /// when something went wrong (a corrupt entry).
    Stale {
        /// Why.
        reason: String,
        /// Whether the user is warned.
        warn: bool,
    },
    /// The node ran.
    Computed(Box<Computed>),
    /// The node failed; the error and its warnings.
    Failed(NodeError, Vec<String>),
}

/// What a node that ran produced.
pub(super) struct Computed {
    /// Its output.
    pub(super) value: Value,
    /// Its warnings.
    pub(super) warnings: Vec<String>,
    /// The files it read.
    pub(super) sources: Vec<flow_core::Source>,
    /// True when it said its output is incomplete.
    pub(super) incomplete: bool,
    /// Windows it computed, their pixels, and pixel bytes it read.
    pub(super) work: (u64, u64, u64),
}

/// The TTL of a node's cache entries; `None` for entries that do not expire.
pub(super) fn ttl_of(caching: Caching) -> Option<u64> {
    match caching {
        Caching::Ttl(t) => Some(t),
        _ => None,
    }
}

impl Job {
    /// Loads or runs the node, inside its tracing span.
    pub(super) fn execute(self) -> Outcome {
        let span = tracing::info_span!("node", id = %self.node.id, kind = self.node.kind.name());
        let _guard = span.enter();
        match (&self.cache, self.loading) {
            (Some(cache), true) => self.load(cache),
            _ => self.compute(),
        }
    }

    fn load(&self, cache: &Cache) -> Outcome {
        match cache.get(&self.key, ttl_of(self.caching)) {
            Lookup::Hit(v, _) if self.node.node.is_fresh(&self.ctx, &v) => Outcome::Loaded(v),
            Lookup::Hit(..) => Outcome::Stale {
                reason: "what it wrote outside the cache is missing or was replaced".into(),
                warn: false,
            },
            Lookup::Miss => Outcome::Stale {
                reason: "the entry disappeared or expired".into(),
                warn: true,
            },
            Lookup::Corrupt(reason) => Outcome::Stale {
                reason: format!("corrupt cache entry {} ({reason})", self.key.short()),
                warn: true,
            },
        }
    }

    fn compute(&self) -> Outcome {
        tracing::debug!("running");
        match self.run() {
            Ok(value) => {
                let mut warnings = self.ctx.warnings();
                let incomplete = self.ctx.incomplete();
                if let Some(why) = &incomplete {
                    warnings.push(format!("not cached: the output is incomplete ({why})"));
                }
                // A deferred value is stored as its expression (with the statistics or model
                // gathered for it), unless it holds a whole array that has no JSON form.
                let store = self.caching != Caching::Never
                    && !matches!(&value, Value::Deferred(d) if !d.storable())
                    && !self.ctx.is_cancelled()
                    && incomplete.is_none();
                let sources = self.ctx.sources();
                if let (Some(cache), true) = (&self.cache, store) {
                    let (kind, id) = (self.node.kind.name(), &self.node.id);
                    if let Err(e) = cache.put(&self.key, kind, id, &value, &sources) {
                        warnings.push(format!("not cached: {e}"));
                    }
                }
                let work = self.ctx.work();
                Outcome::Computed(Box::new(Computed {
                    value,
                    warnings,
                    sources,
                    incomplete: incomplete.is_some(),
                    work: (work.windows(), work.pixels(), work.read_bytes()),
                }))
            }
            Err(e) => Outcome::Failed(e, self.ctx.warnings()),
        }
    }
}

impl Job {
    /// Runs the node on its inputs. Deferred inputs (values computed window by window) go to a
    /// pixel-local node as a larger deferred value, to a node that takes them as they are, and
    /// otherwise are computed whole first.
    fn run(&self) -> Result<Value, NodeError> {
        let deferred = self.inputs.iter().find_map(|(_, v)| match v {
            Value::Deferred(d) => Some(d.clone()),
            _ => None,
        });
        let Some(first) = deferred else {
            return self.node.node.run(&self.ctx, &self.inputs);
        };
        if self.node.kind.pixel_local() {
            return deferred::apply(&self.node, &self.ctx, &self.inputs, &first);
        }
        if self.node.node.takes_deferred() {
            return self.node.node.run(&self.ctx, &self.inputs);
        }
        let mut whole = Vec::new();
        for (port, v) in self.inputs.shared() {
            let v = match v.as_ref() {
                Value::Deferred(d) => {
                    tracing::info!(input = port, "computing a windowed input whole");
                    Arc::new(d.materialize(&self.ctx)?)
                }
                _ => v.clone(),
            };
            whole.push((port.to_string(), v));
        }
        self.node.node.run(&self.ctx, &Inputs::new(whole))
    }
}

/// The value of a finished input, shared between its consumers.
pub(super) type Shared = Arc<Value>;
