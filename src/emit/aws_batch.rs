//! AWS Batch: one job definition and one submit-job input per array job.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::{
    attempts, aws_name, cpus, memory_mib, non_retryable_exit_codes, runnable, task_command,
    unique_name, EmitSpec, StageSpec, ENGINE_VAR,
};

/// Longest job or job-definition name AWS Batch accepts.
const MAX_NAME: usize = 128;
/// Most child jobs in one array job (AWS Batch's limit); larger stages are cut into several.
pub(crate) const MAX_ARRAY_SIZE: usize = 10_000;
/// Most attempts AWS Batch's retry strategy accepts.
const MAX_ATTEMPTS: u32 = 10;
/// Most `evaluateOnExit` entries in a retry strategy.
const MAX_EVALUATE_ON_EXIT: usize = 5;
/// The queue used when [`EmitSpec::queue`] is None.
const DEFAULT_QUEUE: &str = "flow";

/// One JSON document (pretty-printed) for `aws batch`:
///
/// - `"submit"`: how to submit it, as lines of text;
/// - `"jobDefinition"`: the input of `register-job-definition`, a `container` job with the image,
///   the environment and the largest stage's resources;
/// - `"jobs"`: the inputs of `submit-job`, in the order to submit them. A stage with one task is a
///   plain job running `--index 0`; a larger one is an array job (`arrayProperties.size`, the task
///   index in `AWS_BATCH_JOB_ARRAY_INDEX`), cut into array jobs of at most 10,000 children with
///   `--index-offset` when it has more (a last chunk of one task is a plain job with its index).
///   Each job overrides the definition's command and resources with its stage's, and depends on
///   every job of the stages it waits for through `"jobId": "${JOB_ID_<jobName>}"` placeholders:
///   the submitter replaces them with the ids that earlier `submit-job` calls returned.
///
/// The retry strategy asks for `max_attempts` attempts (at most AWS's 10) and evaluates the exit:
/// EXIT on each of flow's non-retryable exit codes (exact patterns: `"1"` does not match 130),
/// then RETRY on any reason (`onReason: "*"`). AWS takes the first entry that matches, and retries
/// a job that matches none, so a job killed by a signal or on a reclaimed Spot instance (no exit
/// code) is retried either way.
pub fn aws_batch(spec: &EmitSpec) -> String {
    let definition = aws_name(&spec.name, MAX_NAME);
    let definition = if definition.is_empty() {
        "flow".to_owned()
    } else {
        definition
    };
    let stages = runnable(spec);

    // Every stage's jobs, named first so that dependencies can refer to them.
    let mut used = HashSet::new();
    let mut chunks: HashMap<&str, Vec<Chunk>> = HashMap::new();
    for (stage, _) in &stages {
        let base = unique_name(
            &definition,
            &aws_name(&stage.name, MAX_NAME),
            MAX_NAME,
            &mut used,
        );
        chunks.insert(stage.name.as_str(), chunk(stage, &base, &mut used));
    }

    let retry = retry_strategy(spec);
    let queue = spec.queue.as_deref().unwrap_or(DEFAULT_QUEUE);
    let mut jobs = Vec::new();
    for (stage, after) in &stages {
        let depends_on: Vec<Value> = after
            .iter()
            .flat_map(|a| match chunks.get(a) {
                Some(cs) => cs.iter().map(|c| c.name.clone()).collect(),
                // Not a stage of this spec: a placeholder no submitter can fill, so submission
                // stops here instead of running the stage before what it needs.
                None => vec![aws_name(a, MAX_NAME)],
            })
            .map(|name| json!({ "jobId": format!("${{JOB_ID_{name}}}") }))
            .collect();
        for c in chunks.get(stage.name.as_str()).into_iter().flatten() {
            let mut command = task_command(spec, stage);
            match c.size {
                1 => command.extend(["--index".to_owned(), c.offset.to_string()]),
                _ if c.chunked => {
                    command.extend(["--index-offset".to_owned(), c.offset.to_string()])
                }
                _ => {}
            }
            let mut job = json!({
                "jobName": c.name,
                "jobQueue": queue,
                "jobDefinition": definition,
            });
            if c.size > 1 {
                job["arrayProperties"] = json!({ "size": c.size });
            }
            if !depends_on.is_empty() {
                job["dependsOn"] = json!(depends_on);
            }
            job["retryStrategy"] = retry.clone();
            job["containerOverrides"] = json!({
                "command": command,
                "resourceRequirements": resources(stage),
            });
            jobs.push(job);
        }
    }

    let largest = StageSpec {
        memory_bytes: stages
            .iter()
            .map(|(s, _)| s.memory_bytes)
            .max()
            .unwrap_or(0),
        cpus: stages.iter().map(|(s, _)| s.cpus).max().unwrap_or(1),
        ..StageSpec::default()
    };
    let first_command = stages
        .first()
        .map(|(s, _)| task_command(spec, s))
        .unwrap_or_default();
    let doc = json!({
        "submit": [
            "1. aws batch register-job-definition --cli-input-json with the value of \"jobDefinition\".",
            "2. For each element of \"jobs\", in order: replace every \"${JOB_ID_<jobName>}\" in it by the jobId that submit-job returned for the job named <jobName>, then aws batch submit-job --cli-input-json with it.",
            "A stage's jobs start when every job they depend on has succeeded; a failed one fails its dependents. Resubmitting after a failure reruns only the tasks whose outputs are not in the cache.",
        ],
        "jobDefinition": {
            "jobDefinitionName": definition,
            "type": "container",
            "containerProperties": {
                "image": spec.image,
                "command": first_command,
                "environment": [{ "name": ENGINE_VAR, "value": "aws-batch" }],
                "resourceRequirements": resources(&largest),
            },
            "retryStrategy": retry,
        },
        "jobs": jobs,
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| {
        // A tree of JSON values always serializes; should it not, say so in valid JSON.
        json!({ "error": format!("cannot write the AWS Batch jobs: {e}") }).to_string()
    });
    text.push('\n');
    text
}

/// One submit-job of a stage: `size` tasks from `offset`.
struct Chunk {
    name: String,
    offset: usize,
    size: usize,
    /// The stage is cut into several jobs (each command says its offset).
    chunked: bool,
}

/// The jobs of one stage: one when it fits in an array job, else one per 10,000 tasks named
/// `<base>-0`, `<base>-1`, ….
fn chunk(stage: &StageSpec, base: &str, used: &mut HashSet<String>) -> Vec<Chunk> {
    if stage.tasks <= MAX_ARRAY_SIZE {
        return vec![Chunk {
            name: base.to_owned(),
            offset: 0,
            size: stage.tasks,
            chunked: false,
        }];
    }
    (0..stage.tasks)
        .step_by(MAX_ARRAY_SIZE)
        .enumerate()
        .map(|(i, offset)| Chunk {
            name: unique_name(base, &i.to_string(), MAX_NAME, used),
            offset,
            size: (stage.tasks - offset).min(MAX_ARRAY_SIZE),
            chunked: true,
        })
        .collect()
}

/// `resourceRequirements`: vCPUs and memory in MiB, as the strings AWS expects.
fn resources(stage: &StageSpec) -> Value {
    json!([
        { "type": "VCPU", "value": cpus(stage).to_string() },
        { "type": "MEMORY", "value": memory_mib(stage).to_string() },
    ])
}

/// Attempts and the exit evaluation derived from [`flow_core::ExitCode::retryable`].
fn retry_strategy(spec: &EmitSpec) -> Value {
    let mut evaluate: Vec<Value> = non_retryable_exit_codes()
        .into_iter()
        .map(|code| json!({ "action": "EXIT", "onExitCode": code.to_string() }))
        .collect();
    // The catch-all restates AWS's default (retry what matches nothing); it is left out should
    // the EXIT entries ever fill the five places, where the default still applies.
    if evaluate.len() < MAX_EVALUATE_ON_EXIT {
        evaluate.push(json!({ "action": "RETRY", "onReason": "*" }));
    }
    json!({
        "attempts": attempts(spec).min(MAX_ATTEMPTS),
        "evaluateOnExit": evaluate,
    })
}
