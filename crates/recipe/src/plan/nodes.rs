//! One `[nodes.ID]` table into a [`PlanNode`]: its kind, its params (`${params.NAME}` references
//! resolved, `--set NODE.PARAM` applied) checked against the kind's schema, and the node the kind
//! builds from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use flow_core::schema::{self, suggest, toml_type_name, SchemaIssue};
use flow_core::{NodeKind, ParamSpec, Params};

use super::builder::Builder;
use super::inputs::Edge;
use super::params::NodeSet;
use super::PlanNode;
use crate::interpolate::{interpolate, Interpolated};
use crate::overrides::SetOverride;
use crate::problem::Problem;

/// Keys of a node table that are not params.
const NODE_KEYS: [&str; 3] = ["kind", "input", "inputs"];

impl Builder<'_> {
    /// Builds node `id` from its `table`; records its edges. `None` when anything is wrong (the
    /// problems are reported).
    pub(super) fn build_node(
        &mut self,
        id: &str,
        table: &toml::Table,
        params: &toml::Table,
        node_sets: &[NodeSet<'_>],
        all_nodes: &toml::Table,
        edges: &mut Vec<Edge>,
    ) -> Option<PlanNode> {
        let kind = self.node_kind(id, table);

        // Params: everything but the node keys, interpolated, then `--set NODE.PARAM`.
        let mut node_params = Params::new();
        let errors_before = self.errors.len();
        for (key, value) in table {
            if NODE_KEYS.contains(&key.as_str()) {
                continue;
            }
            let v = self.interpolate_value(value, params, &["nodes", id, key]);
            node_params.insert(key.clone(), v);
        }
        if let Some(kind) = &kind {
            super::aoi::give_aoi(kind.as_ref(), &mut node_params, self.aoi.as_ref());
        }
        // A bad reference leaves its string in place; checking its type would only repeat the error.
        let bad_references = self.errors.len() > errors_before;
        let mut set_params: BTreeMap<String, &SetOverride> = BTreeMap::new();
        for s in node_sets.iter().filter(|s| s.node == id) {
            node_params.insert(s.param.clone(), s.value.clone());
            set_params.insert(s.param.clone(), s.origin);
        }

        let inputs = self.wire_inputs(id, table, kind.as_deref(), all_nodes, edges);
        let kind = kind?;
        if bad_references {
            return None;
        }

        let spec = kind.params();
        let issues = schema::check(&spec, &node_params);
        for issue in &issues {
            self.report_schema_issue(id, kind.name(), issue, &spec, &set_params);
        }
        if !issues.is_empty() {
            return None;
        }
        schema::apply_defaults(&spec, &mut node_params);
        match kind.build(&node_params) {
            Ok(node) => Some(PlanNode {
                id: id.into(),
                kind: kind.clone(),
                params: node_params,
                inputs: inputs?,
                node: Arc::from(node),
            }),
            Err(error) => {
                let span = match &error.param {
                    Some(p) if table.contains_key(p) => self.value_span(&["nodes", id, p]),
                    _ => self.key_span(&["nodes", id]),
                };
                let problem = Problem::Refused {
                    node: id.into(),
                    kind: kind.name().into(),
                    error,
                };
                self.errors.report(span, problem);
                None
            }
        }
    }

    /// The registered kind named by the node's `kind`.
    fn node_kind(&mut self, id: &str, table: &toml::Table) -> Option<Arc<dyn NodeKind>> {
        match table.get("kind") {
            Some(toml::Value::String(k)) => {
                let kind = self.registry.get(k).cloned();
                if kind.is_none() {
                    let span = self.value_span(&["nodes", id, "kind"]);
                    let problem = Problem::UnknownKind {
                        kind: k.clone(),
                        suggestion: suggest(k, self.registry.names()),
                    };
                    self.errors.report(span, problem);
                }
                kind
            }
            Some(other) => {
                let span = self.value_span(&["nodes", id, "kind"]);
                let problem = Problem::KindNotAString {
                    found: toml_type_name(other),
                };
                self.errors.report(span, problem);
                None
            }
            None => {
                let span = self.key_span(&["nodes", id]);
                self.errors
                    .report(span, Problem::MissingKind { node: id.into() });
                None
            }
        }
    }

    /// Interpolates `${params.NAME}` in a value, recursively; reports unknown references.
    fn interpolate_value(
        &mut self,
        value: &toml::Value,
        params: &toml::Table,
        path: &[&str],
    ) -> toml::Value {
        match value {
            toml::Value::String(s) => match interpolate(s, params) {
                Ok(Interpolated::Unchanged) => value.clone(),
                Ok(Interpolated::Value(v)) => v,
                Ok(Interpolated::Text(t)) => toml::Value::String(t),
                Err(unknown) => {
                    let span = self.value_span(path);
                    for u in unknown {
                        let suggestion = suggest(&u.name, params.keys().map(String::as_str));
                        let problem = Problem::UnknownReference {
                            name: u.name,
                            suggestion,
                        };
                        self.errors.report(span.clone(), problem);
                    }
                    value.clone()
                }
            },
            toml::Value::Array(items) => toml::Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let idx = i.to_string();
                        let mut p = path.to_vec();
                        p.push(&idx);
                        self.interpolate_value(v, params, &p)
                    })
                    .collect(),
            ),
            toml::Value::Table(t) => toml::Value::Table(
                t.iter()
                    .map(|(k, v)| {
                        let mut p = path.to_vec();
                        p.push(k);
                        (k.clone(), self.interpolate_value(v, params, &p))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Reports one schema issue at the param in the recipe, or in the `--set` that gave it.
    fn report_schema_issue(
        &mut self,
        id: &str,
        kind: &str,
        issue: &SchemaIssue,
        spec: &[ParamSpec],
        set_params: &BTreeMap<String, &SetOverride>,
    ) {
        // Whether the problem is with the value (else with the param's name).
        let (param, problem, on_value) = match issue {
            SchemaIssue::Unknown { param, suggestion } => (
                param,
                Problem::UnknownParam {
                    node: id.into(),
                    kind: kind.into(),
                    param: param.clone(),
                    suggestion: suggestion.clone(),
                    takes: spec.iter().map(|s| s.name.clone()).collect(),
                },
                false,
            ),
            SchemaIssue::Missing { param, ty } => {
                let span = self.key_span(&["nodes", id]);
                let problem = Problem::MissingParam {
                    node: id.into(),
                    kind: kind.into(),
                    param: param.clone(),
                    ty: ty.clone(),
                };
                self.errors.report(span, problem);
                return;
            }
            SchemaIssue::WrongType {
                param,
                expected,
                found,
            } => (
                param,
                Problem::WrongParamType {
                    node: id.into(),
                    kind: kind.into(),
                    param: param.clone(),
                    expected: expected.clone(),
                    found: found.clone(),
                },
                true,
            ),
        };
        if let Some(set) = set_params.get(param) {
            let span = if on_value {
                set.value_span()
            } else {
                set.target_span()
            };
            self.report_on_set(set, span, problem);
        } else {
            let path = ["nodes", id, param];
            let span = if on_value {
                self.value_span(&path)
            } else {
                self.key_span(&path)
            };
            self.errors.report(span, problem);
        }
    }
}
