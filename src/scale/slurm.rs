//! The Slurm executor: each stage's tasks become job arrays submitted with `sbatch` (a stage
//! waits for the jobs of the stage before it with `--dependency=afterok`, and is cancelled
//! rather than left pending when one of them fails), chunked by the site's `MaxArraySize`.
//! Once every job has left the queue, the completion records in the cache say which tasks are
//! done; only the others are submitted again, up to `--max-attempts`, and never a task whose
//! last attempt in this run failed with an exit code that is not retryable (2, 3: the recipe or
//! the data is wrong, and will be wrong again).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flow_core::ExitCode;
use serde::Serialize;

use super::plan_file::PlanFile;
use super::records::TaskState;
use crate::error::CommandError;

/// How to submit.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// Attempts per task, the first included.
    pub max_attempts: u32,
    /// Extra `sbatch` arguments (`--partition=...`, `--time=...`).
    pub sbatch_args: Vec<String>,
    /// The `flow` executable the jobs run.
    pub flow: PathBuf,
    /// Seconds between two looks at the queue.
    pub poll: Duration,
}

/// One `sbatch` of a stage.
#[derive(Debug, Clone, Serialize)]
pub struct Submission {
    /// The stage.
    pub stage: String,
    /// The job id Slurm gave it.
    pub job: String,
    /// The task indices it runs.
    pub indices: Vec<usize>,
}

/// What a Slurm run did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SlurmRun {
    /// The run's id (`FLOW_RUN_ID` in the jobs' environment).
    pub run: String,
    /// Per attempt, its submissions.
    pub attempts: Vec<Vec<Submission>>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Tasks done at the end, of all.
    pub done: usize,
    /// Tasks in the plan.
    pub tasks: usize,
}

fn tool_error(tool: &str, e: impl std::fmt::Display) -> CommandError {
    CommandError::new(
        ExitCode::Remote,
        format!("cannot run `{tool}` (is Slurm's client installed and SLURM_CONF set?): {e}"),
    )
}

