//! Time steps chosen by date (`time`, `times`) on `stack`, `composite` and `flatten`, through
//! `flow run`: the offline scene's two dates plus a third item (a copy of August's on
//! 2021-07-20), checked against the cube of every date.

use std::path::{Path, PathBuf};

use gdal::Metadata as _;

use crate::support::{flow, output, write_scene};

const AUGUST: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";

/// The dates of the three items, oldest first.
const DATES: [&str; 3] = [
    "2021-07-14T15:49:11Z",
    "2021-07-20T10:00:00Z",
    "2021-08-03T15:49:09Z",
];

/// Writes the offline scene into `dir/scene` with a catalog `items3.json` of its two items and
/// a copy of August's dated 2021-07-20 (the same files); returns the catalog's path.
fn three_dates(cache: &Path, dir: &Path) -> PathBuf {
    let scene = dir.join("scene");
    write_scene(cache, &scene);
    let mut items: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scene.join("items.json")).unwrap()).unwrap();
    let features = items["features"].as_array_mut().unwrap();
    let mut extra = features.iter().find(|f| f["id"] == AUGUST).unwrap().clone();
    extra["id"] = "S2X_MSIL2A_20210720T100000_COPY".into();
    extra["properties"]["datetime"] = DATES[1].into();
    features.push(extra);
    // Hrefs are relative to the catalog: it stays beside the item directories.
    let catalog = scene.join("items3.json");
    std::fs::write(&catalog, items.to_string()).unwrap();
    catalog
}

/// Stacks B04 and B08 of every date and of the dates chosen, composites and flattens some of
/// them, and writes it all.
fn recipe(catalog: &Path) -> String {
    let stack = |id: &str, select: &str| {
        format!(
            "[nodes.{id}]\nkind = \"stack\"\ninput = \"search\"\nassets = [\"B04\", \"B08\"]\n\
             resolution = 10\nbounds_latlon = [-73.9120245, 45.4263471, -73.883357, 45.4445361]\n\
             {select}\n\n[nodes.{id}_tif]\nkind = \"write\"\ninput = \"{id}\"\npath = \"{id}.tif\"\n\n"
        )
    };
    let mut r = format!(
        "name = \"time-select\"\n\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"{}\"\n\n",
        catalog.display()
    );
    r += &stack("all", "");
    r += &stack("one", "time = \"2021-07-20\"");
    r += &stack("range", "time = \"2021-07-14/2021-07-31\"");
    r += &stack("list", "times = [\"2021-08-03\", \"2021-07-14\"]");
    r += r#"
[nodes.comp]
kind = "composite"
input = "all"
method = "mean"
time = "../2021-07-31"

[nodes.comp_tif]
kind = "write"
input = "comp"
path = "comp.tif"

[nodes.flat]
kind = "flatten"
input = "all"
time = "2021-07-14/2021-08-03"

[nodes.fit]
kind = "kmeans-fit"
input = "flat"
k = 2
seed = 0

[nodes.model]
kind = "write"
input = "fit"
path = "model.json"

[nodes.flat_aug]
kind = "flatten"
input = "all"
times = ["2021-08"]

[nodes.fit_aug]
kind = "kmeans-fit"
input = "flat_aug"
k = 2
seed = 0

[nodes.model_aug]
kind = "write"
input = "fit_aug"
path = "model_aug.json"
"#;
    r
}

/// A GeoTIFF as GDAL reads it: each band's pixels (f32) and `datetime`.
#[derive(Debug, PartialEq)]
struct Bands {
    pixels: Vec<Vec<f32>>,
    times: Vec<String>,
}

impl Bands {
    fn read(path: &Path) -> Bands {
        let ds = gdal::Dataset::open(path).unwrap();
        let size = ds.raster_size();
        let (mut pixels, mut times) = (Vec::new(), Vec::new());
        for band in ds.rasterbands() {
            let band = band.unwrap();
            let buf = band.read_as::<f32>((0, 0), size, size, None).unwrap();
            pixels.push(buf.data().to_vec());
            times.push(band.metadata_item("datetime", "").unwrap_or_default());
        }
        Bands { pixels, times }
    }

