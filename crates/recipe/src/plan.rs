//! The validated form of a recipe: nodes with built parameters, wired into a DAG.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use flow_core::schema::{self, toml_type_name, SchemaIssue};
use flow_core::{Node, NodeKind, Params, Registry};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::{did_you_mean, Collector, Diagnostics};
use crate::interpolate::{interpolate, Interpolated};
use crate::overrides::{Overrides, SetOverride};
use crate::source::SpannedDoc;

/// Keys allowed at the top of a recipe.
const TOP_LEVEL_KEYS: [&str; 6] = [
    "name",
    "description",
    "params",
    "profiles",
    "nodes",
    "plugins",
];
/// Keys of a node table that are not params.
const NODE_KEYS: [&str; 3] = ["kind", "input", "inputs"];

/// One node of a [`Plan`]: its kind, its resolved params (defaults filled in) and its inputs.
#[derive(Clone)]
pub struct PlanNode {
    /// The node's id (`fit` for `[nodes.fit]`).
    pub id: String,
    /// Its kind.
    pub kind: Arc<dyn NodeKind>,
    /// Params after profiles, `--set`, interpolation and defaults; the cache key hashes these.
    pub params: Params,
    /// `(port, upstream node id)`, in the order of the kind's ports.
    pub inputs: Vec<(String, String)>,
    /// The node built from the params.
    pub node: Arc<dyn Node>,
}

impl std::fmt::Debug for PlanNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanNode")
            .field("id", &self.id)
            .field("kind", &self.kind.name())
            .field("params", &self.params)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// A recipe that passed validation: every node built, every edge typed, no cycle.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The recipe's `name` (the file stem when absent).
    pub name: String,
    /// The recipe's `description`.
    pub description: String,
    /// The recipe file as given.
    pub file: String,
    /// `[params]` after the profile and `--set`.
    pub params: toml::Table,
    /// The profile in force.
    pub profile: Option<String>,
    /// Plugin library paths listed in `plugins = [...]`, as written.
    pub plugins: Vec<String>,
    /// Nodes in a topological order (ties broken by their order in the recipe).
    pub nodes: Vec<PlanNode>,
    /// The DAG: node ids, edges labelled with the downstream port.
    pub graph: DiGraph<String, String>,
}

impl Plan {
    /// The node with id `id`.
    pub fn node(&self, id: &str) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Ids of the nodes that read the output of `id`.
    pub fn downstream(&self, id: &str) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| n.inputs.iter().any(|(_, src)| src == id))
            .map(|n| n.id.as_str())
            .collect()
    }

    /// A JSON description of the plan (nodes, kinds, params, inputs), for snapshots and tooling.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "description": self.description,
            "profile": self.profile,
            "params": self.params,
            "nodes": self.nodes.iter().map(|n| serde_json::json!({
                "id": n.id,
                "kind": n.kind.name(),
                "version": n.kind.version(),
                "inputs": n.inputs.iter().map(|(p, s)| serde_json::json!({"port": p, "from": s})).collect::<Vec<_>>(),
                "params": n.params,
            })).collect::<Vec<_>>(),
        })
    }

    /// Validates the recipe `text` (from `file`) against `registry` with `overrides`.
    ///
    /// # Errors
    /// [`Diagnostics`] holding every error found, each with its location.
    pub fn build(
        file: &str,
        text: &str,
        registry: &Registry,
        overrides: &Overrides,
    ) -> Result<Plan, Diagnostics> {
        Builder::new(file, text, registry).build(overrides)
    }
}

/// A parsed `--set NODE.PARAM=VALUE`.
struct NodeSet<'a> {
    node: String,
    param: String,
    value: toml::Value,
    origin: &'a SetOverride,
}

/// An input edge while the plan is being built.
struct Edge {
    port: String,
    from: String,
    to: String,
    span: Range<usize>,
}

struct Builder<'a> {
    file: &'a str,
    registry: &'a Registry,
    errors: Collector,
    doc: Option<SpannedDoc>,
}

