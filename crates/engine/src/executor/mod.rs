//! Runs a plan: decides what is needed, loads what is cached, computes the rest in parallel.
//!
//! [`run`] is the scheduler's loop (start ready nodes up to `jobs`, join them, stop on the first
//! failure or Ctrl-C); `Scheduler` holds the per-node state; `job` loads or runs one node on a
//! blocking thread.

mod job;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flow_core::{
    redact, summary, Caching, Datasets, ExitCode, Inputs, NodeError, ProgressSink, RunContext,
    Source, Value, ValueType,
};
use flow_recipe::Plan;
use tokio::task::JoinSet;

use crate::cache::{Cache, Lookup};
use crate::key::{content_identity, node_key, with_sources, Key};
use crate::memory;
use crate::report::{NodeReport, NodeStatus, RunReport};
use job::{ttl_of, Computed, Job, Outcome, Shared};

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Nodes running (or loading) at once. Default: the number of cores.
    pub jobs: usize,
    /// The cache; `None` runs everything and stores nothing (`--no-cache`).
    pub cache: Option<Cache>,
    /// Treat TTL-cached results (live searches) as expired.
    pub refresh: bool,
    /// Output directory handed to nodes.
    pub out_dir: PathBuf,
    /// Directory of the recipe, for relative paths.
    pub recipe_dir: PathBuf,
    /// Where datasets are materialized (normally the cache's `data/`, [`Cache::data_dir_in`]).
    pub data_dir: PathBuf,
    /// Named datasets for `builtin:` catalogs.
    pub datasets: Datasets,
    /// Set to cancel the run (Ctrl-C).
    pub cancel: Arc<AtomicBool>,
    /// Where nodes report their progress (a progress bar), if anywhere.
    pub progress: Option<ProgressSink>,
    /// The kinds of the run, from which deferred values rebuild their nodes window by window.
    pub registry: Option<Arc<flow_core::Registry>>,
    /// The window side asked for (`--window`); `None` lets source nodes decide.
    pub window: Option<usize>,
    /// The memory the run may use, in bytes (`--memory-limit`): a run estimated to need more
    /// ([`crate::estimate`]) is refused before the node that would exceed it starts, and
    /// source nodes compute outputs too large for it window by window. `None`: no limit.
    pub memory_limit: Option<u64>,
}

impl RunOptions {
    /// The context handed to node `id`: output, recipe and data directories, threads, the
    /// cancellation flag and the datasets.
    pub fn context(&self, id: &str) -> RunContext {
        let mut ctx = RunContext::new(
            id,
            self.out_dir.clone(),
            self.recipe_dir.clone(),
            self.data_dir.clone(),
        )
        .with_cancel_flag(self.cancel.clone());
        ctx.threads = self.jobs;
        ctx.refresh = self.refresh;
        ctx.datasets = self.datasets.clone();
        let mut ctx = ctx
            .with_window_size(self.window)
            .with_memory_limit(self.memory_limit);
        if let Some(registry) = &self.registry {
            ctx = ctx.with_registry(registry.clone());
        }
        match &self.progress {
            Some(sink) => ctx.with_progress(sink.clone()),
            None => ctx,
        }
    }
}

/// Progress events, in the order they happen.
#[derive(Debug, Clone)]
pub enum Event {
    /// The plan's keys are known and the run begins.
    Begin {
        /// Nodes in the plan.
        nodes: usize,
    },
    /// A node started computing or loading.
    Started {
        /// Node id.
        id: String,
        /// True when loading from the cache.
        loading: bool,
    },
    /// A node is done (any status).
    Finished(Box<NodeReport>),
    /// A warning not tied to a node's output (a corrupt cache entry, a failed cache write).
    Warning(String),
}

