//! The graph of all declared nodes, with every cycle reported as a path.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};

use super::builder::Builder;
use super::inputs::Edge;
use crate::problem::Problem;

impl Builder<'_> {
    /// Builds the graph of all declared nodes and reports every cycle as a path.
    pub(super) fn check_cycles(
        &mut self,
        nodes: &toml::Table,
        edges: &[Edge],
    ) -> DiGraph<String, String> {
        let mut graph = DiGraph::new();
        let index: HashMap<&str, NodeIndex> = nodes
            .keys()
            .map(|id| (id.as_str(), graph.add_node(id.clone())))
            .collect();
        for e in edges {
            if let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
                graph.add_edge(a, b, e.port.clone());
            }
        }
        for scc in petgraph::algo::tarjan_scc(&graph) {
            let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let Some(&start) = scc.iter().min() else {
                continue;
            };
            let path: Vec<String> = cycle_path(&graph, start, &scc)
                .iter()
                .map(|i| graph[*i].clone())
                .collect();
            // The edge into the first node from the last node before it closes the cycle.
            let closing = path
                .iter()
                .rev()
                .nth(1)
                .and_then(|last| edges.iter().find(|e| &e.from == last && e.to == path[0]));
            let span = closing
                .map(|e| e.span.clone())
                .unwrap_or_else(|| self.key_span(&["nodes", &path[0]]));
            self.errors.report(span, Problem::Cycle { path });
        }
        graph
    }
}

/// A cycle from `start` back to itself through nodes of `scc` (which is strongly connected).
fn cycle_path(
    graph: &DiGraph<String, String>,
    start: NodeIndex,
    scc: &[NodeIndex],
) -> Vec<NodeIndex> {
    fn dfs(
        g: &DiGraph<String, String>,
        at: NodeIndex,
        start: NodeIndex,
        scc: &[NodeIndex],
        path: &mut Vec<NodeIndex>,
    ) -> bool {
        let mut next: Vec<NodeIndex> = g.neighbors(at).filter(|n| scc.contains(n)).collect();
        next.sort();
        for n in next {
            if n == start {
                path.push(n);
                return true;
            }
            if !path.contains(&n) {
                path.push(n);
                if dfs(g, n, start, scc, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    dfs(graph, start, start, scc, &mut path);
    path
}
