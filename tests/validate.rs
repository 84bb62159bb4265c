use crate::support::{fixture_args, flow, output, relative};

#[test]
fn invalid_recipes_fail_with_every_error_located() {
    let cache = tempfile::tempdir().unwrap();
    insta::glob!("../recipes", "invalid/*.toml", |path| {
        let rel = relative(path);
        let (code, stdout, stderr) = output(
            flow(cache.path())
                .arg("validate")
                .arg(&rel)
                .args(fixture_args(path)),
        );
        assert_eq!(
            code, 2,
            "{rel} must exit 2\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(stdout.is_empty(), "{rel}: nothing on stdout");
        assert!(
            stderr.contains(&format!("{rel}:")) || stderr.contains("command line"),
            "{rel}: the location is named\n{stderr}"
        );
        insta::assert_snapshot!(stderr);
    });
    // Validation does no disk work: nothing appeared in the cache.
    assert!(std::fs::read_dir(cache.path()).unwrap().next().is_none());
}

#[test]
fn valid_recipes_validate_and_their_plans_are_stable() {
    let cache = tempfile::tempdir().unwrap();
    insta::glob!(
        "../recipes",
        "{valid/*.toml,timberlea_kmeans.toml,timberlea_kmeans_ndvi.toml}",
        |path| {
            let rel = relative(path);
            let (code, stdout, stderr) = output(
                flow(cache.path())
                    .args(["validate", "--plan"])
                    .arg(&rel)
                    .args(fixture_args(path)),
            );
            assert_eq!(code, 0, "{rel}: {stderr}");
            let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            insta::assert_json_snapshot!(plan);
        }
    );
}

#[test]
fn an_error_past_column_65535_is_reported_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("wide.toml");
    let wide = "y".repeat(70_000);
    std::fs::write(
        &recipe,
        format!("name = \"x\"\n[nodes.a]\nkind = \"stack\"\nbogus = \"{wide}\"; zzz\n"),
    )
    .unwrap();
    let (code, _, stderr) = crate::support::output(
        crate::support::flow(dir.path())
            .arg("validate")
            .arg(&recipe),
    );
    assert_eq!(code, 2, "{}", &stderr[..stderr.len().min(2000)]);
    assert!(!stderr.contains("panicked"));
    assert!(
        stderr.contains("line 4, column 70011"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
}

#[test]
fn a_normalize_range_beyond_f32_is_refused_before_anything_runs() {
    let cache = tempfile::tempdir().unwrap();
    let (code, _, stderr) = crate::support::output(crate::support::flow(cache.path()).args([
        "validate",
        "recipes/timberlea_kmeans.toml",
        "--set",
        "normalize.range=[0, 1e39]",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`range` must be") && stderr.contains("1e39"),
        "{stderr}"
    );
}