/// The scheduler's view of one node.
struct Slot {
    /// Known once every input's identity is known.
    key: Option<Key>,
    /// What the keys of its consumers take: its key, or for a live (TTL-cached) node the
    /// content identity of its output once that is loaded or computed.
    identity: Option<Key>,
    /// Extra key material the node declared.
    material: Option<Vec<u8>>,
    caching: Caching,
    /// Its output is in the cache and may be reused.
    hit: bool,
    /// Something the run must produce depends on it.
    needed: bool,
    state: State,
    /// When it started: a monotonic instant and Unix milliseconds.
    started: Option<(Instant, u128)>,
}

#[derive(Clone)]
enum State {
    Pending,
    Busy,
    Done(Shared),
    /// Done, and its output dropped once every consumer had finished.
    Released,
    Failed,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// True when a cached output may be used at all: never for `Caching::Never`, and not for live
/// (TTL) results when the user asked to `--refresh` them.
fn reusable(caching: Caching, refresh: bool) -> bool {
    match caching {
        Caching::Never => false,
        Caching::Ttl(_) => !refresh,
        Caching::Store => true,
    }
}

/// Sources checked at once by [`changed_source`] (each check of a remote file is a request).
const SOURCE_CHECKS_AT_ONCE: usize = 8;

/// The location of the first of `sources` (recorded by `node` with a cached output) that
/// `node` says changed since ([`flow_core::Node::source_changed`]), if any. Local files are
/// checked in turn; remote ones, which cost a request each, on up to
/// [`SOURCE_CHECKS_AT_ONCE`] threads of their own, outside the async runtime's workers.
fn changed_source(node: &dyn flow_core::Node, sources: &[Source]) -> Option<String> {
    if sources.iter().all(|s| s.local) {
        return sources
            .iter()
            .find(|s| node.source_changed(s) == Some(true))
            .map(|s| s.location.clone());
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found: std::sync::Mutex<Option<usize>> = std::sync::Mutex::new(None);
    let check = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(source) = sources.get(i) else {
            return;
        };
        if found.lock().map(|f| f.is_some()).unwrap_or(true) {
            return;
        }
        if node.source_changed(source) == Some(true) {
            if let Ok(mut f) = found.lock() {
                let first = f.map_or(i, |j| j.min(i));
                *f = Some(first);
            }
        }
    };
    let threads = sources.len().min(SOURCE_CHECKS_AT_ONCE);
    let run = || {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(check);
            }
        })
    };
    // Blocking here would stall one of the runtime's workers: hand it over to the others.
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run)
        }
        _ => run(),
    }
    let first = found.into_inner().ok().flatten()?;
    sources.get(first).map(|s| s.location.clone())
}

/// Each node's extra key material (in plan order), and the first node whose material could not
/// be read, with its error.
type Materials = (Vec<Option<Vec<u8>>>, Option<(String, NodeError)>);

/// Every node's extra key material, in plan order; the first node whose material could not be
/// read is returned with its error (its key then covers params and inputs only).
fn key_materials(plan: &Plan, context: &dyn Fn(&str) -> RunContext) -> Materials {
    let mut error = None;
    let materials = plan
        .nodes
        .iter()
        .map(|node| match node.node.key_material(&context(&node.id)) {
            Ok(m) => m,
            Err(e) => {
                error.get_or_insert((node.id.clone(), e));
                None
            }
        })
        .collect();
    (materials, error)
}

fn input_indices(plan: &Plan) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    plan.nodes
        .iter()
        .map(|n| {
            n.inputs
                .iter()
                .filter_map(|(_, s)| index.get(s.as_str()).copied())
                .collect()
        })
        .collect()
}

/// A node's keys, known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeKeys {
    /// The key the cache uses, `None` while it cannot be known (after a live search that is not
    /// cached, or a node whose inputs have not recorded what they read).
    pub key: Option<Key>,
    /// The key as the plan alone decides it: kind, params, extra key material and the inputs'
    /// plan keys, with neither the content of live searches nor the versions of the files nodes
    /// read. Two runs of the same recipe on the same inputs' names have the same plan keys.
    pub plan_key: Key,
}

