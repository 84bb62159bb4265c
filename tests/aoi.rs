use std::path::Path;

use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};

use crate::support::{flow, output, root};

/// The Timberlea polygon, as the recipe's `aoi` states it.
const POLYGON: [[f64; 2]; 5] = [
    [-73.8847303, 45.4294192],
    [-73.883357, 45.4445361],
    [-73.9108229, 45.4442049],
    [-73.9120245, 45.4263471],
    [-73.8847303, 45.4294192],
];

/// The class map of `recipe` run offline with `args`: labels, geotransform, size.
fn classes_of(
    cache: &Path,
    recipe: &Path,
    out: &Path,
    args: &[&str],
) -> (Vec<u8>, [f64; 6], (usize, usize)) {
    let (code, stdout, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .args(["--profile", "offline", "--out"])
            .arg(out)
            .args(args),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let ds = gdal::Dataset::open(out.join("timberlea_classes.tif")).unwrap();
    let size = ds.raster_size();
    let band = ds.rasterband(1).unwrap();
    assert_eq!(band.no_data_value(), Some(255.0));
    let data = band.read_as::<u8>((0, 0), size, size, None).unwrap();
    (data.data().to_vec(), ds.geo_transform().unwrap(), size)
}

/// The class map of the Timberlea recipe run offline with `args`.
fn classes(cache: &Path, out: &Path, args: &[&str]) -> (Vec<u8>, [f64; 6], (usize, usize)) {
    classes_of(
        cache,
        &root().join("recipes/timberlea_kmeans.toml"),
        out,
        args,
    )
}

/// What rasterio's `geometry_mask(transform_geom("EPSG:4326", crs, polygon), all_touched=False,
/// invert=True)` gives: the polygon's vertices reprojected by OGR, burned by GDAL's rasterizer.
fn rasterio_mask(transform: [f64; 6], (w, h): (usize, usize), epsg: u32) -> Vec<bool> {
    let srs = |code| {
        let mut s = SpatialRef::from_epsg(code).unwrap();
        s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        s
    };
    let ring: Vec<String> = POLYGON
        .iter()
        .map(|p| format!("{} {}", p[0], p[1]))
        .collect();
    let mut polygon =
        gdal::vector::Geometry::from_wkt(&format!("POLYGON(({}))", ring.join(", "))).unwrap();
    polygon.set_spatial_ref(srs(4326));
    let polygon = polygon.transform_to(&srs(epsg)).unwrap();
    let driver = gdal::DriverManager::get_driver_by_name("MEM").unwrap();
    let mut ds = driver.create_with_band_type::<u8, _>("", w, h, 1).unwrap();
    ds.set_geo_transform(&transform).unwrap();
    ds.set_spatial_ref(&srs(epsg)).unwrap();
    let options = gdal::raster::RasterizeOptions {
        all_touched: false,
        ..Default::default()
    };
    gdal::raster::rasterize(&mut ds, &[1], &[polygon], &[1.0], Some(options)).unwrap();
    let burned = ds
        .rasterband(1)
        .unwrap()
        .read_as::<u8>((0, 0), (w, h), (w, h), None)
        .unwrap();
    burned.data().iter().map(|&v| v == 1).collect()
}

#[test]
fn the_timberlea_aoi_clips_every_output_to_the_polygon_as_rasterio_would() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Today's map: the whole bounding box, as the notebook classified it.
    let (bbox, _, _) = classes(
        cache.path(),
        &dir.path().join("bbox"),
        &["--set", "stack.clip=false"],
    );
    let out = dir.path().join("aoi");
    let (clipped, transform, size) = classes(cache.path(), &out, &[]);
    assert_eq!(bbox.len(), clipped.len());

    let inside = rasterio_mask(transform, size, 32618);
    let outside = inside.iter().filter(|&&i| !i).count();
    assert!(
        outside > 1000 && outside < inside.len() / 2,
        "the polygon cuts the bounding box's corners: {outside} pixels outside"
    );
    let (mut same, mut valid) = (0, 0);
    for (i, (&a, &b)) in bbox.iter().zip(&clipped).enumerate() {
        if !inside[i] {
            assert_eq!(b, 255, "pixel {i} is outside the polygon but has class {b}");
            continue;
        }
        // Inside, nodata is exactly today's nodata, and the classes are today's classes.
        assert_eq!(a == 255, b == 255, "pixel {i}: {a} before, {b} clipped");
        if a != 255 {
            valid += 1;
            same += usize::from(a == b);
        }
    }
    // The fit sees only the polygon's pixels now, so a pixel on the edge between two classes
    // may change sides; the classes and their ids are today's.
    let agreement = same as f64 / valid as f64;
    println!("{same} of {valid} pixels inside keep today's class ({agreement:.5})");
    assert!(agreement > 0.999, "{same} of {valid}");

    // The model's class counts cover the pixels inside only, and the PNG is written.
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timberlea_model.json")).unwrap()).unwrap();
    let counted: u64 = model["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(counted as usize, valid);
    assert!(out.join("timberlea_classes.png").is_file());
}

#[test]
fn an_aoi_file_a_bbox_and_bad_areas() {
    let dir = tempfile::tempdir().unwrap();
    let feature = serde_json::json!({
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": "Timberlea"},
                      "geometry": {"type": "Polygon", "coordinates": [POLYGON]}}]
    });
    std::fs::write(dir.path().join("timberlea.geojson"), feature.to_string()).unwrap();
    let base = root().join("recipes/timberlea_kmeans.toml");
    let recipe = dir.path().join("r.toml");
    let validate = |aoi: &str| {
        let text = format!(
            "extends = {}\naoi = {aoi}\n",
            serde_json::to_string(&base.display().to_string()).unwrap()
        );
        std::fs::write(&recipe, text).unwrap();
        output(flow(dir.path()).args(["validate", "--plan"]).arg(&recipe))
    };
    let stack_aoi = |stdout: &str| {
        let plan: serde_json::Value = serde_json::from_str(stdout).unwrap();
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "stack")
            .unwrap()["params"]["aoi"]
            .clone()
    };
    // A GeoJSON file relative to the recipe: its one feature's geometry reaches the nodes.
    let (code, stdout, stderr) = validate("\"timberlea.geojson\"");
    assert_eq!(code, 0, "{stderr}");
    let aoi = stack_aoi(&stdout);
    assert_eq!(aoi["type"], "GeometryCollection");
    assert_eq!(aoi["geometries"][0]["coordinates"][0][1][0], -73.883357);
    // A bbox becomes its rectangle.
    let (code, stdout, stderr) = validate("[-73.92, 45.42, -73.88, 45.45]");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stack_aoi(&stdout)["coordinates"][0][2][0], -73.88);
    // Projected coordinates, a missing file and a point are located at `aoi`.
    for (aoi, says) in [
        ("[600000, 5000000, 600100, 5000100]", "longitude / latitude"),
        ("\"nowhere.geojson\"", "nowhere.geojson"),
        ("{ type = \"Point\", coordinates = [1, 2] }", "not a Point"),
    ] {
        let (code, _, stderr) = validate(aoi);
        assert_eq!(code, 2, "{aoi}: {stderr}");
        assert!(stderr.contains(says), "{aoi}: {stderr}");
        assert!(stderr.contains("r.toml:2:7"), "{aoi}: {stderr}");
    }
}

