use std::path::Path;

use crate::support::{adjusted_rand_index, flow, output, write_scene};

const RECIPE: &str = "recipes/timberlea_kmeans.toml";

fn run_json(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap()
}

fn ids_with_status(report: &serde_json::Value, status: &str) -> Vec<String> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == status)
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

/// `flow run RECIPE --out OUT` with the cache in `cache`: exit code, stdout, stderr.
fn run_recipe(cache: &Path, recipe: &Path, out: &Path) -> (i32, String, String) {
    output(flow(cache).arg("run").arg(recipe).arg("--out").arg(out))
}

/// Reads band 1 of a GeoTIFF as u16 with its geotransform, size and EPSG code.
pub(crate) fn read_u16(
    path: &Path,
    window: Option<((isize, isize), (usize, usize))>,
) -> (Vec<u16>, [f64; 6], (usize, usize), Option<u32>) {
    let ds = gdal::Dataset::open(path).unwrap();
    let band = ds.rasterband(1).unwrap();
    let (w, h) = ds.raster_size();
    let (off, size) = window.unwrap_or(((0, 0), (w, h)));
    let buf = band.read_as::<u16>(off, size, size, None).unwrap();
    let epsg = ds
        .spatial_ref()
        .ok()
        .and_then(|s| s.auth_code().ok())
        .map(|c| c as u32);
    (
        buf.data().to_vec(),
        ds.geo_transform().unwrap(),
        (w, h),
        epsg,
    )
}

/// ARI of a class GeoTIFF against the offline scene's truth map, over pixels valid in both.
pub(crate) fn ari_against_truth(classes: &Path, scene: &Path) -> f64 {
    let (labels, gt, (w, h), _) = read_u16(classes, None);
    let truth_path = scene.join("truth.tif");
    let truth_ds = gdal::Dataset::open(&truth_path).unwrap();
    let tgt = truth_ds.geo_transform().unwrap();
    let col = ((gt[0] - tgt[0]) / tgt[1]).round() as isize;
    let row = ((gt[3] - tgt[3]) / tgt[5]).round() as isize;
    let (truth, ..) = read_u16(&truth_path, Some(((col, row), (w, h))));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (&l, &t) in labels.iter().zip(&truth) {
        if l != 255 && t != 255 {
            a.push(l);
            b.push(t);
        }
    }
    assert!(a.len() > w * h / 2, "most pixels are valid");
    adjusted_rand_index(&a, &b)
}

#[test]
fn ari_helper_is_right_on_known_cases() {
    assert!((adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7]) - 1.0).abs() < 1e-12);
    // sklearn.metrics.adjusted_rand_score([0, 0, 1, 1], [0, 0, 1, 2]) == 0.5714285714285715
    assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.5714285714285715).abs() < 1e-12);
}

