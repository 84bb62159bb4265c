//! The plan as a picture: Graphviz DOT or Mermaid, each node labelled with its id, kind and,
//! when known, its cache state.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::plan::Plan;

/// The cache state of a node, when a cache was looked at.
pub type States = BTreeMap<String, String>;

fn label(plan: &Plan, id: &str, states: &States) -> String {
    let kind = plan
        .node(id)
        .map(|n| n.kind.name().to_string())
        .unwrap_or_default();
    match states.get(id) {
        Some(state) => format!("{id}\\n{kind}\\n[{state}]"),
        None => format!("{id}\\n{kind}"),
    }
}

/// Graphviz DOT.
pub fn dot(plan: &Plan, states: &States) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", plan.name.replace('"', "'"));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, style=rounded];");
    for n in &plan.nodes {
        let style = match states.get(&n.id).map(String::as_str) {
            Some("cached") => ", style=\"rounded,filled\", fillcolor=\"#d9f2d9\"",
            Some("missing") => ", style=\"rounded,dashed\"",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\"{style}];",
            n.id,
            label(plan, &n.id, states)
        );
    }
    for n in &plan.nodes {
        for (port, src) in &n.inputs {
            let _ = writeln!(out, "  \"{src}\" -> \"{}\" [label=\"{port}\"];", n.id);
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn mermaid(plan: &Plan, states: &States) -> String {
    let mut out = String::from("flowchart LR\n");
    let safe = |id: &str| id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
    for n in &plan.nodes {
        let text = label(plan, &n.id, states).replace("\\n", "<br/>");
        let _ = writeln!(out, "    {}[\"{}\"]", safe(&n.id), text);
    }
    for n in &plan.nodes {
        for (port, src) in &n.inputs {
            let _ = writeln!(out, "    {} -->|{port}| {}", safe(src), safe(&n.id));
        }
    }
    let cached: Vec<String> = plan
        .nodes
        .iter()
        .filter(|n| states.get(&n.id).map(String::as_str) == Some("cached"))
        .map(|n| safe(&n.id))
        .collect();
    if !cached.is_empty() {
        out.push_str("    classDef cached fill:#d9f2d9,stroke:#2e7d32\n");
        let _ = writeln!(out, "    class {} cached", cached.join(","));
    }
    out
}
