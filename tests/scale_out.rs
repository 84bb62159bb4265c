//! The mosaic recipe's tasks on real engines: the loopback Slurm cluster and the S3 server that
//! scripts/test starts (skipped with a line without them, failing under FLOW_REQUIRE_SLURM=1 /
//! FLOW_REQUIRE_S3=1), and the files emitted for Kubernetes and AWS Batch.

use std::path::Path;

use crate::object_store::{endpoint, Bucket};
use crate::scale::{assert_same_outputs, RECIPE};
use crate::slurm_cluster::slurm_conf;
use crate::support::{flow, output};

/// The outputs of the local executor for the mosaic recipe, in `out`.
fn local(dir: &Path, out: &Path) {
    let (code, stdout, stderr) = output(
        flow(&dir.join("cache-local"))
            .args(["run", RECIPE, "--quiet", "--out"])
            .arg(out),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
}

/// `flow run --executor slurm` with `env`; returns (code, stderr, the executor's run.json).
fn slurm_run(cache: &Path, out: &Path, env: &[(&str, &str)]) -> (i32, String, serde_json::Value) {
    let mut cmd = flow(cache);
    cmd.args(["run", RECIPE, "--executor", "slurm", "--out"])
        .arg(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, _, stderr) = output(&mut cmd);
    let report = std::fs::read(out.join(".flow/slurm/run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (code, stderr, report)
}

/// Per attempt, `(stage, indices)` submitted.
fn submissions(report: &serde_json::Value) -> Vec<Vec<(String, Vec<u64>)>> {
    report["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|attempt| {
                    attempt
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| {
                            (
                                s["stage"].as_str().unwrap().to_string(),
                                s["indices"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|i| i.as_u64().unwrap())
                                    .collect(),
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn all_stages() -> Vec<(String, Vec<u64>)> {
    vec![
        ("sample".into(), vec![0, 1, 2, 3]),
        ("fit".into(), vec![0]),
        ("map".into(), vec![0, 1, 2, 3]),
    ]
}

#[test]
fn slurm_runs_the_tasks_as_the_local_executor_does_and_a_warm_rerun_submits_nothing() {
    if slurm_conf().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("slurm"));
    let (code, stderr, report) = slurm_run(&cache, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(submissions(&report), vec![all_stages()], "{report}");
    local(dir.path(), &dir.path().join("local"));
    assert_same_outputs(&out, &dir.path().join("local"));

    let (code, stderr, report) = slurm_run(&cache, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(submissions(&report).is_empty(), "{report}");
    assert_eq!(report["done"], 9);
}

#[test]
fn slurm_resubmits_only_the_index_that_failed_and_never_one_that_exited_2() {
    if slurm_conf().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("once");
    let (code, stderr, report) = slurm_run(
        &dir.path().join("cache-once"),
        &out,
        &[("FLOW_FAILPOINT", "map:2:4:once")],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        submissions(&report),
        vec![all_stages(), vec![("map".into(), vec![2])]],
        "{report}"
    );
    local(dir.path(), &dir.path().join("local"));
    assert_same_outputs(&out, &dir.path().join("local"));

    let (code, stderr, report) = slurm_run(
        &dir.path().join("cache-two"),
        &dir.path().join("two"),
        &[("FLOW_FAILPOINT", "map:1:2")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("task map/1 (18TXR) exits 2"), "{stderr}");
    assert!(stderr.contains("not retried"), "{stderr}");
    assert_eq!(submissions(&report), vec![all_stages()], "{report}");
    let (code, stdout, _) = output(
        flow(&dir.path().join("cache-two"))
            .args(["status", "--plan"])
            .arg(dir.path().join("two/.flow/plan.json")),
    );
    assert_eq!(code, 0);
    assert!(
        stdout.contains("map           4      3        0       1"),
        "{stdout}"
    );
}

#[test]
fn machines_sharing_a_bucket_share_the_tasks_done() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = Bucket::create(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let plan_path = dir.path().join("plan.json");
    let with_s3 = |machine: &str| {
        let mut c = flow(&dir.path().join(machine));
        c.env("AWS_ENDPOINT_URL", &bucket.endpoint)
            .env("AWS_ALLOW_HTTP", "true");
        c
    };
    let (code, _, stderr) = output(
        with_s3("a")
            .args(["plan", RECIPE, "--cache", &bucket.url(), "--out"])
            .arg(&out)
            .arg("--output")
            .arg(&plan_path),
    );
    assert_eq!(code, 0, "{stderr}");
    // Machine a samples two tiles, b the other two and the fit, a maps.
    for (machine, stage, index) in [
        ("a", "sample", 0),
        ("a", "sample", 1),
        ("b", "sample", 2),
        ("b", "sample", 3),
        ("b", "fit", 0),
        ("a", "map", 0),
        ("a", "map", 1),
        ("a", "map", 2),
        ("a", "map", 3),
    ] {
        let (code, _, stderr) = output(
            with_s3(machine)
                .args(["task", "run", "--plan"])
                .arg(&plan_path)
                .args(["--stage", stage, "--index", &index.to_string()]),
        );
        assert_eq!(code, 0, "{machine} {stage}/{index}: {stderr}");
        if stage == "map" {
            // Only the map's own three nodes run: the fit and the other tiles' matrices, computed
            // by b, come from the bucket.
            assert!(stderr.contains(": 3 nodes computed"), "{stderr}");
        }
    }
    let keys = bucket.keys();
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".done.json")).count(),
        9,
        "{keys:?}"
    );
    // A third machine with an empty local cache reads every task done from the bucket.
    let (code, stdout, stderr) = output(with_s3("c").args(["status", "--plan"]).arg(&plan_path));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("map           4      4        0       0"),
        "{stdout}"
    );
    local(dir.path(), &dir.path().join("local"));
    assert_same_outputs(&out, &dir.path().join("local"));
}

#[test]
fn emitted_jobs_run_the_plan_s_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let (code, stdout, stderr) = output(
        flow(&cache)
            .args([
                "run",
                RECIPE,
                "--executor",
                "emit:k8s",
                "--image",
                "registry.example/flow:1",
                "--out",
            ])
            .arg(&out),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("k8s-jobs.yaml"), "{stdout}");
    let yaml = std::fs::read_to_string(out.join("k8s-jobs.yaml")).unwrap();
    let plan_path = out.join(".flow/plan.json");
    let jobs: Vec<serde_json::Value> = serde_norway::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(jobs.len(), 3);
    for (job, (stage, n)) in jobs.iter().zip([("sample", 4), ("fit", 1), ("map", 4)]) {
        assert_eq!(job["spec"]["completions"], n);
        assert_eq!(job["spec"]["completionMode"], "Indexed");
        let command = &job["spec"]["template"]["spec"]["containers"][0]["command"];
        let words: Vec<&str> = command
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|w| w.as_str())
            .collect();
        assert!(
            words.windows(2).any(|w| w == ["--stage", stage]),
            "{words:?}"
        );
        assert!(words.contains(&plan_path.to_str().unwrap()), "{words:?}");
    }
    // Nothing ran: every task is still to do.
    assert!(!out.join("18TWR").exists());

    let (code, _, stderr) = output(
        flow(&cache)
            .args([
                "run",
                RECIPE,
                "--executor",
                "emit:aws-batch",
                "--queue",
                "q",
                "--out",
            ])
            .arg(&out),
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("aws-batch.json")).unwrap()).unwrap();
    let jobs = json["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{json}");
    assert_eq!(jobs[0]["arrayProperties"]["size"], 4, "{json}");
}