    /// The bands of time steps `steps` (2 bands a step), as the cube of every date holds them.
    fn steps(&self, steps: &[usize]) -> Bands {
        let bands: Vec<usize> = steps.iter().flat_map(|&t| [2 * t, 2 * t + 1]).collect();
        Bands {
            pixels: bands.iter().map(|&b| self.pixels[b].clone()).collect(),
            times: bands.iter().map(|&b| self.times[b].clone()).collect(),
        }
    }

    /// Bit patterns, so that NaN equals NaN.
    fn bits(&self) -> Vec<Vec<u32>> {
        self.pixels
            .iter()
            .map(|b| b.iter().map(|v| v.to_bits()).collect())
            .collect()
    }
}

fn run(cache: &Path, recipe: &Path, out: &Path, args: &[&str]) -> (i32, String, String) {
    output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .arg("--out")
            .arg(out)
            .args(args),
    )
}

fn features(model: &Path) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(model).unwrap()).unwrap();
    m["features"].clone()
}

#[test]
fn dates_and_ranges_choose_the_time_steps_of_stack_composite_and_flatten() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = three_dates(cache.path(), dir.path());
    let path = dir.path().join("time.toml");
    std::fs::write(&path, recipe(&catalog)).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = run(cache.path(), &path, &out, &["--no-cache"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    let all = Bands::read(&out.join("all.tif"));
    assert_eq!(all.pixels.len(), 6, "3 dates x 2 bands");
    let expected_times: Vec<String> = DATES
        .iter()
        .flat_map(|d| [d.to_string(), d.to_string()])
        .collect();
    assert_eq!(all.times, expected_times);
    for (file, steps) in [
        ("one.tif", &[1][..]),
        ("range.tif", &[0, 1][..]),
        ("list.tif", &[0, 2][..]),
    ] {
        let got = Bands::read(&out.join(file));
        let want = all.steps(steps);
        assert_eq!(got.times, want.times, "{file}");
        assert!(
            got.bits() == want.bits(),
            "{file}: the pixels of steps {steps:?}"
        );
    }

    // The mean of the two July steps, recomputed from the cube; labelled with their span.
    let comp = Bands::read(&out.join("comp.tif"));
    assert_eq!(
        comp.times,
        vec![format!("{}/{}", DATES[0], DATES[1]); 2],
        "the span of the steps combined"
    );
    let mut both = 0;
    for b in 0..2 {
        for (p, &got) in comp.pixels[b].iter().enumerate() {
            let values: Vec<f64> = [all.pixels[b][p], all.pixels[2 + b][p]]
                .into_iter()
                .filter(|v| !v.is_nan())
                .map(f64::from)
                .collect();
            both += usize::from(values.len() == 2);
            let want = if values.is_empty() {
                f32::NAN
            } else {
                (values.iter().sum::<f64>() / values.len() as f64) as f32
            };
            assert_eq!(got.to_bits(), want.to_bits(), "band {b} pixel {p}");
        }
    }
    assert!(both > 1000, "most pixels have both July values: {both}");

    // Features named by date; one step keeps the band names.
    assert_eq!(
        features(&out.join("model.json")),
        serde_json::json!([
            "B04@2021-07-14",
            "B08@2021-07-14",
            "B04@2021-07-20",
            "B08@2021-07-20",
            "B04@2021-08-03",
            "B08@2021-08-03"
        ])
    );
    assert_eq!(
        features(&out.join("model_aug.json")),
        serde_json::json!(["B04", "B08"])
    );

    // The plan counts the steps chosen: each stack's time steps once the items are known, and
    // the features of each flatten.
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .args(["plan", "--json", "--no-cache"])
            .arg(&path),
    );
    assert_eq!(code, 0, "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let pixels = |id: &str| {
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {plan}"))["output"]["pixels"]
            .clone()
    };
    for (id, times) in [
        ("all", 3),
        ("one", 1),
        ("range", 2),
        ("list", 2),
        ("comp", 1),
    ] {
        assert_eq!(pixels(id)["times"], times, "{id}: {}", pixels(id));
    }
    assert_eq!(pixels("flat")["bands"], 6, "{}", pixels("flat"));
    assert_eq!(pixels("flat_aug")["bands"], 2, "{}", pixels("flat_aug"));

    // Window by window, the same files.
    let windowed = dir.path().join("windowed");
    let (code, stdout, stderr) = run(
        cache.path(),
        &path,
        &windowed,
        &["--no-cache", "--window", "50"],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report = std::fs::read_to_string(windowed.join("run.json")).unwrap();
    assert!(report.contains("\"Deferred\""), "not windowed: {report}");
    for file in ["all.tif", "one.tif", "range.tif", "list.tif", "comp.tif"] {
        let (a, b) = (
            Bands::read(&out.join(file)),
            Bands::read(&windowed.join(file)),
        );
        assert_eq!(a.times, b.times, "{file}");
        assert!(a.bits() == b.bits(), "{file} differs in windows of 50");
    }
    for file in ["model.json", "model_aug.json"] {
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(windowed.join(file)).unwrap(),
            "{file} differs in windows of 50"
        );
    }
}

