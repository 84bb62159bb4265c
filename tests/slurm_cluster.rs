//! The loopback Slurm cluster itself (munged, slurmctld and slurmd on 127.0.0.1), before any test
//! of the Slurm executor relies on it.
//!
//! scripts/test starts the cluster with `scripts/slurm-cluster start` when it runs as root and
//! exports SLURM_CONF, through which sbatch finds it. Without SLURM_CONF this test prints a line and
//! passes, unless FLOW_REQUIRE_SLURM=1.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the array may take before the test gives up on the cluster (a bound against a hang,
/// not a speed requirement: a healthy cluster runs it in a few seconds).
const GIVE_UP: Duration = Duration::from_secs(180);

/// SLURM_CONF, or None (after saying so) when the tests run without a cluster.
pub fn slurm_conf() -> Option<String> {
    match std::env::var("SLURM_CONF") {
        Ok(conf) if !conf.trim().is_empty() => Some(conf),
        _ => {
            if std::env::var("FLOW_REQUIRE_SLURM").as_deref() == Ok("1") {
                panic!("FLOW_REQUIRE_SLURM=1 but SLURM_CONF is not set (scripts/test sets it when run as root)");
            }
            println!("skipped: SLURM_CONF is not set (scripts/test starts a Slurm cluster when run as root)");
            None
        }
    }
}

/// A 3-task job array submitted with `sbatch --parsable --wait` runs every task, in the submit
/// directory, with the submitter's environment, and sbatch exits 0.
#[test]
fn sbatch_array_runs_every_task() {
    let Some(conf) = slurm_conf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let token = format!("flow-{}-{}", std::process::id(), dir.path().display());
    let mut child = Command::new("sbatch")
        .args([
            "--parsable",
            "--wait",
            "--array=0-2",
            "--job-name=flow-smoke",
            "--time=5",
            "--output=slurm-%A_%a.out",
            "--wrap",
            "printf '%s\\n%s\\n' \"$FLOW_SLURM_SMOKE\" \"$(pwd -P)\" > task.$SLURM_ARRAY_TASK_ID",
        ])
        .current_dir(dir.path())
        .env("SLURM_CONF", &conf)
        .env("FLOW_SLURM_SMOKE", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sbatch (scripts/slurm-cluster install puts it on PATH)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > GIVE_UP {
            let _ = child.kill();
            let _ = Command::new("scancel")
                .args(["--name=flow-smoke"])
                .env("SLURM_CONF", &conf)
                .status();
            panic!(
                "sbatch --wait did not return in {GIVE_UP:?}; squeue: {}",
                squeue(&conf)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "sbatch exited with {status}; stdout: {stdout}; stderr: {stderr}"
    );
    let job = stdout.lines().next().unwrap_or("").trim();
    assert!(
        !job.is_empty()
            && job
                .split(';')
                .next()
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_digit()),
        "sbatch --parsable printed no job id: {stdout:?}"
    );

    let submit_dir = dir.path().canonicalize().unwrap();
    for index in 0..3 {
        let path = dir.path().join(format!("task.{index}"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("array task {index} wrote no {}: {e}", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [token.as_str(), submit_dir.to_str().unwrap()],
            "array task {index}: the submitter's environment and the submit directory"
        );
    }
    assert!(
        !dir.path().join("task.3").exists(),
        "a 4th task ran for --array=0-2"
    );
}

/// squeue's view of the cluster, for a failure message.
fn squeue(conf: &str) -> String {
    Command::new("squeue")
        .env("SLURM_CONF", conf)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("squeue failed: {e}"))
}