/// Each node's keys, in plan order, without running anything. Cached live searches are loaded
/// (they are small) so that the keys after them are known.
pub fn node_keys(plan: &Plan, options: &RunOptions) -> Vec<NodeKeys> {
    let run = resolved(plan, options);
    let mut plan_keys: Vec<Key> = Vec::with_capacity(plan.nodes.len());
    for i in 0..plan.nodes.len() {
        // Plan order is topological: every input's plan key is known.
        let key = run
            .key_with(i, |j| plan_keys.get(j).copied())
            .expect("inputs come first in plan order");
        plan_keys.push(key);
    }
    run.slots
        .iter()
        .zip(plan_keys)
        .map(|(slot, plan_key)| NodeKeys {
            key: slot.key,
            plan_key,
        })
        .collect()
}

/// The scheduler with every key that can be known before running resolved: cached live
/// searches are loaded so that the keys of the nodes after them are known.
fn resolved<'a>(plan: &'a Plan, options: &'a RunOptions) -> Scheduler<'a> {
    let mut run = Scheduler::new(plan, options);
    loop {
        let mut learned = false;
        for i in 0..plan.nodes.len() {
            let slot = &run.slots[i];
            if let (Some(key), true, None, Some(cache)) = (
                slot.key,
                slot.hit && matches!(slot.caching, Caching::Ttl(_)),
                slot.identity,
                &options.cache,
            ) {
                if let Lookup::Hit(v, _) = cache.get(&key, ttl_of(slot.caching)) {
                    run.slots[i].identity = Some(content_identity(&v));
                    learned = true;
                }
            }
        }
        if !learned {
            break;
        }
        run.resolve_keys();
    }
    run
}

/// Each node's cache state without running anything: `cached`, `missing`, or `uncached` for
/// nodes that are never stored (such as `sign`). A node after a live search that is not cached
/// is `missing`.
pub fn cache_states(plan: &Plan, options: &RunOptions) -> Vec<(String, &'static str)> {
    let run = resolved(plan, options);
    plan.nodes
        .iter()
        .zip(&run.slots)
        .map(|(node, slot)| {
            let state = match slot.caching {
                Caching::Never => "uncached",
                _ if slot.hit => "cached",
                _ => "missing",
            };
            (node.id.clone(), state)
        })
        .collect()
}

/// The estimate of running `plan` with `options` as things stand: which nodes the cache spares
/// and which run ([`crate::estimate`]), before anything is read. `known` holds, in plan order,
/// outputs already computed (a search's items), which the nodes after them estimate from.
pub fn estimate_run(
    plan: &Plan,
    options: &RunOptions,
    known: &[Option<Arc<Value>>],
) -> crate::estimate::PlanEstimate {
    let mut run = Scheduler::new(plan, options);
    for (slot, value) in run.slots.iter_mut().zip(known) {
        if let Some(v) = value {
            slot.state = State::Done(v.clone());
        }
    }
    run.estimate()
}

/// Runs `plan`, calling `on_event` as nodes start and finish.
///
/// The returned report lists every node; its `exit_code` is 0 on success, the failing node's
/// error code otherwise, and 130 when cancelled.
pub async fn run(
    plan: &Plan,
    options: RunOptions,
    on_event: impl Fn(Event) + Send + Sync,
) -> RunReport {
    let started = Instant::now();
    let mut run = Scheduler::new(plan, &options);
    on_event(Event::Begin {
        nodes: plan.nodes.len(),
    });
    if run.first_error.is_some() {
        options.cancel.store(true, Ordering::SeqCst);
    }

    let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if !options.cancel.load(Ordering::SeqCst) {
            run.check_memory();
        }
        if !options.cancel.load(Ordering::SeqCst) {
            while tasks.len() < options.jobs.max(1) {
                let Some((i, job)) = run.next_job() else {
                    break;
                };
                on_event(Event::Started {
                    id: plan.nodes[i].id.clone(),
                    loading: job.loading,
                });
                tasks.spawn_blocking(move || (i, job.execute()));
            }
        }
        if tasks.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = tasks.join_next() => j,
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                options.cancel.store(true, Ordering::SeqCst);
                on_event(Event::Warning("interrupted: stopping".into()));
                // Blocking tasks cannot be aborted; report now and let the caller exit.
                break;
            }
        };
        match joined {
            Some(Ok((i, outcome))) => {
                if let Some(report) = run.finish(i, outcome, &on_event) {
                    on_event(Event::Finished(Box::new(report)));
                }
            }
            Some(Err(e)) => {
                // A panic inside a node: nothing to attribute it to but the run.
                run.first_error.get_or_insert((
                    "?".into(),
                    NodeError::Failed(format!("a node panicked: {e}")),
                ));
                options.cancel.store(true, Ordering::SeqCst);
            }
            None => break,
        }
    }
    run.into_report(started, interrupted, &on_event)
}

