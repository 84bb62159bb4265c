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
        "{valid/*.toml,timberlea_kmeans.toml,timberlea_kmeans_ndvi.toml,timberlea_assess.toml}",
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

#[test]
fn the_ndvi_and_smoothing_recipes_build_on_the_base_recipe_in_under_30_lines() {
    for name in ["timberlea_kmeans_ndvi.toml", "timberlea_kmeans_smooth.toml"] {
        let text =
            std::fs::read_to_string(crate::support::root().join("recipes").join(name)).unwrap();
        assert!(
            text.lines()
                .any(|l| l == "extends = \"timberlea_kmeans.toml\""),
            "{name} extends the base recipe"
        );
        let lines = text.lines().count();
        assert!(lines < 30, "{name} has {lines} lines");
    }
}

/// A base recipe whose `fit` node has a mistyped param on line 5, and a recipe built on it.
fn recipes_built_on_a_base(dir: &std::path::Path, recipe: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::write(
        dir.join("base/base.toml"),
        "name = \"base\"\n[params]\nk = 4\n[nodes.fit]\nmax_itr = 5\nkind = \"kmeans-fit\"\n\
         input = \"flat\"\nk = \"${params.k}\"\n",
    )
    .unwrap();
    let path = dir.join("recipe.toml");
    std::fs::write(&path, recipe).unwrap();
    path
}

#[test]
fn errors_in_a_recipe_and_the_recipe_it_extends_point_at_their_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipes_built_on_a_base(
        dir.path(),
        "extends = \"base/base.toml\"\n[params]\nk = 6\n[nodes.flat]\nkind = \"flatten\"\n\
         inptu = \"x\"\n",
    );
    let (code, stdout, stderr) = output(flow(dir.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    let recipe_at = format!("{}:6:1", recipe.display());
    let base_at = format!("{}:5:1", dir.path().join("base/base.toml").display());
    assert!(stderr.contains(&recipe_at), "{recipe_at} in\n{stderr}");
    assert!(stderr.contains(&base_at), "{base_at} in\n{stderr}");
    assert!(
        stderr.contains("max_itr") && stderr.contains("inptu"),
        "{stderr}"
    );
}

#[test]
fn a_recipe_overrides_params_and_node_params_of_the_recipe_it_extends() {
    let dir = tempfile::tempdir().unwrap();
    let base = crate::support::root().join("recipes/timberlea_kmeans.toml");
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(
        &recipe,
        format!(
            "extends = {}\n[params]\nk = 6\n[nodes.fit]\nmax_iter = 50\n",
            serde_json::to_string(&base.display().to_string()).unwrap()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = output(
        flow(dir.path())
            .args(["validate", "--plan", "--set", "seed=3"])
            .arg(&recipe),
    );
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["name"], "recipe", "the name is the recipe's own");
    let fit = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "fit")
        .unwrap();
    assert_eq!(fit["params"]["k"], 6);
    assert_eq!(fit["params"]["seed"], 3);
    assert_eq!(fit["params"]["max_iter"], 50);
    assert_eq!(plan["nodes"].as_array().unwrap().len(), 12);

    // A base that does not exist, and a cycle, are errors at `extends`.
    std::fs::write(&recipe, "extends = \"nope.toml\"\n").unwrap();
    let (code, _, stderr) = output(flow(dir.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("nope.toml") && stderr.contains(":1:11"),
        "{stderr}"
    );
    std::fs::write(&recipe, "extends = \"recipe.toml\"\n").unwrap();
    let (code, _, stderr) = output(flow(dir.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cycle"), "{stderr}");
}
