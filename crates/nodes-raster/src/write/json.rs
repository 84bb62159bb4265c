//! JSON output: models with class statistics, class maps' statistics, any Json value.

use std::path::Path;

use flow_core::exact::ExactSum;
use flow_core::{Labels, Model, NodeError};
use ndarray::{ArrayView2, ArrayView4};
use serde_json::{json, Map, Value as Json};

use crate::error::{RasterError, Result};

/// Per-class sums of every band of a raster over the class's pixels (all time steps, NaN
/// ignored), gathered from the whole raster or window by window. Sums are exact, so both give
/// the same means.
#[derive(Debug, Clone)]
pub(crate) struct ClassMeans {
    names: Vec<String>,
    /// `[class][band]`: the sum and the count of finite values.
    sums: Vec<Vec<(ExactSum, u64)>>,
}

impl ClassMeans {
    /// Empty sums for the classes of `labels` and these band names.
    pub(crate) fn new(labels: &Labels, names: Vec<String>) -> Self {
        let classes = labels
            .classes
            .iter()
            .map(|c| c.id as usize + 1)
            .max()
            .unwrap_or(0);
        let sums = vec![vec![(ExactSum::default(), 0u64); names.len()]; classes];
        ClassMeans { names, sums }
    }

    /// Adds the pixels of one window: its classes and the raster's values there.
    pub(crate) fn add(
        &mut self,
        labels: ArrayView2<'_, u16>,
        nodata: u16,
        raster: &ArrayView4<'_, f32>,
    ) -> Result<(), NodeError> {
        let (nt, nb, h, w) = raster.dim();
        if (h, w) != labels.dim() || nb != self.names.len() {
            return Err(NodeError::InvalidData(format!(
                "write: `spectra` is {w} x {h} pixels of {nb} bands but the class map is {} x {}",
                labels.ncols(),
                labels.nrows()
            )));
        }
        let n = self.sums.len();
        for ((y, x), &c) in labels.indexed_iter() {
            if c == nodata || c as usize >= n {
                continue;
            }
            for t in 0..nt {
                for (b, s) in self.sums[c as usize].iter_mut().enumerate() {
                    let v = raster[[t, b, y, x]];
                    if v.is_finite() {
                        s.0.add(v as f64);
                        s.1 += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds another window's sums.
    pub(crate) fn merge(&mut self, other: &ClassMeans) {
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            for (x, y) in a.iter_mut().zip(b) {
                x.0.merge(&y.0);
                x.1 += y.1;
            }
        }
    }
}

/// Per-class pixel counts and areas (hectares) of a class map, and the per-class mean of every
/// band of the `spectra` raster over the class's pixels (all time steps, NaN ignored).
fn class_stats(
    l: &Labels,
    names: Option<&[String]>,
    spectra: Option<&ClassMeans>,
) -> Result<Vec<Json>, NodeError> {
    let classes = super::classes_of(l, names);
    let counts = l.class_counts();
    // True ground areas (flow_core::area); none where the CRS is not measured.
    let areas = l.class_areas_m2();
    let means = spectra.map(|m| (&m.sums, &m.names));
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
                let empty = Vec::new();
                let m: Map<String, Json> = names
                    .iter()
                    .zip(sums.get(c.id as usize).unwrap_or(&empty))
                    .map(|(n, (s, k))| {
                        (
                            n.clone(),
                            if *k == 0 {
                                Json::Null
                            } else {
                                json!(round(s.value() / *k as f64))
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

/// `v` as a JSON number that reads back as the same f32 ([`f32_from_json`], as `read` reads a
/// model's centroids): rounded to 8 significant digits as flow always wrote centroids when that
/// reads back as `v`, else its shortest decimal (Rust's `{}` of an f32, up to 9 digits); null
/// for NaN or an infinity.
pub(crate) fn json_f32(v: f32) -> Json {
    if !v.is_finite() {
        return Json::Null;
    }
    let eight = round(f64::from(v));
    if f32_from_json(eight).to_bits() == v.to_bits() {
        return json!(eight);
    }
    format!("{v}")
        .parse::<f64>()
        .map_or(Json::Null, |d| json!(d))
}

/// The f32 that [`json_f32`] wrote as the number `v`. A number of 8 significant digits is the
/// f32 nearest to it; a shortest f32 decimal is the f32 whose shortest decimal it is (parsing it
/// as an f64 and rounding to f32 can land one f32 away when the decimal lies within an f64
/// rounding step of a midpoint between two f32, so the neighbours are tried first).
pub(crate) fn f32_from_json(v: f64) -> f32 {
    let near = v as f32;
    [near, near.next_down(), near.next_up()]
        .into_iter()
        .find(|c| format!("{c}").parse::<f64>().ok() == Some(v))
        .unwrap_or(near)
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
    spectra: Option<&ClassMeans>,
) -> Result<Json, NodeError> {
    let k = m.centroids.nrows();
    let centroids: Vec<Json> = (0..k)
        .map(|c| {
            let values: Map<String, Json> = m
                .features
                .iter()
                .enumerate()
                .map(|(f, n)| (n.clone(), json_f32(m.centroids[[c, f]])))
                .collect();
            // A classifier's classes keep the ids and names of the labels it learnt from.
            let own = m.classifier.as_ref().and_then(|k| k.classes.get(c));
            let id = own.map_or(c, |k| usize::from(k.id));
            let name = names
                .and_then(|n| n.get(id).cloned())
                .or_else(|| own.map(|k| k.name.clone()))
                .unwrap_or_else(|| format!("class {id}"));
            json!({"class": id, "name": name, "centroid": values})
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
    if !m.scaling.is_empty() {
        // One entry per feature (null for a feature never rescaled), at full precision: a model
        // read back rescales other data exactly as its training data was.
        doc["scaling"] = json!(m.scaling);
    }
    if let Some(c) = &m.classifier {
        // Whole (trees included), so that the model can be read back and applied.
        doc["classifier"] =
            serde_json::to_value(c).map_err(|e| NodeError::Failed(e.to_string()))?;
    }
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
    spectra: Option<&ClassMeans>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centroids_keep_8_digits_where_those_read_back_and_take_9_where_not() {
        // As flow has always written them.
        assert_eq!(json_f32(32.649_35), json!(32.649349));
        assert_eq!(json_f32(0.1), json!(0.1));
        // From 8 up, an f32 step comes close to a unit of the 8th digit: some need a 9th.
        let mut v = 8.0f32;
        let needs_nine = loop {
            if (round(f64::from(v)) as f32) != v {
                break v;
            }
            v = v.next_up();
        };
        let written = json_f32(needs_nine);
        assert_ne!(written, json!(round(f64::from(needs_nine))));
        assert_eq!(f32_from_json(written.as_f64().unwrap()), needs_nine);
        let digits = written
            .to_string()
            .chars()
            .filter(char::is_ascii_digit)
            .count();
        assert_eq!(digits, 9, "{written}");
    }
}
