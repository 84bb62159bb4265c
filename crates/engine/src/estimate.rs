//! The run's memory and read estimate, made before anything is read.
//!
//! Each node estimates its output and its own cost ([`flow_core::Node::estimate`]); this module
//! walks the plan in order, as the run would with one job, and adds up:
//!
//! - what is held whole at once: every output held whole until its last consumer has finished
//!   (the executor drops it then), a value loaded from the cache included;
//! - what each node needs while it runs: its working memory, and for each pass over a windowed
//!   input one window of the whole chain per worker ([`Pixels::per_window`]);
//! - pixel bytes read: a windowed source reads its files again in every pass over it, so each
//!   pass counts them ([`Pixels::pass_read`]);
//! - [`flow_core::estimate::base_bytes`] for the process itself and GDAL's block cache.
//!
//! The peak is the largest of these sums over the nodes. The engine refuses a run whose peak
//! exceeds its memory limit before the first node that would exceed it starts, and the CLI
//! before the run when the plan alone shows it.

use std::sync::Arc;

use flow_core::estimate::{base_bytes, human_bytes, Estimate, Known, Pixels, Shape};
use flow_core::{Value, ValueType};
use flow_recipe::Plan;
use serde::Serialize;

/// One node of an estimate.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEstimate {
    /// Node id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// How it takes part: `run`, `load` (cached, loaded), `done` (already computed in this
    /// run) or `skip` (not needed).
    pub role: &'static str,
    /// Its output as far as it is known.
    pub output: Shape,
    /// Windows it computes in its own passes.
    pub windows: u64,
    /// Pixel bytes it reads (see [`flow_core::estimate`]).
    pub read_bytes: u64,
    /// The process's memory while it runs (0 for nodes that do not run).
    pub peak_bytes: u64,
}

/// The estimate of a run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEstimate {
    /// Every node, in plan order.
    pub nodes: Vec<NodeEstimate>,
    /// The largest memory of any node.
    pub peak_bytes: u64,
    /// The node at which it is reached.
    pub peak_node: Option<String>,
    /// Pixel bytes read in all.
    pub read_bytes: u64,
    /// Nodes whose output is not known before they run (what comes after them is estimated
    /// without it).
    pub unknown: Vec<String>,
    /// Nodes whose time steps are only known after the search (counted as one each).
    pub after_search: Vec<String>,
}

impl PlanEstimate {
    /// Why the run does not fit `limit` bytes, if it does not: the node, both numbers and what
    /// to do.
    pub fn exceeds(&self, limit: u64) -> Option<String> {
        if self.peak_bytes <= limit {
            return None;
        }
        let node = self.peak_node.as_deref().unwrap_or("?");
        let what = self
            .nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| match &n.output {
                Shape::Pixels(p) => format!(" ({} {}, {})", n.kind, p.dims(), describe_window(p)),
                _ => format!(" ({})", n.kind),
            })
            .unwrap_or_default();
        Some(format!(
            "the run needs an estimated {} of memory at node `{node}`{what}, more than the memory \
             limit of {}; use a coarser `resolution`, smaller bounds or a smaller `--window`, or \
             raise `--memory-limit`",
            human_bytes(self.peak_bytes),
            human_bytes(limit)
        ))
    }
}

/// `whole` or `N windows of S px`.
pub fn describe_window(p: &Pixels) -> String {
    match p.window {
        Some(side) => format!("{} windows of {side} px", p.windows()),
        None => "whole".into(),
    }
}

/// What the estimate starts from: which nodes run, which are loaded, what exists already.
#[derive(Debug, Clone)]
pub struct Situation {
    /// Per node: needed by the run.
    pub needed: Vec<bool>,
    /// Per node: its output comes from the cache.
    pub hit: Vec<bool>,
    /// Per node: its output, once it exists.
    pub values: Vec<Option<Arc<Value>>>,
    /// Workers a node reads windows with (`--jobs`).
    pub threads: usize,
    /// `--window`.
    pub window: Option<usize>,
    /// `--memory-limit`.
    pub memory_limit: Option<u64>,
}

