//! A node's `input` / `inputs` against its kind's ports, the edges they make, and whether each
//! edge's upstream output fits the port it feeds.

use std::ops::Range;

use flow_core::schema::suggest;
use flow_core::NodeKind;

use super::builder::Builder;
use super::PlanNode;
use crate::problem::Problem;

/// An input edge while the plan is being built.
pub(super) struct Edge {
    /// The downstream port.
    pub(super) port: String,
    /// The upstream node id.
    pub(super) from: String,
    /// The downstream node id.
    pub(super) to: String,
    /// Where the recipe names the upstream node.
    pub(super) span: Range<usize>,
}

/// A connection as written: `(port, upstream node id, span of the id)`; the port is empty when
/// the kind is unknown.
type Wired = (String, String, Range<usize>);

impl Builder<'_> {
    /// Reads `input` / `inputs`, checks ports and references; records edges. The `(port,
    /// upstream)` pairs in the order of the kind's ports, or `None` when anything is wrong.
    pub(super) fn wire_inputs(
        &mut self,
        id: &str,
        table: &toml::Table,
        kind: Option<&dyn NodeKind>,
        all_nodes: &toml::Table,
        edges: &mut Vec<Edge>,
    ) -> Option<Vec<(String, String)>> {
        let ports = kind.map(|k| k.signature().inputs);
        let kind_name = || kind.map(|k| k.name().to_string()).unwrap_or_default();
        let mut wired: Vec<Wired> = Vec::new();
        let mut ok = true;

        if let Some(v) = table.get("input") {
            let span = self.value_span(&["nodes", id, "input"]);
            match (v.as_str(), ports.as_ref().map(|p| p.first())) {
                (None, _) => {
                    self.errors.report(span, Problem::InputNotANodeId);
                    ok = false;
                }
                (Some(_), Some(None)) => {
                    let problem = Problem::TakesNoInput {
                        node: id.into(),
                        kind: kind_name(),
                    };
                    self.errors.report(span, problem);
                    ok = false;
                }
                (Some(src), Some(Some(port))) => {
                    wired.push((port.name.clone(), src.to_string(), span))
                }
                (Some(src), None) => wired.push((String::new(), src.to_string(), span)),
            }
        }
        match table.get("inputs") {
            None => {}
            Some(toml::Value::Table(t)) => {
                for (port, src) in t {
                    let span = self.value_span(&["nodes", id, "inputs", port]);
                    let Some(src) = src.as_str() else {
                        let problem = Problem::PortInputNotANodeId { port: port.clone() };
                        self.errors.report(span, problem);
                        ok = false;
                        continue;
                    };
                    if let (Some(ports), Some(kind)) = (&ports, kind) {
                        let open = match kind.open_port(port) {
                            _ if ports.iter().any(|p| &p.name == port) => true,
                            Some(Ok(_)) => true,
                            Some(Err(why)) => {
                                let kspan = self.key_span(&["nodes", id, "inputs", port]);
                                let problem = Problem::RefusedPortName {
                                    node: id.into(),
                                    kind: kind_name(),
                                    port: port.clone(),
                                    why,
                                };
                                self.errors.report(kspan, problem);
                                ok = false;
                                continue;
                            }
                            None => false,
                        };
                        if !open {
                            let kspan = self.key_span(&["nodes", id, "inputs", port]);
                            let problem = Problem::UnknownPort {
                                node: id.into(),
                                kind: kind_name(),
                                port: port.clone(),
                                suggestion: suggest(port, ports.iter().map(|p| p.name.as_str())),
                                ports: ports.clone(),
                            };
                            self.errors.report(kspan, problem);
                            ok = false;
                            continue;
                        }
                    }
                    if wired.iter().any(|(p, _, _)| p == port) {
                        let problem = Problem::ConnectedTwice {
                            node: id.into(),
                            port: port.clone(),
                        };
                        self.errors.report(span, problem);
                        ok = false;
                        continue;
                    }
                    wired.push((port.clone(), src.to_string(), span));
                }
            }
            Some(_) => {
                let span = self.value_span(&["nodes", id, "inputs"]);
                self.errors.report(span, Problem::InputsNotATable);
                ok = false;
            }
        }

        for (port, src, span) in &wired {
            if !all_nodes.contains_key(src) {
                let problem = Problem::DanglingInput {
                    node: id.into(),
                    from: src.clone(),
                    suggestion: suggest(src, all_nodes.keys().map(String::as_str)),
                };
                self.errors.report(span.clone(), problem);
                ok = false;
            } else {
                edges.push(Edge {
                    port: port.clone(),
                    from: src.clone(),
                    to: id.to_string(),
                    span: span.clone(),
                });
            }
        }
        if let (Some(ports), Some(kind)) = (&ports, kind) {
            for p in ports.iter().filter(|p| p.required) {
                if !wired.iter().any(|(w, _, _)| w == &p.name) {
                    let span = self.key_span(&["nodes", id]);
                    let problem = Problem::InputNotConnected {
                        node: id.into(),
                        kind: kind.name().into(),
                        port: p.name.clone(),
                        ty: p.ty,
                        first: ports.first().map(|f| &f.name) == Some(&p.name),
                    };
                    self.errors.report(span, problem);
                    ok = false;
                }
            }
        }
        ok.then(|| {
            let order = |p: &str| {
                ports
                    .as_ref()
                    .and_then(|ps| ps.iter().position(|x| x.name == p))
                    .unwrap_or(usize::MAX)
            };
            let mut v: Vec<(String, String)> = wired.into_iter().map(|(p, s, _)| (p, s)).collect();
            v.sort_by_key(|(p, _)| order(p));
            v
        })
    }

    /// Reports every edge whose upstream output does not fit the downstream port.
    pub(super) fn check_edge_types(&mut self, built: &[PlanNode], edges: &[Edge]) {
        for e in edges {
            let (Some(from), Some(to)) = (
                built.iter().find(|n| n.id == e.from),
                built.iter().find(|n| n.id == e.to),
            ) else {
                continue;
            };
            let output = from.output_type();
            let declared = to
                .kind
                .signature()
                .inputs
                .into_iter()
                .find(|p| p.name == e.port);
            // A port the recipe named itself (see `NodeKind::open_port`) has the type the kind
            // gives it.
            let port = declared.or_else(|| match to.kind.open_port(&e.port) {
                Some(Ok(ty)) => Some(flow_core::Port::optional(&e.port, ty, "")),
                _ => None,
            });
            let Some(port) = port else {
                continue;
            };
            if !output.fits(port.ty) {
                let problem = Problem::TypeMismatch {
                    from: e.from.clone(),
                    from_kind: from.kind.name().into(),
                    output,
                    to: e.to.clone(),
                    to_kind: to.kind.name().into(),
                    port: port.name,
                    port_type: port.ty,
                };
                self.errors.report(e.span.clone(), problem);
            }
        }
    }
}
