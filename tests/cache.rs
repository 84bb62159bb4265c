use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{flow, output, write_scene};

const RECIPE: &str = "recipes/timberlea_kmeans.toml";

fn offline_run(cache: &Path, out: &Path) -> std::process::Command {
    let mut c = flow(cache);
    c.args(["run", RECIPE, "--profile", "offline", "--quiet", "--out"])
        .arg(out);
    c
}

fn classes(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("timberlea_classes.tif")).unwrap()
}

fn verify(cache: &Path) -> (i32, String) {
    let (code, stdout, _) = output(flow(cache).args(["cache", "verify"]));
    (code, stdout)
}

#[test]
fn concurrent_runs_on_one_cache_both_succeed_with_identical_outputs() {
    let cache = tempfile::tempdir().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut first = offline_run(cache.path(), a.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut second = offline_run(cache.path(), b.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
    assert!(classes(a.path()) == classes(b.path()));
    let (code, report) = verify(cache.path());
    assert_eq!(code, 0);
    assert!(report.trim_end().ends_with(", 0 bad"), "{report}");
}

#[test]
fn sigkill_mid_run_leaves_nothing_trusted_and_the_rerun_matches_a_clean_run() {
    let clean_cache = tempfile::tempdir().unwrap();
    let clean_out = tempfile::tempdir().unwrap();
    assert_eq!(
        output(&mut offline_run(clean_cache.path(), clean_out.path())).0,
        0
    );

    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Kill at several moments: while the scene is generated, while rasters are cached, later.
    for delay_ms in [60u64, 200, 350, 500] {
        let mut child = offline_run(cache.path(), out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (code, report) = verify(cache.path());
        assert_eq!(code, 0, "after a kill at {delay_ms} ms: {report}");
    }
    let (code, _, stderr) = output(&mut offline_run(cache.path(), out.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        classes(out.path()) == classes(clean_out.path()),
        "the rerun gives what a clean run gives"
    );
    let (code, report) = verify(cache.path());
    assert_eq!(code, 0, "{report}");
}

#[test]
fn flipped_bytes_are_reported_by_verify_and_recomputed_by_run() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    assert_eq!(output(&mut offline_run(cache.path(), out.path())).0, 0);
    let reference = classes(out.path());

    // Flip one byte in the middle of every stored array.
    let mut flipped = 0;
    for shard in std::fs::read_dir(cache.path().join("objects"))
        .unwrap()
        .flatten()
    {
        for entry in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let npy = entry.path().join("data.npy");
            if let Ok(mut bytes) = std::fs::read(&npy) {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x5a;
                std::fs::write(&npy, bytes).unwrap();
                flipped += 1;
            }
        }
    }
    assert!(flipped >= 3, "stack, mask, normalize ... hold arrays");
    let (code, report) = verify(cache.path());
    assert_eq!(code, 5, "{report}");
    assert!(report.contains(&format!("{flipped} bad")), "{report}");

    // The write nodes are cached and fresh, so nothing upstream would be read; remove the
    // outputs to make the run need (and so verify) every entry.
    std::fs::remove_dir_all(out.path()).unwrap();
    let (code, _, stderr) = output(&mut offline_run(cache.path(), out.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("corrupt cache entry") && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    assert!(classes(out.path()) == reference, "never a wrong answer");
    let (code, report) = verify(cache.path());
    assert_eq!(code, 0, "{report}");
}

#[test]
fn ctrl_c_stops_the_run_with_exit_130_and_caches_nothing() {
    // A STAC API that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/stac/v1", listener.local_addr().unwrap());
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let child = flow(cache.path())
        .args(["run", RECIPE, "--set"])
        .arg(format!("catalog={url}"))
        .args(["--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out_put = child.wait_with_output().unwrap();
    assert_eq!(
        out_put.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out_put.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stops promptly, without waiting for the 30 s timeout"
    );
    let objects: Vec<_> = std::fs::read_dir(cache.path().join("objects"))
        .unwrap()
        .collect();
    assert!(objects.is_empty(), "nothing cached");
    drop(listener);
}

#[test]
fn a_cached_value_is_bit_identical_so_going_back_to_a_setting_reuses_everything() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = |k: &str| {
        let (code, _, stderr) = output(
            offline_run(cache.path(), out.path())
                .args(["--set", &format!("k={k}")])
                .env_remove("RUST_LOG"),
        );
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("run.json")).unwrap()).unwrap();
        (report, stderr)
    };
    run("4");
    run("6");
    let (report, stderr) = run("4");
    assert!(!stderr.contains("warning"), "{stderr}");
    let computed: Vec<&str> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "computed")
        .filter_map(|n| n["kind"].as_str())
        .collect();
    // Only the writes run again (their files were replaced by the k = 6 run).
    assert!(
        !computed.is_empty() && computed.iter().all(|kind| *kind == "write"),
        "{computed:?}"
    );
    // And from then on, nothing at all: the model reloads bit for bit, so its JSON matches.
    let (report, stderr) = run("4");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] != "computed"),
        "{report}"
    );
}

#[test]
fn a_new_output_directory_rewrites_the_outputs_without_a_warning() {
    let cache = tempfile::tempdir().unwrap();
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(output(&mut offline_run(cache.path(), first.path())).0, 0);
    let (code, _, stderr) = output(&mut offline_run(cache.path(), second.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(classes(first.path()) == classes(second.path()));
}

#[test]
fn cache_clear_during_a_run_does_not_fail_it() {
    let clean_cache = tempfile::tempdir().unwrap();
    let clean_out = tempfile::tempdir().unwrap();
    assert_eq!(
        output(&mut offline_run(clean_cache.path(), clean_out.path())).0,
        0
    );

    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut child = offline_run(cache.path(), out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut clears = 0;
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
        let (code, _, stderr) = output(flow(cache.path()).args(["cache", "clear"]));
        assert_eq!(code, 0, "{stderr}");
        clears += 1;
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "after {clears} clears: {stderr}");
    assert!(clears > 0);
    assert!(classes(out.path()) == classes(clean_out.path()));
    // --datasets removes the materialized scene too; the next run makes it again.
    let (code, _, _) = output(flow(cache.path()).args(["cache", "clear", "--datasets"]));
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_dir(cache.path().join("data"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_changed_local_cog_behind_an_unchanged_catalog_is_a_miss() {
    const ITEM: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene");
    write_scene(cache.path(), &scene);
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"local\"\n[nodes.items]\nkind = \"stac-search\"\ncatalog = {:?}\nids = [\"{ITEM}\"]\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"items\"\nassets = [\"B04\"]\nresolution = 10\n",
            scene.join("items.json").display().to_string()
        ),
    )
    .unwrap();
    let run = || {
        let out = dir.path().join("out");
        let (code, _, stderr) = output(
            flow(cache.path())
                .arg("run")
                .arg(&recipe)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
        let stack = report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "stack")
            .unwrap()
            .clone();
        (
            stack["status"].as_str().unwrap().to_string(),
            stack["output"]["values"].clone(),
        )
    };
    let (status, before) = run();
    assert_eq!(status, "computed");
    assert_eq!(run().0, "cached");
    // The catalog stays as it is; the file behind B04 is replaced by another band's.
    let item_dir = scene.join(ITEM);
    std::fs::copy(item_dir.join("B08.tif"), item_dir.join("B04.tif")).unwrap();
    let (status, after) = run();
    assert_eq!(status, "computed");
    assert_ne!(before, after);
    assert_eq!(run().0, "cached");
}
