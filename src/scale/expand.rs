//! Cuts a recipe with `[scale]` into work units, one plan over all of them, and stages of tasks.
//!
//! Each unit (a tile, or a tile and a date) is the recipe validated with `params.tile` (and
//! `params.date`) set to the unit's values. Their plans are laid side by side in one plan whose
//! node ids are `UNIT/NODE`; the nodes named in `scale.gather`, and the nodes that only follow
//! them, appear once (`NODE`), and each of their inputs that comes from a unit receives every
//! unit's value through a `gather` node (`gather/NODE/PORT`, one port per unit in unit order).
//!
//! Stages, in order: `sample` (per unit, what the gathered nodes read), `fit` (one task: the
//! gathered nodes and what only follows them), `map` (per unit, the rest); a recipe that gathers
//! nothing has one stage, `run`, of one task per unit. A task names the nodes it computes; it
//! runs them with whatever they need, which earlier stages have left in the cache.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use flow_recipe::{Overrides, Plan, PlanNode, Scale};
use petgraph::graph::DiGraph;

/// One work unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The value of `params.tile`.
    pub tile: String,
    /// The value of `params.date`, when the recipe's units have dates.
    pub date: Option<String>,
    /// The value of `params.bbox` (`[west, south, east, north]`) of a `grid` cell.
    pub bbox: Option<[f64; 4]>,
}

impl Unit {
    /// The unit's name in node ids and reports: `TILE` or `TILE@DATE`.
    pub fn label(&self) -> String {
        match &self.date {
            Some(d) => format!("{}@{d}", self.tile),
            None => self.tile.clone(),
        }
    }

    /// The `--set` overrides that make the recipe this unit.
    pub fn sets(&self) -> Vec<String> {
        let mut sets = vec![format!("tile={}", toml::Value::String(self.tile.clone()))];
        if let Some(d) = &self.date {
            sets.push(format!("date={}", toml::Value::String(d.clone())));
        }
        if let Some([w, s, e, n]) = self.bbox {
            sets.push(format!("bbox=[{w:?}, {s:?}, {e:?}, {n:?}]"));
        }
        sets
    }
}

/// One stage: its tasks, run after every task of the stage before it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `sample`, `fit`, `map` or `run`.
    pub name: &'static str,
    /// Its tasks, by index.
    pub tasks: Vec<Task>,
}

/// One task: the nodes it computes.
#[derive(Debug, Clone)]
pub struct Task {
    /// The unit it belongs to (`None` for the `fit` task).
    pub unit: Option<usize>,
    /// Indices into the staged plan's nodes, in plan order.
    pub nodes: Vec<usize>,
}

/// A recipe cut into units, one plan and stages.
#[derive(Debug)]
pub struct Staged {
    /// Every unit's nodes and the gathered ones, in one plan.
    pub plan: Plan,
    /// The units, in order (tiles, then dates within a tile).
    pub units: Vec<Unit>,
    /// The stages, in the order they run.
    pub stages: Vec<Stage>,
}

impl Staged {
    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The plan of one task: its nodes and everything they read, in plan order.
    pub fn task_plan(&self, task: &Task) -> Plan {
        self.closure(&task.nodes)
    }

    /// The plan of `nodes` (indices into the staged plan) and everything they read.
    pub fn closure(&self, nodes: &[usize]) -> Plan {
        let mut keep = vec![false; self.plan.nodes.len()];
        let index: HashMap<&str, usize> = self
            .plan
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut stack: Vec<usize> = nodes.to_vec();
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut keep[i], true) {
                continue;
            }
            for (_, src) in &self.plan.nodes[i].inputs {
                if let Some(&j) = index.get(src.as_str()) {
                    stack.push(j);
                }
            }
        }
        let nodes: Vec<PlanNode> = self
            .plan
            .nodes
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(n, _)| n.clone())
            .collect();
        with_nodes(&self.plan, nodes)
    }
}

/// The units of `scale`: every tile, times every date when there are dates.
pub fn units(scale: &Scale) -> Vec<Unit> {
    let mut out = Vec::new();
    for (i, tile) in scale.tiles.iter().enumerate() {
        let bbox = scale.cells.get(i).copied();
        if scale.dates.is_empty() {
            out.push(Unit {
                tile: tile.clone(),
                date: None,
                bbox,
            });
        }
        for date in &scale.dates {
            out.push(Unit {
                tile: tile.clone(),
                date: Some(date.clone()),
                bbox,
            });
        }
    }
    out
}

/// Builds the plan of one unit (the recipe with the unit's params set); the caller validates.
pub type BuildUnit<'a> = dyn Fn(&Overrides) -> Result<Plan, crate::error::CommandError> + 'a;

