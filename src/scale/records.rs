//! Completion and failure records of tasks, kept in the cache beside its objects (and in the
//! shared cache on object storage when there is one), so that what is done is read from the
//! cache and never from an engine's bookkeeping.
//!
//! `tasks/<task key>.done.json` is written last by a task that succeeded, with a create-if-absent
//! put: the first writer wins and every later one finds it. `tasks/<task key>.failed.json` is
//! overwritten by each failed attempt. A task's key covers the keys of the nodes it computes, so
//! a record is only ever found by a task that would compute the very same values.

use std::collections::BTreeMap;
use std::path::Path;

use flow_engine::Cache;
use serde::{Deserialize, Serialize};

/// A file a task wrote, relative to the output directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputFile {
    /// Path relative to the output directory.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// BLAKE3 of its bytes, hex.
    pub blake3: String,
}

/// What a task that succeeded records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    /// The task key.
    pub key: String,
    /// Its stage and index.
    pub stage: String,
    /// Its index in the stage.
    pub index: usize,
    /// Its unit's label (`None` for the fit task).
    pub unit: Option<String>,
    /// The key of every node it computed.
    pub nodes: BTreeMap<String, String>,
    /// The files it wrote.
    pub outputs: Vec<OutputFile>,
    /// Where it ran.
    pub host: String,
    /// Seconds since the Unix epoch when it finished.
    pub finished: u64,
    /// How long it ran, seconds.
    pub seconds: f64,
}

/// What a failed attempt records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// The task key.
    pub key: String,
    /// Its stage.
    pub stage: String,
    /// Its index in the stage.
    pub index: usize,
    /// The exit code of the attempt.
    pub exit_code: i32,
    /// Whether running it again may succeed (flow's exit codes 4, 5 and 130).
    pub retryable: bool,
    /// The error.
    pub message: String,
    /// The run (an executor's `FLOW_RUN_ID`) it belonged to, if any.
    pub run: Option<String>,
    /// Where it ran.
    pub host: String,
    /// Seconds since the Unix epoch when it failed.
    pub finished: u64,
}

/// Where a task stands, according to the cache.
#[derive(Debug, Clone)]
pub enum TaskState {
    /// Its completion record is there and the files it lists are in place.
    Done(Box<Completion>),
    /// No completion record (or one whose files are gone), and no failure.
    Missing,
    /// Its last attempt failed.
    Failed(Box<Failure>),
}

impl TaskState {
    /// `done`, `missing` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Done(_) => "done",
            TaskState::Missing => "missing",
            TaskState::Failed(_) => "failed",
        }
    }
}

/// The record names of a task key.
pub fn done_name(key: &str) -> String {
    format!("tasks/{key}.done.json")
}

/// The name of a task's failure record.
pub fn failed_name(key: &str) -> String {
    format!("tasks/{key}.failed.json")
}

/// The state of the task with key `key`, from its records. A completion record whose files are
/// not in `out_dir` any more (or differ in size) counts as missing: the task is run again and
/// rewrites them.
pub fn state(cache: &Cache, key: &str, out_dir: &Path) -> TaskState {
    if let Ok(Some(bytes)) = cache.get_record(&done_name(key)) {
        if let Ok(done) = serde_json::from_slice::<Completion>(&bytes) {
            let in_place = done.outputs.iter().all(|f| {
                std::fs::metadata(out_dir.join(&f.path)).is_ok_and(|m| m.len() == f.bytes)
            });
            if done.key == key && in_place {
                return TaskState::Done(Box::new(done));
            }
        }
    }
    match cache.get_record(&failed_name(key)) {
        Ok(Some(bytes)) => match serde_json::from_slice::<Failure>(&bytes) {
            Ok(f) => TaskState::Failed(Box::new(f)),
            Err(_) => TaskState::Missing,
        },
        _ => TaskState::Missing,
    }
}

/// The machine's host name, for records.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
