//! Job descriptions for engines that flow does not drive itself: [`kubernetes`] writes one
//! Indexed `Job` per stage (YAML), [`aws_batch`] writes a job definition and one submit-job input
//! per array job (JSON). Both run the same command per task as every other executor,
//! `flow task run --plan PLAN --stage STAGE [--cache URL]`, with the task index taken from the
//! engine's own variable (`JOB_COMPLETION_INDEX`, `AWS_BATCH_JOB_ARRAY_INDEX`), and both derive
//! their retry rules from [`ExitCode::retryable`]: a task that exits with a non-retryable code
//! fails at once, anything else (4, 5, 130, a kill by a signal, a lost node) is run again up to
//! [`EmitSpec::max_attempts`] times.
//!
//! Nothing here talks to a cluster: the output is text for `kubectl apply` / `aws batch`.
//!
//! # Example
//! ```
//! use flow::emit::{self, EmitSpec, StageSpec};
//!
//! let spec = EmitSpec {
//!     name: "ndvi".into(),
//!     image: "example.org/flow:1".into(),
//!     plan: "/plans/ndvi.json".into(),
//!     max_attempts: 3,
//!     stages: vec![StageSpec {
//!         name: "map".into(),
//!         tasks: 8,
//!         memory_bytes: 1 << 30,
//!         cpus: 2,
//!         ..StageSpec::default()
//!     }],
//!     ..EmitSpec::default()
//! };
//! assert!(emit::kubernetes(&spec).contains("completionMode: Indexed"));
//! assert!(emit::aws_batch(&spec).contains("\"size\": 8"));
//! ```

mod aws_batch;
mod k8s;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use flow_core::ExitCode;

pub use aws_batch::aws_batch;
pub use k8s::kubernetes;

/// One stage as an engine runs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageSpec {
    /// Stage name (`sample`, `fit`, `map`): the `--stage` argument.
    pub name: String,
    /// Tasks in the stage: indices 0..tasks. A stage with no task is left out of the output, and
    /// the stages that wait for it wait for what it waited for instead.
    pub tasks: usize,
    /// Stages this one waits for (all their tasks succeeded). They come earlier in
    /// [`EmitSpec::stages`]; a name that is not there is still emitted as a dependency (a Job name
    /// to wait for, a `${JOB_ID_…}` placeholder), so that the submission fails rather than
    /// starting the stage early.
    pub after: Vec<String>,
    /// Peak memory of the stage's largest task, bytes (flow's estimate). Requested rounded up to
    /// MiB, at least [`MIN_MEMORY_MIB`].
    pub memory_bytes: u64,
    /// Threads a task uses (0 is taken as 1).
    pub cpus: u32,
}

/// Everything an emitter needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmitSpec {
    /// The recipe's name; job names derive from it (sanitized to what each engine accepts: DNS-1123
    /// labels for Kubernetes, [A-Za-z0-9_-]{1,128} for AWS Batch).
    pub name: String,
    /// Container image that has `flow` on its PATH.
    pub image: String,
    /// The plan file as the tasks see it.
    pub plan: String,
    /// The shared cache URL (`--cache`), if any.
    pub cache: Option<String>,
    /// Attempts per task (first run included). 0 is taken as 1; AWS Batch accepts at most 10, so
    /// its jobs ask for `min(max_attempts, 10)`.
    pub max_attempts: u32,
    /// Stages in order.
    pub stages: Vec<StageSpec>,
    /// AWS Batch job queue and Kubernetes namespace (None: default namespace / a queue named
    /// "flow").
    pub queue: Option<String>,
    /// Most pods of one Kubernetes Job running at once (`spec.parallelism`, capped by the stage's
    /// task count). Default (None): [`DEFAULT_PARALLELISM`]. AWS Batch has no per-job limit: its
    /// compute environment's vCPUs bound the array instead.
    pub parallelism: Option<u32>,
}

/// Pods of one stage that Kubernetes runs at once unless [`EmitSpec::parallelism`] says otherwise:
/// enough to fill a modest node pool, few enough that a stage of thousands of tiles does not put
/// thousands of pending pods in front of the scheduler.
pub const DEFAULT_PARALLELISM: u32 = 64;

/// The least memory a task asks for, MiB: the `flow` process with GDAL loaded takes tens of MiB
/// before it reads a pixel, so a smaller estimate would only get the container killed.
pub const MIN_MEMORY_MIB: u64 = 128;

/// The environment variable that tells a task which engine started it (informative: the index
/// variable is what `flow task run` reads).
pub(crate) const ENGINE_VAR: &str = "FLOW_TASK_ENGINE";

/// Flow's exit codes on which a task must not be run again, in numeric order: the failures that a
/// rerun of the same task would repeat (see [`ExitCode::retryable`]). Success is no failure and is
/// not listed.
pub fn non_retryable_exit_codes() -> Vec<i32> {
    ExitCode::ALL
        .into_iter()
        .filter(|c| *c != ExitCode::Ok && !c.retryable())
        .map(ExitCode::code)
        .collect()
}

