use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{flow, node_report, node_statuses, output, python_with_numpy, root};

const RECIPE: &str = "recipes/timberlea_ndmi_script.toml";

/// `flow` with the cache in `cache` and a Python that has numpy.
fn flow_py(cache: &Path) -> Command {
    let mut c = flow(cache);
    c.env("FLOW_PYTHON", python_with_numpy());
    c
}

/// `flow run RECIPE --profile offline --out OUT`: exit code, stdout, stderr.
fn run_offline(cache: &Path, recipe: &Path, out: &Path, extra: &[&str]) -> (i32, String, String) {
    output(
        flow_py(cache)
            .arg("run")
            .arg(recipe)
            .args(["--profile", "offline", "--out"])
            .arg(out)
            .args(extra),
    )
}

/// Band 1 of a GeoTIFF as f32 (NaN where nodata), with its size.
fn read_f32(path: &Path, band: usize) -> (Vec<f32>, (usize, usize)) {
    let ds = gdal::Dataset::open(path).unwrap();
    let b = ds.rasterband(band).unwrap();
    let size = ds.raster_size();
    let nodata = b.no_data_value();
    let data = b
        .read_as::<f32>((0, 0), size, size, None)
        .unwrap()
        .data()
        .iter()
        .map(|&v| match nodata {
            Some(n) if !n.is_nan() && f64::from(v) == n => f32::NAN,
            _ => v,
        })
        .collect();
    (data, size)
}

/// The status of node `id` in the run report in `out`.
fn status(out: &Path, id: &str) -> String {
    node_statuses(out)
        .into_iter()
        .find(|(n, _)| n == id)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no node `{id}`"))
}

/// A copy of the example recipe, the recipe it extends and its script in `dir`, with `extra`
/// appended to the recipe.
fn copy_example(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::copy(
        root().join("recipes/timberlea_kmeans.toml"),
        dir.join("timberlea_kmeans.toml"),
    )
    .unwrap();
    std::fs::copy(
        root().join("recipes/scripts/ndmi.py"),
        dir.join("scripts/ndmi.py"),
    )
    .unwrap();
    let recipe = dir.join("recipe.toml");
    let text = std::fs::read_to_string(root().join(RECIPE)).unwrap();
    std::fs::write(&recipe, format!("{text}\n{extra}")).unwrap();
    recipe
}

#[test]
fn the_example_computes_ndmi_as_rust_does_and_a_second_run_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_offline(cache.path(), Path::new(RECIPE), out.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(out.path(), "ndmi"), "computed");
    let ndmi = node_report(out.path(), "ndmi");
    assert_eq!(ndmi["kind"], "script");
    let features = node_report(out.path(), "features");
    assert!(
        features.to_string().contains("[1,13,207,228]"),
        "NDMI appended to the 12 bands: {features}"
    );

    // The masked cube through GDAL, in a copy of the recipe that also writes it (everything
    // else comes from the cache).
    let copy = tempfile::tempdir().unwrap();
    let recipe = copy_example(
        copy.path(),
        "[nodes.mask_tif]\nkind = \"write\"\ninput = \"mask\"\npath = \"mask.tif\"\n",
    );
    let out2 = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_offline(cache.path(), &recipe, out2.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        status(out2.path(), "ndmi"),
        "cached",
        "a copy with the same script"
    );
    // Band 10 is B11 and band 12 B8A (the order of `assets`).
    let (b11, size) = read_f32(&out2.path().join("mask.tif"), 10);
    let (b8a, _) = read_f32(&out2.path().join("mask.tif"), 12);
    let (script, script_size) = read_f32(&out.path().join("timberlea_ndmi.tif"), 1);
    assert_eq!(size, script_size);
    let mut valid = 0;
    for (i, ((&nir, &swir), &got)) in b8a.iter().zip(&b11).zip(&script).enumerate() {
        let total = nir + swir;
        let want = if total.abs() <= 1e-6 || total.is_nan() {
            f32::NAN
        } else {
            (nir - swir) / total
        };
        assert!(
            want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()),
            "pixel {i}: Rust {want}, script {got}"
        );
        valid += usize::from(!got.is_nan());
    }
    assert!(valid > b8a.len() / 2, "{valid} valid pixels");

    // The same recipe into the same directory again: nothing runs.
    let (code, _, stderr) = run_offline(cache.path(), Path::new(RECIPE), out.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(out.path(), "ndmi"), "cached");
    for (id, s) in node_statuses(out.path()) {
        assert!(
            matches!(s.as_str(), "cached" | "skipped"),
            "{id} is {s} on a rerun"
        );
    }
}

