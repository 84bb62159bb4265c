//! The local executor: every task of every stage in this process, in stage order, skipping
//! those whose completion records are in the cache. The tasks are the very ones any other
//! engine runs, so the outputs are the same.

use super::{task, Scaled};
use crate::error::CommandError;

/// What a local run did, per stage: tasks run and tasks found done.
#[derive(Debug, Default)]
pub struct LocalRun {
    /// `(stage, tasks run, tasks already done)`.
    pub stages: Vec<(String, usize, usize)>,
}

/// Runs every task not done yet.
///
/// # Errors
/// The first failing task's error (the tasks after it are not started).
pub fn run(
    scaled: &mut Scaled,
    runtime: &tokio::runtime::Runtime,
) -> Result<LocalRun, CommandError> {
    let mut out = LocalRun::default();
    let stages = scaled.staged.stages.clone();
    for stage in &stages {
        let (mut ran, mut done) = (0, 0);
        for index in 0..stage.tasks.len() {
            if task::run(scaled, runtime, stage.name, index, None)?.already_done {
                done += 1;
            } else {
                ran += 1;
            }
        }
        out.stages.push((stage.name.to_string(), ran, done));
    }
    Ok(out)
}