/// Attempts per task, at least one.
pub(crate) fn attempts(spec: &EmitSpec) -> u32 {
    spec.max_attempts.max(1)
}

/// The stage's memory estimate in whole MiB, rounded up, at least [`MIN_MEMORY_MIB`].
pub(crate) fn memory_mib(stage: &StageSpec) -> u64 {
    stage.memory_bytes.div_ceil(1 << 20).max(MIN_MEMORY_MIB)
}

/// Threads a task uses, at least one.
pub(crate) fn cpus(stage: &StageSpec) -> u32 {
    stage.cpus.max(1)
}

/// `flow task run --plan PLAN --stage STAGE [--cache URL]`: the command every task of `stage`
/// runs; the index comes from the engine (`--index` / `--index-offset` are the caller's to add).
pub(crate) fn task_command(spec: &EmitSpec, stage: &StageSpec) -> Vec<String> {
    let mut argv: Vec<String> = [
        "flow",
        "task",
        "run",
        "--plan",
        &spec.plan,
        "--stage",
        &stage.name,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if let Some(cache) = &spec.cache {
        argv.push("--cache".to_owned());
        argv.push(cache.clone());
    }
    argv
}

/// The stages that are emitted (those with at least one task), each with the names of the stages
/// it waits for among them: a dependency on a stage with no task is replaced by that stage's own
/// dependencies, transitively; unknown names are kept (see [`StageSpec::after`]).
pub(crate) fn runnable(spec: &EmitSpec) -> Vec<(&StageSpec, Vec<&str>)> {
    spec.stages
        .iter()
        .filter(|s| s.tasks > 0)
        .map(|s| {
            let mut after = Vec::new();
            let mut seen = HashSet::new();
            for name in &s.after {
                resolve_after(spec, name, &mut seen, &mut after);
            }
            (s, after)
        })
        .collect()
}

fn resolve_after<'a>(
    spec: &'a EmitSpec,
    name: &'a str,
    seen: &mut HashSet<&'a str>,
    out: &mut Vec<&'a str>,
) {
    if !seen.insert(name) {
        return;
    }
    match spec.stages.iter().find(|s| s.name == name) {
        Some(stage) if stage.tasks == 0 => {
            for up in &stage.after {
                resolve_after(spec, up, seen, out);
            }
        }
        _ => out.push(name),
    }
}

/// `text` as a DNS-1123 label (RFC 1123: lowercase letters, digits and `-`, starting and ending
/// with a letter or digit), at most `max` characters: letters are lowercased, every run of other
/// characters becomes one `-`. Empty when `text` has no letter or digit.
pub(crate) fn dns1123_label(text: &str, max: usize) -> String {
    squeeze(text.chars().map(|c| c.to_ascii_lowercase()), max, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit()
    })
}

/// `text` in AWS Batch's name alphabet (letters, digits, `-`, `_`), starting and ending with a
/// letter or digit, at most `max` characters; every run of other characters becomes one `-`.
pub(crate) fn aws_name(text: &str, max: usize) -> String {
    let kept = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let s = squeeze(text.chars(), max, kept);
    s.trim_matches('_').to_owned()
}

/// Keeps the characters `keep` accepts, turns each run of others into one `-`, trims `-` from both
/// ends and cuts to `max` characters (trimming again).
fn squeeze(chars: impl Iterator<Item = char>, max: usize, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in chars {
        if keep(c) {
            if gap && !out.is_empty() {
                out.push('-');
            }
            gap = false;
            out.push(c);
        } else {
            gap = true;
        }
    }
    cut(&out, max)
}

/// `s` cut to `max` ASCII characters, without a trailing `-` or `_`.
fn cut(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .collect::<String>()
        .trim_end_matches(['-', '_'])
        .to_owned()
}

/// `<recipe>-<stage>` (either part dropped when empty, `flow` when both are) within `max`
/// characters: the recipe part is shortened first so the stage stays readable, then `-2`, `-3`…
/// is appended until the name is not in `used`. The name returned is added to `used`.
pub(crate) fn unique_name(
    recipe: &str,
    stage: &str,
    max: usize,
    used: &mut HashSet<String>,
) -> String {
    let stage = cut(stage, max / 2);
    let mut base = String::new();
    for n in 1usize.. {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let room = max.saturating_sub(suffix.len());
        let tail = if stage.is_empty() {
            String::new()
        } else {
            format!("-{stage}")
        };
        let head = cut(recipe, room.saturating_sub(tail.len()));
        base = match (head.is_empty(), stage.is_empty()) {
            (false, false) => format!("{head}{tail}"),
            (false, true) => head,
            (true, false) => cut(&stage, room),
            (true, true) => "flow".to_owned(),
        };
        base.push_str(&suffix);
        if used.insert(base.clone()) {
            break;
        }
    }
    base
}
