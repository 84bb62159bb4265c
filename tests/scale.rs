//! A recipe cut into tasks (`[scale]`): the plan file, `flow task run` in any order and any
//! number of times, `flow run --executor local`, `flow status`, and the failures they record.

use std::path::{Path, PathBuf};

use crate::support::{flow, output, root};

pub const RECIPE: &str = "recipes/mosaic_kmeans.toml";
const TILES: [&str; 4] = ["18TWR", "18TXR", "18TWQ", "18TXQ"];

/// Writes the plan of the mosaic recipe into `plan` (outputs to `out`); returns stdout.
fn plan(cache: &Path, out: &Path, plan: &Path, extra: &[&str]) -> String {
    let (code, stdout, stderr) = output(
        flow(cache)
            .args(["plan", RECIPE, "--out"])
            .arg(out)
            .arg("--output")
            .arg(plan)
            .args(extra),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    stdout
}

/// Runs one task; returns (code, stderr).
fn task(cache: &Path, plan: &Path, stage: &str, index: usize) -> (i32, String) {
    let (code, _, stderr) = output(flow(cache).args(["task", "run", "--plan"]).arg(plan).args([
        "--stage",
        stage,
        "--index",
        &index.to_string(),
    ]));
    (code, stderr)
}

/// The files a run of the mosaic recipe writes, relative to its output directory.
fn outputs() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("model.json")];
    for t in TILES {
        files.push(Path::new(t).join("classes.tif"));
        files.push(Path::new(t).join("classes.tif.aux.xml"));
        files.push(Path::new(t).join("classes.item.json"));
    }
    files
}

pub fn assert_same_outputs(a: &Path, b: &Path) {
    for f in outputs() {
        let (x, y) = (a.join(&f), b.join(&f));
        if !x.exists() && !y.exists() {
            continue;
        }
        let x = std::fs::read(&x).unwrap_or_else(|e| panic!("{}: {e}", x.display()));
        let y = std::fs::read(&y).unwrap_or_else(|e| panic!("{}: {e}", y.display()));
        assert!(
            x == y,
            "{} differs between {} and {}",
            f.display(),
            a.display(),
            b.display()
        );
    }
}

/// A deterministic shuffle (xorshift), so that a failure can be replayed.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[test]
fn tasks_in_any_order_and_twice_give_the_local_run_s_outputs_and_a_rerun_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cache_a, cache_b) = (dir.path().join("cache-a"), dir.path().join("cache-b"));
    let (out_a, out_b) = (dir.path().join("tasks"), dir.path().join("local"));
    let plan_path = dir.path().join("plan.json");

    let summary = plan(&cache_a, &out_a, &plan_path, &[]);
    assert!(summary.contains("9 tasks to run"), "{summary}");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    let stages: Vec<(String, usize)> = file["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["tasks"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        vec![("sample".into(), 4), ("fit".into(), 1), ("map".into(), 4)]
    );
    let map0 = &file["stages"][2]["tasks"][0];
    assert_eq!(map0["unit"], "18TWR");
    assert_eq!(map0["outputs"][0], "18TWR/classes.tif");
    assert!(
        map0["reads"].as_array().unwrap().iter().any(|r| r == "fit"),
        "{map0}"
    );
    assert!(map0["key"].as_str().is_some_and(|k| k.len() == 64));
    assert!(!std::fs::read_to_string(&plan_path)
        .unwrap()
        .contains("sig="));

    // Every task, in a shuffled order across stages, some of them twice.
    let mut all: Vec<(&str, usize)> = vec![("fit", 0)];
    for i in 0..4 {
        all.extend([("sample", i), ("map", i)]);
    }
    all.extend([("map", 2), ("sample", 1), ("fit", 0)]);
    shuffle(&mut all, 0x5eed_cafe);
    for (stage, index) in &all {
        let (code, stderr) = task(&cache_a, &plan_path, stage, *index);
        assert_eq!(code, 0, "task {stage}/{index}: {stderr}");
    }
    let (code, stderr) = task(&cache_a, &plan_path, "map", 3);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("done already"), "{stderr}");

    // The same recipe run locally, with another cache.
    let (code, stdout, stderr) = output(
        flow(&cache_b)
            .args(["run", RECIPE, "--executor", "local", "--out"])
            .arg(&out_b),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("map      4 tasks run, 0 done already"),
        "{stdout}"
    );
    assert_same_outputs(&out_a, &out_b);
    for t in TILES {
        assert!(out_a.join(t).join("classes.tif").exists());
    }

    // Planned again, nothing is left to run; a local rerun runs no task.
    let again = plan(&cache_a, &out_a, &dir.path().join("plan2.json"), &[]);
    assert!(again.contains("0 tasks to run"), "{again}");
    let (code, stdout, stderr) = output(flow(&cache_b).args(["run", RECIPE, "--out"]).arg(&out_b));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("sample   0 tasks run, 4 done already"),
        "{stdout}"
    );
    assert!(
        stdout.contains("map      0 tasks run, 4 done already"),
        "{stdout}"
    );

    // flow status reads the same from the cache.
    let (code, stdout, stderr) = output(flow(&cache_a).args(["status", "--plan"]).arg(&plan_path));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("map           4      4        0       0"),
        "{stdout}"
    );

    // A deleted output makes its task missing again; running it writes the same bytes.
    std::fs::remove_file(out_a.join("18TXQ/classes.tif")).unwrap();
    let again = plan(&cache_a, &out_a, &dir.path().join("plan3.json"), &[]);
    assert!(again.contains("1 tasks to run"), "{again}");
    let (code, stderr) = task(&cache_a, &dir.path().join("plan3.json"), "map", 3);
    assert_eq!(code, 0, "{stderr}");
    assert_same_outputs(&out_a, &out_b);
}

