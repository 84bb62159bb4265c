//! `read`: rasters, class maps and models written by `write` read back as they were; class maps
//! warped onto other grids as GDAL's nearest warp (`gdalwarp -r near`) puts them there; files
//! that are missing or unusable.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use flow_core::{BandInfo, ClassInfo, Grid, Labels, Model, NodeKind, Raster, Value};
use flow_nodes_raster::{ReadKind, WriteKind};
use ndarray::{Array2, Array4};

fn grid(w: usize, h: usize) -> Grid {
    Grid::north_up("EPSG:32618", 585_080.0, 5_032_950.0, 10.0, w, h)
}

fn write(p: &str, input: Value, out: &Path) {
    run(&WriteKind, p, vec![("input", input)], &ctx(out)).unwrap();
}

fn read(p: &str, like: Option<Value>, dir: &Path) -> Result<Value, flow_core::NodeError> {
    run(
        &ReadKind,
        p,
        like.map(|v| ("like", v)).into_iter().collect(),
        &ctx(dir),
    )
}

/// Two time steps of three bands, with NaN, common names and wavelengths.
fn raster() -> Raster {
    let (w, h) = (7, 5);
    let mut data = Array4::from_shape_fn((2, 3, h, w), |(t, b, y, x)| {
        (t * 1000 + b * 100 + y * w + x) as f32 / 7.0 - 3.0
    });
    data[[0, 0, 1, 1]] = f32::NAN;
    data[[1, 2, 4, 6]] = f32::NAN;
    let bands = [
        ("B04", "red", 0.665),
        ("B08", "nir", 0.842),
        ("SCORE", "", 0.0),
    ]
    .iter()
    .map(|(n, c, wl)| BandInfo {
        name: n.to_string(),
        common_name: (!c.is_empty()).then(|| c.to_string()),
        wavelength: (*wl > 0.0).then_some(*wl),
        ..BandInfo::default()
    })
    .collect();
    Raster {
        data,
        grid: grid(w, h),
        bands,
        times: vec!["2021-07-14T15:49:11Z".into(), "2021-08-03T15:49:09Z".into()],
    }
}

fn same_bits(a: &Array4<f32>, b: &Array4<f32>) -> bool {
    a.dim() == b.dim()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

#[test]
fn a_raster_written_by_write_reads_back_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    for (file, r) in [
        ("two_dates.tif", raster()),
        ("one_date.tif", {
            let mut r = raster();
            r.data = r.data.slice(ndarray::s![1..2, .., .., ..]).to_owned();
            r.times.remove(0);
            r
        }),
    ] {
        write(
            &format!("path = \"{file}\""),
            Value::Raster(r.clone()),
            dir.path(),
        );
        let Value::Raster(back) = read(&format!("path = \"{file}\""), None, dir.path()).unwrap()
        else {
            panic!("not a raster")
        };
        assert!(same_bits(&back.data, &r.data), "{file}: pixels differ");
        assert_eq!(back.grid, r.grid, "{file}");
        assert_eq!(back.bands, r.bands, "{file}");
        assert_eq!(back.times, r.times, "{file}");
    }
}

fn labels(grid: Grid) -> Labels {
    let (w, h) = (grid.width, grid.height);
    let data = Array2::from_shape_fn((h, w), |(y, x)| {
        if (x + 2 * y) % 11 == 0 {
            255
        } else {
            ((x / 3 + y / 2) % 4) as u16
        }
    });
    let classes = ["water", "forest", "crops", "town"]
        .iter()
        .enumerate()
        .map(|(id, n)| ClassInfo {
            id: id as u16,
            name: n.to_string(),
            color: [id as u8 * 60, 100, 200 - id as u8 * 40],
        })
        .collect();
    Labels {
        data,
        nodata: 255,
        classes,
        grid,
    }
}

#[test]
fn a_class_map_reads_back_with_its_names_colours_and_nodata() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(grid(23, 17));
    write(
        "path = \"classes.tif\"",
        Value::Labels(l.clone()),
        dir.path(),
    );
    let back = read("path = \"classes.tif\"\nas = \"labels\"", None, dir.path()).unwrap();
    assert_eq!(back, Value::Labels(l.clone()));
    // Names given by the recipe come first.
    let Value::Labels(renamed) = read(
        "path = \"classes.tif\"\nas = \"labels\"\nclass_names = [\"lake\"]",
        None,
        dir.path(),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(renamed.classes[0].name, "lake");
    assert_eq!(renamed.classes[1], l.classes[1]);
}