#[test]
fn today_s_model_maps_the_polygon_with_today_s_labels_inside() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bbox, _, _) = classes(
        cache.path(),
        &dir.path().join("bbox"),
        &["--set", "stack.clip=false"],
    );
    // The fit stays on the notebook's box (today's model and scaling); the map is made from the
    // clipped stack with them: every output is clipped, and inside nothing may change.
    std::fs::copy(
        root().join("recipes/timberlea_kmeans.toml"),
        dir.path().join("timberlea_kmeans.toml"),
    )
    .unwrap();
    let recipe = dir.path().join("map_the_polygon.toml");
    std::fs::write(
        &recipe,
        r#"extends = "timberlea_kmeans.toml"
[nodes.stack]
clip = false
[nodes.stack_aoi]
kind = "stack"
input = "sign"
assets = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]
resolution = 10
[nodes.mask_aoi]
kind = "mask-nodata"
input = "stack_aoi"
nodata = 0
[nodes.normalize_aoi]
kind = "normalize"
inputs = { input = "mask_aoi", statistics = "normalize" }
[nodes.flatten_aoi]
kind = "flatten"
input = "normalize_aoi"
[nodes.predict_aoi]
kind = "predict"
inputs = { matrix = "flatten_aoi", model = "fit" }
[nodes.classes_aoi]
kind = "reshape"
inputs = { input = "predict_aoi", model = "fit" }
[nodes.classes_tif]
inputs = { input = "classes_aoi", items = "search" }
[nodes.quicklook]
inputs = { input = "classes_aoi", rgb = "mask_aoi" }
[nodes.model_json]
inputs = { input = "fit", labels = "classes_aoi", spectra = "mask_aoi" }
"#,
    )
    .unwrap();
    let (clipped, transform, size) =
        classes_of(cache.path(), &recipe, &dir.path().join("polygon"), &[]);
    let inside = rasterio_mask(transform, size, 32618);
    for (i, (&a, &b)) in bbox.iter().zip(&clipped).enumerate() {
        let want = if inside[i] { a } else { 255 };
        assert_eq!(
            b, want,
            "pixel {i}: today {a}, mapped {b}, inside {}",
            inside[i]
        );
    }
}