#[test]
fn offline_run_makes_the_notebooks_map_and_reruns_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let scene = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        output(
            flow(cache.path())
                .args(["run", RECIPE, "--profile", "offline", "--out"])
                .arg(out.path())
                .args(extra),
        )
    };

    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    for f in [
        "timberlea_classes.tif",
        "timberlea_classes.item.json",
        "timberlea_classes.png",
        "timberlea_model.json",
        "run.json",
    ] {
        assert!(out.path().join(f).is_file(), "{f} written");
    }
    assert!(
        stdout.contains("classes of `classes`"),
        "a class table is printed:\n{stdout}"
    );
    assert!(
        stdout.contains(&out.path().display().to_string()),
        "the output directory is printed"
    );

    // The notebook's grid, exactly as stackstac makes it.
    let (labels, gt, size, epsg) = read_u16(&out.path().join("timberlea_classes.tif"), None);
    assert_eq!(size, (228, 207));
    assert_eq!(gt, [585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]);
    assert_eq!(epsg, Some(32618));
    assert!(
        labels.contains(&255),
        "the scene's nodata swath is nodata on the map"
    );

    // Quality against the scene's ground truth.
    write_scene(cache.path(), scene.path());
    let ari = ari_against_truth(&out.path().join("timberlea_classes.tif"), scene.path());
    println!("Timberlea offline, k = 4: adjusted Rand index {ari:.4}");
    assert!(
        ari > 0.5,
        "k = 4 on five true classes still separates them: ARI {ari}"
    );

    // The STAC Item beside the map, read back by flow itself (stac-search on the Item, stack of
    // its `data` asset onto a 10 m grid): the same grid and the same classes, pixel for pixel.
    let item_path = out.path().join("timberlea_classes.item.json");
    let item: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&item_path).unwrap()).unwrap();
    assert_eq!(
        item["properties"]["proj:shape"],
        serde_json::json!([207, 228])
    );
    assert_eq!(item["properties"]["datetime"], "2021-08-03T15:49:09Z");
    let reread = tempfile::tempdir().unwrap();
    let recipe = reread.path().join("reread.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"reread\"\n\n[nodes.search]\nkind = \"stac-search\"\ncatalog = {:?}\n\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"search\"\nassets = [\"data\"]\nresolution = 10\n\n\
             [nodes.tif]\nkind = \"write\"\ninput = \"stack\"\npath = \"reread.tif\"\n",
            item_path.display().to_string()
        ),
    )
    .unwrap();
    let (code, _, stderr) = run_recipe(cache.path(), &recipe, reread.path());
    assert_eq!(code, 0, "{stderr}");
    let ds = gdal::Dataset::open(reread.path().join("reread.tif")).unwrap();
    assert_eq!(ds.raster_size(), (228, 207));
    assert_eq!(ds.geo_transform().unwrap(), gt);
    let back = ds
        .rasterband(1)
        .unwrap()
        .read_as::<f32>((0, 0), (228, 207), (228, 207), None)
        .unwrap();
    for (&l, &v) in labels.iter().zip(back.data()) {
        if l == 255 {
            assert!(v.is_nan(), "nodata stays nodata");
        } else {
            assert_eq!(v, l as f32);
        }
    }

    // The run report, snapshot-tested with timings, keys and paths redacted.
    let report = run_json(out.path());
    insta::assert_json_snapshot!("timberlea_offline_run", report, {
        ".duration_ms" => "[ms]",
        ".nodes[].duration_ms" => "[ms]",
        ".nodes[].span_ms" => "[span]",
        ".nodes[].key" => "[key]",
        ".nodes[].peak_rss_bytes" => "[bytes]",
    });

    // Again: everything cached, nothing computed; the class table is still printed.
    let (code, stdout_again, stderr) = run(&[]);
    assert_eq!(code, 0, "{stderr}");
    let table =
        |s: &str| s[s.find("classes of").unwrap()..s.find("outputs in").unwrap()].to_string();
    assert_eq!(table(&stdout_again), table(&stdout));
    let report = run_json(out.path());
    assert_eq!(ids_with_status(&report, "computed"), Vec::<String>::new());
    assert_eq!(
        ids_with_status(&report, "cached").len(),
        report["nodes"].as_array().unwrap().len() - 1
    );
    assert_eq!(
        ids_with_status(&report, "skipped"),
        vec!["sign"],
        "sign is never cached and not needed"
    );

    // k = 6: exactly the fit and what follows it.
    let (code, _, stderr) = run(&["--set", "k=6"]);
    assert_eq!(code, 0, "{stderr}");
    let mut computed = ids_with_status(&run_json(out.path()), "computed");
    computed.sort();
    assert_eq!(
        computed,
        vec![
            "classes",
            "classes_tif",
            "fit",
            "model_json",
            "predict",
            "quicklook"
        ]
    );
}

#[test]
fn labels_are_identical_across_job_counts() {
    let mut models = Vec::new();
    let mut maps = Vec::new();
    for jobs in ["1", "2"] {
        let cache = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let (code, _, stderr) = output(
            flow(cache.path())
                .args([
                    "run",
                    RECIPE,
                    "--profile",
                    "offline",
                    "--no-cache",
                    "--jobs",
                    jobs,
                    "--out",
                ])
                .arg(out.path()),
        );
        assert_eq!(code, 0, "{stderr}");
        maps.push(read_u16(&out.path().join("timberlea_classes.tif"), None).0);
        models.push(std::fs::read(out.path().join("timberlea_model.json")).unwrap());
    }
    assert!(
        maps[0] == maps[1],
        "labels differ between --jobs 1 and --jobs 2"
    );
    assert!(
        models[0] == models[1],
        "model JSON differs between --jobs 1 and --jobs 2"
    );
}

/// Runs `recipe` with `--profile offline` and `extra` arguments; returns the ARI of its class map
/// against the scene's truth and its run report.
fn offline_ari(recipe: &str, extra: &[&str]) -> (f64, serde_json::Value) {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let scene = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output(
        flow(cache.path())
            .args(["run", recipe, "--profile", "offline"])
            .args(extra)
            .arg("--out")
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    write_scene(cache.path(), scene.path());
    (
        ari_against_truth(&out.path().join("timberlea_classes.tif"), scene.path()),
        run_json(out.path()),
    )
}

#[test]
fn ndvi_recipe_adds_indices_and_still_separates_the_classes() {
    let (ari, report) = offline_ari("recipes/timberlea_kmeans_ndvi.toml", &["--set", "k=5"]);
    let flat = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "flatten")
        .unwrap();
    let features: Vec<&str> = flat["output"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        features.contains(&"NDVI") && features.contains(&"NDWI"),
        "{features:?}"
    );
    assert_eq!(features.len(), 14);
    println!("Timberlea offline with NDVI and NDWI, k = 5: adjusted Rand index {ari:.4}");
    assert!(ari >= 0.8, "ARI {ari}");
}