/// Keys, cache state and progress of every node of one run.
struct Scheduler<'a> {
    plan: &'a Plan,
    options: &'a RunOptions,
    inputs_of: Vec<Vec<usize>>,
    slots: Vec<Slot>,
    reports: Vec<Option<NodeReport>>,
    first_error: Option<(String, NodeError)>,
    /// Something was learned since the memory estimate was last checked.
    estimate_stale: bool,
}

impl<'a> Scheduler<'a> {
    /// Computes every key (in plan order, which is topological), probes the cache, and marks
    /// what is needed: every sink, and the inputs of every needed node that is a miss.
    fn new(plan: &'a Plan, options: &'a RunOptions) -> Self {
        let inputs_of = input_indices(plan);
        let context = |id: &str| options.context(id);
        let (materials, first_error) = key_materials(plan, &context);
        let slots = plan
            .nodes
            .iter()
            .zip(materials)
            .map(|(node, material)| Slot {
                key: None,
                identity: None,
                material,
                caching: node.node.caching(),
                hit: false,
                needed: false,
                state: State::Pending,
                started: None,
            })
            .collect();
        let mut run = Scheduler {
            plan,
            options,
            slots,
            reports: vec![None; plan.nodes.len()],
            first_error,
            inputs_of,
            estimate_stale: true,
        };
        run.resolve_keys();
        run.replan();
        run
    }

    /// The key of node `i` with `input(j)` standing for the identity of its input `j`; `None`
    /// while one is unknown.
    fn key_with(&self, i: usize, input: impl Fn(usize) -> Option<Key>) -> Option<Key> {
        let node = &self.plan.nodes[i];
        let inputs: Vec<(String, Key)> = node
            .inputs
            .iter()
            .zip(&self.inputs_of[i])
            .map(|((port, _), &j)| input(j).map(|k| (port.clone(), k)))
            .collect::<Option<_>>()?;
        Some(node_key(
            node.kind.as_ref(),
            &node.params,
            self.slots[i].material.as_deref(),
            &inputs,
        ))
    }