/// "a string", "an integer".
fn a_type(value: &toml::Value) -> String {
    let name = toml_type_name(value);
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

fn same_type(old: &toml::Value, new: &toml::Value) -> bool {
    toml_type_name(old) == toml_type_name(new)
        || matches!((old, new), (toml::Value::Float(_), toml::Value::Integer(_)))
}

impl<'a> Builder<'a> {
    fn new(file: &'a str, text: &str, registry: &'a Registry) -> Self {
        let mut errors = Collector::new(file, text);
        let doc = match SpannedDoc::parse(text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                errors.error(
                    e.span,
                    format!("TOML syntax error: {}", e.message),
                    "here",
                    None,
                );
                None
            }
        };
        Builder {
            file,
            registry,
            errors,
            doc,
        }
    }

    fn doc(&self) -> &SpannedDoc {
        self.doc.as_ref().expect("checked by build")
    }

    fn key_span(&self, path: &[&str]) -> Range<usize> {
        self.doc().key_span(path)
    }

    fn value_span(&self, path: &[&str]) -> Range<usize> {
        self.doc().value_span(path)
    }

    fn build(mut self, overrides: &Overrides) -> Result<Plan, Diagnostics> {
        let Some(doc) = self.doc.clone() else {
            return Err(self.errors.finish());
        };
        let top = &doc.table;

        for key in top.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                let span = self.key_span(&[key]);
                let help = did_you_mean(key, TOP_LEVEL_KEYS).or_else(|| {
                    Some(format!(
                        "allowed top-level keys: {}",
                        TOP_LEVEL_KEYS.join(", ")
                    ))
                });
                self.errors.error(
                    span,
                    format!("unknown top-level key `{key}`"),
                    "not a recipe key",
                    help,
                );
            }
        }
        let name = self.string_field(top, "name").unwrap_or_else(|| {
            std::path::Path::new(self.file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let description = self.string_field(top, "description").unwrap_or_default();
        let plugins = self.plugins(top);

        let mut params = self.table_field(top, "params").unwrap_or_default();
        self.apply_profiles(top, &mut params, overrides.profile.as_deref());
        let nodes_table = self.table_field(top, "nodes").unwrap_or_default();
        let node_sets = self.apply_sets(&overrides.sets, &mut params, &nodes_table);

        let mut built: Vec<PlanNode> = Vec::new();
        let mut edges: Vec<Edge> = Vec::new();
        for (id, value) in &nodes_table {
            let Some(table) = value.as_table() else {
                let span = self.value_span(&["nodes", id]);
                self.errors.error(
                    span,
                    format!("node `{id}` must be a table"),
                    "expected [nodes.ID] table",
                    None,
                );
                continue;
            };
            if let Some(node) =
                self.build_node(id, table, &params, &node_sets, &nodes_table, &mut edges)
            {
                built.push(node);
            }
        }

        self.check_edge_types(&built, &edges);
        let graph = self.check_cycles(&nodes_table, &edges);

        if !self.errors.is_empty() {
            return Err(self.errors.finish());
        }
        let order = topological_order(&graph);
        let mut by_id: HashMap<String, PlanNode> =
            built.into_iter().map(|n| (n.id.clone(), n)).collect();
        let nodes = order
            .iter()
            .filter_map(|i| by_id.remove(&graph[*i]))
            .collect();
        Ok(Plan {
            name,
            description,
            file: self.file.to_string(),
            params,
            profile: overrides.profile.clone(),
            plugins,
            nodes,
            graph,
        })
    }

    fn string_field(&mut self, top: &toml::Table, key: &str) -> Option<String> {
        match top.get(key) {
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                let span = self.value_span(&[key]);
                self.errors.error(
                    span,
                    format!("`{key}` must be a string, found {}", toml_type_name(other)),
                    "expected a string",
                    None,
                );
                None
            }
        }
    }

    fn table_field(&mut self, top: &toml::Table, key: &str) -> Option<toml::Table> {
        match top.get(key) {
            None => None,
            Some(toml::Value::Table(t)) => Some(t.clone()),
            Some(other) => {
                let span = self.value_span(&[key]);
                self.errors.error(
                    span,
                    format!("`{key}` must be a table, found {}", toml_type_name(other)),
                    "expected a table",
                    None,
                );
                None
            }
        }
    }

    fn plugins(&mut self, top: &toml::Table) -> Vec<String> {
        match top.get("plugins") {
            None => Vec::new(),
            Some(toml::Value::Array(a)) if a.iter().all(|v| v.is_str()) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(_) => {
                let span = self.value_span(&["plugins"]);
                self.errors.error(
                    span,
                    "`plugins` must be an array of library paths",
                    "expected [\"path\", ...]",
                    None,
                );
                Vec::new()
            }
        }
    }

    /// Checks every profile against `[params]` and applies the chosen one.
    fn apply_profiles(
        &mut self,
        top: &toml::Table,
        params: &mut toml::Table,
        chosen: Option<&str>,
    ) {
        let profiles = self.table_field(top, "profiles").unwrap_or_default();
        for (pname, profile) in &profiles {
            let Some(profile) = profile.as_table() else {
                let span = self.value_span(&["profiles", pname]);
                self.errors.error(
                    span,
                    format!("profile `{pname}` must be a table"),
                    "expected [profiles.NAME]",
                    None,
                );
                continue;
            };
            for (key, value) in profile {
                match params.get(key) {
                    None => {
                        let span = self.key_span(&["profiles", pname, key]);
                        let help =
                            did_you_mean(key, params.keys().map(String::as_str)).or_else(|| {
                                Some("a profile can only change values declared in [params]".into())
                            });
                        self.errors.error(
                            span,
                            format!("profile `{pname}` sets `{key}`, which is not in [params]"),
                            "unknown param",
                            help,
                        );
                    }
                    Some(old) if !same_type(old, value) => {
                        let span = self.value_span(&["profiles", pname, key]);
                        self.errors.error(
                            span,
                            format!("profile `{pname}` sets `{key}` to {}, but [params] declares it as {}", a_type(value), a_type(old)),
                            "wrong type",
                            None,
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(chosen) = chosen {
            match profiles.get(chosen).and_then(|p| p.as_table()) {
                Some(profile) => {
                    for (key, value) in profile {
                        if params.contains_key(key) {
                            params.insert(key.clone(), value.clone());
                        }
                    }
                }
                None => {
                    let arg = format!("--profile {chosen}");
                    let help =
                        did_you_mean(chosen, profiles.keys().map(String::as_str)).or_else(|| {
                            Some(if profiles.is_empty() {
                                "the recipe defines no [profiles]".to_string()
                            } else {
                                format!(
                                    "the recipe defines: {}",
                                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                                )
                            })
                        });
                    self.errors.error_in(
                        "command line",
                        &arg,
                        10..arg.len(),
                        format!("unknown profile `{chosen}`"),
                        "no such [profiles] table",
                        help,
                    );
                }
            }
        }
    }

    /// Applies `--set NAME=VALUE` to params; returns the `NODE.PARAM` ones for the nodes.
    fn apply_sets<'s>(
        &mut self,
        sets: &'s [SetOverride],
        params: &mut toml::Table,
        nodes: &toml::Table,
    ) -> Vec<NodeSet<'s>> {
        let mut node_sets = Vec::new();
        for set in sets {
            let src = format!("--set {}", set.raw);
            let shift = |r: Range<usize>| (r.start + 6)..(r.end + 6);
            if set.target.is_empty() || set.value_text.is_empty() && !set.raw.contains('=') {
                self.errors.error_in(
                    "command line",
                    &src,
                    shift(0..set.raw.len()),
                    "`--set` needs NAME=VALUE",
                    "no `=`",
                    Some("for example --set k=6 or --set fit.max_iter=50".into()),
                );
                continue;
            }
            let value = match set.value() {
                Ok(v) => v,
                Err(message) => {
                    self.errors.error_in(
                        "command line",
                        &src,
                        shift(set.value_span()),
                        format!(
                            "`--set {}`: the value is not valid TOML: {message}",
                            set.target
                        ),
                        "bad value",
                        Some(
                            "quote strings that contain TOML syntax, e.g. --set 'name=\"[x]\"'"
                                .into(),
                        ),
                    );
                    continue;
                }
            };
            if let Some((node, param)) = set.target.split_once('.') {
                if !nodes.contains_key(node) {
                    let help = did_you_mean(node, nodes.keys().map(String::as_str));
                    self.errors.error_in(
                        "command line",
                        &src,
                        shift(0..node.len()),
                        format!("`--set {}`: the recipe has no node `{node}`", set.target),
                        "unknown node",
                        help,
                    );
                    continue;
                }
                node_sets.push(NodeSet {
                    node: node.into(),
                    param: param.into(),
                    value,
                    origin: set,
                });
            } else {
                match params.get(&set.target) {
                    None => {
                        let help = did_you_mean(&set.target, params.keys().map(String::as_str)).or_else(|| {
                            Some("use NAME for a [params] entry or NODE.PARAM for a node's param".into())
                        });
                        self.errors.error_in(
                            "command line",
                            &src,
                            shift(set.target_span()),
                            format!(
                                "`--set {}`: no param `{}` in [params]",
                                set.target, set.target
                            ),
                            "unknown param",
                            help,
                        );
                    }
                    Some(old) if !same_type(old, &value) => {
                        self.errors.error_in(
                            "command line",
                            &src,
                            shift(set.value_span()),
                            format!(
                                "`--set {}`: `{}` is {} in [params], got {}",
                                set.target,
                                set.target,
                                a_type(old),
                                a_type(&value)
                            ),
                            "wrong type",
                            None,
                        );
                    }
                    Some(_) => {
                        params.insert(set.target.clone(), value);
                    }
                }
            }
        }
        node_sets
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
                        let help = did_you_mean(&u.name, params.keys().map(String::as_str))
                            .or_else(|| Some("references look like ${params.NAME}, with NAME declared in [params]".into()));
                        self.errors.error(
                            span.clone(),
                            format!("unknown reference `${{params.{}}}`", u.name),
                            "not in [params]",
                            help,
                        );
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

    #[allow(clippy::too_many_arguments)]
    fn build_node(
        &mut self,
        id: &str,
        table: &toml::Table,
        params: &toml::Table,
        node_sets: &[NodeSet<'_>],
        all_nodes: &toml::Table,
        edges: &mut Vec<Edge>,
    ) -> Option<PlanNode> {
        let kind = match table.get("kind") {
            Some(toml::Value::String(k)) => match self.registry.get(k) {
                Some(kind) => Some(kind.clone()),
                None => {
                    let span = self.value_span(&["nodes", id, "kind"]);
                    let help = did_you_mean(k, self.registry.names())
                        .or_else(|| Some("`flow nodes` lists every kind".into()));
                    self.errors.error(
                        span,
                        format!("unknown node kind `{k}`"),
                        "unknown kind",
                        help,
                    );
                    None
                }
            },
            Some(other) => {
                let span = self.value_span(&["nodes", id, "kind"]);
                self.errors.error(
                    span,
                    format!("`kind` must be a string, found {}", toml_type_name(other)),
                    "expected a kind name",
                    None,
                );
                None
            }
            None => {
                let span = self.key_span(&["nodes", id]);
                self.errors.error(
                    span,
                    format!("node `{id}` has no `kind`"),
                    "missing kind",
                    Some("add e.g. kind = \"stack\"; `flow nodes` lists every kind".into()),
                );
                None
            }
        };

        // Params: everything but the node keys, interpolated, then `--set NODE.PARAM`.
        let mut node_params = Params::new();
        let errors_before = self.errors.errors.len();
        for (key, value) in table {
            if NODE_KEYS.contains(&key.as_str()) {
                continue;
            }
            let v = self.interpolate_value(value, params, &["nodes", id, key]);
            node_params.insert(key.clone(), v);
        }
        // A bad reference leaves its string in place; checking its type would only repeat the error.
        let bad_references = self.errors.errors.len() > errors_before;
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

        let issues = schema::check(&kind.params(), &node_params);
        for issue in &issues {
            self.report_schema_issue(id, kind.name(), issue, &kind.params(), &set_params);
        }
        if !issues.is_empty() {
            return None;
        }
        schema::apply_defaults(&kind.params(), &mut node_params);
        match kind.build(&node_params) {
            Ok(node) => Some(PlanNode {
                id: id.into(),
                kind: kind.clone(),
                params: node_params,
                inputs: inputs?,
                node: Arc::from(node),
            }),
            Err(e) => {
                let span = match &e.param {
                    Some(p) if table.contains_key(p) => self.value_span(&["nodes", id, p]),
                    _ => self.key_span(&["nodes", id]),
                };
                let message = match &e.param {
                    Some(p) => format!(
                        "param `{p}` of node `{id}` ({}): {}",
                        kind.name(),
                        e.message
                    ),
                    None => format!("node `{id}` ({}): {}", kind.name(), e.message),
                };
                let label = if e.plugin_fault {
                    "the plugin failed here"
                } else {
                    "invalid value"
                };
                self.errors.error(span, message, label, e.help.clone());
                if e.plugin_fault {
                    self.errors.mark_plugin_fault();
                }
                None
            }
        }
    }

    fn report_schema_issue(
        &mut self,
        id: &str,
        kind: &str,
        issue: &SchemaIssue,
        spec: &[flow_core::ParamSpec],
        set_params: &BTreeMap<String, &SetOverride>,
    ) {
        let (param, message, label, help, on_value) = match issue {
            SchemaIssue::Unknown { param, suggestion } => (
                param.clone(),
                format!("unknown param `{param}` for node `{id}` ({kind})"),
                "unknown param".to_string(),
                suggestion
                    .as_ref()
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "{kind} takes: {}",
                            spec.iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }),
                false,
            ),
            SchemaIssue::Missing { param, ty } => {
                let span = self.key_span(&["nodes", id]);
                self.errors.error(
                    span,
                    format!("node `{id}` ({kind}) is missing the required param `{param}` ({ty})"),
                    "missing param",
                    None,
                );
                return;
            }
            SchemaIssue::WrongType {
                param,
                expected,
                found,
            } => (
                param.clone(),
                format!(
                    "param `{param}` of node `{id}` ({kind}) must be {expected}, found {found}"
                ),
                format!("expected {expected}"),
                None,
                true,
            ),
        };
        if let Some(set) = set_params.get(&param) {
            let src = format!("--set {}", set.raw);
            let span = if on_value {
                set.value_span()
            } else {
                set.target_span()
            };
            self.errors.error_in(
                "command line",
                &src,
                (span.start + 6)..(span.end + 6),
                message,
                label,
                help,
            );
        } else {
            let span = if on_value {
                self.value_span(&["nodes", id, &param])
            } else {
                self.key_span(&["nodes", id, &param])
            };
            self.errors.error(span, message, label, help);
        }
    }

    /// Reads `input` / `inputs`, checks ports and references; records edges.
    fn wire_inputs(
        &mut self,
        id: &str,
        table: &toml::Table,
        kind: Option<&dyn NodeKind>,
        all_nodes: &toml::Table,
        edges: &mut Vec<Edge>,
    ) -> Option<Vec<(String, String)>> {
        let ports = kind.map(|k| k.signature().inputs);
        let mut wired: Vec<(String, String, Range<usize>)> = Vec::new();
        let mut ok = true;

        if let Some(v) = table.get("input") {
            let span = self.value_span(&["nodes", id, "input"]);
            match (v.as_str(), ports.as_ref().map(|p| p.first())) {
                (None, _) => {
                    self.errors.error(
                        span,
                        "`input` must be a node id (a string)",
                        "expected \"node\"",
                        Some("use `inputs = { port = \"node\" }` for several inputs".into()),
                    );
                    ok = false;
                }
                (Some(_), Some(None)) => {
                    self.errors.error(
                        span,
                        format!(
                            "node `{id}` ({}) takes no input",
                            kind.map(|k| k.name()).unwrap_or_default()
                        ),
                        "unexpected input",
                        None,
                    );
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
                        self.errors.error(
                            span,
                            format!("input `{port}` must be a node id (a string)"),
                            "expected \"node\"",
                            None,
                        );
                        ok = false;
                        continue;
                    };
                    if let Some(ports) = &ports {
                        if !ports.iter().any(|p| &p.name == port) {
                            let kspan = self.key_span(&["nodes", id, "inputs", port]);
                            let help = did_you_mean(port, ports.iter().map(|p| p.name.as_str()))
                                .or_else(|| {
                                    Some(format!(
                                        "ports: {}",
                                        ports
                                            .iter()
                                            .map(|p| format!("{} ({})", p.name, p.ty))
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ))
                                });
                            self.errors.error(
                                kspan,
                                format!(
                                    "node `{id}` ({}) has no input port `{port}`",
                                    kind.map(|k| k.name()).unwrap_or_default()
                                ),
                                "unknown port",
                                help,
                            );
                            ok = false;
                            continue;
                        }
                    }
                    if wired.iter().any(|(p, _, _)| p == port) {
                        self.errors.error(span, format!("input port `{port}` of node `{id}` is connected twice (by `input` and `inputs`)"), "connected twice", None);
                        ok = false;
                        continue;
                    }
                    wired.push((port.clone(), src.to_string(), span));
                }
            }
            Some(_) => {
                let span = self.value_span(&["nodes", id, "inputs"]);
                self.errors.error(
                    span,
                    "`inputs` must be a table of port = \"node\"",
                    "expected a table",
                    None,
                );
                ok = false;
            }
        }

        for (port, src, span) in &wired {
            if !all_nodes.contains_key(src) {
                let help = did_you_mean(src, all_nodes.keys().map(String::as_str));
                self.errors.error(
                    span.clone(),
                    format!("node `{id}` reads from `{src}`, but the recipe has no node `{src}`"),
                    "dangling input",
                    help,
                );
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
                    let how = if ports.first().map(|f| &f.name) == Some(&p.name) {
                        "input = \"NODE\"".to_string()
                    } else {
                        format!("inputs = {{ {} = \"NODE\" }}", p.name)
                    };
                    self.errors.error(
                        span,
                        format!(
                            "node `{id}` ({}) needs its input `{}` ({})",
                            kind.name(),
                            p.name,
                            p.ty
                        ),
                        "input not connected",
                        Some(format!("connect it with {how}")),
                    );
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

    fn check_edge_types(&mut self, built: &[PlanNode], edges: &[Edge]) {
        for e in edges {
            let (Some(from), Some(to)) = (
                built.iter().find(|n| n.id == e.from),
                built.iter().find(|n| n.id == e.to),
            ) else {
                continue;
            };
            let out = from.kind.signature().output;
            let Some(port) = to
                .kind
                .signature()
                .inputs
                .into_iter()
                .find(|p| p.name == e.port)
            else {
                continue;
            };
            if !out.fits(port.ty) {
                self.errors.error(
                    e.span.clone(),
                    format!(
                        "type mismatch: `{}` ({}) outputs {out}, but input `{}` of `{}` ({}) takes {}",
                        e.from,
                        from.kind.name(),
                        port.name,
                        e.to,
                        to.kind.name(),
                        port.ty
                    ),
                    format!("{out} does not fit {}", port.ty),
                    None,
                );
            }
        }
    }

    /// Builds the graph of all declared nodes and reports every cycle as a path.
    fn check_cycles(&mut self, nodes: &toml::Table, edges: &[Edge]) -> DiGraph<String, String> {
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
            let start = *scc.iter().min().expect("non-empty");
            let path = cycle_path(&graph, start, &scc);
            let names: Vec<&str> = path.iter().map(|i| graph[*i].as_str()).collect();
            let first_edge = edges
                .iter()
                .find(|e| e.from == names[names.len() - 2] && e.to == names[0]);
            let span = first_edge
                .map(|e| e.span.clone())
                .unwrap_or_else(|| self.key_span(&["nodes", names[0]]));
            self.errors.error(
                span,
                format!("cycle: {}", names.join(" -> ")),
                "this input closes the cycle",
                Some("a recipe must be a DAG: remove one of these inputs".into()),
            );
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

/// Kahn's algorithm with ties broken by declaration order, so plans and reports are stable.
fn topological_order(graph: &DiGraph<String, String>) -> Vec<NodeIndex> {
    let mut indegree: Vec<usize> = graph
        .node_indices()
        .map(|i| graph.neighbors_directed(i, petgraph::Incoming).count())
        .collect();
    let mut ready: std::collections::BTreeSet<NodeIndex> = graph
        .node_indices()
        .filter(|i| indegree[i.index()] == 0)
        .collect();
    let mut order = Vec::with_capacity(graph.node_count());
    while let Some(&i) = ready.iter().next() {
        ready.remove(&i);
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
