use serde::Deserialize;
use serde_json::Value;

use super::*;

fn stage(name: &str, tasks: usize, after: &[&str]) -> StageSpec {
    StageSpec {
        name: name.into(),
        tasks,
        after: after.iter().map(|s| s.to_string()).collect(),
        memory_bytes: 700 * (1 << 20) + 1,
        cpus: 2,
    }
}

/// sample (4 tasks) -> fit (1 task) -> map (`map_tasks` tasks), cache on S3.
fn spec(name: &str, map_tasks: usize) -> EmitSpec {
    EmitSpec {
        name: name.into(),
        image: "registry.example.org/flow:0.1.0".into(),
        plan: "/plans/timberlea.plan.json".into(),
        cache: Some("s3://bucket/flow".into()),
        max_attempts: 3,
        stages: vec![
            stage("sample", 4, &[]),
            stage("fit", 1, &["sample"]),
            stage("map", map_tasks, &["fit"]),
        ],
        queue: None,
        parallelism: None,
    }
}

/// Flow's failures that must not be retried, computed here from the codes themselves.
fn fatal_codes() -> Vec<i64> {
    ExitCode::ALL
        .into_iter()
        .filter(|c| *c != ExitCode::Ok && !c.retryable())
        .map(|c| i64::from(c.code()))
        .collect()
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("each document parses as YAML"))
        .collect()
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn is_aws_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect()
}

/// The value after `flag` in `argv`.
fn flag<'a>(argv: &[&'a str], flag: &str) -> Option<&'a str> {
    argv.iter().position(|a| *a == flag).map(|i| argv[i + 1])
}

#[test]
fn kubernetes_snapshot() {
    insta::assert_snapshot!(kubernetes(&spec("timberlea", 4)));
}

#[test]
fn aws_batch_snapshot() {
    insta::assert_snapshot!(aws_batch(&spec("timberlea", 4)));
}

#[test]
fn exit_codes_that_end_a_task_are_flows_non_retryable_failures() {
    assert_eq!(non_retryable_exit_codes(), [1, 2, 3, 6]);
    let fatal: Vec<i64> = non_retryable_exit_codes()
        .into_iter()
        .map(i64::from)
        .collect();
    assert_eq!(fatal, fatal_codes());
}