/// `gdalwarp -r near` of `src` onto `grid`, read back as u16 (nodata where nothing lands).
fn gdalwarp(src: &Path, grid: &Grid, dir: &Path, band: usize) -> Vec<f64> {
    let out = dir.join(format!(
        "gdalwarp-{}-{}.tif",
        grid.width,
        grid.crs.replace(':', "")
    ));
    let _ = std::fs::remove_file(&out);
    let (x0, y1) = (grid.transform[0], grid.transform[3]);
    let (x1, y0) = (
        x0 + grid.width as f64 * grid.transform[1],
        y1 + grid.height as f64 * grid.transform[5],
    );
    let status = Command::new("gdalwarp")
        .args(["-q", "-r", "near", "-t_srs", &grid.crs, "-te"])
        .args([x0, y0, x1, y1].map(|v| v.to_string()))
        .args(["-ts", &grid.width.to_string(), &grid.height.to_string()])
        .arg(src)
        .arg(&out)
        .status()
        .expect("gdalwarp runs (gdal-bin, scripts/setup)");
    assert!(status.success());
    let ds = gdal::Dataset::open(&out).unwrap();
    let b = ds.rasterband(band).unwrap();
    let (w, h) = b.size();
    assert_eq!((w, h), (grid.width, grid.height));
    b.read_as::<f64>((0, 0), (w, h), (w, h), None)
        .unwrap()
        .data()
        .to_vec()
}

#[test]
fn a_class_map_warped_onto_another_grid_is_gdal_s_nearest_warp() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(grid(40, 30));
    write("path = \"classes.tif\"", Value::Labels(l), dir.path());
    let src = dir.path().join("classes.tif");
    let like = |g: &Grid| {
        Value::Raster(Raster {
            data: Array4::zeros((1, 1, g.height, g.width)),
            grid: g.clone(),
            bands: vec![BandInfo {
                name: "x".into(),
                ..BandInfo::default()
            }],
            times: vec!["t".into()],
        })
    };
    for g in [
        // Finer pixels on the same lattice (replicated), shifted by half a pixel, coarser,
        // partly outside, and another CRS (a real warp).
        Grid::north_up("EPSG:32618", 585_080.0, 5_032_950.0, 5.0, 80, 60),
        Grid::north_up("EPSG:32618", 585_085.0, 5_032_945.0, 10.0, 40, 30),
        Grid::north_up("EPSG:32618", 585_060.0, 5_032_970.0, 30.0, 16, 12),
        Grid::north_up("EPSG:32618", 585_300.0, 5_032_800.0, 10.0, 40, 30),
        Grid::north_up("EPSG:3857", -8_227_900.0, 5_691_850.0, 12.0, 40, 30),
    ] {
        let Value::Labels(warped) = read(
            "path = \"classes.tif\"\nas = \"labels\"",
            Some(like(&g)),
            dir.path(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(warped.grid, g);
        let want = gdalwarp(&src, &g, dir.path(), 1);
        let got: Vec<f64> = warped.data.iter().map(|&v| f64::from(v)).collect();
        assert_eq!(got, want, "{g:?}");
        assert!(got.iter().any(|&v| v != 255.0), "{g:?}: nothing landed");
    }
    // A class map is never averaged.
    let e = ReadKind
        .build(&params(
            "path = \"classes.tif\"\nas = \"labels\"\nresampling = \"average\"",
        ))
        .err()
        .unwrap();
    assert_eq!(e.param.as_deref(), Some("resampling"));
}

#[test]
fn every_band_of_a_raster_is_warped_as_gdal_warps_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = raster();
    r.data = r.data.slice(ndarray::s![0..1, .., .., ..]).to_owned();
    r.times.truncate(1);
    write("path = \"cube.tif\"", Value::Raster(r), dir.path());
    let g = Grid::north_up("EPSG:32618", 585_083.0, 5_032_947.0, 4.0, 19, 13);
    let like = Value::Labels(Labels {
        data: Array2::zeros((g.height, g.width)),
        nodata: 9,
        classes: Vec::new(),
        grid: g.clone(),
    });
    let Value::Raster(warped) = read("path = \"cube.tif\"", Some(like), dir.path()).unwrap() else {
        panic!()
    };
    for b in 0..3 {
        let want = gdalwarp(&dir.path().join("cube.tif"), &g, dir.path(), b + 1);
        let got = warped.data.slice(ndarray::s![0, b, .., ..]);
        for (i, (&v, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                v.to_bits() == (w as f32).to_bits() || (v.is_nan() && w.is_nan()),
                "band {b}, pixel {i}: {v} vs {w}"
            );
        }
    }
}

