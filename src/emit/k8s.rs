//! Kubernetes: one `batch/v1` Indexed `Job` per stage.
//!
//! Each Job is built as a serde value and serialized by `serde_norway`, the YAML crate the tests
//! parse it back with, so quoting and escaping (a plan path with `: `, a cache URL with `#`) are
//! the serializer's business and never a template's. YAML serializers do not write comments, so the
//! comment that says what each Job waits for is the one part written as text: it is prepended to
//! the serialized document, line by line, each line starting with `# `.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::{
    attempts, cpus, dns1123_label, memory_mib, non_retryable_exit_codes, runnable, task_command,
    unique_name, EmitSpec, StageSpec, DEFAULT_PARALLELISM, ENGINE_VAR,
};

/// Longest Job name: a DNS-1123 label, so that the `job-name` label on its pods and the pods'
/// host names (`<job>-<index>`) stay valid.
const MAX_NAME: usize = 63;
/// The container's name, which the pod failure policy's exit-code rule names.
const CONTAINER: &str = "flow";
/// Label and annotation keys.
const RECIPE_KEY: &str = "flow/recipe";
const STAGE_KEY: &str = "flow/stage";
const AFTER_KEY: &str = "flow/after";

/// A multi-document YAML with one `batch/v1` `Job` per stage that has tasks, in the spec's order.
///
/// Each Job is Indexed (`completions` = tasks, `JOB_COMPLETION_INDEX` in every pod is the task
/// index), runs `flow task run` in a container named `flow` with `restartPolicy: Never`, and
/// retries per index: `backoffLimitPerIndex` = attempts − 1, a pod failure policy that fails the
/// index at once on flow's non-retryable exit codes and ignores (retries without counting) pods
/// that the cluster disrupted (preemption, eviction, node drain).
///
/// `maxFailedIndexes` is left unset on purpose: a failed index still makes the Job `Failed`
/// (never `Complete`), so the stages after it do not start, but the other indices run to their
/// end and their outputs land in the cache, so that a rerun after the fix only has the failed
/// tasks left. Kubernetes has no dependency between Jobs, so each document starts with a comment
/// saying which Jobs must be complete before it is applied, with the `kubectl wait` lines; the
/// stages it waits for are also in its `flow/after` annotation.
///
/// Needs Kubernetes 1.29 or later, where `backoffLimitPerIndex` and the `FailIndex` action are on
/// by default (stable from 1.33; pod failure policies themselves from 1.31).
pub fn kubernetes(spec: &EmitSpec) -> String {
    let recipe = dns1123_label(&spec.name, MAX_NAME);
    let stages = runnable(spec);
    let mut used = HashSet::new();
    let names: HashMap<&str, String> = stages
        .iter()
        .map(|(s, _)| {
            let stage = dns1123_label(&s.name, MAX_NAME);
            (
                s.name.as_str(),
                unique_name(&recipe, &stage, MAX_NAME, &mut used),
            )
        })
        .collect();
    let job_name = |stage: &str| -> String {
        names.get(stage).cloned().unwrap_or_else(|| {
            unique_name(
                &recipe,
                &dns1123_label(stage, MAX_NAME),
                MAX_NAME,
                &mut HashSet::new(),
            )
        })
    };

    let mut out = String::new();
    for (stage, after) in &stages {
        let name = job_name(&stage.name);
        let waits: Vec<String> = after.iter().map(|a| job_name(a)).collect();
        if !out.is_empty() {
            out.push_str("---\n");
        }
        for line in comment(spec, stage, &name, after, &waits) {
            out.push_str("# ");
            out.push_str(&line);
            out.push('\n');
        }
        let job = job(spec, stage, &name, &recipe, after);
        match serde_norway::to_string(&job) {
            Ok(yaml) => out.push_str(&yaml),
            // Serializing a tree of JSON values (string keys, no floats) cannot fail; should it,
            // the reason is written where the document would be, so `kubectl` rejects the file.
            Err(e) => out.push_str(&format!("# cannot write this Job: {e}\n")),
        }
    }
    out
}

/// The comment lines above one Job.
fn comment(
    spec: &EmitSpec,
    stage: &StageSpec,
    name: &str,
    after: &[&str],
    waits: &[String],
) -> Vec<String> {
    let mut lines = vec![format!(
        "Stage `{}` of recipe `{}`: {} task(s), Job {name}.",
        stage.name, spec.name, stage.tasks
    )];
    if after.is_empty() {
        lines.push("It waits for no other stage: apply it first.".to_owned());
        return lines;
    }
    lines.push(format!(
        "It waits for stage(s) {}. Kubernetes has no dependency between Jobs: apply this",
        after
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    lines.push("document only after these commands have returned:".to_owned());
    let namespace = spec
        .queue
        .as_deref()
        .map(|q| format!(" -n {q}"))
        .unwrap_or_default();
    for wait in waits {
        lines.push(format!(
            "  kubectl wait{namespace} --for=condition=complete --timeout=-1s job/{wait}"
        ));
    }
    lines.push(
        "If one of them fails instead, fix the cause and apply again: tasks whose outputs are in"
            .to_owned(),
    );
    lines.push("the cache are not run again.".to_owned());
    lines
}

/// The Job of one stage, as a value to serialize.
fn job(spec: &EmitSpec, stage: &StageSpec, name: &str, recipe: &str, after: &[&str]) -> Value {
    let stage_label = dns1123_label(&stage.name, MAX_NAME);
    let labels = json!({
        "app.kubernetes.io/name": "flow",
        RECIPE_KEY: recipe,
        STAGE_KEY: stage_label,
    });
    let mut metadata = json!({ "name": name });
    if let Some(namespace) = &spec.queue {
        metadata["namespace"] = json!(namespace);
    }
    metadata["labels"] = labels.clone();
    metadata["annotations"] = json!({
        RECIPE_KEY: spec.name,
        STAGE_KEY: stage.name,
        AFTER_KEY: after.join(","),
    });

    let tasks = stage.tasks;
    let cap = spec.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1);
    let parallelism = tasks.min(usize::try_from(cap).unwrap_or(usize::MAX));
    let memory = format!("{}Mi", memory_mib(stage));
    let cpu = cpus(stage).to_string();
    let resources = json!({ "cpu": cpu, "memory": memory });

    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": tasks,
            "parallelism": parallelism,
            "backoffLimitPerIndex": attempts(spec) - 1,
            "podFailurePolicy": {
                // The first rule that matches decides. A pod the cluster disrupted (preempted,
                // evicted, its node drained) is run again without counting, whatever code it
                // exited with on the way down; then flow's non-retryable codes fail the index at
                // once; any other failure (4, 5, 130, a kill by a signal: 137, 143) counts
                // against `backoffLimitPerIndex`.
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{ "type": "DisruptionTarget" }],
                    },
                    {
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": non_retryable_exit_codes(),
                        },
                    },
                ],
            },
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": CONTAINER,
                        "image": spec.image,
                        "command": task_command(spec, stage),
                        "env": [{ "name": ENGINE_VAR, "value": "kubernetes" }],
                        // Limits equal to requests: the pod is in the Guaranteed QoS class, the
                        // last to be evicted when a node runs short of memory.
                        "resources": { "requests": resources.clone(), "limits": resources },
                    }],
                },
            },
        },
    })
}
