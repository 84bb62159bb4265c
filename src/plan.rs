//! What `flow plan` and `flow run --dry-run` print: the run's estimate, node by node.

use flow_core::estimate::{human_bytes, Shape};
use flow_engine::estimate::describe_window;
use flow_engine::PlanEstimate;

/// The memory limit of a run and where it comes from: `--memory-limit`, else half of the
/// smallest limit the process has ([`flow_core::alloc::memory_limit`]). Half, because the
/// estimate counts what the run holds, while an address-space limit also counts what threads
/// and libraries reserve without using.
pub fn memory_limit(asked: Option<u64>) -> Option<(u64, String)> {
    match asked {
        Some(bytes) => Some((bytes, "--memory-limit".into())),
        None => flow_core::alloc::memory_limit()
            .map(|(bytes, what)| (bytes / 2, format!("half of the {what}"))),
    }
}

/// Bounds GDAL's block cache by the run's memory limit ([`flow_core::estimate::gdal_cache_bytes`])
/// unless `GDAL_CACHEMAX` is set. Called before GDAL is first used and before any thread starts.
pub fn bound_gdal_cache(limit: Option<&(u64, String)>) {
    if std::env::var_os("GDAL_CACHEMAX").is_none() {
        let bytes = flow_core::estimate::gdal_cache_bytes(limit.map(|l| l.0));
        // GDAL reads values above 100000 as bytes.
        std::env::set_var("GDAL_CACHEMAX", bytes.max(100_001).to_string());
    }
}

/// The estimate as a table, one node a line, then the peak against the limit.
pub fn render(estimate: &PlanEstimate, limit: Option<&(u64, String)>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<12} {:<5} {:<48} {:>7} {:>10} {:>10}",
        "node", "kind", "role", "output", "windows", "read", "peak"
    );
    for n in &estimate.nodes {
        let output = match &n.output {
            Shape::Unknown => "unknown until it runs".to_string(),
            Shape::Small => "small".to_string(),
            Shape::Pixels(p) => format!("{:?} {} {}", p.ty, p.dims(), describe_window(p)),
        };
        let count = |v: u64| {
            if v == 0 {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        let bytes = |v: u64| {
            if v == 0 {
                "-".to_string()
            } else {
                human_bytes(v)
            }
        };
        let _ = writeln!(
            out,
            "{:<16} {:<12} {:<5} {:<48} {:>7} {:>10} {:>10}",
            n.id,
            n.kind,
            n.role,
            output,
            count(n.windows),
            bytes(n.read_bytes),
            bytes(n.peak_bytes)
        );
    }
    let _ = write!(
        out,
        "peak {} at `{}`; {} read",
        human_bytes(estimate.peak_bytes),
        estimate.peak_node.as_deref().unwrap_or("-"),
        human_bytes(estimate.read_bytes)
    );
    match limit {
        Some((bytes, source)) => {
            let verdict = if estimate.peak_bytes > *bytes {
                "OVER"
            } else {
                "within"
            };
            let _ = writeln!(
                out,
                "; {verdict} the memory limit of {} ({source})",
                human_bytes(*bytes)
            );
        }
        None => out.push('\n'),
    }
    if !estimate.after_search.is_empty() {
        let _ = writeln!(
            out,
            "time steps are known only after the search: counted as one for {}",
            estimate.after_search.join(", ")
        );
    }
    if !estimate.unknown.is_empty() {
        let _ = writeln!(
            out,
            "not known before they run (and not counted): {}",
            estimate.unknown.join(", ")
        );
    }
    out
}
