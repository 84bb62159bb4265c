use crate::support::{flow, output};

#[test]
fn nodes_lists_every_builtin_kind() {
    let cache = tempfile::tempdir().unwrap();
    let (code, stdout, _) = output(flow(cache.path()).arg("nodes"));
    assert_eq!(code, 0);
    insta::assert_snapshot!(stdout);
    let (code, json, _) = output(flow(cache.path()).args(["nodes", "--format", "json"]));
    assert_eq!(code, 0);
    let kinds: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = kinds.iter().filter_map(|k| k["kind"].as_str()).collect();
    for expected in [
        "stac-search",
        "sign",
        "stack",
        "mask-nodata",
        "normalize",
        "add-index",
        "flatten",
        "kmeans-fit",
        "predict",
        "reshape",
        "write",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn graph_renders_dot_and_mermaid() {
    let cache = tempfile::tempdir().unwrap();
    let (code, dot, stderr) =
        output(flow(cache.path()).args(["graph", "recipes/timberlea_kmeans.toml"]));
    assert_eq!(code, 0, "{stderr}");
    insta::assert_snapshot!("timberlea_dot", dot);
    let (code, mermaid, _) = output(flow(cache.path()).args([
        "graph",
        "recipes/timberlea_kmeans.toml",
        "--format",
        "mermaid",
    ]));
    assert_eq!(code, 0);
    insta::assert_snapshot!("timberlea_mermaid", mermaid);
}

#[test]
fn graph_shows_the_cache_state_of_each_node() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let args = ["recipes/timberlea_kmeans.toml", "--profile", "offline"];
    let (_, before, _) = output(flow(cache.path()).arg("graph").args(args));
    assert!(!before.contains("[cached]"), "{before}");
    let (code, _, stderr) = output(
        flow(cache.path())
            .arg("run")
            .args(args)
            .arg("--quiet")
            .arg("--out")
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let (_, after, _) = output(flow(cache.path()).arg("graph").args(args));
    assert!(
        after.contains("\"stack\" [label=\"stack\\nstack\\n[cached]\""),
        "{after}"
    );
    assert!(
        after.contains("sign\\n[uncached]"),
        "sign is never cached: {after}"
    );
    // Another k: the fit and what follows are missing, the rest cached.
    let (_, k6, _) = output(
        flow(cache.path())
            .arg("graph")
            .args(args)
            .args(["--set", "k=6", "--format", "mermaid"]),
    );
    assert!(
        k6.contains("fit<br/>kmeans-fit<br/>[missing]")
            && k6.contains("flatten<br/>flatten<br/>[cached]"),
        "{k6}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let cache = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(flow(cache.path()).args(["run", "no/such/recipe.toml"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("no/such/recipe.toml"), "{stderr}");
    let (code, _, _) = output(flow(cache.path()).args(["frobnicate"]));
    assert_eq!(code, 2);
}

#[test]
fn every_command_has_help_with_examples() {
    let cache = tempfile::tempdir().unwrap();
    for cmd in [
        "run", "plan", "validate", "graph", "nodes", "init", "cache", "fixture",
    ] {
        let (code, stdout, _) = output(flow(cache.path()).args([cmd, "--help"]));
        assert_eq!(code, 0, "{cmd}");
        assert!(
            stdout.contains("Example"),
            "{cmd} --help has examples:\n{stdout}"
        );
    }
}

#[test]
fn cache_gc_refuses_a_negative_age_and_removes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, _, _) = output(
        flow(cache.path())
            .args([
                "run",
                "recipes/timberlea_kmeans.toml",
                "--profile",
                "offline",
                "--quiet",
            ])
            .arg("--out")
            .arg(out.path()),
    );
    assert_eq!(code, 0);
    let count = || output(flow(cache.path()).args(["cache", "ls"])).1;
    let before = count();
    for age in ["-5", "NaN", "inf"] {
        let (code, _, stderr) =
            output(flow(cache.path()).args(["cache", "gc", &format!("--older-than-days={age}")]));
        assert_eq!(code, 2, "{age}: {stderr}");
        assert!(stderr.contains("days"), "{stderr}");
    }
    assert_eq!(count(), before);
}

#[test]
fn a_closed_stdout_ends_the_command_quietly_without_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let cache = tempfile::tempdir().unwrap();
    for args in [
        &["validate", "recipes/timberlea_kmeans.toml", "--plan"][..],
        &["nodes", "--format", "json"][..],
    ] {
        let mut child = flow(cache.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before flow writes (as `| head -0` would).
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn nodes_shows_one_kind_by_name_and_suggests_for_a_typo() {
    let cache = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(flow(cache.path()).args(["nodes", "stack"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("stack (v"), "{stdout}");
    assert!(stdout.contains("resolution"), "{stdout}");
    assert!(!stdout.contains("kmeans-fit"), "{stdout}");
    let (code, json, _) = output(flow(cache.path()).args(["nodes", "write", "--format", "json"]));
    assert_eq!(code, 0);
    let kinds: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(kinds.len(), 1);
    assert_eq!(kinds[0]["kind"], "write");
    let (code, _, stderr) = output(flow(cache.path()).args(["nodes", "stak"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown node kind `stak`; did you mean `stack`?"),
        "{stderr}"
    );
}

#[test]
fn init_writes_a_commented_starter_that_validates_and_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("land classes.toml");
    let (code, stdout, stderr) = output(flow(dir.path()).arg("init").arg(&recipe));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), recipe.display().to_string());
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("name = \"land-classes\""), "{text}");
    let comments = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .count();
    assert!(
        comments >= 20,
        "a starter explains itself: {comments} comment lines"
    );

    let (code, _, stderr) = output(flow(dir.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 0, "{stderr}");
    let out = dir.path().join("out");
    let (code, _, stderr) = output(
        flow(dir.path())
            .arg("run")
            .arg(&recipe)
            .args(["--profile", "offline", "--out"])
            .arg(&out),
    );
    assert_eq!(code, 0, "{stderr}");
    for file in ["classes.tif", "classes.item.json", "classes.png"] {
        assert!(out.join(file).is_file(), "{file}");
    }

    // An existing file is kept unless --force replaces it.
    std::fs::write(&recipe, "mine").unwrap();
    let (code, _, stderr) = output(flow(dir.path()).arg("init").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&recipe).unwrap(), "mine");
    let (code, _, stderr) = output(
        flow(dir.path())
            .arg("init")
            .arg(&recipe)
            .args(["--name", "x", "--force"]),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read_to_string(&recipe)
        .unwrap()
        .contains("name = \"x\""));
}