#[test]
fn k_equal_to_the_true_classes_recovers_the_truth() {
    let (ari, _) = offline_ari(RECIPE, &["--set", "k=5"]);
    println!("Timberlea offline, k = 5: adjusted Rand index {ari:.4}");
    assert!(ari >= 0.8, "ARI {ari}");
}

#[test]
fn live_catalog_unreachable_fails_at_search_with_exit_4_and_writes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // A loopback port where nothing listens stands in for "no network" without leaving the machine.
    let (code, _, stderr) = output(
        flow(cache.path())
            .args([
                "run",
                RECIPE,
                "--set",
                "catalog=http://127.0.0.1:9/api/stac/v1",
                "--set",
                "search.retries=0",
                "--out",
            ])
            .arg(out.path()),
    );
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("search") && stderr.contains("http://127.0.0.1:9/api/stac/v1"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let written: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        written,
        vec![std::ffi::OsString::from("run.json")],
        "only the report of the failed run"
    );
}

#[test]
fn more_classes_than_valid_pixels_is_bad_data_exit_3_naming_both_numbers() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("tiny.toml");
    // A 3 x 3 pixel window of the offline scene: 9 valid pixels.
    std::fs::write(
        &recipe,
        r#"name = "tiny"
[nodes.items]
kind = "stac-search"
catalog = "builtin:timberlea"
query = { "eo:cloud_cover" = { lt = 5 } }
[nodes.stack]
kind = "stack"
input = "items"
assets = ["B02", "B03", "B04", "B08"]
resolution = 10
bounds = [586000, 5032000, 586030, 5032030]
epsg = 32618
[nodes.flat]
kind = "flatten"
input = "stack"
[nodes.fit]
kind = "kmeans-fit"
input = "flat"
k = 12
"#,
    )
    .unwrap();
    let (code, _, stderr) = run_recipe(cache.path(), &recipe, &dir.path().join("out"));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("fit") && stderr.contains("12") && stderr.contains("9 valid"),
        "{stderr}"
    );
}

/// Total class hectares printed by an offline run with `extra` settings.
fn class_hectares(extra: &[&str]) -> f64 {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .args([
                "run",
                "recipes/timberlea_kmeans.toml",
                "--profile",
                "offline",
                "--out",
            ])
            .arg(out.path())
            .args(extra),
    );
    assert_eq!(code, 0, "{stderr}");
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("classes of"))
        .skip(2)
        .take_while(|l| !l.starts_with("outputs"))
        .collect();
    assert_eq!(table.len(), 4, "{stdout}");
    table
        .iter()
        .map(|l| l.split_whitespace().last().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn class_areas_are_ground_areas_whatever_the_output_crs() {
    let utm = class_hectares(&[]);
    let mercator = class_hectares(&["--set", "stack.epsg=3857", "--set", "stack.resolution=14"]);
    let degrees = class_hectares(&[
        "--set",
        "stack.epsg=4326",
        "--set",
        "stack.resolution=0.00012",
    ]);
    // The three grids are clipped to the recipe's aoi polygon (389.8 ha on the sphere), each on
    // its own pixels: the same ground within a few per cent. Map units would give about twice
    // the area in Web Mercator at 45 N, and 0.00 ha in degrees.
    for (name, ha) in [("EPSG:3857", mercator), ("EPSG:4326", degrees)] {
        assert!(
            (ha - utm).abs() / utm < 0.05,
            "{name}: {ha} ha against {utm} ha in UTM"
        );
    }
    assert!(
        (mercator - degrees).abs() / degrees < 0.015,
        "{mercator} vs {degrees}"
    );
    assert!((utm - 389.8).abs() / 389.8 < 0.03, "{utm}");
}

#[test]
fn a_search_that_finds_nothing_says_what_it_searched_for() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .current_dir(crate::support::root())
            .args([
                "run",
                "recipes/timberlea_kmeans.toml",
                "--profile",
                "offline",
            ])
            .args(["--no-cache", "--out"])
            .arg(out.path())
            .args(["--set", r#"search.collections=["sentinel-2-l2"]"#]),
    );
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("the search found no items in")
            && all.contains(r#"collections = ["sentinel-2-l2"]"#)
            && all.contains(r#"datetime = "2021-07-01/2021-08-30""#),
        "{all}"
    );
    assert!(
        stderr.contains("stack: the input has no items: the search before it found none"),
        "{stderr}"
    );
}