#[test]
fn a_date_that_matches_nothing_is_bad_data_naming_the_dates_available() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = three_dates(cache.path(), dir.path());
    let available = "the dates available: 2021-07-14, 2021-07-20, 2021-08-03";
    let stack = format!(
        "name = \"no-date\"\n\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"{}\"\n\n\
         [nodes.cube]\nkind = \"stack\"\ninput = \"search\"\nassets = [\"B04\"]\nresolution = 10\n\
         bounds_latlon = [-73.9120245, 45.4263471, -73.883357, 45.4445361]\n",
        catalog.display()
    );
    for (extra, node, selection) in [
        (
            "time = \"2021-07-15\"\n",
            "stack",
            "`time = \"2021-07-15\"` selects none of the 3 item(s)",
        ),
        (
            "\n[nodes.flat]\nkind = \"flatten\"\ninput = \"cube\"\ntimes = [\"2021-06\", \"2021-09-01/..\"]\n",
            "flatten",
            "`times = [\"2021-06\", \"2021-09-01/..\"]` selects none of the 3 time step(s)",
        ),
        (
            "\n[nodes.comp]\nkind = \"composite\"\ninput = \"cube\"\ntime = \"../2021-07-13\"\n",
            "composite",
            "`time = \"../2021-07-13\"` selects none of the 3 time step(s)",
        ),
    ] {
        let path = dir.path().join(format!("{node}.toml"));
        std::fs::write(&path, format!("{stack}{extra}")).unwrap();
        let (code, stdout, stderr) = run(cache.path(), &path, &dir.path().join("out"), &[]);
        assert_eq!(code, 3, "{node}: {stdout}\n{stderr}");
        for needle in [&format!("{node}: {selection}"), available] {
            assert!(stderr.contains(needle), "{node}: `{needle}` in {stderr}");
        }
    }
}

#[test]
fn a_malformed_date_is_located_in_the_recipe() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "name = \"bad-date\"\n\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"builtin:timberlea\"\n\n\
         [nodes.cube]\nkind = \"stack\"\ninput = \"search\"\nassets = [\"B04\"]\nresolution = 10\n\
         time = \"2021-07-32\"\n\n\
         [nodes.flat]\nkind = \"flatten\"\ninput = \"cube\"\ntimes = [\"2021-07-14\", \"14/07/2021\"]\n",
    )
    .unwrap();
    let (code, _, stderr) = output(flow(cache.path()).arg("validate").arg(&path));
    assert_eq!(code, 2, "{stderr}");
    let file = path.display().to_string();
    for needle in [
        format!("{file}:12:8"),
        "`2021-07-32` is not a date".into(),
        format!("{file}:17:9"),
        "`14/07/2021`".into(),
    ] {
        assert!(stderr.contains(&needle), "`{needle}` in {stderr}");
    }
}