#[test]
fn kubernetes_jobs_have_what_an_indexed_job_needs() {
    let spec = spec("timberlea", 4);
    let text = kubernetes(&spec);
    let docs = yaml_docs(&text);
    assert_eq!(docs.len(), 3);
    let fatal = fatal_codes();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["timberlea-sample", "timberlea-fit", "timberlea-map"]
    );

    for (doc, stage) in docs.iter().zip(&spec.stages) {
        assert_eq!(doc["apiVersion"], "batch/v1");
        assert_eq!(doc["kind"], "Job");
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert!(is_dns1123_label(name), "{name}");
        assert_eq!(doc["metadata"]["labels"]["flow/stage"], stage.name.as_str());
        assert_eq!(
            doc["metadata"]["annotations"]["flow/after"],
            stage.after.join(",")
        );
        assert!(doc["metadata"].get("namespace").is_none());

        let s = &doc["spec"];
        assert_eq!(s["completionMode"], "Indexed");
        assert_eq!(s["completions"], stage.tasks);
        assert_eq!(s["parallelism"], stage.tasks);
        assert_eq!(s["backoffLimitPerIndex"], 2);
        assert!(s.get("maxFailedIndexes").is_none());

        let rules = s["podFailurePolicy"]["rules"].as_array().unwrap();
        let fail: Vec<&Value> = rules
            .iter()
            .filter(|r| r["action"] == "FailIndex")
            .collect();
        assert_eq!(fail.len(), 1);
        let on = &fail[0]["onExitCodes"];
        assert_eq!(on["containerName"], "flow");
        assert_eq!(on["operator"], "In");
        let values: Vec<i64> = on["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(values, fatal);
        for retryable in [0, 4, 5, 130, 137] {
            assert!(!values.contains(&retryable), "{retryable} must be retried");
        }
        let ignore: Vec<&Value> = rules.iter().filter(|r| r["action"] == "Ignore").collect();
        assert_eq!(ignore.len(), 1);
        assert_eq!(ignore[0]["onPodConditions"][0]["type"], "DisruptionTarget");

        let pod = &s["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let c = &pod["containers"][0];
        assert_eq!(c["name"], "flow");
        assert_eq!(c["image"], spec.image.as_str());
        let argv = strings(&c["command"]);
        assert_eq!(argv[..3], ["flow", "task", "run"]);
        assert_eq!(flag(&argv, "--plan"), Some(spec.plan.as_str()));
        assert_eq!(flag(&argv, "--stage"), Some(stage.name.as_str()));
        assert_eq!(flag(&argv, "--cache"), Some("s3://bucket/flow"));
        // The index comes from JOB_COMPLETION_INDEX, which `flow task run` reads itself.
        assert_eq!(flag(&argv, "--index"), None);
        assert_eq!(c["env"][0]["name"], "FLOW_TASK_ENGINE");
        assert_eq!(c["env"][0]["value"], "kubernetes");
        assert_eq!(c["resources"]["requests"]["memory"], "701Mi");
        assert_eq!(c["resources"]["limits"]["memory"], "701Mi");
        assert_eq!(c["resources"]["requests"]["cpu"], "2");
    }

    // Each document after the first says what to wait for before applying it.
    let parts: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(parts.len(), 3);
    assert!(parts[0].starts_with("# Stage `sample`"));
    assert!(!parts[0].contains("kubectl wait"));
    assert!(parts[1].contains(
        "#   kubectl wait --for=condition=complete --timeout=-1s job/timberlea-sample\n"
    ));
    assert!(parts[2]
        .contains("#   kubectl wait --for=condition=complete --timeout=-1s job/timberlea-fit\n"));
}

#[test]
fn kubernetes_namespace_parallelism_and_attempts() {
    let mut spec = spec("timberlea", 500);
    spec.queue = Some("eo".into());
    spec.parallelism = Some(10);
    spec.max_attempts = 0;
    let text = kubernetes(&spec);
    let docs = yaml_docs(&text);
    assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "eo"));
    assert_eq!(docs[0]["spec"]["parallelism"], 4);
    assert_eq!(docs[2]["spec"]["parallelism"], 10);
    assert_eq!(docs[2]["spec"]["completions"], 500);
    assert!(docs.iter().all(|d| d["spec"]["backoffLimitPerIndex"] == 0));
    assert!(text.contains("kubectl wait -n eo --for=condition=complete"));

    spec.parallelism = None;
    let docs = yaml_docs(&kubernetes(&spec));
    assert_eq!(
        docs[2]["spec"]["parallelism"],
        u64::from(DEFAULT_PARALLELISM)
    );
}

