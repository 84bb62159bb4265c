//! The validated form of a recipe: nodes with built parameters, wired into a DAG.
//!
//! [`Plan::build`] runs these steps, each in its own module, and collects every problem found:
//!
//! - `builder`: the document and its top-level keys, and the order of the steps;
//! - `aoi`: the recipe's area of interest, given to the nodes whose kind takes `aoi`;
//! - `params`: `[params]`, the checked `[profiles]`, the chosen profile and `--set` overrides;
//! - `nodes`: each node's kind, its `${params.NAME}` references, its params against the kind's
//!   schema, and the node the kind builds from them;
//! - `inputs`: `input` / `inputs` against the kind's ports, the edges and their types;
//! - `cycles`: the DAG, with every cycle reported as a path;
//! - `order`: the topological order of the nodes.

mod aoi;
mod builder;
mod cycles;
mod inputs;
mod nodes;
mod order;
mod params;
mod scale;

use std::sync::Arc;

use flow_core::{Node, NodeKind, Params, Registry};
use petgraph::graph::DiGraph;

pub use builder::is_plain_name;
pub use scale::Scale;

use crate::diagnostic::Diagnostics;
use crate::extends::ReadRecipe;
use crate::overrides::Overrides;

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

impl PlanNode {
    /// The type of the node's output: what its params decide ([`Node::output_type`]), else its
    /// kind's signature.
    pub fn output_type(&self) -> flow_core::ValueType {
        self.node
            .output_type()
            .unwrap_or_else(|| self.kind.signature().output)
    }
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
    /// The recipe's `[scale]` table: the work units it runs over, if any.
    pub scale: Option<Scale>,
    /// The recipe's `aoi`, as one GeoJSON geometry in lon/lat.
    pub aoi: Option<toml::Value>,
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

    /// Validates the recipe `text` (from `file`) against `registry` with `overrides`. The
    /// recipes it `extends` are read from disk, relative to `file`'s directory.
    ///
    /// # Errors
    /// [`Diagnostics`] holding every error found, each with its location.
    pub fn build(
        file: &str,
        text: &str,
        registry: &Registry,
        overrides: &Overrides,
    ) -> Result<Plan, Diagnostics> {
        Self::build_with(
            file,
            text,
            registry,
            overrides,
            &crate::extends::read_recipe_file,
        )
    }

    /// [`Plan::build`], reading the recipes that `text` extends with `read`.
    ///
    /// # Errors
    /// [`Diagnostics`] holding every error found, each with its location.
    pub fn build_with(
        file: &str,
        text: &str,
        registry: &Registry,
        overrides: &Overrides,
        read: ReadRecipe<'_>,
    ) -> Result<Plan, Diagnostics> {
        builder::Builder::build(file, text, registry, overrides, read)
    }
}
