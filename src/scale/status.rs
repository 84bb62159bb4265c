//! `flow status --plan P`: per stage, the tasks done, missing and failed, read from the
//! completion and failure records in the cache (never from an engine).

use super::plan_file::PlanFile;
use super::records::{self, TaskState};
use crate::error::CommandError;

/// The state of every task of `plan`, per stage, in order.
pub fn states(plan: &PlanFile, cache: &flow_engine::Cache) -> Vec<(String, Vec<TaskState>)> {
    plan.stages
        .iter()
        .map(|s| {
            let states = s
                .tasks
                .iter()
                .map(|t| match &t.key {
                    Some(key) => records::state(cache, key, &plan.out_dir),
                    None => TaskState::Missing,
                })
                .collect();
            (s.name.clone(), states)
        })
        .collect()
}

/// Prints the table and the failures.
///
/// # Errors
/// None today; the signature leaves room for a cache that cannot be read.
pub fn print(plan: &PlanFile, cache: &flow_engine::Cache) -> Result<(), CommandError> {
    let states = states(plan, cache);
    crate::outln!(
        "{:<8} {:>6} {:>6} {:>8} {:>7}",
        "stage",
        "tasks",
        "done",
        "missing",
        "failed"
    );
    let mut failures = Vec::new();
    for ((name, states), stage) in states.iter().zip(&plan.stages) {
        let count = |n: &str| states.iter().filter(|s| s.name() == n).count();
        crate::outln!(
            "{:<8} {:>6} {:>6} {:>8} {:>7}",
            name,
            states.len(),
            count("done"),
            count("missing"),
            count("failed")
        );
        for (state, task) in states.iter().zip(&stage.tasks) {
            if let TaskState::Failed(f) = state {
                failures.push(format!(
                    "  {name}/{}{}: exit {} ({}) on {}: {}",
                    task.index,
                    task.unit
                        .as_deref()
                        .map(|u| format!(" ({u})"))
                        .unwrap_or_default(),
                    f.exit_code,
                    if f.retryable {
                        "retryable"
                    } else {
                        "not retryable"
                    },
                    f.host,
                    f.message
                ));
            }
        }
    }
    if !failures.is_empty() {
        crate::outln!("failed:");
        for f in failures {
            crate::outln!("{f}");
        }
    }
    Ok(())
}
