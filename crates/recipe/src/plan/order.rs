//! The order nodes run and are listed in.

use std::collections::BTreeSet;

use petgraph::graph::{DiGraph, NodeIndex};

/// Kahn's algorithm with ties broken by declaration order, so plans and reports are stable.
pub(super) fn topological_order(graph: &DiGraph<String, String>) -> Vec<NodeIndex> {
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|i| graph.neighbors_directed(i, petgraph::Incoming).count())
        .collect();
    let mut ready: BTreeSet<NodeIndex> = graph
        .node_indices()
        .filter(|i| indegree[i.index()] == 0)
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for n in graph.neighbors(i) {
            indegree[n.index()] -= 1;
            if indegree[n.index()] == 0 {
                ready.insert(n);
            }
        }
    }
    order
}