/// A model with centroids that 8 significant digits would not give back, its scaling and info.
fn model() -> Model {
    let mut m: Model = serde_json::from_value(serde_json::json!({
        "features": ["B02", "B03", "NDVI"],
        "inertia": 1_234.567_890_123,
        "iterations": 17,
        "seed": 18_446_744_073_709_551_557u64,
        "counts": [10, 20, 30, 40],
        "info": {"init": "k-means++", "n_init": 10},
    }))
    .unwrap();
    m.centroids = ndarray::array![
        [10.000_010_5, 0.1, -0.333_333_34],
        [113.140_816, 1.0e-7, 3.402_823e38],
        [0.0, -0.0, 8.999_999],
        [117.287_994, 13.022_716_5, 1.175_494_4e-38],
    ];
    m
}

#[test]
fn a_model_json_written_by_write_reads_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    write("path = \"model.json\"", Value::Model(m.clone()), dir.path());
    let Value::Model(back) = read("path = \"model.json\"", None, dir.path()).unwrap() else {
        panic!()
    };
    let bits = |m: &Model| m.centroids.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&m));
    assert_eq!(back, m);
}

#[test]
fn a_missing_file_is_an_io_error_and_an_unusable_one_bad_data_both_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = read("path = \"nowhere/truth.tif\"", None, dir.path()).unwrap_err();
    assert_eq!(e.exit_code().code(), 5, "{e}");
    assert!(e.to_string().contains("nowhere/truth.tif"), "{e}");
    std::fs::write(dir.path().join("notes.tif"), "not a tiff").unwrap();
    let e = read("path = \"notes.tif\"", None, dir.path()).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    assert!(e.to_string().contains("notes.tif"), "{e}");
    std::fs::write(dir.path().join("model.json"), "{\"features\": []}").unwrap();
    let e = read("path = \"model.json\"", None, dir.path()).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    assert!(e.to_string().contains("model.json") && e.to_string().contains("centroids"));
    // A raster of fractions is no class map.
    write("path = \"cube.tif\"", Value::Raster(raster()), dir.path());
    let e = read("path = \"cube.tif\"\nas = \"labels\"", None, dir.path()).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    assert!(e.to_string().contains("whole number"), "{e}");
}

#[test]
fn a_file_of_a_builtin_dataset_is_read_from_its_materialized_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ctx(dir.path());
    c.datasets
        .add("timberlea", Arc::new(flow_nodes_raster::TimberleaProvider));
    let p = "path = \"builtin:timberlea/truth.tif\"\nas = \"labels\"";
    let node = ReadKind.build(&params(p)).unwrap();
    let Value::Labels(truth) = node.run(&c, &flow_core::Inputs::default()).unwrap() else {
        panic!()
    };
    assert_eq!(truth.nodata, 255);
    assert_eq!((truth.grid.width, truth.grid.height), (444, 402));
    let ids: Vec<u16> = truth.classes.iter().map(|c| c.id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    // The version of the dataset is in the key; an unknown dataset is refused before a read.
    assert!(node.key_material(&c).unwrap().is_some());
    let other = ReadKind
        .build(&params("path = \"builtin:timberlee/truth.tif\""))
        .unwrap();
    let e = other.key_material(&c).unwrap_err().to_string();
    assert!(e.contains("did you mean `builtin:timberlea`"), "{e}");
}
