//! A recipe over many tiles and dates: cut into stages of idempotent tasks (`expand`), written
//! down as a plan file (`plan_file`), run one task at a time (`task`) by any engine — in this
//! process (`local`), on Slurm (`slurm`), or as files for Kubernetes and AWS Batch
//! ([`crate::emit`]) — and followed through completion records in the cache (`records`,
//! `status`). What to run is always decided from the cache: a task whose completion record is
//! there is not run again, by any engine.

pub mod expand;
pub mod local;
pub mod plan_file;
pub mod records;
pub mod slurm;
pub mod status;
pub mod task;

use std::path::PathBuf;
use std::sync::Arc;

use flow_engine::RunOptions;
use flow_recipe::{Overrides, Scale};

use crate::error::CommandError;
use expand::{Stage, Staged, Task};
use plan_file::{NodeFile, PlanFile, StageFile, TaskFile};

/// How to build a staged recipe: the recipe and its overrides, and where it runs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The recipe file.
    pub recipe: PathBuf,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--set`, in order.
    pub sets: Vec<String>,
    /// `--tiles`, replacing the recipe's `scale.tiles`.
    pub tiles: Option<Vec<String>>,
    /// `--dates`, replacing the recipe's `scale.dates`.
    pub dates: Option<Vec<String>>,
    /// `--plugin` libraries.
    pub plugins: Vec<PathBuf>,
    /// The output directory.
    pub out_dir: PathBuf,
    /// The local cache directory and the shared cache.
    pub cache: crate::cli::CacheDirArg,
    /// Nodes at once and threads per windowed pass.
    pub jobs: usize,
    /// `--window`.
    pub window: Option<usize>,
    /// `--memory-limit`, bytes.
    pub memory_limit: Option<u64>,
}

/// A staged recipe ready to run: its kinds, plan, run options and every node's key.
pub struct Scaled {
    /// How it was built.
    pub setup: Setup,
    /// The units' tiles and dates after the command line.
    pub scale: Scale,
    /// The recipe cut into units and stages.
    pub staged: Staged,
    /// The options every task runs with (the cache included).
    pub options: RunOptions,
    /// Each node's cache key (`None` while unknown) and plan key (what names tasks), in plan
    /// order.
    pub keys: Vec<flow_engine::executor::NodeKeys>,
}

impl Scaled {
    /// Builds the staged recipe, reading the recipe and loading its plugins.
    ///
    /// # Errors
    /// Exit 2 for a recipe error or a recipe without `[scale]`, 6 for a plugin that does not
    /// load, 5 for a cache that cannot be opened, and a search's code when one fails.
    pub fn open(setup: Setup) -> Result<Scaled, CommandError> {
        let registry = crate::commands::registry_with_plugins(Some(&setup.recipe), &setup.plugins)?;
        let overrides = Overrides::new(setup.profile.clone(), &setup.sets);
        let first = crate::commands::load_plan_with(&setup.recipe, &overrides, &registry)?;
        Scaled::open_with(setup, registry, &first)
    }

    /// Builds the staged recipe from its kinds and its plan as `setup`'s overrides make it
    /// (the first unit's, with the recipe's own `params.tile`).
    ///
    /// # Errors
    /// As [`Scaled::open`].
    pub fn open_with(
        setup: Setup,
        registry: flow_core::Registry,
        first: &flow_recipe::Plan,
    ) -> Result<Scaled, CommandError> {
        let scale = match (first.scale.clone(), &setup.tiles) {
            (Some(mut scale), tiles) => {
                if let Some(t) = tiles {
                    if !scale.cells.is_empty() {
                        // A grid's cells are chosen by name.
                        let mut cells = Vec::new();
                        for name in t {
                            let i = scale.tiles.iter().position(|c| c == name).ok_or_else(|| {
                                CommandError::usage(format!(
                                    "--tiles: `{name}` is not a cell of the recipe's grid ({} .. {})",
                                    scale.tiles.first().map(String::as_str).unwrap_or(""),
                                    scale.tiles.last().map(String::as_str).unwrap_or("")
                                ))
                            })?;
                            cells.push(scale.cells[i]);
                        }
                        scale.cells = cells;
                    }
                    scale.tiles = t.clone();
                }
                if let Some(d) = &setup.dates {
                    scale.dates = d.clone();
                }
                scale
            }
            (None, _) => {
                return Err(CommandError::usage(format!(
                    "{} has no [scale] table: plan files, --tiles, --dates and executors are for \
                     recipes cut into units (add `[scale]` with `tiles = [...]`)",
                    setup.recipe.display()
                )))
            }
        };
        if scale.tiles.is_empty() {
            return Err(CommandError::usage("--tiles needs at least one tile"));
        }
        let build = |o: &Overrides| crate::commands::load_plan_with(&setup.recipe, o, &registry);
        let staged = expand::stage(
            &scale,
            setup.profile.clone(),
            &setup.sets,
            &registry,
            &build,
        )?;
        let cache = crate::commands::open_cache(&setup.cache)?;
        let mut options = crate::commands::run_options(
            &setup.recipe,
            Some(cache),
            &setup.cache,
            setup.jobs,
            setup.out_dir.clone(),
            false,
            &registry,
        );
        options.window = setup.window;
        options.memory_limit = setup.memory_limit;
        options.registry = Some(Arc::new(registry));
        search(&staged, &options)?;
        let keys = flow_engine::executor::node_keys(&staged.plan, &options);
        Ok(Scaled {
            setup,
            scale,
            staged,
            options,
            keys,
        })
    }

    /// Rebuilds the staged recipe a plan file describes; `cache` replaces the plan's cache
    /// settings where given (a machine's own local cache directory, say).
    ///
    /// # Errors
    /// As [`Scaled::open`].
    pub fn from_plan_file(
        plan: &PlanFile,
        cache: &crate::cli::CacheDirArg,
        jobs: usize,
    ) -> Result<Scaled, CommandError> {
        let setup = Setup {
            recipe: plan.recipe.clone(),
            profile: plan.profile.clone(),
            sets: plan.sets.clone(),
            tiles: Some(plan.tiles.clone()),
            dates: Some(plan.dates.clone()),
            plugins: plan.plugins.clone(),
            out_dir: plan.out_dir.clone(),
            cache: crate::cli::CacheDirArg {
                cache_dir: cache.cache_dir.clone().or_else(|| plan.cache_dir.clone()),
                cache: cache.cache.clone().or_else(|| plan.cache.clone()),
            },
            jobs,
            window: plan.window,
            memory_limit: plan.memory_limit,
        };
        Scaled::open(setup)
    }

    /// The cache every task uses.
    pub fn cache(&self) -> &flow_engine::Cache {
        self.options
            .cache
            .as_ref()
            .expect("a staged recipe always runs with a cache")
    }

    /// The key of `task` in stage `stage`: BLAKE3 over the stage and the plan keys
    /// ([`flow_engine::executor::NodeKeys::plan_key`]) of the nodes it computes. It names the task's
    /// records; it is known before anything runs and changes with the recipe.
    pub fn task_key(&self, stage: &Stage, task: &Task) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"flow-task-1\0");
        h.update(stage.name.as_bytes());
        h.update(b"\0");
        let mut keys: Vec<String> = task
            .nodes
            .iter()
            .filter_map(|&i| self.keys.get(i).map(|k| k.plan_key.hex()))
            .collect();
        keys.sort();
        for k in &keys {
            h.update(k.as_bytes());
            h.update(b"\0");
        }
        h.finalize().to_hex().to_string()
    }

    /// Where `task` stands: done only when its completion record is there, the files it lists
    /// are in place, and the keys it recorded for its nodes are the keys the cache resolves for
    /// them now (a file read since changed, or a live search that answers differently, makes
    /// it missing again).
    pub fn task_state(&self, stage: &Stage, task: &Task) -> records::TaskState {
        let key = self.task_key(stage, task);
        let state = records::state(self.cache(), &key, &self.setup.out_dir);
        if let records::TaskState::Done(done) = &state {
            let current = task.nodes.iter().all(|&i| {
                let id = &self.staged.plan.nodes[i].id;
                let now = self.keys.get(i).and_then(|k| k.key).map(|k| k.hex());
                now.is_some() && done.nodes.get(id) == now.as_ref()
            });
            if !current {
                return records::TaskState::Missing;
            }
        }
        state
    }

    /// Resolves the keys again (after a task ran a live search, say).
    pub fn refresh_keys(&mut self) {
        self.keys = flow_engine::executor::node_keys(&self.staged.plan, &self.options);
    }

    /// The plan file of this staged recipe: tasks with keys, reads, outputs, estimates and states.
    pub fn plan_file(&self) -> PlanFile {
        // The searches are in the cache (`search`): their items are loaded, not searched again.
        let keys: Vec<_> = self.keys.iter().map(|k| k.key).collect();
        let items = crate::commands::run_item_nodes(&self.staged.plan, &self.options, &keys);
        let estimate = flow_engine::estimate_run(&self.staged.plan, &self.options, &items);
        let plan = &self.staged.plan;
        let mut stages = Vec::new();
        let mut before: Vec<String> = Vec::new();
        for stage in &self.staged.stages {
            let tasks = stage
                .tasks
                .iter()
                .enumerate()
                .map(|(index, task)| {
                    let key = self.task_key(stage, task);
                    let state = self.task_state(stage, task);
                    let mine: std::collections::HashSet<&str> = task
                        .nodes
                        .iter()
                        .map(|&i| plan.nodes[i].id.as_str())
                        .collect();
                    let mut reads: Vec<String> = task
                        .nodes
                        .iter()
                        .flat_map(|&i| plan.nodes[i].inputs.iter().map(|(_, s)| s.clone()))
                        .filter(|s| !mine.contains(s.as_str()))
                        .collect();
                    reads.sort();
                    reads.dedup();
                    let outputs = task
                        .nodes
                        .iter()
                        .flat_map(|&i| plan.nodes[i].node.writes())
                        .map(|p| p.display().to_string())
                        .collect();
                    let (read_bytes, peak_bytes) = task.nodes.iter().fold((0, 0), |(r, p), &i| {
                        let e = estimate.nodes.get(i);
                        (
                            r + e.map_or(0, |e| e.read_bytes),
                            p.max(e.map_or(0, |e| e.peak_bytes)),
                        )
                    });
                    TaskFile {
                        index,
                        unit: task.unit.map(|u| self.staged.units[u].label()),
                        key: Some(key),
                        nodes: task
                            .nodes
                            .iter()
                            .map(|&i| NodeFile {
                                id: plan.nodes[i].id.clone(),
                                kind: plan.nodes[i].kind.name().to_string(),
                                key: self.keys.get(i).and_then(|k| k.key).map(|k| k.hex()),
                            })
                            .collect(),
                        reads,
                        outputs,
                        read_bytes,
                        peak_bytes,
                        state: state.name().to_string(),
                    }
                })
                .collect();
            stages.push(StageFile {
                name: stage.name.to_string(),
                after: before.clone(),
                tasks,
            });
            before = vec![stage.name.to_string()];
        }
        let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.into());
        PlanFile {
            flow_plan: plan_file::PLAN_FILE_VERSION,
            name: plan.name.clone(),
            recipe: absolute(&self.setup.recipe),
            profile: self.setup.profile.clone(),
            sets: self.setup.sets.clone(),
            tiles: self.scale.tiles.clone(),
            dates: self.scale.dates.clone(),
            plugins: self.setup.plugins.iter().map(|p| absolute(p)).collect(),
            out_dir: absolute(&self.setup.out_dir),
            cache_dir: Some(absolute(self.cache().root())),
            cache: self.setup.cache.cache.clone(),
            window: self.setup.window,
            memory_limit: self.setup.memory_limit,
            stages,
        }
    }
}

/// The runtime tasks run on: one worker (nodes run on blocking threads, `jobs` at once).
///
/// # Errors
/// Exit 5 when it cannot be started.
pub fn runtime(jobs: usize) -> Result<tokio::runtime::Runtime, CommandError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(jobs + 2)
        .enable_all()
        .build()
        .map_err(|e| CommandError::io(format!("cannot start the runtime: {e}")))
}

/// Runs the live searches of every unit (the nodes whose output the cache keeps for a while)
/// into the cache, so that the keys of everything after them, and so every task's key, are known
/// before any task runs, and are the same for every task that runs within their time to live.
///
/// # Errors
/// The failing search's error and code.
fn search(staged: &Staged, options: &RunOptions) -> Result<(), CommandError> {
    let live: Vec<usize> = staged
        .plan
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.node.caching(), flow_core::Caching::Ttl(_)))
        .map(|(i, _)| i)
        .collect();
    if live.is_empty() {
        return Ok(());
    }
    let plan = staged.closure(&live);
    let runtime = runtime(options.jobs)?;
    let report = runtime.block_on(flow_engine::run(&plan, options.clone(), |_| {}));
    runtime.shutdown_background();
    if report.exit_code == flow_core::ExitCode::Ok {
        return Ok(());
    }
    let why = report
        .nodes
        .iter()
        .find(|n| n.error.is_some())
        .map(|n| {
            format!(
                "node `{}` ({}) failed: {}",
                n.id,
                n.kind,
                n.error.as_deref().unwrap_or_default()
            )
        })
        .or_else(|| report.error.clone())
        .unwrap_or_else(|| "the search failed".into());
    Err(CommandError::new(report.exit_code, why))
}

/// Prints a plan file's summary: per stage, tasks and how many are done; then how many to run.
pub fn print_plan_summary(plan: &PlanFile) {
    crate::outln!(
        "{}: {} units ({} tiles{}), {} stages",
        plan.name,
        plan.tiles.len() * plan.dates.len().max(1),
        plan.tiles.len(),
        if plan.dates.is_empty() {
            String::new()
        } else {
            format!(" x {} dates", plan.dates.len())
        },
        plan.stages.len()
    );
    crate::outln!(
        "{:<8} {:>6} {:>6} {:>8} {:>12} {:>12}",
        "stage",
        "tasks",
        "done",
        "to run",
        "reads",
        "peak memory"
    );
    for stage in &plan.stages {
        let done = stage.tasks.iter().filter(|t| t.state == "done").count();
        let reads: u64 = stage.tasks.iter().map(|t| t.read_bytes).sum();
        let peak = stage.tasks.iter().map(|t| t.peak_bytes).max().unwrap_or(0);
        crate::outln!(
            "{:<8} {:>6} {:>6} {:>8} {:>12} {:>12}",
            stage.name,
            stage.tasks.len(),
            done,
            stage.tasks.len() - done,
            flow_core::estimate::human_bytes(reads),
            flow_core::estimate::human_bytes(peak)
        );
    }
    crate::outln!("{} tasks to run", plan.to_run());
}
