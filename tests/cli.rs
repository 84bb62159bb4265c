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
    for cmd in ["run", "validate", "graph", "nodes", "cache", "fixture"] {
        let (code, stdout, _) = output(flow(cache.path()).args([cmd, "--help"]));
        assert_eq!(code, 0, "{cmd}");
        assert!(
            stdout.contains("Example"),
            "{cmd} --help has examples:\n{stdout}"
        );
    }
}