#[test]
fn aws_batch_array_jobs_are_chunked_depend_on_their_stages_and_retry_by_exit_code() {
    let spec = spec("timberlea", 25_000);
    let doc: Value = serde_json::from_str(&aws_batch(&spec)).expect("valid JSON");
    assert!(doc["submit"]
        .as_array()
        .is_some_and(|lines| !lines.is_empty()));

    let def = &doc["jobDefinition"];
    assert_eq!(def["jobDefinitionName"], "timberlea");
    assert_eq!(def["type"], "container");
    assert_eq!(def["containerProperties"]["image"], spec.image.as_str());
    assert_eq!(
        def["containerProperties"]["environment"][0]["name"],
        "FLOW_TASK_ENGINE"
    );
    assert_eq!(
        def["containerProperties"]["environment"][0]["value"],
        "aws-batch"
    );

    let jobs = doc["jobs"].as_array().unwrap();
    let names: Vec<&str> = jobs
        .iter()
        .map(|j| j["jobName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "timberlea-sample",
            "timberlea-fit",
            "timberlea-map-0",
            "timberlea-map-1",
            "timberlea-map-2"
        ]
    );
    for j in jobs {
        assert!(is_aws_name(j["jobName"].as_str().unwrap()));
        assert_eq!(j["jobQueue"], "flow");
        assert_eq!(j["jobDefinition"], "timberlea");
        let reqs = j["containerOverrides"]["resourceRequirements"]
            .as_array()
            .unwrap();
        assert!(reqs.contains(&serde_json::json!({ "type": "VCPU", "value": "2" })));
        assert!(reqs.contains(&serde_json::json!({ "type": "MEMORY", "value": "701" })));

        let retry = &j["retryStrategy"];
        assert_eq!(retry["attempts"], 3);
        let eval = retry["evaluateOnExit"].as_array().unwrap();
        assert!(eval.len() <= 5, "AWS takes at most 5 entries");
        let exits: Vec<i64> = eval
            .iter()
            .filter(|e| e["action"] == "EXIT")
            .map(|e| e["onExitCode"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(exits, fatal_codes());
        // Exit patterns are digits only (no `*`, which would also catch 130 with "1*").
        for e in eval.iter().filter_map(|e| e["onExitCode"].as_str()) {
            assert!(e.bytes().all(|b| b.is_ascii_digit()), "{e}");
        }
        // The catch-all comes last: AWS takes the first entry that matches.
        let last = eval.last().unwrap();
        assert_eq!(last["action"], "RETRY");
        assert_eq!(last["onReason"], "*");
    }

    let argv = |j: &Value| -> Vec<String> {
        strings(&j["containerOverrides"]["command"])
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let deps = |j: &Value| -> Vec<String> {
        j["dependsOn"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|x| x["jobId"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };

    let sample = &jobs[0];
    assert_eq!(sample["arrayProperties"]["size"], 4);
    assert!(sample.get("dependsOn").is_none());
    let a = argv(sample);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_eq!(flag(&a, "--stage"), Some("sample"));
    assert_eq!(flag(&a, "--plan"), Some(spec.plan.as_str()));
    assert_eq!(flag(&a, "--cache"), Some("s3://bucket/flow"));
    assert_eq!(flag(&a, "--index"), None);
    assert_eq!(flag(&a, "--index-offset"), None);

    let fit = &jobs[1];
    assert!(
        fit.get("arrayProperties").is_none(),
        "one task is a plain job"
    );
    let a = argv(fit);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_eq!(flag(&a, "--index"), Some("0"));
    assert_eq!(deps(fit), ["${JOB_ID_timberlea-sample}"]);

    let mut offsets = Vec::new();
    let mut sizes = Vec::new();
    for j in &jobs[2..] {
        sizes.push(j["arrayProperties"]["size"].as_u64().unwrap());
        let a = argv(j);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        assert_eq!(flag(&a, "--stage"), Some("map"));
        offsets.push(flag(&a, "--index-offset").unwrap().parse::<u64>().unwrap());
        assert_eq!(deps(j), ["${JOB_ID_timberlea-fit}"]);
    }
    assert_eq!(offsets, [0, 10_000, 20_000]);
    assert_eq!(sizes, [10_000, 10_000, 5_000]);
}

#[test]
fn aws_batch_waits_for_every_chunk_and_runs_a_lone_last_task_as_a_plain_job() {
    let mut spec = spec("t", 10_001);
    spec.stages.push(stage("report", 2, &["map"]));
    spec.queue = Some("spot".into());
    spec.max_attempts = 25;
    let doc: Value = serde_json::from_str(&aws_batch(&spec)).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    assert_eq!(jobs[2]["arrayProperties"]["size"], 10_000);
    assert!(jobs[3].get("arrayProperties").is_none());
    let last = strings(&jobs[3]["containerOverrides"]["command"]);
    assert_eq!(flag(&last, "--index"), Some("10000"));
    assert_eq!(flag(&last, "--index-offset"), None);
    let deps: Vec<&str> = jobs[4]["dependsOn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(deps, ["${JOB_ID_t-map-0}", "${JOB_ID_t-map-1}"]);
    assert!(jobs.iter().all(|j| j["jobQueue"] == "spot"));
    assert!(
        jobs.iter().all(|j| j["retryStrategy"]["attempts"] == 10),
        "AWS allows 1..=10"
    );
}

#[test]
fn odd_recipe_names_are_sanitized_for_each_engine() {
    let spec = spec("Timberlea K-Means_v2!", 4);
    let docs = yaml_docs(&kubernetes(&spec));
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "timberlea-k-means-v2-sample",
            "timberlea-k-means-v2-fit",
            "timberlea-k-means-v2-map"
        ]
    );
    assert_eq!(
        docs[0]["metadata"]["labels"]["flow/recipe"],
        "timberlea-k-means-v2"
    );
    assert_eq!(
        docs[0]["metadata"]["annotations"]["flow/recipe"],
        "Timberlea K-Means_v2!"
    );

    let doc: Value = serde_json::from_str(&aws_batch(&spec)).unwrap();
    assert_eq!(
        doc["jobDefinition"]["jobDefinitionName"],
        "Timberlea-K-Means_v2"
    );
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["jobName"], "Timberlea-K-Means_v2-sample");
    assert_eq!(
        jobs[1]["dependsOn"][0]["jobId"],
        "${JOB_ID_Timberlea-K-Means_v2-sample}"
    );
}

#[test]
fn long_empty_and_colliding_names_stay_valid_and_distinct() {
    let mut spec = spec(&"Very Long Recipe Name ".repeat(20), 4);
    spec.stages.push(stage("Map", 3, &["map"]));
    spec.stages.push(stage("!!!", 2, &[]));
    let docs = yaml_docs(&kubernetes(&spec));
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5);
    for n in &names {
        assert!(is_dns1123_label(n), "{n}");
    }
    assert!(names[0].ends_with("-sample"));
    let unique: HashSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");

    let doc: Value = serde_json::from_str(&aws_batch(&spec)).unwrap();
    let jobs: Vec<&str> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobName"].as_str().unwrap())
        .collect();
    for n in &jobs {
        assert!(is_aws_name(n), "{n}");
    }
    let unique: HashSet<&&str> = jobs.iter().collect();
    assert_eq!(unique.len(), jobs.len(), "{jobs:?}");

    let empty = EmitSpec {
        name: "***".into(),
        stages: vec![stage("", 2, &[])],
        ..spec
    };
    let docs = yaml_docs(&kubernetes(&empty));
    assert_eq!(docs[0]["metadata"]["name"], "flow");
    let doc: Value = serde_json::from_str(&aws_batch(&empty)).unwrap();
    assert_eq!(doc["jobDefinition"]["jobDefinitionName"], "flow");
    assert!(is_aws_name(doc["jobs"][0]["jobName"].as_str().unwrap()));
}

#[test]
fn a_stage_without_tasks_is_left_out_and_its_dependents_wait_for_what_it_waited_for() {
    let mut spec = spec("t", 4);
    spec.stages[1].tasks = 0;
    let docs = yaml_docs(&kubernetes(&spec));
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1]["metadata"]["name"], "t-map");
    assert_eq!(docs[1]["metadata"]["annotations"]["flow/after"], "sample");

    let doc: Value = serde_json::from_str(&aws_batch(&spec)).unwrap();
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1]["dependsOn"][0]["jobId"], "${JOB_ID_t-sample}");

    let none = EmitSpec {
        stages: Vec::new(),
        ..spec
    };
    assert_eq!(kubernetes(&none), "");
    let doc: Value = serde_json::from_str(&aws_batch(&none)).unwrap();
    assert_eq!(doc["jobs"], serde_json::json!([]));
}

#[test]
fn odd_plan_paths_survive_the_yaml_round_trip() {
    let mut spec = spec("t", 4);
    spec.plan = "/plans/a: b # c 'd\" {e}.json".into();
    spec.cache = Some("s3://bucket/x?y=#1".into());
    let docs = yaml_docs(&kubernetes(&spec));
    let argv = strings(&docs[0]["spec"]["template"]["spec"]["containers"][0]["command"]);
    assert_eq!(flag(&argv, "--plan"), Some(spec.plan.as_str()));
    assert_eq!(flag(&argv, "--cache"), Some("s3://bucket/x?y=#1"));
}

#[test]
fn memory_is_rounded_up_to_mib_with_a_floor() {
    let mut s = stage("x", 1, &[]);
    s.memory_bytes = 3 << 30;
    assert_eq!(memory_mib(&s), 3072);
    s.memory_bytes += 1;
    assert_eq!(memory_mib(&s), 3073);
    s.memory_bytes = 0;
    assert_eq!(memory_mib(&s), MIN_MEMORY_MIB);
    s.cpus = 0;
    assert_eq!(cpus(&s), 1);
}