#[test]
fn a_changed_script_or_args_recompute_its_nodes_and_a_timeout_does_not() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = copy_example(dir.path(), "");
    let out = dir.path().join("out");
    let (code, _, stderr) = run_offline(cache.path(), &recipe, &out, &[]);
    assert_eq!(code, 0, "{stderr}");

    // A new timeout reuses the cached output.
    let (code, _, stderr) =
        run_offline(cache.path(), &recipe, &out, &["--set", "ndmi.timeout=20m"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(&out, "ndmi"), "cached");

    // New args: that node and what follows it.
    let (code, _, stderr) = run_offline(
        cache.path(),
        &recipe,
        &out,
        &["--set", "ndmi.args=[\"--eps\", \"0.5\"]"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(&out, "ndmi"), "computed");
    assert_eq!(status(&out, "ndmi_tif"), "computed");
    assert_eq!(status(&out, "features"), "cached");

    // The script's contents: both script nodes and what follows them, nothing before them.
    let script = dir.path().join("scripts/ndmi.py");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, format!("{text}\n# edited\n")).unwrap();
    let (code, _, stderr) = run_offline(cache.path(), &recipe, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    for id in ["ndmi", "features", "normalize", "ndmi_tif"] {
        assert_eq!(status(&out, id), "computed", "{id}");
    }
    assert_eq!(status(&out, "mask"), "cached");
}

/// A recipe in `dir` whose `stack` (B8A and B11 at 60 m over Timberlea) feeds `nodes`, with
/// `scripts` written beside it.
fn small_recipe(dir: &Path, nodes: &str, scripts: &[(&str, &str)]) -> PathBuf {
    for (name, text) in scripts {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let recipe = dir.join("small.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"script-test\"\n\
             [nodes.search]\nkind = \"stac-search\"\ncatalog = \"builtin:timberlea\"\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"search\"\nassets = [\"B8A\", \"B11\"]\n\
             resolution = 60\nbounds_latlon = [-73.9120245, 45.4263471, -73.883357, 45.4445361]\n\
             {nodes}"
        ),
    )
    .unwrap();
    recipe
}

/// `flow run` of a small recipe: exit code and stderr.
fn run_small(cache: &Path, recipe: &Path) -> (i32, String) {
    let out = recipe.with_file_name("out");
    let (code, _, stderr) = output(flow_py(cache).arg("run").arg(recipe).arg("--out").arg(out));
    (code, stderr)
}

#[test]
fn a_failing_script_exits_1_with_its_stderr() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = small_recipe(
        dir.path(),
        "[nodes.s]\nkind = \"script\"\ninputs = { cube = \"stack\" }\nscript = \"fail.py\"\n",
        &[(
            "fail.py",
            "import sys\nprint('computing...')\nraise ValueError('the moisture is ' + sys.argv[0][-7:])\n",
        )],
    );
    let (code, stderr) = run_small(cache.path(), &recipe);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("node `s` (script) failed"), "{stderr}");
    assert!(stderr.contains("exit status 1"), "{stderr}");
    assert!(stderr.contains("Traceback"), "{stderr}");
    assert!(
        stderr.contains("ValueError: the moisture is fail.py"),
        "{stderr}"
    );
}

#[test]
fn a_script_past_its_timeout_is_killed_and_exits_1() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = small_recipe(
        dir.path(),
        "[nodes.s]\nkind = \"script\"\ninput = \"search\"\nscript = \"sleep.py\"\noutput = \"json\"\ntimeout = \"1s\"\n",
        &[(
            "sleep.py",
            "import sys, time\nprint('sleeping', file=sys.stderr, flush=True)\ntime.sleep(120)\n",
        )],
    );
    let (code, stderr) = run_small(cache.path(), &recipe);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("ran longer than its timeout of 1s and was killed"),
        "{stderr}"
    );
    assert!(stderr.contains("sleeping"), "{stderr}");
}

#[test]
fn a_wrong_output_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = small_recipe(
        dir.path(),
        "[nodes.s]\nkind = \"script\"\ninputs = { cube = \"stack\" }\nscript = \"shape.py\"\nbands = [\"X\"]\n",
        &[(
            "shape.py",
            "import numpy as np\ncube = np.load('cube.npy')\nnp.save('output.npy', cube[0, :, :5, :5])\n",
        )],
    );
    let (code, stderr) = run_small(cache.path(), &recipe);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "output.npy has shape (2, 5, 5): its 5 x 5 pixels (y, x) are not the 35 x 39 of the grid of input `cube`"
        ),
        "{stderr}"
    );

    // float64 is not float32.
    std::fs::write(
        dir.path().join("shape.py"),
        "import numpy as np\ncube = np.load('cube.npy')\nnp.save('output.npy', cube[:, :1].astype(np.float64))\n",
    )
    .unwrap();
    let (code, stderr) = run_small(cache.path(), &recipe);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("holds float64 (<f8), but a raster is float32 (<f4)"),
        "{stderr}"
    );
}

