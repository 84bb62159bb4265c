//! The run report: what each node did, how long it took and what it produced.

use serde::Serialize;

/// What happened to a node in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Run in this process.
    Computed,
    /// Its output came from the cache (loaded, or not even needed because its consumers were
    /// cached too).
    Cached,
    /// Not needed and not cached (an uncacheable node, such as `sign`, whose consumers were all
    /// cached).
    Skipped,
    /// Failed.
    Failed,
    /// Not run because the run stopped (another node failed, or Ctrl-C).
    Cancelled,
}

impl NodeStatus {
    /// The word shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Computed => "computed",
            NodeStatus::Cached => "cached",
            NodeStatus::Skipped => "skipped",
            NodeStatus::Failed => "failed",
            NodeStatus::Cancelled => "cancelled",
        }
    }
}

/// One node's line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Node id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// What happened.
    pub status: NodeStatus,
    /// Cache key (hex).
    pub key: String,
    /// Wall time spent running or loading it, in milliseconds.
    pub duration_ms: f64,
    /// Summary of its output (shape, grid, value range, counts), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<flow_core::Summary>,
    /// Warnings it raised.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix time in milliseconds when it started and ended (for overlap analysis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_ms: Option<(u128, u128)>,
    /// The process's peak resident memory in bytes when the node finished (Linux). With
    /// `--jobs 1` the peak is reset before each node, so this is the node's own peak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// Windows it computed (a node reading a windowed input window by window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows: Option<u64>,
    /// Pixels of those windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels: Option<u64>,
    /// Pixel bytes it read from files, as f32 on its output grid ([`flow_core::estimate`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<u64>,
}

impl NodeReport {
    /// A report with no output, warnings, error, timings or memory yet.
    pub fn new(id: &str, kind: &str, status: NodeStatus, key: String) -> Self {
        NodeReport {
            id: id.into(),
            kind: kind.into(),
            status,
            key,
            duration_ms: 0.0,
            output: None,
            warnings: vec![],
            error: None,
            span_ms: None,
            peak_rss_bytes: None,
            windows: None,
            pixels: None,
            read_bytes: None,
        }
    }
}

/// The whole report of a run, written as `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The recipe's name.
    pub recipe: String,
    /// The recipe file.
    pub file: String,
    /// The profile in force.
    pub profile: Option<String>,
    /// `[params]` as used.
    pub params: toml::Table,
    /// "ok", "failed" or "cancelled".
    pub status: String,
    /// Total wall time in milliseconds.
    pub duration_ms: f64,
    /// One entry per node, in plan order.
    pub nodes: Vec<NodeReport>,
    /// The process exit code this run maps to.
    pub exit_code: flow_core::ExitCode,
    /// The first failure, `node: message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunReport {
    /// The node report for `id`.
    pub fn node(&self, id: &str) -> Option<&NodeReport> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Ids of the nodes with `status`.
    pub fn with_status(&self, status: NodeStatus) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.status == status)
            .map(|n| n.id.as_str())
            .collect()
    }
}
