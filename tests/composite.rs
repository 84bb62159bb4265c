//! `composite` end to end: the offline scene's two dates, cloud-masked, combined per pixel and
//! classified.

use std::path::Path;

use gdal::Metadata;

use crate::support::{adjusted_rand_index, flow, output, write_scene};

/// The notebook's AOI, both dates of the offline scene (no cloud filter), clouds masked with SCL,
/// then a median composite, classified with k = 4. The masked cube and the composite are written
/// so that the test can recompute the composite from the cube.
const RECIPE: &str = r#"
name = "composite-classes"

[nodes.search]
kind = "stac-search"
catalog = "builtin:timberlea"

[nodes.stack]
kind = "stack"
input = "search"
assets = ["B02", "B03", "B04", "B08", "B11", "B12", "SCL"]
resolution = 10
bounds_latlon = [-73.9120245, 45.4263471, -73.883357, 45.4445361]

[nodes.mask]
kind = "mask-nodata"
input = "stack"
nodata = 0
scl = "SCL"

[nodes.composite]
kind = "composite"
input = "mask"
method = "median"

[nodes.normalize]
kind = "normalize"
input = "composite"

[nodes.flatten]
kind = "flatten"
input = "normalize"

[nodes.fit]
kind = "kmeans-fit"
input = "flatten"
k = 4
seed = 0

[nodes.predict]
kind = "predict"
inputs = { matrix = "flatten", model = "fit" }

[nodes.classes]
kind = "reshape"
inputs = { input = "predict", model = "fit" }

[nodes.classes_tif]
kind = "write"
input = "classes"
path = "classes.tif"

[nodes.mask_tif]
kind = "write"
input = "mask"
path = "mask.tif"

[nodes.composite_tif]
kind = "write"
input = "composite"
path = "composite.tif"

[nodes.model]
kind = "write"
input = "fit"
path = "model.json"
"#;

/// Every band of a GeoTIFF as f32, the raster size and each band's `datetime` metadata.
struct Bands {
    data: Vec<Vec<f32>>,
    size: (usize, usize),
    times: Vec<Option<String>>,
}

fn read_bands(path: &Path) -> Bands {
    let ds = gdal::Dataset::open(path).unwrap();
    let size = ds.raster_size();
    let mut bands = Vec::new();
    let mut times = Vec::new();
    for i in 1..=ds.raster_count() {
        let band = ds.rasterband(i).unwrap();
        bands.push(
            band.read_as::<f32>((0, 0), size, size, None)
                .unwrap()
                .data()
                .to_vec(),
        );
        times.push(band.metadata_item("datetime", ""));
    }
    Bands {
        data: bands,
        size,
        times,
    }
}

#[test]
fn a_median_composite_of_the_offline_scenes_dates_is_classified() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("composite.toml");
    std::fs::write(&recipe, RECIPE).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");

    // The masked cube: 2 dates x 6 bands, date-major; the composite: 6 bands, one time step
    // labelled with the span of the dates.
    let Bands {
        data: cube,
        size,
        times: cube_times,
    } = read_bands(&out.join("mask.tif"));
    let Bands {
        data: comp,
        size: comp_size,
        times: comp_times,
    } = read_bands(&out.join("composite.tif"));
    assert_eq!((cube.len(), comp.len()), (12, 6));
    assert_eq!(size, comp_size);
    assert_eq!(
        cube_times[0].as_deref(),
        Some("2021-07-14T15:49:11Z"),
        "stack orders the dates oldest first"
    );
    for t in &comp_times {
        assert_eq!(
            t.as_deref(),
            Some("2021-07-14T15:49:11Z/2021-08-03T15:49:09Z")
        );
    }

    // The median of two dates is the mean of the valid ones (numpy.nanmedian), recomputed here
    // from the masked cube.
    let (mut only_july, mut only_august, mut both, mut neither) = (0usize, 0usize, 0usize, 0usize);
    for b in 0..6 {
        for p in 0..size.0 * size.1 {
            let (july, august) = (cube[b][p], cube[6 + b][p]);
            let expected = match (july.is_nan(), august.is_nan()) {
                (false, false) => {
                    both += 1;
                    ((f64::from(july) + f64::from(august)) / 2.0) as f32
                }
                (false, true) => {
                    only_july += 1;
                    july
                }
                (true, false) => {
                    only_august += 1;
                    august
                }
                (true, true) => {
                    neither += 1;
                    f32::NAN
                }
            };
            let got = comp[b][p];
            assert!(
                (got.is_nan() && expected.is_nan()) || got == expected,
                "band {b} pixel {p}: {july} and {august} -> {got}, expected {expected}"
            );
        }
    }
    // July's clouds are masked over much of the AOI and filled from August (August's clouds lie
    // outside the AOI); the nodata swath stays NaN.
    println!("pixels x bands: both {both}, July only {only_july}, August only {only_august}, neither {neither}");
    assert!(
        only_august > both / 10,
        "July's clouds leave gaps that August fills"
    );
    assert!(neither > 0, "the swath edge has no value at any date");

    // The model's features are plain band names: one time step, no `@date` suffix.
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(
        model["features"],
        serde_json::json!(["B02", "B03", "B04", "B08", "B11", "B12"])
    );

    // The classes, against the scene's ground truth.
    let classes = gdal::Dataset::open(out.join("classes.tif")).unwrap();
    let gt = classes.geo_transform().unwrap();
    let (w, h) = classes.raster_size();
    let band = classes.rasterband(1).unwrap();
    let nodata = band
        .no_data_value()
        .expect("the class map has a nodata value") as u16;
    let labels = band
        .read_as::<u16>((0, 0), (w, h), (w, h), None)
        .unwrap()
        .data()
        .to_vec();
    for (p, &l) in labels.iter().enumerate() {
        let valid = (0..6).all(|b| !comp[b][p].is_nan());
        assert_eq!(
            l != nodata,
            valid,
            "pixel {p}: a class exactly where the composite is valid"
        );
    }
    let scene = tempfile::tempdir().unwrap();
    write_scene(cache.path(), scene.path());
    let truth_ds = gdal::Dataset::open(scene.path().join("truth.tif")).unwrap();
    let tgt = truth_ds.geo_transform().unwrap();
    let col = ((gt[0] - tgt[0]) / tgt[1]).round() as isize;
    let row = ((gt[3] - tgt[3]) / tgt[5]).round() as isize;
    let truth = truth_ds
        .rasterband(1)
        .unwrap()
        .read_as::<u16>((col, row), (w, h), (w, h), None)
        .unwrap()
        .data()
        .to_vec();
    let (a, b): (Vec<u16>, Vec<u16>) = labels
        .iter()
        .zip(&truth)
        .filter(|(&l, &t)| l != nodata && t != 255)
        .map(|(&l, &t)| (l, t))
        .unzip();
    assert!(a.len() > w * h / 2, "most pixels have a class");
    let ari = adjusted_rand_index(&a, &b);
    println!("median composite of two dates, k = 4: adjusted Rand index {ari:.4}");
    assert!(
        ari > 0.5,
        "the composite separates the true classes: ARI {ari}"
    );
}
