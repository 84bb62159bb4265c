//! The builder behind [`Plan::build`]: the parsed document, its top-level keys, and the steps of
//! the other modules in order, every problem collected on the way.

use std::collections::HashMap;
use std::ops::Range;

use flow_core::schema::{suggest, toml_type_name};
use flow_core::Registry;

use super::inputs::Edge;
use super::order::topological_order;
use super::{Plan, PlanNode};
use crate::diagnostic::{Collector, Diagnostics};
use crate::extends::{self, ReadRecipe};
use crate::overrides::Overrides;
use crate::problem::Problem;
use crate::source::SpannedDoc;

/// Keys allowed at the top of a recipe.
const TOP_LEVEL_KEYS: &[&str] = &[
    "name",
    "extends",
    "description",
    "aoi",
    "scale",
    "params",
    "profiles",
    "nodes",
    "plugins",
];

/// One recipe being turned into a [`Plan`].
pub(super) struct Builder<'a> {
    /// The recipe file as given.
    file: &'a str,
    /// The kinds nodes may use.
    pub(super) registry: &'a Registry,
    /// Every problem found so far.
    pub(super) errors: Collector,
    /// The parsed text, with the location of every key and value.
    doc: SpannedDoc,
    /// Reads the files the recipe names: the recipes it extends, its `aoi` file.
    pub(super) read: ReadRecipe<'a>,
    /// The recipe's area of interest, for the nodes whose kind takes `aoi`.
    pub(super) aoi: Option<toml::Value>,
}

impl<'a> Builder<'a> {
    /// Validates the recipe `text` (from `file`); see [`Plan::build`].
    pub(super) fn build(
        file: &'a str,
        text: &str,
        registry: &'a Registry,
        overrides: &Overrides,
        read: ReadRecipe<'_>,
    ) -> Result<Plan, Diagnostics> {
        let mut errors = Collector::new(file, text);
        match extends::load(file, text, read, &mut errors) {
            Some(doc) => Builder {
                file,
                registry,
                errors,
                doc,
                read,
                aoi: None,
            }
            .plan(overrides),
            None => Err(errors.finish()),
        }
    }

    /// The directory of the recipe file, against which the files it names are resolved.
    pub(super) fn file_dir(&self) -> &std::path::Path {
        std::path::Path::new(self.file)
            .parent()
            .unwrap_or(std::path::Path::new(""))
    }

    /// The key span of `path`, else of its nearest ancestor in the text.
    pub(super) fn key_span(&self, path: &[&str]) -> Range<usize> {
        self.doc.key_span(path)
    }

    /// The value span of `path`, else of its nearest ancestor in the text.
    pub(super) fn value_span(&self, path: &[&str]) -> Range<usize> {
        self.doc.value_span(path)
    }

    fn plan(mut self, overrides: &Overrides) -> Result<Plan, Diagnostics> {
        let top = self.doc.table.clone();
        self.check_top_level_keys(&top);
        let name = self.string_field(&top, "name");
        if let Some(bad) = name.as_deref().filter(|n| !is_plain_name(n)) {
            let span = self.value_span(&["name"]);
            self.errors
                .report(span, Problem::BadRecipeName { name: bad.into() });
        }
        let name = name.unwrap_or_else(|| {
            std::path::Path::new(self.file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let description = self.string_field(&top, "description").unwrap_or_default();
        let plugins = self.plugins(&top);
        self.aoi = self.aoi(&top);

        let mut params = self.table_field(&top, "params").unwrap_or_default();
        self.apply_profiles(&top, &mut params, overrides.profile.as_deref());
        let nodes_table = self.table_field(&top, "nodes").unwrap_or_default();
        let node_sets = self.apply_sets(&overrides.sets, &mut params, &nodes_table);
        let scale = self.scale(&top, &params, &nodes_table);

        let mut built: Vec<PlanNode> = Vec::new();
        let mut edges: Vec<Edge> = Vec::new();
        for (id, value) in &nodes_table {
            let Some(table) = value.as_table() else {
                let span = self.value_span(&["nodes", id]);
                self.errors
                    .report(span, Problem::NodeNotATable { node: id.clone() });
                continue;
            };
            if let Some(node) =
                self.build_node(id, table, &params, &node_sets, &nodes_table, &mut edges)
            {
                built.push(node);
            }
        }

        self.check_edge_types(&built, &edges);
        self.check_output_files(&built);
        let graph = self.check_cycles(&nodes_table, &edges);

        if !self.errors.is_empty() {
            return Err(self.errors.finish());
        }
        let mut by_id: HashMap<String, PlanNode> =
            built.into_iter().map(|n| (n.id.clone(), n)).collect();
        let nodes = topological_order(&graph)
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
            scale,
            aoi: self.aoi.clone(),
        })
    }

    fn check_top_level_keys(&mut self, top: &toml::Table) {
        for key in top.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                let span = self.key_span(&[key]);
                let problem = Problem::UnknownTopLevelKey {
                    key: key.clone(),
                    suggestion: suggest(key, TOP_LEVEL_KEYS.iter().copied()),
                    allowed: TOP_LEVEL_KEYS,
                };
                self.errors.report(span, problem);
            }
        }
    }

    fn string_field(&mut self, top: &toml::Table, key: &str) -> Option<String> {
        match top.get(key) {
            None => None,
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(other) => {
                let span = self.value_span(&[key]);
                let problem = Problem::NotAString {
                    key: key.into(),
                    found: toml_type_name(other),
                };
                self.errors.report(span, problem);
                None
            }
        }
    }

    /// No two nodes write the same file (one error per node, at its first clash).
    fn check_output_files(&mut self, built: &[PlanNode]) {
        let mut writers: std::collections::HashMap<std::path::PathBuf, &str> = Default::default();
        for node in built {
            for path in node.node.writes() {
                // `./a.tif` and `a.tif` are one file.
                let path: std::path::PathBuf = path
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect();
                match writers.get(&path) {
                    Some(first) => {
                        let span = self.key_span(&["nodes", &node.id]);
                        let problem = Problem::SameOutputFile {
                            node: node.id.clone(),
                            path: path.display().to_string(),
                            first: (*first).to_string(),
                        };
                        self.errors.report(span, problem);
                        break;
                    }
                    None => {
                        writers.insert(path, &node.id);
                    }
                }
            }
        }
    }

    /// The table under the top-level `key`, if it is one.
    pub(super) fn table_field(&mut self, top: &toml::Table, key: &str) -> Option<toml::Table> {
        match top.get(key) {
            None => None,
            Some(toml::Value::Table(t)) => Some(t.clone()),
            Some(other) => {
                let span = self.value_span(&[key]);
                let problem = Problem::NotATable {
                    key: key.into(),
                    found: toml_type_name(other),
                };
                self.errors.report(span, problem);
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
                self.errors.report(span, Problem::PluginsNotPaths);
                Vec::new()
            }
        }
    }
}

/// True when `name` can be a directory name inside another: not empty, not `.` or `..`, no
/// path separator, no NUL, at most 255 bytes.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
}
