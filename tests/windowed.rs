//! Windowed execution: the same recipe computed whole and window by window (`--window N`) gives
//! byte-identical outputs, for windows that divide the grid and windows that do not. A GeoTIFF
//! written window by window holds the same pixels, grid and metadata as one written whole (its
//! blocks may lie elsewhere in the file); a COG is the same file.

use std::path::Path;

use gdal::Metadata as _;

use crate::support::{flow, output};

/// The files a Timberlea run writes that must not depend on how it was computed.
const OUTPUTS: &[&str] = &[
    "timberlea_classes.tif",
    "timberlea_classes.png",
    "timberlea_model.json",
];

/// Runs `recipe` on the offline scene without the cache, with `args`, into `out`; returns its
/// run report.
fn run(cache: &Path, recipe: &str, out: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .args(["--profile", "offline", "--no-cache", "--out"])
            .arg(out)
            .args(args),
    );
    assert_eq!(code, 0, "{args:?}\n{stdout}\n{stderr}");
    std::fs::read_to_string(out.join("run.json")).unwrap()
}

/// Whole and windowed runs of `recipe` with `overrides` write the same bytes.
fn same_outputs(recipe: &str, overrides: &[&str]) {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let report = run(cache.path(), recipe, &whole, overrides);
    assert!(!report.contains("\"Deferred\""), "{report}");
    for window in ["64", "50"] {
        let out = dir.path().join(window);
        let mut args = overrides.to_vec();
        args.extend(["--window", window]);
        let report = run(cache.path(), recipe, &out, &args);
        assert!(
            report.contains("\"Deferred\""),
            "the run was not windowed: {report}"
        );
        for file in OUTPUTS {
            if file.ends_with(".tif") {
                assert_eq!(
                    Tiff::read(&whole.join(file)),
                    Tiff::read(&out.join(file)),
                    "{recipe} {overrides:?}: {file} differs in windows of {window}"
                );
                continue;
            }
            let (a, b) = (
                std::fs::read(whole.join(file)).unwrap(),
                std::fs::read(out.join(file)).unwrap(),
            );
            assert!(
                a == b,
                "{recipe} {overrides:?}: {file} differs in windows of {window}"
            );
        }
    }
}

/// What a GeoTIFF holds, as GDAL reads it: everything but where its bytes lie in the file.
#[derive(Debug, PartialEq)]
struct Tiff {
    size: (usize, usize),
    transform: [f64; 6],
    srs: String,
    /// The dataset's metadata in the default and `IMAGE_STRUCTURE` domains (`LAYOUT=COG` for a
    /// valid COG, compression, predictor, interleave).
    metadata: Vec<String>,
    structure: Vec<String>,
    bands: Vec<Band>,
    /// The category names of band 1 (kept by GDAL in the `.aux.xml` sidecar).
    categories: Vec<String>,
}

/// A band of a [`Tiff`].
#[derive(Debug, PartialEq)]
struct Band {
    data_type: String,
    /// As bits, so that a NaN nodata equals itself.
    nodata: Option<u64>,
    description: String,
    metadata: Vec<String>,
    colors: Vec<(i16, i16, i16, i16)>,
    block: (usize, usize),
    /// The pixels as f64 bits, and those of every overview.
    pixels: Vec<u64>,
    overviews: Vec<Vec<u64>>,
}