/// Cuts the recipe (whose plan for the first unit's values is built by `build`) into units and
/// stages. `profile` and `sets` are the command line's; each unit adds its own params.
///
/// # Errors
/// A recipe error (exit 2) when a unit does not validate, when a gathered node's params differ
/// by unit, when units write the same file, or when a unit reads what is gathered and is
/// gathered again.
pub fn stage(
    scale: &Scale,
    profile: Option<String>,
    sets: &[String],
    registry: &flow_core::Registry,
    build: &BuildUnit<'_>,
) -> Result<Staged, crate::error::CommandError> {
    let usage = crate::error::CommandError::usage;
    let units = units(scale);
    let mut plans = Vec::with_capacity(units.len());
    for unit in &units {
        let mut all = sets.to_vec();
        all.extend(unit.sets());
        plans.push(build(&Overrides::new(profile.clone(), &all))?);
    }
    let first = &plans[0];
    let gathered: HashSet<&str> = scale.gather.iter().map(String::as_str).collect();

    // Which nodes run once (gathered, or reading only what runs once) and which per unit.
    let mut once: HashSet<&str> = HashSet::new();
    for node in &first.nodes {
        let is_once = gathered.contains(node.id.as_str())
            || (!node.inputs.is_empty()
                && node.inputs.iter().all(|(_, s)| once.contains(s.as_str())));
        if is_once {
            once.insert(node.id.as_str());
        }
    }
    for id in &scale.gather {
        let node = first
            .node(id)
            .ok_or_else(|| usage(format!("no node `{id}`")))?;
        if node.inputs.iter().all(|(_, s)| once.contains(s.as_str())) {
            return Err(usage(format!(
                "`{id}` is in scale.gather but reads nothing from a unit: gather a node that reads \
                 the units' values (a `sample` of each unit's matrix, say)"
            )));
        }
    }
    for node in first.nodes.iter().filter(|n| once.contains(n.id.as_str())) {
        for (plan, unit) in plans.iter().zip(&units).skip(1) {
            let same = plan.node(&node.id).is_some_and(|n| n.params == node.params);
            if !same {
                return Err(usage(format!(
                    "`{}` runs once over every unit, but its params differ for unit {} (they use \
                     params.tile or params.date); let it read the units' values through its \
                     inputs instead",
                    node.id,
                    unit.label()
                )));
            }
        }
    }
    // Per-unit nodes that gathered nodes read (directly or not): the sample stage.
    let mut feeds: HashSet<&str> = HashSet::new();
    for node in first.nodes.iter().rev() {
        let feeds_gather = gathered.contains(node.id.as_str()) || feeds.contains(node.id.as_str());
        if feeds_gather {
            for (_, src) in &node.inputs {
                if !once.contains(src.as_str()) {
                    feeds.insert(src.as_str());
                }
            }
        }
    }
    // A node that feeds a gathered node must not read what runs once: one level of gathering.
    let mut after_once: HashSet<&str> = HashSet::new();
    for node in &first.nodes {
        if node
            .inputs
            .iter()
            .any(|(_, s)| once.contains(s.as_str()) || after_once.contains(s.as_str()))
            && !once.contains(node.id.as_str())
        {
            after_once.insert(node.id.as_str());
            if feeds.contains(node.id.as_str()) {
                return Err(usage(format!(
                    "`{}` reads what runs once over every unit and is gathered again; a recipe \
                     gathers once (sample -> fit -> map)",
                    node.id
                )));
            }
        }
    }

    let gather_kind = registry
        .get("gather")
        .cloned()
        .ok_or_else(|| usage("the `gather` node kind is not registered".into()))?;
    let mut nodes: Vec<PlanNode> = Vec::new();
    let mut role: Vec<Role> = Vec::new();
    let per_unit_id = |unit: &Unit, id: &str| format!("{}/{id}", unit.label());
    for node in &first.nodes {
        if once.contains(node.id.as_str()) {
            let mut inputs = Vec::new();
            for (port, src) in &node.inputs {
                if once.contains(src.as_str()) {
                    inputs.push((port.clone(), src.clone()));
                    continue;
                }
                let id = format!("gather/{}/{port}", node.id);
                let params = flow_core::Params::new();
                let built = gather_kind
                    .build(&params)
                    .map_err(|e| usage(format!("cannot build the gather of `{}`: {e}", node.id)))?;
                nodes.push(PlanNode {
                    id: id.clone(),
                    kind: gather_kind.clone(),
                    params,
                    inputs: units
                        .iter()
                        .enumerate()
                        .map(|(u, unit)| (port_name(u, units.len()), per_unit_id(unit, src)))
                        .collect(),
                    node: Arc::from(built),
                });
                role.push(Role::Once);
                inputs.push((port.clone(), id));
            }
            let mut n = node.clone();
            n.inputs = inputs;
            nodes.push(n);
            role.push(Role::Once);
            continue;
        }
        for (u, (plan, unit)) in plans.iter().zip(&units).enumerate() {
            let own = plan.node(&node.id).ok_or_else(|| {
                usage(format!(
                    "unit {} has no node `{}`: a unit's params must not change the recipe's nodes",
                    unit.label(),
                    node.id
                ))
            })?;
            let mut n = own.clone();
            n.id = per_unit_id(unit, &own.id);
            n.inputs = own
                .inputs
                .iter()
                .map(|(port, src)| {
                    let src = if once.contains(src.as_str()) {
                        src.clone()
                    } else {
                        per_unit_id(unit, src)
                    };
                    (port.clone(), src)
                })
                .collect();
            nodes.push(n);
            role.push(if feeds.contains(node.id.as_str()) {
                Role::Sample(u)
            } else {
                Role::Map(u)
            });
        }
    }
    check_writes(&nodes)?;

    let task_of = |want: &dyn Fn(Role) -> bool| -> Vec<usize> {
        role.iter()
            .enumerate()
            .filter(|(_, r)| want(**r))
            .map(|(i, _)| i)
            .collect()
    };
    let per_unit = |sample: bool| -> Vec<Task> {
        (0..units.len())
            .map(|u| Task {
                unit: Some(u),
                nodes: task_of(&|r| {
                    r == if sample {
                        Role::Sample(u)
                    } else {
                        Role::Map(u)
                    }
                }),
            })
            .collect()
    };
    let mut stages = Vec::new();
    if gathered.is_empty() {
        stages.push(Stage {
            name: "run",
            tasks: per_unit(false),
        });
    } else {
        let sample = per_unit(true);
        if sample.iter().any(|t| !t.nodes.is_empty()) {
            stages.push(Stage {
                name: "sample",
                tasks: sample,
            });
        }
        stages.push(Stage {
            name: "fit",
            tasks: vec![Task {
                unit: None,
                nodes: task_of(&|r| r == Role::Once),
            }],
        });
        let map = per_unit(false);
        if map.iter().any(|t| !t.nodes.is_empty()) {
            stages.push(Stage {
                name: "map",
                tasks: map,
            });
        }
    }
    let plan = with_nodes(first, nodes);
    Ok(Staged {
        plan,
        units,
        stages,
    })
}