/// Runs `tool args`, returning its stdout; a failure is exit 4 with its stderr.
fn slurm(tool: &str, args: &[String]) -> Result<String, CommandError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| tool_error(tool, e))?;
    if !out.status.success() {
        return Err(CommandError::new(
            ExitCode::Remote,
            format!(
                "`{tool} {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The site's `MaxArraySize` (array indices are below it), from `scontrol show config`.
pub fn max_array_size() -> Result<usize, CommandError> {
    let config = slurm("scontrol", &["show".into(), "config".into()])?;
    Ok(config
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(1001))
}

/// `0-3,5,7-8` for the sorted indices.
pub fn array_spec(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Indices split into chunks that fit under `max` (Slurm's `MaxArraySize`): `(offset, indices
/// minus offset)` with every shifted index below `max`.
pub fn chunks(indices: &[usize], max: usize) -> Vec<(usize, Vec<usize>)> {
    let max = max.max(1);
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in indices {
        let offset = i / max * max;
        match out.last_mut() {
            Some((o, list)) if *o == offset => list.push(i - offset),
            _ => out.push((offset, vec![i - offset])),
        }
    }
    out
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes the batch script of a stage: `flow task run` with the index from Slurm.
fn script(
    dir: &Path,
    plan_path: &Path,
    plan: &PlanFile,
    stage: &str,
    flow: &Path,
) -> Result<PathBuf, CommandError> {
    let mut cmd = format!(
        "exec {} task run --plan {} --stage {}",
        shell_quote(&flow.display().to_string()),
        shell_quote(&plan_path.display().to_string()),
        shell_quote(stage)
    );
    if let Some(url) = &plan.cache {
        cmd.push_str(&format!(" --cache {}", shell_quote(url)));
    }
    let text = format!(
        "#!/bin/sh\n# flow: stage `{stage}` of {}; the task index is SLURM_ARRAY_TASK_ID plus FLOW_TASK_INDEX_OFFSET.\n{cmd}\n",
        plan.name
    );
    let path = dir.join(format!("{stage}.sh"));
    flow_core::atomic::write_atomic(&path, text.as_bytes())
        .map_err(|e| CommandError::io(format!("cannot write {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
    }
    Ok(path)
}

/// Waits until none of `jobs` is in the queue.
fn wait(jobs: &[String], poll: Duration) -> Result<(), CommandError> {
    if jobs.is_empty() {
        return Ok(());
    }
    loop {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i", "-j", &jobs.join(",")])
            .output()
            .map_err(|e| tool_error("squeue", e))?;
        let listed = String::from_utf8_lossy(&out.stdout);
        // squeue refuses ids it no longer knows: those jobs are gone too.
        if listed.trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

/// Runs every task of the plan at `plan_path` on Slurm until all are done, a task fails in a
/// way that is not retried, or attempts run out.
///
/// # Errors
/// Exit 4 when Slurm cannot be reached; a failed task's code when it is not retryable, or when
/// tasks are still missing after the last attempt.
pub fn run(
    plan_path: &Path,
    plan: &PlanFile,
    cache: &flow_engine::Cache,
    options: &SlurmOptions,
) -> Result<SlurmRun, CommandError> {
    let started = Instant::now();
    let dir = plan.out_dir.join(".flow").join("slurm");
    std::fs::create_dir_all(&dir)
        .map_err(|e| CommandError::io(format!("cannot create {}: {e}", dir.display())))?;
    let max = max_array_size()?;
    let run_id = format!("{}-{}", super::records::now(), std::process::id());
    let mut report = SlurmRun {
        run: run_id.clone(),
        tasks: plan.stages.iter().map(|s| s.tasks.len()).sum(),
        ..SlurmRun::default()
    };
    let mut scripts = Vec::new();
    for stage in &plan.stages {
        scripts.push(script(&dir, plan_path, plan, &stage.name, &options.flow)?);
    }
    let mut last_failure: Option<(ExitCode, String)> = None;
    // One look more than attempts: the last one only reads the records.
    for attempt in 1..=options.max_attempts.max(1) + 1 {
        let states = super::status::states(plan, cache);
        // Failures of this run that must not be retried stop it.
        for (stage, i, f) in failures_of(&states, &run_id) {
            let code = ExitCode::from_code(f.exit_code).unwrap_or(ExitCode::NodeFailed);
            last_failure = Some((code, format!("task {stage}/{i}: {}", f.message)));
            if !f.retryable {
                report.seconds = started.elapsed().as_secs_f64();
                report.done = count_done(&states);
                write_report(&dir, &report);
                return Err(CommandError::new(
                    code,
                    format!("{} (exit {} is not retried)", f.message, f.exit_code),
                ));
            }
        }
        let missing: Vec<(usize, Vec<usize>)> = states
            .iter()
            .enumerate()
            .map(|(s, (_, list))| {
                let idx = list
                    .iter()
                    .enumerate()
                    .filter(|(_, st)| !matches!(st, TaskState::Done(_)))
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>();
                (s, idx)
            })
            .filter(|(_, idx)| !idx.is_empty())
            .collect();
        if missing.is_empty() || attempt > options.max_attempts.max(1) {
            break;
        }
        let mut submitted: Vec<Submission> = Vec::new();
        let mut previous: Vec<String> = Vec::new();
        for (s, indices) in &missing {
            let stage = &plan.stages[*s].name;
            let mut these = Vec::new();
            for (offset, list) in chunks(indices, max) {
                let mut args = vec![
                    "--parsable".to_string(),
                    format!("--job-name=flow-{}-{stage}", plan.name),
                    format!("--array={}", array_spec(&list)),
                    format!("--output={}/{stage}-%a-%A.log", dir.display()),
                    "--kill-on-invalid-dep=yes".into(),
                    format!("--export=ALL,FLOW_RUN_ID={run_id},FLOW_TASK_INDEX_OFFSET={offset}"),
                ];
                if !previous.is_empty() {
                    args.push(format!("--dependency=afterok:{}", previous.join(":")));
                }
                args.extend(options.sbatch_args.iter().cloned());
                args.push(scripts[*s].display().to_string());
                let out = slurm("sbatch", &args)?;
                let job = out.trim().split(';').next().unwrap_or("").to_string();
                if job.is_empty() {
                    return Err(CommandError::new(
                        ExitCode::Remote,
                        format!("sbatch printed no job id for stage `{stage}`"),
                    ));
                }
                let real: Vec<usize> = list.iter().map(|i| i + offset).collect();
                eprintln!(
                    "slurm: attempt {attempt}: stage {stage}: job {job}, tasks {}",
                    array_spec(&real)
                );
                these.push(job.clone());
                submitted.push(Submission {
                    stage: stage.clone(),
                    job,
                    indices: real,
                });
            }
            previous = these;
        }
        let jobs: Vec<String> = submitted.iter().map(|s| s.job.clone()).collect();
        report.attempts.push(submitted);
        write_report(&dir, &report);
        wait(&jobs, options.poll)?;
    }
    let states = super::status::states(plan, cache);
    report.done = count_done(&states);
    report.seconds = started.elapsed().as_secs_f64();
    write_report(&dir, &report);
    if report.done < report.tasks {
        let (code, why) = last_failure.unwrap_or((
            ExitCode::NodeFailed,
            "tasks left the queue without completing (killed or cancelled)".into(),
        ));
        return Err(CommandError::new(
            code,
            format!(
                "{} of {} tasks are not done after {} attempts; last failure: {why}; logs in {}",
                report.tasks - report.done,
                report.tasks,
                report.attempts.len(),
                dir.display()
            ),
        ));
    }
    Ok(report)
}

/// The failures recorded by run `run_id`: `(stage, index, failure)`.
fn failures_of<'a>(
    states: &'a [(String, Vec<TaskState>)],
    run_id: &'a str,
) -> impl Iterator<Item = (&'a str, usize, &'a super::records::Failure)> {
    states.iter().flat_map(move |(stage, list)| {
        list.iter().enumerate().filter_map(move |(i, s)| match s {
            TaskState::Failed(f) if f.run.as_deref() == Some(run_id) => {
                Some((stage.as_str(), i, f.as_ref()))
            }
            _ => None,
        })
    })
}

fn count_done(states: &[(String, Vec<TaskState>)]) -> usize {
    states
        .iter()
        .flat_map(|(_, l)| l)
        .filter(|s| matches!(s, TaskState::Done(_)))
        .count()
}

fn write_report(dir: &Path, report: &SlurmRun) {
    let path = dir.join("run.json");
    if let Err(e) = crate::report::write_json_atomic(&path, report) {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_compress_runs() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[0, 2, 3, 7]), "0,2-3,7");
        assert_eq!(array_spec(&[5]), "5");
    }

    #[test]
    fn chunks_keep_every_index_below_the_maximum() {
        let idx: Vec<usize> = (0..2500).filter(|i| i % 7 != 3).collect();
        let c = chunks(&idx, 1001);
        assert_eq!(
            c.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![0, 1001, 2002]
        );
        let back: Vec<usize> = c
            .iter()
            .flat_map(|(o, l)| l.iter().map(move |i| i + o))
            .collect();
        assert_eq!(back, idx);
        assert!(c.iter().all(|(_, l)| l.iter().all(|&i| i < 1001)));
    }
}