impl Tiff {
    fn read(path: &Path) -> Tiff {
        let ds = gdal::Dataset::open(path).unwrap();
        let pixels = |band: &gdal::raster::RasterBand| -> Vec<u64> {
            let size = band.size();
            let buf = band.read_as::<f64>((0, 0), size, size, None).unwrap();
            buf.data().iter().map(|v| v.to_bits()).collect()
        };
        let bands = ds
            .rasterbands()
            .map(|band| {
                let band = band.unwrap();
                let overviews = (0..band.overview_count().unwrap() as usize)
                    .map(|i| pixels(&band.overview(i).unwrap()))
                    .collect();
                Band {
                    data_type: band.band_type().name(),
                    nodata: band.no_data_value().map(f64::to_bits),
                    description: band.description().unwrap(),
                    metadata: band.metadata_domain("").unwrap_or_default(),
                    colors: band
                        .color_table()
                        .map(|t| {
                            (0..t.entry_count())
                                .map(|i| {
                                    let e = t.entry_as_rgb(i).unwrap();
                                    (e.r, e.g, e.b, e.a)
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    block: band.block_size(),
                    pixels: pixels(&band),
                    overviews,
                }
            })
            .collect();
        let mut aux = path.as_os_str().to_owned();
        aux.push(".aux.xml");
        let categories = std::fs::read_to_string(aux)
            .map(|xml| {
                xml.split("<Category>")
                    .skip(1)
                    .filter_map(|c| c.split_once("</Category>"))
                    .map(|(name, _)| name.to_string())
                    .collect()
            })
            .unwrap_or_default();
        Tiff {
            size: ds.raster_size(),
            transform: ds.geo_transform().unwrap(),
            srs: ds.spatial_ref().unwrap().to_wkt().unwrap(),
            metadata: ds.metadata_domain("").unwrap_or_default(),
            structure: ds.metadata_domain("IMAGE_STRUCTURE").unwrap_or_default(),
            bands,
            categories,
        }
    }

    /// True when GDAL reads the file as a valid cloud-optimized GeoTIFF.
    fn is_cog(&self) -> bool {
        self.structure.iter().any(|m| m == "LAYOUT=COG")
    }
}

#[test]
fn the_timberlea_recipe_gives_the_same_outputs_whole_and_in_windows() {
    same_outputs("recipes/timberlea_kmeans.toml", &[]);
}

#[test]
fn indices_percentiles_per_band_and_a_sampled_fit_give_the_same_outputs_in_windows() {
    same_outputs(
        "recipes/timberlea_kmeans_ndvi.toml",
        &[
            "--set",
            "normalize.method=\"percentile\"",
            "--set",
            "normalize.scope=\"band\"",
            "--set",
            "fit.sample=0.5",
        ],
    );
}

#[test]
fn z_scores_and_a_sample_of_a_count_give_the_same_outputs_in_windows() {
    same_outputs(
        "recipes/timberlea_kmeans.toml",
        &[
            "--set",
            "normalize.method=\"zscore\"",
            "--set",
            "fit.sample=20000",
        ],
    );
}

/// The ids of the nodes of a run report with `status`.
fn with_status(report: &str, status: &str) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == status)
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn windowed_values_are_cached_with_what_was_gathered_for_them() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |args: &[&str]| {
        let (code, stdout, stderr) = output(
            flow(cache.path())
                .arg("run")
                .arg("recipes/timberlea_kmeans.toml")
                .args(["--profile", "offline", "--window", "64", "--out"])
                .arg(&out)
                .args(args),
        );
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        std::fs::read_to_string(out.join("run.json")).unwrap()
    };
    let first = run(&[]);
    assert!(with_status(&first, "computed").contains(&"normalize".to_string()));
    let second = run(&[]);
    assert_eq!(with_status(&second, "computed"), Vec::<String>::new());
    // A new k reuses the statistics gathered for normalize: only the fit and after run.
    let third = run(&["--set", "k=5"]);
    let mut computed = with_status(&third, "computed");
    computed.sort();
    assert_eq!(
        computed,
        [
            "classes",
            "classes_tif",
            "fit",
            "model_json",
            "predict",
            "quicklook"
        ]
    );
    // A sink that reruns alone computes its windows from the stored expressions, the model
    // among them with its centroids.
    let fourth = run(&["--set", "k=5", "--set", "quicklook.path=\"again.png\""]);
    assert_eq!(with_status(&fourth, "computed"), ["quicklook"]);
    assert!(
        std::fs::read(out.join("again.png")).unwrap()
            == std::fs::read(out.join("timberlea_classes.png")).unwrap()
    );
}

/// Runs `recipe` whole and in windows of 64 and 50 with `overrides`; returns the output
/// directories, whole first.
fn whole_and_windowed(dir: &Path, recipe: &Path, overrides: &[&str]) -> Vec<std::path::PathBuf> {
    let cache = tempfile::tempdir().unwrap();
    let recipe = recipe.to_str().unwrap();
    let mut outs = Vec::new();
    for window in [None, Some("64"), Some("50")] {
        let out = dir.join(window.unwrap_or("whole"));
        let mut args = overrides.to_vec();
        args.extend(window.iter().flat_map(|w| ["--window", w]));
        let report = run(cache.path(), recipe, &out, &args);
        assert_eq!(
            report.contains("\"Deferred\""),
            window.is_some(),
            "{window:?}: {report}"
        );
        outs.push(out);
    }
    outs
}

#[test]
fn a_class_map_written_window_by_window_as_a_cog_is_the_cog_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let outs = whole_and_windowed(
        dir.path(),
        Path::new("recipes/timberlea_kmeans.toml"),
        &["--set", "classes_tif.format=\"cog\""],
    );
    let file = "timberlea_classes.tif";
    let whole = Tiff::read(&outs[0].join(file));
    assert!(whole.is_cog(), "{:?}", whole.structure);
    let band = &whole.bands[0];
    assert_eq!(band.data_type, "Byte");
    assert_eq!(band.nodata, Some(255f64.to_bits()));
    assert_eq!(
        &band.colors[..5],
        &[
            (78, 121, 167, 255),
            (242, 142, 43, 255),
            (225, 87, 89, 255),
            (118, 183, 178, 255),
            (0, 0, 0, 255)
        ]
    );
    assert_eq!(
        whole.categories,
        ["class 0", "class 1", "class 2", "class 3"]
    );
    for out in &outs[1..] {
        let windowed = Tiff::read(&out.join(file));
        assert!(
            windowed.is_cog(),
            "{}: {:?}",
            out.display(),
            windowed.structure
        );
        assert_eq!(windowed, whole, "{}", out.display());
        // Nothing is left of the GeoTIFF the COG was copied from.
        let mut left: Vec<String> = std::fs::read_dir(out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        left.sort();
        assert_eq!(left, Vec::<String>::new(), "{}", out.display());
    }
}

#[test]
fn a_cube_written_window_by_window_as_geotiff_and_cog_holds_the_pixels_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut recipe =
        std::fs::read_to_string(crate::support::root().join("recipes/timberlea_kmeans.toml"))
            .unwrap();
    recipe.push_str(
        r#"
[nodes.cube_tif]
kind = "write"
inputs = { input = "normalize", items = "search" }
path = "cube/normalized.tif"
stac_item = true

[nodes.cube_cog]
kind = "write"
input = "mask"
path = "cube/masked.tif"
format = "cog"
"#,
    );
    let path = dir.path().join("cube.toml");
    std::fs::write(&path, recipe).unwrap();
    let outs = whole_and_windowed(dir.path(), &path, &[]);
    for file in ["cube/normalized.tif", "cube/masked.tif"] {
        let whole = Tiff::read(&outs[0].join(file));
        assert_eq!(whole.bands.len(), 12, "{file}");
        assert_eq!(whole.bands[0].data_type, "Float32");
        assert_eq!(whole.bands[3].description, "B04");
        assert!(whole.bands[0]
            .nodata
            .is_some_and(|n| f64::from_bits(n).is_nan()));
        // Some pixels are NaN (no data), most are not.
        let valid = whole.bands[0]
            .pixels
            .iter()
            .filter(|&&v| !f64::from_bits(v).is_nan())
            .count();
        assert!(valid > whole.bands[0].pixels.len() / 2, "{file}: {valid}");
        assert_eq!(whole.is_cog(), file == "cube/masked.tif");
        for out in &outs[1..] {
            assert_eq!(
                Tiff::read(&out.join(file)),
                whole,
                "{file} in {}",
                out.display()
            );
        }
    }
    // The STAC Item of the windowed GeoTIFF describes the same bands.
    let item = |out: &Path| -> serde_json::Value {
        let text = std::fs::read_to_string(out.join("cube/normalized.item.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let whole = item(&outs[0]);
    for out in &outs[1..] {
        let windowed = item(out);
        assert_eq!(
            windowed["assets"]["data"]["raster:bands"],
            whole["assets"]["data"]["raster:bands"]
        );
        assert_eq!(
            windowed["properties"]["proj:shape"],
            whole["properties"]["proj:shape"]
        );
    }
}