/// The `gather` port of unit `u` of `n`: `u` zero-padded to one width for all, since `gather`
/// takes its inputs in the byte order of their port names.
fn port_name(u: usize, n: usize) -> String {
    let width = n.to_string().len().max(4);
    format!("u{u:0width$}")
}

/// What part a node of the staged plan plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Read by a gathered node; computed in unit `.0`'s sample task.
    Sample(usize),
    /// Runs once, in the fit task.
    Once,
    /// The rest of unit `.0`'s nodes.
    Map(usize),
}

/// Units must not write the same file: a per-unit `write` needs `${params.tile}` in its path.
fn check_writes(nodes: &[PlanNode]) -> Result<(), crate::error::CommandError> {
    let mut writers: HashMap<std::path::PathBuf, &str> = HashMap::new();
    for node in nodes {
        for path in node.node.writes() {
            if let Some(first) = writers.insert(path.clone(), &node.id) {
                return Err(crate::error::CommandError::usage(format!(
                    "`{first}` and `{}` both write {}: put ${{params.tile}} (and ${{params.date}}) \
                     in the path of a node that runs per unit",
                    node.id,
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// `plan` with `nodes` (in a topological order) in place of its own, and their graph.
fn with_nodes(plan: &Plan, nodes: Vec<PlanNode>) -> Plan {
    let mut graph: DiGraph<String, String> = DiGraph::new();
    let index: HashMap<String, petgraph::graph::NodeIndex> = nodes
        .iter()
        .map(|n| (n.id.clone(), graph.add_node(n.id.clone())))
        .collect();
    for node in &nodes {
        for (port, src) in &node.inputs {
            if let (Some(&a), Some(&b)) = (index.get(src), index.get(&node.id)) {
                graph.add_edge(a, b, port.clone());
            }
        }
    }
    Plan {
        name: plan.name.clone(),
        description: plan.description.clone(),
        file: plan.file.clone(),
        params: plan.params.clone(),
        profile: plan.profile.clone(),
        plugins: plan.plugins.clone(),
        nodes,
        graph,
        scale: None,
        aoi: plan.aoi.clone(),
    }
}
