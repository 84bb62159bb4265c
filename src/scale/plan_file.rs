//! The plan file: a recipe cut into stages of tasks, as `flow plan --output` writes it and every
//! `flow task run` reads it. It says how to rebuild the staged plan (recipe, profile, overrides,
//! units, cache and output directory), and for each task its nodes with their keys, what it
//! reads from earlier stages, the files it writes, its estimate, and its state when planned.
//! It holds no secrets: tokens are fetched inside each task.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The version of the plan file's layout.
pub const PLAN_FILE_VERSION: u32 = 1;

/// A plan file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    /// [`PLAN_FILE_VERSION`].
    pub flow_plan: u32,
    /// The recipe's name.
    pub name: String,
    /// The recipe file, absolute.
    pub recipe: PathBuf,
    /// The profile in force.
    pub profile: Option<String>,
    /// `--set` overrides, in order.
    pub sets: Vec<String>,
    /// The units' tiles and dates.
    pub tiles: Vec<String>,
    /// The units' dates (empty: units are tiles).
    pub dates: Vec<String>,
    /// Plugin libraries given on the command line, absolute.
    pub plugins: Vec<PathBuf>,
    /// The output directory, absolute.
    pub out_dir: PathBuf,
    /// The local cache directory, absolute (`None`: each machine's default).
    pub cache_dir: Option<PathBuf>,
    /// The shared cache on object storage (`--cache`), if any.
    pub cache: Option<String>,
    /// `--window`.
    pub window: Option<usize>,
    /// `--memory-limit`, bytes.
    pub memory_limit: Option<u64>,
    /// The stages, in the order they run.
    pub stages: Vec<StageFile>,
}

/// One stage of a plan file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageFile {
    /// `sample`, `fit`, `map` or `run`.
    pub name: String,
    /// The stages it runs after.
    pub after: Vec<String>,
    /// Its tasks, by index.
    pub tasks: Vec<TaskFile>,
}

/// One task of a plan file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskFile {
    /// Its index in the stage.
    pub index: usize,
    /// Its unit (`None` for the fit task).
    pub unit: Option<String>,
    /// The task key (`None` when it is only known once a live search before it has run).
    pub key: Option<String>,
    /// The nodes it computes, with their keys.
    pub nodes: Vec<NodeFile>,
    /// Nodes of earlier stages whose outputs it reads from the cache.
    pub reads: Vec<String>,
    /// Files it writes, relative to the output directory.
    pub outputs: Vec<String>,
    /// Pixel bytes it reads, estimated.
    pub read_bytes: u64,
    /// Its peak memory, estimated.
    pub peak_bytes: u64,
    /// `done`, `missing` or `failed` when planned.
    pub state: String,
}

/// One node of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    /// Its id in the staged plan (`UNIT/NODE`, or `NODE` for what runs once).
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its cache key, when known.
    pub key: Option<String>,
}

impl PlanFile {
    /// Reads a plan file.
    ///
    /// # Errors
    /// Exit 5 when it cannot be read, 2 when it is not a plan file of this version.
    pub fn read(path: &Path) -> Result<PlanFile, crate::error::CommandError> {
        let bytes = std::fs::read(path).map_err(|e| {
            crate::error::CommandError::io(format!("cannot read plan {}: {e}", path.display()))
        })?;
        let plan: PlanFile = serde_json::from_slice(&bytes).map_err(|e| {
            crate::error::CommandError::usage(format!(
                "{} is not a flow plan file: {e}",
                path.display()
            ))
        })?;
        if plan.flow_plan != PLAN_FILE_VERSION {
            return Err(crate::error::CommandError::usage(format!(
                "{} is a plan file of version {}; this flow reads version {PLAN_FILE_VERSION}: \
                 plan again with `flow plan --output`",
                path.display(),
                plan.flow_plan
            )));
        }
        Ok(plan)
    }

    /// Writes the plan file atomically.
    ///
    /// # Errors
    /// Exit 5 when it cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), crate::error::CommandError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                crate::error::CommandError::io(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        flow_core::atomic::write_atomic(path, text.as_bytes()).map_err(|e| {
            crate::error::CommandError::io(format!("cannot write plan {}: {e}", path.display()))
        })
    }

    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageFile> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Tasks not done when planned.
    pub fn to_run(&self) -> usize {
        self.stages
            .iter()
            .flat_map(|s| &s.tasks)
            .filter(|t| t.state != "done")
            .count()
    }
}