#[test]
fn scripts_output_class_maps_and_json() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = small_recipe(
        dir.path(),
        "[nodes.wet]\nkind = \"script\"\ninputs = { cube = \"stack\" }\nscript = \"wet.py\"\noutput = \"labels\"\n\
         [nodes.stats]\nkind = \"script\"\ninputs = { cube = \"stack\", classes = \"wet\" }\nscript = \"stats.py\"\noutput = \"json\"\n\
         [nodes.save]\nkind = \"write\"\ninput = \"stats\"\npath = \"stats.json\"\n\
         [nodes.map]\nkind = \"write\"\ninput = \"wet\"\npath = \"wet.tif\"\n",
        &[
            (
                "wet.py",
                "import json, numpy as np\n\
                 cube = np.load('cube.npy')\n\
                 nir, swir = cube[0, 0], cube[0, 1]\n\
                 wet = np.where(np.isnan(nir + swir), 65535, (nir > swir).astype(np.uint16))\n\
                 np.save('output.npy', wet.astype(np.uint16))\n\
                 json.dump({'classes': ['dry', 'wet']}, open('output.json', 'w'))\n",
            ),
            (
                "stats.py",
                "import json, numpy as np\n\
                 labels = np.load('classes.npy')\n\
                 meta = json.load(open('classes.json'))\n\
                 node = json.load(open('node.json'))\n\
                 counts = {c['name']: int((labels == c['id']).sum()) for c in meta['classes']}\n\
                 json.dump({'counts': counts, 'pixels': int(labels.size), 'inputs': node['inputs']}, open('output.json', 'w'))\n",
            ),
        ],
    );
    let (code, stderr) = run_small(cache.path(), &recipe);
    assert_eq!(code, 0, "{stderr}");
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["pixels"], 35 * 39, "{stats}");
    assert_eq!(stats["inputs"], serde_json::json!(["classes", "cube"]));
    let dry = stats["counts"]["dry"].as_u64().unwrap();
    let wet = stats["counts"]["wet"].as_u64().unwrap();
    assert!(dry > 0 && wet > 0 && dry + wet <= 35 * 39, "{stats}");
    // The class map on the stack's grid, with the script's class names.
    let ds = gdal::Dataset::open(dir.path().join("out/wet.tif")).unwrap();
    assert_eq!(ds.raster_size(), (39, 35));
    let aux = std::fs::read_to_string(dir.path().join("out/wet.tif.aux.xml")).unwrap();
    assert!(
        aux.contains("<Category>dry</Category>") && aux.contains("<Category>wet</Category>"),
        "{aux}"
    );
}

#[test]
fn missing_files_interpreters_and_bad_input_names_are_clear_errors() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = |extra: &str| {
        format!("[nodes.s]\nkind = \"script\"\ninput = \"search\"\noutput = \"json\"\n{extra}")
    };
    let recipe = small_recipe(dir.path(), &node("script = \"nowhere.py\"\n"), &[]);
    let (code, stderr) = run_small(cache.path(), &recipe);
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains("nowhere.py: the script the recipe names cannot be read"),
        "{stderr}"
    );

    let recipe = small_recipe(
        dir.path(),
        &node("script = \"ok.py\"\ninterpreter = \"no-such-python3\"\n"),
        &[("ok.py", "print(1)\n")],
    );
    let (code, stderr) = run_small(cache.path(), &recipe);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("interpreter `no-such-python3`: not found"),
        "{stderr}"
    );

    // Input names are file names, and the declared output is typed: both checked with the
    // recipe, before anything runs.
    let recipe = small_recipe(
        dir.path(),
        "[nodes.s]\nkind = \"script\"\ninputs = { output = \"stack\", \"../x\" = \"stack\" }\nscript = \"ok.py\"\n\
         [nodes.j]\nkind = \"script\"\ninput = \"stack\"\nscript = \"ok.py\"\noutput = \"json\"\n\
         [nodes.flat]\nkind = \"flatten\"\ninput = \"j\"\n",
        &[],
    );
    let (code, _, stderr) = output(flow(cache.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot take an input port named `output`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot take an input port named `../x`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "`j` (script) outputs Json, but input `input` of `flat` (flatten) takes Raster"
        ),
        "{stderr}"
    );
}
