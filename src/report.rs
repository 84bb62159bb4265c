//! What `flow` prints at the end of a command: the run summary and the node catalog.

use std::path::Path;

use flow_core::{Registry, Summary};
use flow_engine::{NodeStatus, RunReport};

use crate::cli::NodesFormat;

pub use flow_core::estimate::human_bytes;

/// Milliseconds as `12 ms` or `1.23 s`.
pub fn format_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// Writes `value` as pretty JSON to `path` atomically (temp file, fsync, rename).
///
/// # Errors
/// When the file cannot be written.
pub fn write_json_atomic(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    flow_core::atomic::write_atomic(path, &bytes)
}

/// The summary printed at the end of `flow run`.
pub fn print_summary(report: &RunReport, out_dir: &Path) {
    let count = |s: NodeStatus| report.nodes.iter().filter(|n| n.status == s).count();
    crate::outln!(
        "{} {} in {}: {} computed, {} cached, {} skipped{}{}",
        report.recipe,
        report.status,
        format_ms(report.duration_ms),
        count(NodeStatus::Computed),
        count(NodeStatus::Cached),
        count(NodeStatus::Skipped),
        if count(NodeStatus::Failed) > 0 {
            format!(", {} failed", count(NodeStatus::Failed))
        } else {
            String::new()
        },
        if count(NodeStatus::Cancelled) > 0 {
            format!(", {} cancelled", count(NodeStatus::Cancelled))
        } else {
            String::new()
        },
    );
    print_class_tables(report);
    let files: Vec<String> = report
        .nodes
        .iter()
        .filter_map(|n| match &n.output {
            Some(Summary::Json { value }) => value.get("files").and_then(|f| f.as_array()),
            _ => None,
        })
        .flatten()
        .filter_map(|f| f.get("path").and_then(|p| p.as_str()).map(String::from))
        .collect();
    crate::outln!("outputs in {}:", out_dir.display());
    for f in files {
        crate::outln!("  {f}");
    }
    crate::outln!("  run.json");
}

fn print_class_tables(report: &RunReport) {
    for n in report
        .nodes
        .iter()
        .filter(|n| n.status != NodeStatus::Failed)
    {
        let Some(Summary::Labels {
            class_pixels: pixels,
            class_hectares: hectares,
            ..
        }) = &n.output
        else {
            continue;
        };
        let total: u64 = pixels.iter().sum();
        crate::outln!("classes of `{}`:", n.id);
        crate::outln!(
            "  {:>5} {:>10} {:>8} {:>12}",
            "class",
            "pixels",
            "share",
            "hectares"
        );
        for (i, &p) in pixels.iter().enumerate() {
            let share = if total > 0 {
                100.0 * p as f64 / total as f64
            } else {
                0.0
            };
            // No number rather than a wrong one when the CRS's ground area is not known.
            let ha = hectares
                .as_ref()
                .and_then(|h| h.get(i))
                .map_or_else(|| "-".to_string(), |h| format!("{h:.2}"));
            crate::outln!("  {i:>5} {p:>10} {share:>7.1}% {ha:>12}");
        }
    }
    for n in report
        .nodes
        .iter()
        .filter(|n| n.status != NodeStatus::Failed)
    {
        if let Some(Summary::Json { value }) = &n.output {
            if let Some(line) = assessment_line(value) {
                crate::outln!("assessment `{}`: {line}", n.id);
            }
        }
    }
}

/// The headline figures of an `assess` output: `OA 0.930, kappa 0.902 (clusters matched to
/// classes), ARI 0.884, NMI 0.851 over 47196 pixels`; None for any other JSON.
fn assessment_line(value: &serde_json::Value) -> Option<String> {
    if value.get("assessment").and_then(|a| a.as_str()) != Some("confusion") {
        return None;
    }
    let figure = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
    };
    let how = match value.get("map_ids").and_then(|m| m.as_str()) {
        Some("clusters") => " (clusters matched to classes)",
        _ => "",
    };
    let pixels = value.get("pixels").and_then(serde_json::Value::as_u64)?;
    Some(format!(
        "OA {}, kappa {}{how}, ARI {}, NMI {} over {pixels} pixels",
        figure("overall_accuracy"),
        figure("kappa"),
        figure("adjusted_rand_index"),
        figure("normalized_mutual_information")
    ))
}

/// The node catalog in the chosen format: every kind, or only the kind named `only`.
pub fn nodes(registry: &Registry, format: NodesFormat, only: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    match format {
        NodesFormat::Json => {
            let kinds: Vec<serde_json::Value> = registry
                .kinds()
                .filter(|k| only.is_none_or(|o| k.name() == o))
                .map(|k| {
                    serde_json::json!({
                        "kind": k.name(),
                        "version": k.version(),
                        "doc": k.doc(),
                        "origin": k.origin(),
                        "pixel_local": k.pixel_local(),
                        "signature": k.signature(),
                        "params": k.params(),
                    })
                })
                .collect();
            out = serde_json::to_string_pretty(&kinds).unwrap_or_default();
            out.push('\n');
        }
        NodesFormat::Text | NodesFormat::Markdown => {
            let md = matches!(format, NodesFormat::Markdown);
            for k in registry
                .kinds()
                .filter(|k| only.is_none_or(|o| k.name() == o))
            {
                let sig = k.signature();
                let origin = match k.origin() {
                    flow_core::Origin::Builtin => String::new(),
                    flow_core::Origin::Plugin {
                        name,
                        version,
                        path,
                        ..
                    } => format!(" [plugin {name} {version}, {}]", path.display()),
                };
                let inputs = sig
                    .inputs
                    .iter()
                    .map(|p| format!("{}: {}{}", p.name, p.ty, if p.required { "" } else { "?" }))
                    .collect::<Vec<_>>()
                    .join(", ");
                if md {
                    let _ = writeln!(
                        out,
                        "### `{}` (v{}){origin}\n\n{}\n\n({inputs}) -> {}\n",
                        k.name(),
                        k.version(),
                        k.doc(),
                        sig.output
                    );
                    let _ = writeln!(out, "| param | type | default | |\n|---|---|---|---|");
                } else {
                    let _ = writeln!(
                        out,
                        "{} (v{}){origin}\n  {}\n  ({inputs}) -> {}",
                        k.name(),
                        k.version(),
                        k.doc(),
                        sig.output
                    );
                }
                for p in k.params() {
                    let default = match (&p.default, p.required) {
                        (Some(d), _) => d.to_string(),
                        (None, true) => "required".into(),
                        (None, false) => "-".into(),
                    };
                    if md {
                        let _ = writeln!(
                            out,
                            "| `{}` | {} | `{default}` | {} |",
                            p.name,
                            p.ty.describe().replace('|', "\\|"),
                            p.doc
                        );
                    } else {
                        let _ = writeln!(
                            out,
                            "    {:<20} {:<28} {:<14} {}",
                            p.name,
                            p.ty.describe(),
                            default,
                            p.doc
                        );
                    }
                }
                out.push('\n');
            }
        }
    }
    out
}
