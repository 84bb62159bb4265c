//! JSON output: models with class statistics, class maps' statistics, any Json value.

use std::path::Path;

use flow_core::{Labels, Model, NodeError, Raster};
use serde_json::{json, Map, Value as Json};

use crate::error::{RasterError, Result};

/// Per-class pixel counts and areas (hectares) of a class map, and the per-class mean of every
/// band of `spectra` over the class's pixels (all time steps, NaN ignored).
fn class_stats(
    l: &Labels,
    names: Option<&[String]>,
    spectra: Option<&Raster>,
) -> Result<Vec<Json>, NodeError> {
    let classes = super::classes_of(l, names);
    let counts = l.class_counts();
    // True ground areas (flow_core::area); none where the CRS is not measured.
    let areas = l.class_areas_m2();
    let means = match spectra {
        None => None,
        Some(r) => {
            let (nt, nb, h, w) = r.data.dim();
            if (h, w) != l.data.dim() {
                return Err(NodeError::InvalidData(format!(
                    "write: `spectra` is {w} x {h} pixels but the class map is {} x {}",
                    l.grid.width, l.grid.height
                )));
            }
            let n = classes.iter().map(|c| c.id as usize + 1).max().unwrap_or(0);
            let mut sums = vec![vec![(0f64, 0u64); nb]; n];
            for ((y, x), &c) in l.data.indexed_iter() {
                if c == l.nodata || c as usize >= n {
                    continue;
                }
                for t in 0..nt {
                    for (b, s) in sums[c as usize].iter_mut().enumerate() {
                        let v = r.data[[t, b, y, x]];
                        if v.is_finite() {
                            s.0 += v as f64;
                            s.1 += 1;
                        }
                    }
                }
            }
            Some((
                sums,
                r.bands.iter().map(|b| b.name.clone()).collect::<Vec<_>>(),
            ))
        }
    };
    Ok(classes
        .iter()
        .map(|c| {
            let pixels = counts.get(c.id as usize).copied().unwrap_or(0);
            let mut o = json!({
                "id": c.id,
                "name": c.name,
                "color": c.color,
                "pixels": pixels,
                "area_ha": areas
                    .as_ref()
                    .and_then(|a| a.get(c.id as usize))
                    .map(|m2| round(m2 / 10_000.0)),
            });
            if let Some((sums, names)) = &means {
                let m: Map<String, Json> = names
                    .iter()
                    .zip(&sums[c.id as usize])
                    .map(|(n, &(s, k))| {
                        (
                            n.clone(),
                            if k == 0 {
                                Json::Null
                            } else {
                                json!(round(s / k as f64))
                            },
                        )
                    })
                    .collect();
                o["mean"] = Json::Object(m);
            }
            o
        })
        .collect())
}

fn round(v: f64) -> f64 {
    if !v.is_finite() || v == 0.0 {
        return v;
    }
    let digits = 8 - v.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// The JSON description of a model, with class statistics when `labels` is given.
pub(crate) fn model(
    m: &Model,
    labels: Option<&Labels>,
    names: Option<&[String]>,
    spectra: Option<&Raster>,
) -> Result<Json, NodeError> {
    let k = m.centroids.nrows();
    let centroids: Vec<Json> = (0..k)
        .map(|c| {
            let values: Map<String, Json> = m
                .features
                .iter()
                .enumerate()
                .map(|(f, n)| (n.clone(), json!(round(m.centroids[[c, f]] as f64))))
                .collect();
            let name = names
                .and_then(|n| n.get(c).cloned())
                .unwrap_or_else(|| format!("class {c}"));
            json!({"class": c, "name": name, "centroid": values})
        })
        .collect();
    let mut doc = json!({
        "k": k,
        "features": m.features,
        "centroids": centroids,
        "inertia": m.inertia,
        "iterations": m.iterations,
        "seed": m.seed,
        "counts": m.counts,
        "info": m.info,
    });
    if let Some(l) = labels {
        doc["classes"] = Json::Array(class_stats(l, names, spectra)?);
    } else if spectra.is_some() {
        return Err(NodeError::Input {
            port: "spectra".into(),
            message: "needs `labels` to know the classes".into(),
        });
    }
    Ok(doc)
}

/// The JSON statistics of a class map.
pub(crate) fn labels(
    l: &Labels,
    names: Option<&[String]>,
    spectra: Option<&Raster>,
) -> Result<Json, NodeError> {
    Ok(json!({
        "grid": l.grid,
        "nodata": l.nodata,
        "nodata_pixels": l.data.iter().filter(|&&v| v == l.nodata).count(),
        "classes": class_stats(l, names, spectra)?,
    }))
}

/// Writes pretty JSON with a final newline.
pub(crate) fn save(doc: &Json, path: &Path) -> Result<()> {
    let text =
        serde_json::to_string_pretty(doc).map_err(|e| RasterError::InvalidData(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| RasterError::io(path, e))
}