    /// Computes the key of every node whose inputs' identities are all known (in plan order,
    /// which is topological), and probes the cache for it.
    fn resolve_keys(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].key.is_some() {
                continue;
            }
            let node = &self.plan.nodes[i];
            let Some(key) = self.key_with(i, |j| self.slots[j].identity) else {
                continue;
            };
            let caching = self.slots[i].caching;
            let cache = self.options.cache.as_ref();
            // One read of the manifest says whether it is a hit and what it read.
            let manifest = cache
                .filter(|_| reusable(caching, self.options.refresh))
                .and_then(|c| c.lookup(&key, ttl_of(caching)));
            let mut hit = manifest.is_some();
            // The identity consumers key on: a live node's is its content (known once it is
            // loaded or run); an uncached node passes its key on; any other node's is its key
            // and the versions of the files it read, known from a hit's manifest, or once it has
            // run. A hit whose files changed since is a miss.
            let identity = match (caching, cache, manifest) {
                (Caching::Ttl(_), _, _) => None,
                (Caching::Never, _, _) => Some(key),
                (Caching::Store, Some(cache), Some(manifest)) => {
                    let sources = manifest.sources;
                    if let Some(changed) = changed_source(node.node.as_ref(), &sources) {
                        tracing::info!(node = %node.id, source = %redact::secrets(&changed), "a file it read changed since it was cached; recomputing");
                        cache.remove(&key);
                        hit = false;
                        None
                    } else {
                        Some(with_sources(&key, &sources))
                    }
                }
                (Caching::Store, _, _) => None,
            };
            let slot = &mut self.slots[i];
            slot.key = Some(key);
            slot.hit = hit;
            slot.identity = identity;
        }
    }

    /// Decides again what is needed: every sink, and the inputs of every needed node that is a
    /// miss (a node whose key is not known yet counts as a miss). Nodes already started keep
    /// their state.
    fn replan(&mut self) {
        for slot in &mut self.slots {
            if matches!(slot.state, State::Pending) {
                slot.needed = false;
            }
        }
        let n = self.slots.len();
        let sinks: Vec<usize> = (0..n)
            .filter(|i| !self.inputs_of.iter().any(|ins| ins.contains(i)))
            .collect();
        for i in sinks {
            self.require(i);
        }
    }

    /// Marks `i` needed and, when it must be computed, its inputs too. An input whose output
    /// was already dropped is produced again.
    fn require(&mut self, i: usize) {
        if self.slots[i].needed && !matches!(self.slots[i].state, State::Pending) {
            return;
        }
        self.slots[i].needed = true;
        self.estimate_stale = true;
        if !self.slots[i].hit {
            for j in self.inputs_of[i].clone() {
                if matches!(self.slots[j].state, State::Released) {
                    self.slots[j].state = State::Pending;
                    self.slots[j].needed = false;
                }
                if !self.slots[j].needed {
                    self.require(j);
                }
            }
        }
    }

    /// The estimate of the rest of the run (see [`crate::estimate`]).
    fn estimate(&self) -> crate::estimate::PlanEstimate {
        let situation = crate::estimate::Situation {
            needed: self.slots.iter().map(|s| s.needed).collect(),
            hit: self.slots.iter().map(|s| s.hit).collect(),
            values: self
                .slots
                .iter()
                .map(|s| match &s.state {
                    State::Done(v) => Some(v.clone()),
                    _ => None,
                })
                .collect(),
            threads: self.options.jobs.max(1),
            window: self.options.window,
            memory_limit: self.options.memory_limit,
        };
        crate::estimate::estimate(self.plan, &situation)
    }

    /// Refuses the rest of the run when, with what is known now, it is estimated to need more
    /// memory than the limit: the error names the node, the estimate and the limit (exit 2
    /// before anything ran, else 3), and nothing more starts.
    fn check_memory(&mut self) {
        let Some(limit) = self.options.memory_limit else {
            return;
        };
        if !std::mem::take(&mut self.estimate_stale) || self.first_error.is_some() {
            return;
        }
        let estimate = self.estimate();
        if let Some(message) = estimate.exceeds(limit) {
            let node = estimate.peak_node.unwrap_or_default();
            tracing::info!(node = %node, "{message}");
            let from_plan = self.slots.iter().all(|s| matches!(s.state, State::Pending));
            self.first_error = Some((node, NodeError::OverMemory { message, from_plan }));
            self.options.cancel.store(true, Ordering::SeqCst);
        }
    }

    /// Drops the outputs that every consumer has read: a node's output is held only while a
    /// node that is to compute from it has not finished. (Should one be needed again later, a
    /// cached one that turned out stale, it is produced again: [`Scheduler::require`].)
    fn release_inputs_of(&mut self, i: usize) {
        for j in self.inputs_of[i].clone() {
            let finished = (0..self.slots.len())
                .filter(|&k| self.inputs_of[k].contains(&j))
                .filter(|&k| self.slots[k].needed && !self.slots[k].hit)
                .all(|k| {
                    matches!(
                        self.slots[k].state,
                        State::Done(_) | State::Released | State::Failed
                    )
                });
            if finished && matches!(self.slots[j].state, State::Done(_)) {
                self.slots[j].state = State::Released;
            }
        }
    }

    /// The next node that is needed, pending and ready (a hit, or all inputs done), as a job;
    /// it is marked busy.
    fn next_job(&mut self) -> Option<(usize, Job)> {
        let ready = |i: usize, slots: &[Slot]| {
            slots[i].hit
                || self.inputs_of[i]
                    .iter()
                    .all(|&j| matches!(slots[j].state, State::Done(_)))
        };
        let i = (0..self.slots.len()).find(|&i| {
            self.slots[i].needed
                && self.slots[i].key.is_some()
                && matches!(self.slots[i].state, State::Pending)
                && ready(i, &self.slots)
        })?;
        let node = self.plan.nodes[i].clone();
        let slot = &self.slots[i];
        let inputs = Inputs::new(node.inputs.iter().zip(&self.inputs_of[i]).filter_map(
            |((port, _), &j)| match &self.slots[j].state {
                State::Done(v) => Some((port.clone(), v.clone())),
                _ => None,
            },
        ));
        let job = Job {
            ctx: self.options.context(&node.id),
            key: slot.key?,
            cache: self.options.cache.clone(),
            caching: slot.caching,
            loading: slot.hit,
            inputs,
            node,
        };
        if self.options.jobs <= 1 {
            memory::reset_peak_rss();
        }
        self.slots[i].state = State::Busy;
        self.slots[i].started = Some((Instant::now(), unix_ms()));
        Some((i, job))
    }

    /// Records the outcome of node `i`; returns its report, or `None` when a stale cache entry
    /// sent it back to be computed.
    fn finish(
        &mut self,
        i: usize,
        outcome: Outcome,
        on_event: &dyn Fn(Event),
    ) -> Option<NodeReport> {
        let node = &self.plan.nodes[i];
        let (t0, t0_unix) = self.slots[i].started.unwrap_or((Instant::now(), unix_ms()));
        let mut report = NodeReport::new(
            &node.id,
            node.kind.name(),
            NodeStatus::Computed,
            self.key_hex(i),
        );
        report.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
        report.span_ms = Some((t0_unix, unix_ms()));
        report.peak_rss_bytes = memory::peak_rss_bytes();
        match outcome {
            Outcome::Loaded(v) => {
                report.status = NodeStatus::Cached;
                report.output = Some(summary::summarize(&v));
                self.done(i, *v, &[], false);
            }
            Outcome::Stale { reason, warn } => {
                let message = redact::secrets(&format!("{}: {reason}; recomputing", node.id));
                if warn {
                    on_event(Event::Warning(message));
                } else {
                    tracing::info!("{message}");
                }
                let slot = &mut self.slots[i];
                slot.hit = false;
                slot.state = State::Pending;
                slot.needed = false;
                self.require(i);
                return None;
            }
            Outcome::Computed(computed) => {
                let Computed {
                    value: v,
                    warnings,
                    sources,
                    incomplete,
                    work: (windows, pixels, read_bytes),
                } = *computed;
                report.windows = (windows > 0).then_some(windows);
                report.pixels = (pixels > 0).then_some(pixels);
                report.read_bytes = (read_bytes > 0).then_some(read_bytes);
                let warnings: Vec<String> = warnings.iter().map(|w| redact::secrets(w)).collect();
                for w in &warnings {
                    tracing::warn!(node = %node.id, "{w}");
                }
                report.warnings = warnings;
                report.output = Some(summary::summarize(&v));
                self.done(i, v, &sources, incomplete);
            }
            Outcome::Failed(e, warnings) => {
                report.warnings = warnings.iter().map(|w| redact::secrets(w)).collect();
                self.slots[i].state = State::Failed;
                if matches!(e, NodeError::Cancelled) {
                    report.status = NodeStatus::Cancelled;
                } else {
                    report.status = NodeStatus::Failed;
                    report.error = Some(redact::secrets(&e.to_string()));
                    self.options.cancel.store(true, Ordering::SeqCst);
                    self.first_error.get_or_insert((node.id.clone(), e));
                }
            }
        }
        self.reports[i] = Some(report.clone());
        Some(report)
    }

    /// Node `i`'s output is known (with the files it read, when it ran). If that fixes its
    /// identity, the keys after it are computed, probed and what is needed decided again. An
    /// incomplete output is known by its content, so that the nodes after it are recomputed
    /// once it is whole.
    fn done(&mut self, i: usize, value: Value, sources: &[Source], incomplete: bool) {
        let slot = &mut self.slots[i];
        let learned = slot.identity.is_none() || incomplete;
        if learned {
            slot.identity = match (slot.caching, slot.key) {
                (Caching::Ttl(_), _) => Some(content_identity(&value)),
                _ if incomplete => Some(content_identity(&value)),
                (_, Some(key)) => Some(with_sources(&key, sources)),
                (_, None) => None,
            };
        }
        slot.state = State::Done(Arc::new(value));
        self.estimate_stale = true;
        self.release_inputs_of(i);
        if learned {
            self.resolve_keys();
            self.replan();
        }
    }

    fn key_hex(&self, i: usize) -> String {
        self.slots[i].key.map(|k| k.hex()).unwrap_or_default()
    }

    /// The report of a node that did not finish in this run: cached but not needed, skipped,
    /// or cancelled. Small outputs (class maps, models, item lists) of cached nodes are still
    /// summarized, so that a fully cached run reports its classes.
    fn unfinished_report(&self, i: usize) -> NodeReport {
        let node = &self.plan.nodes[i];
        let slot = &self.slots[i];
        let status = if slot.hit && !slot.needed {
            NodeStatus::Cached
        } else if !slot.needed {
            NodeStatus::Skipped
        } else {
            NodeStatus::Cancelled
        };
        let small = matches!(
            node.output_type(),
            ValueType::Labels | ValueType::Model | ValueType::Items | ValueType::Json
        );
        let mut report = NodeReport::new(&node.id, node.kind.name(), status, self.key_hex(i));
        if let (Some(cache), Some(key), true) = (
            &self.options.cache,
            slot.key,
            status == NodeStatus::Cached && small,
        ) {
            if let Lookup::Hit(v, _) = cache.get(&key, ttl_of(slot.caching)) {
                report.output = Some(summary::summarize(&v));
            }
        }
        report
    }

    /// The run's report: every node in plan order, the status and the exit code.
    fn into_report(
        mut self,
        started: Instant,
        interrupted: bool,
        on_event: &dyn Fn(Event),
    ) -> RunReport {
        let nodes: Vec<NodeReport> = (0..self.plan.nodes.len())
            .map(|i| {
                self.reports[i].take().unwrap_or_else(|| {
                    let report = self.unfinished_report(i);
                    on_event(Event::Finished(Box::new(report.clone())));
                    report
                })
            })
            .collect();
        let (status, exit_code, error) = match (&self.first_error, interrupted) {
            (Some((id, e)), false) => (
                "failed",
                e.exit_code(),
                Some(redact::secrets(&format!("{id}: {e}"))),
            ),
            (_, true) => (
                "cancelled",
                ExitCode::Interrupted,
                Some("interrupted".to_string()),
            ),
            (None, false) => ("ok", ExitCode::Ok, None),
        };
        let plan = self.plan;
        RunReport {
            recipe: plan.name.clone(),
            file: plan.file.clone(),
            profile: plan.profile.clone(),
            params: plan.params.clone(),
            status: status.into(),
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            nodes,
            exit_code,
            error,
        }
    }
}