#[test]
fn a_failed_task_is_recorded_with_its_code_and_a_changed_recipe_is_not_run_from_an_old_plan() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let plan_path = dir.path().join("plan.json");
    plan(&cache, &out, &plan_path, &["--tiles", "18TWR,18TXQ"]);

    let (code, _, stderr) = output(
        flow(&cache)
            .args(["task", "run", "--plan"])
            .arg(&plan_path)
            .args(["--stage", "sample"])
            .env("SLURM_ARRAY_TASK_ID", "1")
            .env("FLOW_FAILPOINT", "sample:1:4:once"),
    );
    assert_eq!(code, 4, "{stderr}");
    let (code, stdout, _) = output(flow(&cache).args(["status", "--plan"]).arg(&plan_path));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("sample        2      0        1       1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sample/1 (18TXQ): exit 4 (retryable)"),
        "{stdout}"
    );
    // `once`: the second attempt runs.
    let (code, _, stderr) = output(
        flow(&cache)
            .args(["task", "run", "--plan"])
            .arg(&plan_path)
            .args(["--stage", "sample"])
            .env("JOB_COMPLETION_INDEX", "1")
            .env("FLOW_FAILPOINT", "sample:1:4:once"),
    );
    assert_eq!(code, 0, "{stderr}");

    // Out-of-range index and unknown stage: exit 2 naming what there is.
    let (code, stderr) = task(&cache, &plan_path, "map", 2);
    assert_eq!(code, 2);
    assert!(stderr.contains("stage `map` has 2 tasks"), "{stderr}");
    let (code, stderr) = task(&cache, &plan_path, "predict", 0);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("the stages are sample, fit, map"),
        "{stderr}"
    );

    // No index at all.
    let (code, _, stderr) = output(
        flow(&cache)
            .args(["task", "run", "--plan"])
            .arg(&plan_path)
            .args(["--stage", "map"])
            .env_remove("SLURM_ARRAY_TASK_ID")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("AWS_BATCH_JOB_ARRAY_INDEX"),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("no task index"), "{stderr}");

    // The plan names a recipe; an edited recipe is not run from the old plan.
    let recipe = dir.path().join("r.toml");
    let text = std::fs::read_to_string(root().join(RECIPE)).unwrap();
    std::fs::write(&recipe, &text).unwrap();
    let plan2 = dir.path().join("plan2.json");
    let (code, _, stderr) = output(
        flow(&cache)
            .args(["plan"])
            .arg(&recipe)
            .arg("--out")
            .arg(&out)
            .arg("--output")
            .arg(&plan2),
    );
    assert_eq!(code, 0, "{stderr}");
    std::fs::write(&recipe, text.replace("k = 5", "k = 4")).unwrap();
    let (code, stderr) = task(&cache, &plan2, "fit", 0);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("plan again"), "{stderr}");
}

