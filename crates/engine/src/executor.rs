//! Runs a plan: decides what is needed, loads what is cached, computes the rest in parallel.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use flow_core::{summary, Caching, ExitCode, Datasets, Inputs, NodeError, RunContext, Value, ValueType};
use flow_recipe::Plan;
use tokio::task::JoinSet;

use crate::cache::{Cache, Lookup};
use crate::key::{node_key, Key};
use crate::memory;
use crate::report::{NodeReport, NodeStatus, RunReport};

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
        ctx
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

enum Outcome {
    Loaded(Box<Value>),
    Stale(String),
    Computed(Box<Value>, Vec<String>),
    Failed(NodeError, Vec<String>),
}

struct Slot {
    key: Key,
    caching: Caching,
    hit: bool,
    needed: bool,
    state: State,
    started: Option<(Instant, u128)>,
}

#[derive(Clone)]
enum State {
    Pending,
    Busy,
    Done(Arc<Value>),
    Failed,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The TTL of a node's cache entries; `None` for entries that do not expire.
fn ttl_of(caching: Caching) -> Option<u64> {
    match caching {
        Caching::Ttl(t) => Some(t),
        _ => None,
    }
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

type KeyResult = (Vec<Key>, Option<(String, NodeError)>);

/// Every node's key, in plan order; the first node whose key material could not be read is
/// returned with its error (its key then covers params and inputs only).
fn compute_keys(
    plan: &Plan,
    inputs_of: &[Vec<usize>],
    context: &dyn Fn(&str) -> RunContext,
) -> KeyResult {
    let mut keys: Vec<Key> = Vec::with_capacity(plan.nodes.len());
    let mut error = None;
    for (i, node) in plan.nodes.iter().enumerate() {
        let material = match node.node.key_material(&context(&node.id)) {
            Ok(m) => m,
            Err(e) => {
                error.get_or_insert((node.id.clone(), e));
                None
            }
        };
        let input_keys: Vec<(String, Key)> = node
            .inputs
            .iter()
            .zip(&inputs_of[i])
            .map(|((port, _), &j)| (port.clone(), keys[j]))
            .collect();
        keys.push(node_key(
            node.kind.as_ref(),
            &node.params,
            material.as_deref(),
            &input_keys,
        ));
    }
    (keys, error)
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

/// Each node's cache state without running anything: `cached`, `missing`, or `uncached` for
/// nodes that are never stored (such as `sign`).
pub fn cache_states(plan: &Plan, options: &RunOptions) -> Vec<(String, &'static str)> {
    let inputs_of = input_indices(plan);
    let context = |id: &str| options.context(id);
    let (keys, _) = compute_keys(plan, &inputs_of, &context);
    plan.nodes
        .iter()
        .zip(keys)
        .map(|(node, key)| {
            let caching = node.node.caching();
            let state = match (&options.cache, caching) {
                (_, Caching::Never) => "uncached",
                (Some(c), _)
                    if reusable(caching, options.refresh) && c.contains(&key, ttl_of(caching)) =>
                {
                    "cached"
                }
                _ => "missing",
            };
            (node.id.clone(), state)
        })
        .collect()
}

/// Marks `i` needed and, when it must be computed, its inputs too.
fn require(i: usize, slots: &mut [Slot], inputs_of: &[Vec<usize>]) {
    if slots[i].needed && !matches!(slots[i].state, State::Pending) {
        return;
    }
    slots[i].needed = true;
    if !slots[i].hit {
        for &j in &inputs_of[i] {
            if !slots[j].needed {
                require(j, slots, inputs_of);
            }
        }
    }
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
    let n = plan.nodes.len();
    let inputs_of = input_indices(plan);
    let context = |id: &str| options.context(id);

    let mut reports: Vec<Option<NodeReport>> = vec![None; n];
    let mut first_error: Option<(String, NodeError)> = None;

    // Keys, in topological order (the plan is sorted), before anything runs.
    let (keys, key_error) = compute_keys(plan, &inputs_of, &context);
    if let Some(e) = key_error {
        first_error = Some(e);
    }
    let mut slots: Vec<Slot> = plan
        .nodes
        .iter()
        .zip(keys)
        .map(|(node, key)| {
            let caching = node.node.caching();
            let hit = caching != Caching::Never
                && options.cache.as_ref().is_some_and(|c| {
                    reusable(caching, options.refresh) && c.contains(&key, ttl_of(caching))
                });
            Slot {
                key,
                caching,
                hit,
                needed: false,
                state: State::Pending,
                started: None,
            }
        })
        .collect();
    on_event(Event::Begin { nodes: n });

    // Sinks are needed; a needed node that must be computed needs its inputs.
    let sinks: Vec<usize> = (0..n)
        .filter(|i| !inputs_of.iter().any(|ins| ins.contains(i)))
        .collect();
    for i in sinks {
        require(i, &mut slots, &inputs_of);
    }

    let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
    let mut running = 0usize;
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    if first_error.is_some() {
        options.cancel.store(true, Ordering::SeqCst);
    }
    loop {
        let stopping = options.cancel.load(Ordering::SeqCst);
        if !stopping {
            for i in 0..n {
                if running >= options.jobs.max(1) {
                    break;
                }
                let slot = &slots[i];
                if !slot.needed || !matches!(slot.state, State::Pending) {
                    continue;
                }
                let ready = slot.hit
                    || inputs_of[i]
                        .iter()
                        .all(|&j| matches!(slots[j].state, State::Done(_)));
                if !ready {
                    continue;
                }
                let node = plan.nodes[i].clone();
                let ctx = context(&node.id);
                let key = slot.key;
                let cache = options.cache.clone();
                let ttl = ttl_of(slot.caching);
                let caching = slot.caching;
                let loading = slot.hit;
                let inputs = Inputs::new(node.inputs.iter().zip(&inputs_of[i]).filter_map(
                    |((port, _), &j)| match &slots[j].state {
                        State::Done(v) => Some((port.clone(), v.clone())),
                        _ => None,
                    },
                ));
                if options.jobs <= 1 {
                    memory::reset_peak_rss();
                }
                slots[i].state = State::Busy;
                slots[i].started = Some((Instant::now(), unix_ms()));
                running += 1;
                on_event(Event::Started {
                    id: node.id.clone(),
                    loading,
                });
                tasks.spawn_blocking(move || {
                    let span = tracing::info_span!("node", id = %node.id, kind = node.kind.name());
                    let _guard = span.enter();
                    if loading {
                        let cache = cache.expect("hits only exist with a cache");
                        return match cache.get(&key, ttl) {
                            Lookup::Hit(v, _) if node.node.is_fresh(&ctx, &v) => {
                                (i, Outcome::Loaded(v))
                            }
                            Lookup::Hit(..) => (
                                i,
                                Outcome::Stale("its outputs changed since it was cached".into()),
                            ),
                            Lookup::Miss => {
                                (i, Outcome::Stale("the entry disappeared or expired".into()))
                            }
                            Lookup::Corrupt(reason) => (
                                i,
                                Outcome::Stale(format!(
                                    "corrupt cache entry {} ({reason})",
                                    key.short()
                                )),
                            ),
                        };
                    }
                    tracing::debug!("running");
                    match node.node.run(&ctx, &inputs) {
                        Ok(value) => {
                            let mut warnings = ctx.warnings();
                            if let (Some(cache), false) =
                                (&cache, caching == Caching::Never || ctx.is_cancelled())
                            {
                                if let Err(e) = cache.put(&key, node.kind.name(), &node.id, &value)
                                {
                                    warnings.push(format!("not cached: {e}"));
                                }
                            }
                            (i, Outcome::Computed(Box::new(value), warnings))
                        }
                        Err(e) => (i, Outcome::Failed(e, ctx.warnings())),
                    }
                });
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
        let Some(joined) = joined else { break };
        running -= 1;
        let (i, outcome) = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panic inside a node: find nothing to attribute it to but the run.
                first_error.get_or_insert((
                    "?".into(),
                    NodeError::Failed(format!("a node panicked: {e}")),
                ));
                options.cancel.store(true, Ordering::SeqCst);
                continue;
            }
        };
        let node = &plan.nodes[i];
        let (t0, t0_unix) = slots[i].started.unwrap_or((Instant::now(), unix_ms()));
        let mut report = NodeReport {
            id: node.id.clone(),
            kind: node.kind.name().to_string(),
            status: NodeStatus::Computed,
            key: slots[i].key.hex(),
            duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
            output: None,
            warnings: vec![],
            error: None,
            span_ms: Some((t0_unix, unix_ms())),
            peak_rss_bytes: memory::peak_rss_bytes(),
        };
        match outcome {
            Outcome::Loaded(v) => {
                report.status = NodeStatus::Cached;
                report.output = Some(summary::summarize(&v));
                slots[i].state = State::Done(Arc::new(*v));
            }
            Outcome::Stale(reason) => {
                on_event(Event::Warning(format!(
                    "{}: {reason}; recomputing",
                    node.id
                )));
                slots[i].hit = false;
                slots[i].state = State::Pending;
                slots[i].needed = false;
                require(i, &mut slots, &inputs_of);
                continue;
            }
            Outcome::Computed(v, warnings) => {
                for w in &warnings {
                    tracing::warn!(node = %node.id, "{w}");
                }
                report.warnings = warnings;
                report.output = Some(summary::summarize(&v));
                slots[i].state = State::Done(Arc::new(*v));
            }
            Outcome::Failed(e, warnings) => {
                report.warnings = warnings;
                if matches!(e, NodeError::Cancelled) {
                    report.status = NodeStatus::Cancelled;
                } else {
                    report.status = NodeStatus::Failed;
                    report.error = Some(e.to_string());
                    options.cancel.store(true, Ordering::SeqCst);
                }
                slots[i].state = State::Failed;
                if !matches!(e, NodeError::Cancelled) {
                    first_error.get_or_insert((node.id.clone(), e));
                }
            }
        }
        on_event(Event::Finished(Box::new(report.clone())));
        reports[i] = Some(report);
    }

    // Everything else: cached-but-unneeded, skipped, or cancelled.
    let nodes: Vec<NodeReport> = plan
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            reports[i].take().unwrap_or_else(|| {
                let status = if slots[i].hit && !slots[i].needed {
                    NodeStatus::Cached
                } else if !slots[i].needed {
                    NodeStatus::Skipped
                } else {
                    NodeStatus::Cancelled
                };
                // Small outputs (class maps, models, item lists) are summarized even when they
                // were not needed, so that a fully cached run still reports its classes.
                let small = matches!(
                    node.kind.signature().output,
                    ValueType::Labels | ValueType::Model | ValueType::Items | ValueType::Json
                );
                let output = match (&options.cache, status == NodeStatus::Cached && small) {
                    (Some(cache), true) => match cache.get(&slots[i].key, ttl_of(slots[i].caching))
                    {
                        Lookup::Hit(v, _) => Some(summary::summarize(&v)),
                        _ => None,
                    },
                    _ => None,
                };
                let report = NodeReport {
                    id: node.id.clone(),
                    kind: node.kind.name().to_string(),
                    status,
                    key: slots[i].key.hex(),
                    duration_ms: 0.0,
                    output,
                    warnings: vec![],
                    error: None,
                    span_ms: None,
                    peak_rss_bytes: None,
                };
                on_event(Event::Finished(Box::new(report.clone())));
                report
            })
        })
        .collect();

    let (status, exit_code, error) = match (&first_error, interrupted) {
        (Some((id, e)), false) => ("failed", e.exit_code(), Some(format!("{id}: {e}"))),
        (_, true) => (
            "cancelled",
            ExitCode::Interrupted,
            Some("interrupted".to_string()),
        ),
        (None, false) => ("ok", ExitCode::Ok, None),
    };
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
