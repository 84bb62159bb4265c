//! Runs one task of a staged recipe: the nodes it computes, with whatever they read (earlier
//! stages left it in the cache), then its completion record, written last with a
//! create-if-absent put. Running a task again, anywhere, computes nothing new: its nodes are
//! cache hits and its record is already there.

use std::collections::BTreeMap;
use std::time::Instant;

use flow_core::ExitCode;
use flow_engine::{Event, NodeStatus};

use super::records::{self, Completion, Failure, OutputFile};
use super::Scaled;
use crate::error::CommandError;

/// The engines' variables that carry a task's index, in the order they are looked at.
pub const INDEX_VARIABLES: [&str; 3] = [
    "SLURM_ARRAY_TASK_ID",
    "JOB_COMPLETION_INDEX",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

/// The task index: `--index`, else the first engine variable set; plus `offset` (arrays chunked
/// by an engine's maximum size).
///
/// # Errors
/// Exit 2 when neither is given or a variable is not a number.
pub fn index(given: Option<usize>, offset: usize) -> Result<usize, CommandError> {
    if let Some(i) = given {
        return Ok(i + offset);
    }
    for var in INDEX_VARIABLES {
        if let Ok(v) = std::env::var(var) {
            let i: usize = v.trim().parse().map_err(|_| {
                CommandError::usage(format!("{var}={v} is not a task index (a number >= 0)"))
            })?;
            return Ok(i + offset);
        }
    }
    Err(CommandError::usage(format!(
        "no task index: give --index, or run under an engine that sets one of {}",
        INDEX_VARIABLES.join(", ")
    )))
}

/// What one task did.
#[derive(Debug, Clone)]
pub struct TaskRun {
    /// Nodes computed.
    pub computed: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// True when its completion record was already there (nothing was run).
    pub already_done: bool,
}

/// A test hook: `FLOW_FAILPOINT=STAGE:INDEX:CODE[:once]` makes that task exit with CODE before
/// running (with `once`, only its first attempt: a marker record in the cache remembers it).
fn failpoint(scaled: &Scaled, stage: &str, index: usize, key: &str) -> Option<ExitCode> {
    let spec = std::env::var("FLOW_FAILPOINT").ok()?;
    let parts: Vec<&str> = spec.split(':').collect();
    let (s, i, code) = (parts.first()?, parts.get(1)?, parts.get(2)?);
    if *s != stage || i.parse::<usize>().ok()? != index {
        return None;
    }
    let code = ExitCode::from_code(code.parse().ok()?)?;
    if parts.get(3) == Some(&"once") {
        let marker = format!("failpoints/{key}-{stage}-{index}");
        let first = scaled
            .cache()
            .put_record(&marker, b"failed once\n", true)
            .unwrap_or(false);
        if !first {
            return None;
        }
    }
    Some(code)
}

/// Runs task `index` of stage `stage` on `runtime`. `run_id` (an executor's `FLOW_RUN_ID`) goes
/// into a failure record.
///
/// # Errors
/// Exit 2 for an unknown stage or index; the failing node's code when the task fails (after its
/// failure record is written).
pub fn run(
    scaled: &mut Scaled,
    runtime: &tokio::runtime::Runtime,
    stage_name: &str,
    index: usize,
    run_id: Option<&str>,
) -> Result<TaskRun, CommandError> {
    let started = Instant::now();
    let stage = scaled.staged.stage(stage_name).cloned().ok_or_else(|| {
        let names: Vec<&str> = scaled.staged.stages.iter().map(|s| s.name).collect();
        CommandError::usage(format!(
            "no stage `{stage_name}`; the stages are {}",
            names.join(", ")
        ))
    })?;
    let task = stage.tasks.get(index).cloned().ok_or_else(|| {
        CommandError::usage(format!(
            "stage `{stage_name}` has {} tasks (0..{}); there is no task {index}",
            stage.tasks.len(),
            stage.tasks.len()
        ))
    })?;
    let unit = task.unit.map(|u| scaled.staged.units[u].label());
    let label = match &unit {
        Some(u) => format!("{stage_name}/{index} ({u})"),
        None => format!("{stage_name}/{index}"),
    };
    let out_dir = scaled.setup.out_dir.clone();
    let key = scaled.task_key(&stage, &task);
    if let records::TaskState::Done(_) = scaled.task_state(&stage, &task) {
        return Ok(TaskRun {
            computed: 0,
            seconds: started.elapsed().as_secs_f64(),
            already_done: true,
        });
    }
    if let Some(code) = failpoint(scaled, stage_name, index, &key) {
        let message = format!(
            "failpoint FLOW_FAILPOINT: task {label} exits {}",
            code.code()
        );
        record_failure(scaled, (&stage, index), &key, code, &message, run_id);
        return Err(CommandError::new(code, message));
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| {
        CommandError::io(format!(
            "cannot create output directory {}: {e}",
            out_dir.display()
        ))
    })?;
    let plan = scaled.staged.task_plan(&task);
    let report = runtime.block_on(flow_engine::run(
        &plan,
        scaled.options.clone(),
        |event: Event| {
            if let Event::Warning(w) = event {
                eprintln!("warning: {w}");
            }
        },
    ));
    for node in &report.nodes {
        for w in &node.warnings {
            eprintln!("warning: {}: {w}", node.id);
        }
    }
    // The keys of what ran (after the files it read) are known now.
    scaled.refresh_keys();
    if report.exit_code != ExitCode::Ok {
        let failed = report.nodes.iter().find(|n| n.error.is_some());
        let message = match failed {
            Some(n) => format!(
                "task {label}: node `{}` ({}) failed: {}",
                n.id,
                n.kind,
                n.error.as_deref().unwrap_or_default()
            ),
            None => format!(
                "task {label}: {}",
                report.error.as_deref().unwrap_or("failed")
            ),
        };
        record_failure(
            scaled,
            (&stage, index),
            &key,
            report.exit_code,
            &message,
            run_id,
        );
        return Err(CommandError::new(report.exit_code, message));
    }
    let plan = &scaled.staged.plan;
    let mut outputs = Vec::new();
    for &i in &task.nodes {
        for path in plan.nodes[i].node.writes() {
            let full = out_dir.join(&path);
            if !full.exists() {
                continue;
            }
            let (hash, bytes) = flow_core::digest::hash_file(&full)
                .map_err(|e| CommandError::io(format!("cannot read {}: {e}", full.display())))?;
            outputs.push(OutputFile {
                path: path.display().to_string(),
                bytes,
                blake3: hash.to_hex().to_string(),
            });
        }
    }
    let nodes: BTreeMap<String, String> = task
        .nodes
        .iter()
        .filter_map(|&i| {
            let k = scaled.keys.get(i)?.key?;
            Some((plan.nodes[i].id.clone(), k.hex()))
        })
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let done = Completion {
        key: key.clone(),
        stage: stage_name.to_string(),
        index,
        unit,
        nodes,
        outputs,
        host: records::host(),
        finished: records::now(),
        seconds,
    };
    let bytes = serde_json::to_vec_pretty(&done).unwrap_or_default();
    scaled
        .cache()
        .put_record(&records::done_name(&key), &bytes, true)
        .map_err(|e| CommandError::new(e.exit_code(), e.to_string()))?;
    let run = TaskRun {
        computed: report.with_status(NodeStatus::Computed).len(),
        seconds,
        already_done: false,
    };
    eprintln!(
        "task {label}: {} nodes computed ({} in the task; the rest of what it read was in the \
         cache), {:.1} s",
        run.computed,
        task.nodes.len(),
        run.seconds
    );
    Ok(run)
}

/// Writes (overwrites) the failure record of a task.
fn record_failure(
    scaled: &Scaled,
    (stage, index): (&super::expand::Stage, usize),
    key: &str,
    code: ExitCode,
    message: &str,
    run_id: Option<&str>,
) {
    let failure = Failure {
        key: key.to_string(),
        stage: stage.name.to_string(),
        index,
        exit_code: code.code(),
        retryable: code.retryable(),
        message: flow_core::redact::secrets(message),
        run: run_id.map(String::from),
        host: records::host(),
        finished: records::now(),
    };
    let bytes = serde_json::to_vec_pretty(&failure).unwrap_or_default();
    if let Err(e) = scaled
        .cache()
        .put_record(&records::failed_name(key), &bytes, false)
    {
        eprintln!(
            "warning: cannot record the failure of {}/{index}: {e}",
            stage.name
        );
    }
}