/// The estimate of running `plan` from `situation`.
pub fn estimate(plan: &Plan, situation: &Situation) -> PlanEstimate {
    let n = plan.nodes.len();
    let index = |id: &str| plan.nodes.iter().position(|p| p.id == id);
    let inputs_of: Vec<Vec<(String, usize)>> = plan
        .nodes
        .iter()
        .map(|node| {
            node.inputs
                .iter()
                .filter_map(|(port, src)| index(src).map(|j| (port.clone(), j)))
                .collect()
        })
        .collect();
    let runs = |i: usize| situation.needed[i] && !situation.hit[i] && situation.values[i].is_none();
    // How many consumers that still run read each output.
    let mut readers = vec![0usize; n];
    for i in (0..n).filter(|&i| runs(i)) {
        for (_, j) in &inputs_of[i] {
            readers[*j] += 1;
        }
    }
    let mut shapes: Vec<Shape> = Vec::with_capacity(n);
    let mut live: u64 = 0;
    let base = base_bytes(situation.memory_limit);
    let mut out = PlanEstimate {
        nodes: Vec::with_capacity(n),
        peak_bytes: 0,
        peak_node: None,
        read_bytes: 0,
        unknown: Vec::new(),
        after_search: Vec::new(),
    };
    for (i, node) in plan.nodes.iter().enumerate() {
        let known = Known {
            shapes: inputs_of[i]
                .iter()
                .map(|(p, j)| (p.clone(), shapes[*j].clone()))
                .collect(),
            values: inputs_of[i]
                .iter()
                .filter_map(|(p, j)| situation.values[*j].clone().map(|v| (p.clone(), v)))
                .collect(),
            threads: situation.threads.max(1),
            window: situation.window,
            memory_limit: situation.memory_limit,
        };
        let windowed_inputs: Vec<&Pixels> = inputs_of[i]
            .iter()
            .filter_map(|(_, j)| shapes[*j].pixels().filter(|p| p.window.is_some()))
            .collect();
        let mut est = match &situation.values[i] {
            Some(v) => Estimate::of(Shape::of(v)),
            None => node
                .node
                .estimate(&known)
                .unwrap_or_else(|| default_estimate(node, &known)),
        };
        let pixel_local = node.kind.pixel_local();
        if let Shape::Pixels(p) = &mut est.output {
            if pixel_local && situation.values[i].is_none() {
                if let Some(w) = windowed_inputs.first() {
                    p.window = w.window;
                    est.working_bytes = 0;
                    est.windows = 0;
                    est.read_bytes = 0;
                }
            }
            if p.window.is_some() {
                // While a window of it is computed, its inputs' windows are held; each of them
                // needed more while it was computed.
                let inputs: u64 = windowed_inputs.iter().map(|w| w.window_bytes()).sum();
                let before = windowed_inputs.iter().map(|w| w.per_window).max();
                p.per_window = p
                    .window_bytes()
                    .saturating_add(inputs)
                    .max(before.unwrap_or(0));
                // A windowed source reads in every pass over it; what is computed from windowed
                // values reads what they read, with them.
                p.pass_read = if windowed_inputs.is_empty() {
                    std::mem::take(&mut est.read_bytes)
                } else {
                    windowed_inputs.iter().map(|w| w.pass_read).sum()
                };
            }
        }
        // A node that neither runs window by window nor reads windows itself gets its windowed
        // inputs computed whole first.
        if runs(i) && !pixel_local && !node.node.takes_deferred() {
            for w in &windowed_inputs {
                est.working_bytes = est
                    .working_bytes
                    .saturating_add(w.bytes())
                    .saturating_add(w.pass_bytes(known.threads));
                est.read_bytes = est.read_bytes.saturating_add(w.pass_read);
                est.windows += w.windows();
            }
        }
        if matches!(est.output, Shape::Unknown) {
            out.unknown.push(node.id.clone());
        }
        if est.output.pixels().is_some_and(|p| p.at_least) {
            out.after_search.push(node.id.clone());
        }
        let role = if situation.values[i].is_some() {
            "done"
        } else if !situation.needed[i] {
            "skip"
        } else if situation.hit[i] {
            "load"
        } else {
            "run"
        };
        let held = est.output.held_bytes();
        let mut peak = 0;
        match role {
            "run" => {
                peak = base
                    .saturating_add(live)
                    .saturating_add(est.working_bytes)
                    .saturating_add(held);
                out.read_bytes = out.read_bytes.saturating_add(est.read_bytes);
                live = live.saturating_add(held);
            }
            "load" => {
                peak = base.saturating_add(live).saturating_add(held);
                live = live.saturating_add(held);
            }
            "done" => live = live.saturating_add(held),
            _ => {}
        }
        if peak > out.peak_bytes {
            out.peak_bytes = peak;
            out.peak_node = Some(node.id.clone());
        }
        if runs(i) {
            for (_, j) in &inputs_of[i] {
                readers[*j] = readers[*j].saturating_sub(1);
                if readers[*j] == 0 {
                    live = live.saturating_sub(shapes[*j].held_bytes());
                }
            }
        }
        out.nodes.push(NodeEstimate {
            id: node.id.clone(),
            kind: node.kind.name().to_string(),
            role,
            output: est.output.clone(),
            windows: est.windows,
            read_bytes: if runs(i) { est.read_bytes } else { 0 },
            peak_bytes: peak,
        });
        shapes.push(est.output);
    }
    out
}

/// What the engine assumes of a node that does not estimate itself: a small output for items,
/// models and JSON; for a pixel-local node, its first array input's shape when the types agree;
/// otherwise nothing.
fn default_estimate(node: &flow_recipe::PlanNode, known: &Known) -> Estimate {
    let kind = node.kind.as_ref();
    let ty = node.output_type();
    match ty {
        ValueType::Items | ValueType::Model | ValueType::Json => Estimate::of(Shape::Small),
        _ if kind.pixel_local() => {
            let first = known
                .shapes
                .iter()
                .filter_map(|(_, s)| s.pixels())
                .find(|p| p.ty == ty);
            match first {
                Some(p) => Estimate::of(Shape::Pixels(p.clone())),
                None => Estimate::unknown(),
            }
        }
        _ => Estimate::unknown(),
    }
}
