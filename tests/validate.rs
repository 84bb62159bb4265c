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