#[test]
fn scale_errors_point_at_the_recipe() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let text = std::fs::read_to_string(root().join(RECIPE)).unwrap();
    let cases = [
        (
            text.replace("tile = \"18TWR\"   #", "#"),
            "each unit sets params.tile",
        ),
        (
            text.replace("gather = [\"fit\"]", "gather = [\"fitt\"]"),
            "`fitt` is not a node of this recipe",
        ),
        (
            text.replace(
                "path = \"${params.tile}/classes.tif\"",
                "path = \"classes.tif\"",
            ),
            "both write classes.tif",
        ),
        (
            text.replace("tiles = [", "tiles = [\"18TWR\", "),
            "`18TWR` appears twice in `tiles`",
        ),
    ];
    for (i, (recipe, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("r{i}.toml"));
        std::fs::write(&path, recipe).unwrap();
        let (code, stdout, stderr) = output(flow(&cache).arg("plan").arg(&path));
        assert_eq!(code, 2, "{message}: {stdout}\n{stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
    }
}

#[test]
fn units_are_tiles_times_dates() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let scene = dir.path().join("mosaic");
    let (code, _, stderr) = output(
        flow(&cache)
            .args(["fixture", "mosaic", "--size", "60", "--dates", "2", "--out"])
            .arg(&scene),
    );
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(root().join(RECIPE))
        .unwrap()
        .replace(
            "\"builtin:mosaic\"",
            &format!("{:?}", scene.join("items.json")),
        )
        .replace(
            "gather = [\"fit\"]",
            "dates = [\"2021-08-03\", \"2021-07-14\"]\ngather = [\"fit\"]",
        )
        .replace("k = 5\n", "k = 5\ndate = \"2021-08-03\"\n")
        .replace(
            "resolution = 20\n",
            "resolution = 20\ntime = \"${params.date}\"\n",
        )
        .replace(
            "${params.tile}/classes.tif",
            "${params.tile}/${params.date}/classes.tif",
        );
    let recipe = dir.path().join("dates.toml");
    std::fs::write(&recipe, text).unwrap();
    let out = dir.path().join("out");
    let plan_path = dir.path().join("plan.json");
    let (code, stdout, stderr) = output(
        flow(&cache)
            .arg("plan")
            .arg(&recipe)
            .args(["--tiles", "18TWR,18TXQ", "--out"])
            .arg(&out)
            .arg("--output")
            .arg(&plan_path),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("4 units (2 tiles x 2 dates)"), "{stdout}");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    let units: Vec<&str> = file["stages"][2]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["unit"].as_str().unwrap())
        .collect();
    assert_eq!(
        units,
        [
            "18TWR@2021-08-03",
            "18TWR@2021-07-14",
            "18TXQ@2021-08-03",
            "18TXQ@2021-07-14"
        ]
    );
    let (code, stdout, stderr) = output(
        flow(&cache)
            .arg("run")
            .arg(&recipe)
            .args(["--tiles", "18TWR,18TXQ", "--out"])
            .arg(&out),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("map      4 tasks run"), "{stdout}");
    let read = |p: &str| std::fs::read(out.join(p)).unwrap();
    // One date is clear and the other cloudy: the two maps of a tile differ.
    assert_ne!(
        read("18TWR/2021-08-03/classes.tif"),
        read("18TWR/2021-07-14/classes.tif")
    );
    assert!(out.join("18TXQ/2021-07-14/classes.tif").exists());
}

