//! `read` + `assess` end to end: the offline K-Means map judged against the scene's truth
//! (recipes/timberlea_assess.toml), checked against scikit-learn on the same pixels; the same
//! figures with one job or two; a changed reference file read again; a missing one.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

use crate::support::{flow, node_statuses, output, python_with_sklearn, write_scene};

/// Runs the assessment recipe with `args` into `out`, returns (exit code, stdout, stderr).
fn run(cache: &Path, out: &Path, args: &[&str]) -> (i32, String, String) {
    output(
        flow(cache)
            .args(["run", "recipes/timberlea_assess.toml", "--out"])
            .arg(out)
            .args(args),
    )
}

fn json(path: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Band 1 of a GeoTIFF over `window` (`(col, row), (w, h)`, else all of it) as u16, with its
/// nodata value and geotransform.
fn read_u16(
    path: &Path,
    window: Option<((isize, isize), (usize, usize))>,
) -> (Vec<u16>, u16, [f64; 6]) {
    let ds = gdal::Dataset::open(path).unwrap();
    let band = ds.rasterband(1).unwrap();
    let (offset, size) = window.unwrap_or(((0, 0), band.size()));
    let data = band.read_as::<u16>(offset, size, size, None).unwrap();
    (
        data.data().to_vec(),
        band.no_data_value().unwrap() as u16,
        ds.geo_transform().unwrap(),
    )
}

/// Writes `values` as raw little-endian u16 to `path`.
fn raw(path: &Path, values: &[u16]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// scikit-learn on the two maps (raw u16 files) over the pixels valid in both: the confusion
/// matrix over the union of ids, accuracy and kappa with ids as they are and after the optimal
/// one-to-one matching of map ids to reference ids (scipy's linear_sum_assignment), ARI, NMI.
const SKLEARN: &str = r#"
import json, sys
import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (accuracy_score, adjusted_rand_score, cohen_kappa_score,
                             confusion_matrix, normalized_mutual_info_score)
ref = np.fromfile(sys.argv[1], dtype="<u2")
pred = np.fromfile(sys.argv[2], dtype="<u2")
valid = (ref != int(sys.argv[3])) & (pred != int(sys.argv[4]))
ref, pred = ref[valid], pred[valid]
labels = np.union1d(ref, pred)
rows, cols = np.unique(ref), np.unique(pred)
table = np.array([[np.sum((ref == r) & (pred == c)) for c in cols] for r in rows])
ri, ci = linear_sum_assignment(table, maximize=True)
rename = {int(cols[c]): int(rows[r]) for r, c in zip(ri, ci)}
spare = iter(range(int(rows.max()) + 1, 1 << 20))
for c in cols:
    rename.setdefault(int(c), next(spare))
matched = np.array([rename[int(c)] for c in pred])
print(json.dumps({
    "pixels": int(valid.sum()),
    "labels": labels.tolist(),
    "confusion_matrix": confusion_matrix(ref, pred, labels=labels).tolist(),
    "accuracy": accuracy_score(ref, pred),
    "kappa": cohen_kappa_score(ref, pred),
    "matched_pixels": int(table[ri, ci].sum()),
    "matched_accuracy": accuracy_score(ref, matched),
    "matched_kappa": cohen_kappa_score(ref, matched),
    "ari": adjusted_rand_score(ref, pred),
    "nmi": normalized_mutual_info_score(ref, pred),
}))
"#;

/// The class map of a run in `out` and the truth map of the scene in `scene` under it, run
/// through [`SKLEARN`].
fn sklearn(out: &Path, scene: &Path, work: &Path) -> Json {
    let (map, map_nodata, gt) = read_u16(&out.join("timberlea_classes.tif"), None);
    let truth_path = scene.join("truth.tif");
    let (_, _, tgt) = read_u16(&truth_path, Some(((0, 0), (1, 1))));
    let col = ((gt[0] - tgt[0]) / tgt[1]).round() as isize;
    let row = ((gt[3] - tgt[3]) / tgt[5]).round() as isize;
    let ds = gdal::Dataset::open(out.join("timberlea_classes.tif")).unwrap();
    let (w, h) = ds.raster_size();
    let (truth, truth_nodata, _) = read_u16(&truth_path, Some(((col, row), (w, h))));
    raw(&work.join("ref.u16"), &truth);
    raw(&work.join("map.u16"), &map);
    let script = work.join("sklearn_check.py");
    std::fs::write(&script, SKLEARN).unwrap();
    let o = Command::new(python_with_sklearn())
        .arg(&script)
        .arg(work.join("ref.u16"))
        .arg(work.join("map.u16"))
        .arg(truth_nodata.to_string())
        .arg(map_nodata.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn close(doc: &Json, pointer: &str, want: &Json) {
    let (a, b) = (doc.pointer(pointer).and_then(Json::as_f64), want.as_f64());
    let (Some(a), Some(b)) = (a, b) else {
        panic!("{pointer}: {:?} vs {want}", doc.pointer(pointer))
    };
    assert!(
        (a - b).abs() <= 1e-9,
        "{pointer}: flow {a}, scikit-learn {b}"
    );
}

#[test]
fn the_offline_run_s_assessment_matches_scikit_learn() {
    let (cache, out, scene, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (code, stdout, stderr) = run(cache.path(), out.path(), &["--jobs", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let doc = json(&out.path().join("timberlea_assessment.json"));
    write_scene(cache.path(), scene.path());
    let sk = sklearn(out.path(), scene.path(), work.path());
    eprintln!(
        "offline run: OA {} kappa {} (matched), OA {} kappa {} (ids), ARI {} NMI {} over {} pixels",
        doc["overall_accuracy"],
        doc["kappa"],
        doc["by_id"]["overall_accuracy"],
        doc["by_id"]["kappa"],
        doc["adjusted_rand_index"],
        doc["normalized_mutual_information"],
        doc["pixels"]
    );
    assert_eq!(doc["pixels"], sk["pixels"]);
    // The confusion matrix, cell by cell, against scikit-learn's over the union of ids.
    let labels: Vec<u64> = sk["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let at = |id: &Json| labels.iter().position(|l| Some(*l) == id.as_u64()).unwrap();
    let mut total = 0;
    for (i, r) in doc["reference_classes"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for (j, c) in doc["map_classes"].as_array().unwrap().iter().enumerate() {
            let n = &doc["confusion_matrix"][i][j];
            assert_eq!(
                n,
                &sk["confusion_matrix"][at(&r["id"])][at(&c["id"])],
                "({i}, {j})"
            );
            total += n.as_u64().unwrap();
        }
    }
    assert_eq!(Some(total), sk["pixels"].as_u64());
    close(&doc, "/by_id/overall_accuracy", &sk["accuracy"]);
    close(&doc, "/by_id/kappa", &sk["kappa"]);
    close(&doc, "/matched/overall_accuracy", &sk["matched_accuracy"]);
    close(&doc, "/matched/kappa", &sk["matched_kappa"]);
    close(&doc, "/adjusted_rand_index", &sk["ari"]);
    close(&doc, "/normalized_mutual_information", &sk["nmi"]);
    let matched: u64 = doc["matched"]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pixels"].as_u64().unwrap())
        .sum();
    assert_eq!(Some(matched), sk["matched_pixels"].as_u64());
    // K-Means clusters: the headline is the matched figures, and it is a good map.
    assert_eq!(doc["map_ids"], "clusters");
    assert_eq!(doc["overall_accuracy"], doc["matched"]["overall_accuracy"]);
    assert!(doc["adjusted_rand_index"].as_f64().unwrap() > 0.8, "{doc}");
    // The line after the run, and the picture.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("assessment `assess`: OA "))
        .unwrap_or_else(|| panic!("no assessment line in\n{stdout}"));
    let oa = format!("OA {:.3},", doc["overall_accuracy"].as_f64().unwrap());
    assert!(
        line.contains(&oa) && line.contains("ARI ") && line.contains("NMI "),
        "{line}"
    );
    let png = gdal::Dataset::open(out.path().join("timberlea_confusion.png")).unwrap();
    assert_eq!(png.raster_count(), 3);

    // Two jobs: the same files, byte for byte.
    let (cache2, out2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, _, stderr) = run(cache2.path(), out2.path(), &["--jobs", "2"]);
    assert_eq!(code, 0, "{stderr}");
    for file in ["timberlea_assessment.json", "timberlea_confusion.png"] {
        assert_eq!(
            std::fs::read(out.path().join(file)).unwrap(),
            std::fs::read(out2.path().join(file)).unwrap(),
            "{file}"
        );
    }
}

/// The status of node `id` in the run report in `out`.
fn status(out: &Path, id: &str) -> String {
    node_statuses(out)
        .into_iter()
        .find(|(n, _)| n == id)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no node {id}"))
}

#[test]
fn a_reference_file_that_changed_is_read_again_and_a_missing_one_exits_5() {
    let (cache, scene, dir) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    write_scene(cache.path(), scene.path());
    let truth: PathBuf = dir.path().join("my truth.tif");
    std::fs::copy(scene.path().join("truth.tif"), &truth).unwrap();
    let set = format!("truth={}", truth.display());
    let out = |n: u32| dir.path().join(format!("out{n}"));
    let (code, _, stderr) = run(cache.path(), &out(1), &["--set", &set]);
    assert_eq!(code, 0, "{stderr}");
    let first = json(&out(1).join("timberlea_assessment.json"));
    // Unchanged: nothing is read again.
    let (code, _, stderr) = run(cache.path(), &out(1), &["--set", &set]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(&out(1), "truth"), "cached");
    assert_eq!(status(&out(1), "assess"), "cached");
    // A block of the truth becomes water: the file is read again, the figures follow.
    {
        let ds = gdal::Dataset::open_ex(
            &truth,
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE,
                ..Default::default()
            },
        )
        .unwrap();
        let mut band = ds.rasterband(1).unwrap();
        let mut block = gdal::raster::Buffer::new((120, 120), vec![0u8; 120 * 120]);
        band.write((150, 150), (120, 120), &mut block).unwrap();
    }
    let (code, _, stderr) = run(cache.path(), &out(1), &["--set", &set]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status(&out(1), "truth"), "computed");
    assert_eq!(status(&out(1), "assess"), "computed");
    assert_eq!(status(&out(1), "fit"), "cached");
    let second = json(&out(1).join("timberlea_assessment.json"));
    assert!(
        second["overall_accuracy"].as_f64() < first["overall_accuracy"].as_f64(),
        "{} then {}",
        first["overall_accuracy"],
        second["overall_accuracy"]
    );
    // Gone: an I/O error naming it.
    std::fs::remove_file(&truth).unwrap();
    let (code, _, stderr) = run(cache.path(), &out(2), &["--set", &set]);
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("my truth.tif"), "{stderr}");
}