#[test]
fn a_unit_without_valid_pixels_gives_nothing_to_the_fit_and_maps_to_nodata() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // Every tile stacked on the west column's bounds: the east tiles have no data there.
    let text = std::fs::read_to_string(root().join(RECIPE))
        .unwrap()
        .replace(
            "resolution = 20\n",
            "resolution = 20\nbounds = [499980, 5094840, 502560, 5100000]\n",
        );
    let recipe = dir.path().join("west.toml");
    std::fs::write(&recipe, text).unwrap();
    let run = |out: &Path, tiles: &str| {
        let (code, stdout, stderr) = output(
            flow(&cache)
                .arg("run")
                .arg(&recipe)
                .args(["--tiles", tiles, "--out"])
                .arg(out),
        );
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        stderr
    };
    let all = dir.path().join("all");
    let stderr = run(&all, "18TWR,18TXR,18TWQ,18TXQ");
    assert!(
        stderr.contains("18TXR/sample: the matrix has no rows"),
        "{stderr}"
    );
    let west = dir.path().join("west");
    run(&west, "18TWR,18TWQ");
    // The empty samples change nothing in the fit.
    assert_eq!(
        std::fs::read(all.join("model.json")).unwrap(),
        std::fs::read(west.join("model.json")).unwrap()
    );
    let ds = gdal::Dataset::open(all.join("18TXR/classes.tif")).unwrap();
    let band = ds.rasterband(1).unwrap();
    let nodata = band.no_data_value().unwrap();
    let (w, h) = ds.raster_size();
    let data = band.read_as::<f64>((0, 0), (w, h), (w, h), None).unwrap();
    assert!(data.data().iter().all(|v| *v == nodata));
}

#[test]
fn a_grid_cuts_the_aoi_into_cells_that_each_run_as_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let recipe = dir.path().join("grid.toml");
    let base = root().join("recipes/timberlea_kmeans.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"extends = {base:?}
name = "timberlea-grid"

[params]
tile = "r0c0"
bbox = [-73.9120245, 45.4263471, -73.8847303, 45.4445361]

[scale]
grid = 0.01
gather = ["fit"]

[nodes.stack]
bounds_latlon = "${{params.bbox}}"

[nodes.normalize]
statistics = [[0, 1]]

[nodes.sample]
kind = "sample"
input = "flatten"
size = 2000

[nodes.fit]
input = "sample"

[nodes.classes_tif]
path = "${{params.tile}}/classes.tif"

[nodes.quicklook]
path = "${{params.tile}}/classes.png"

[nodes.model_json]
path = "${{params.tile}}/model.json"
"#
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let plan_path = dir.path().join("plan.json");
    let (code, stdout, stderr) = output(
        flow(&cache)
            .arg("plan")
            .arg(&recipe)
            .args(["--profile", "offline", "--out"])
            .arg(&out)
            .arg("--output")
            .arg(&plan_path),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The polygon spans 0.0273 x 0.0182 degrees: 3 x 2 cells of 0.01, all meeting it.
    assert!(stdout.contains("6 units (6 tiles)"), "{stdout}");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_path).unwrap()).unwrap();
    assert_eq!(
        file["tiles"],
        serde_json::json!(["r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"])
    );

    let (code, stdout, stderr) = output(
        flow(&cache)
            .arg("run")
            .arg(&recipe)
            .args(["--profile", "offline", "--tiles", "r0c0,r1c2", "--out"])
            .arg(&out),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // Each cell's map covers its cell: the north-west one starts at the area's west and north.
    let bounds = |tile: &str| {
        let ds = gdal::Dataset::open(out.join(tile).join("classes.tif")).unwrap();
        let (w, h) = ds.raster_size();
        let t = ds.geo_transform().unwrap();
        (t[0], t[3], t[0] + t[1] * w as f64, t[3] + t[5] * h as f64)
    };
    let (nw, se) = (bounds("r0c0"), bounds("r1c2"));
    assert!(nw.0 < se.0 && nw.1 > se.1, "{nw:?} {se:?}");
    assert!(
        nw.2 - nw.0 < 1000.0,
        "a cell of 0.01 degrees is under 1 km wide: {nw:?}"
    );
    assert!(!out.join("r0c1").exists());

    // A grid needs an aoi and a bbox param; a cell that is not in the grid is refused.
    let (code, _, stderr) = output(flow(&cache).arg("plan").arg(&recipe).args([
        "--profile",
        "offline",
        "--tiles",
        "r9c9",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("`r9c9` is not a cell of the recipe's grid"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("bbox = [", "bbox_ = [")).unwrap();
    let (code, _, stderr) = output(flow(&cache).arg("plan").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("each cell sets params.bbox"), "{stderr}");
}
