//! A model JSON written by `write` ([`crate::write`]'s `json::model`) read back as the
//! [`Model`] it was written from: centroids bit for bit (`write` gives each f32 a decimal that
//! reads back as the same f32, [`f32_from_json`]), features, inertia, iterations, seed, counts and
//! `info` as they were, and any other field of [`Model`] that the document carries under its
//! own name. The class statistics (`classes`) a model JSON may hold are not part of the model.

use std::path::Path;

use flow_core::{Model, NodeError};
use ndarray::Array2;
use serde_json::Value as Json;

use crate::write::f32_from_json;

/// An error about the model file at `path` (exit 3).
fn bad(path: &Path, message: impl std::fmt::Display) -> NodeError {
    NodeError::InvalidData(format!(
        "read: {}: {message}; a model JSON is what `write` writes from a Model",
        path.display()
    ))
}

/// Reads the model JSON at `path`.
///
/// # Errors
/// An I/O error (exit 5) when the file cannot be read; exit 3 when it is not JSON or not a
/// model JSON (no features, centroids that do not name every feature, a value that is not a
/// number).
pub(super) fn read(path: &Path) -> Result<Model, NodeError> {
    let bytes = std::fs::read(path).map_err(|e| NodeError::io(path, e))?;
    let doc: Json = serde_json::from_slice(&bytes).map_err(|e| bad(path, e))?;
    parse(&doc).map_err(|m| bad(path, m))
}

/// The model a model JSON describes.
fn parse(doc: &Json) -> Result<Model, String> {
    if !doc.is_object() {
        return Err("the document is not a JSON object".into());
    }
    for key in ["features", "centroids"] {
        if doc.get(key).is_none() {
            return Err(format!("it has no `{key}`"));
        }
    }
    // Every field but the centroids, by its own name: what a newer Model adds comes along.
    let mut model: Model = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let rows = doc
        .get("centroids")
        .and_then(Json::as_array)
        .ok_or("`centroids` is not a list")?;
    if let Some(k) = doc.get("k") {
        if k.as_u64() != Some(rows.len() as u64) {
            return Err(format!("`k` is {k} but there are {} centroids", rows.len()));
        }
    }
    let nf = model.features.len();
    let mut centroids = Array2::<f32>::zeros((rows.len(), nf));
    for (c, row) in rows.iter().enumerate() {
        if let Some(class) = row.get("class") {
            // A classifier's classes keep the ids of the labels it learnt from.
            let id = model
                .classifier
                .as_ref()
                .and_then(|k| k.classes.get(c))
                .map_or(c as u64, |k| u64::from(k.id));
            if class.as_u64() != Some(id) {
                return Err(format!("centroid {c} says it is of class {class}"));
            }
        }
        let values = row
            .get("centroid")
            .and_then(Json::as_object)
            .ok_or_else(|| format!("centroid {c} has no `centroid` object"))?;
        if values.len() != nf {
            return Err(format!(
                "centroid {c} has {} values for {nf} features",
                values.len()
            ));
        }
        for (f, name) in model.features.iter().enumerate() {
            centroids[[c, f]] = match values.get(name) {
                Some(Json::Null) => f32::NAN,
                Some(v) => f32_from_json(
                    v.as_f64()
                        .ok_or_else(|| format!("centroid {c}, `{name}`: {v} is not a number"))?,
                ),
                None => return Err(format!("centroid {c} has no value for feature `{name}`")),
            };
        }
    }
    if !model.counts.is_empty() && model.counts.len() != rows.len() {
        return Err(format!(
            "{} counts for {} centroids",
            model.counts.len(),
            rows.len()
        ));
    }
    model.centroids = centroids;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_f32_written_by_write_reads_back_bit_for_bit() {
        // A deterministic walk over f32 bit patterns of every exponent, and the awkward ones.
        let mut bits: u32 = 0x1234_5678;
        let mut checked = 0;
        let specials = [
            0.1f32,
            1.0 / 3.0,
            8.999_999,
            9.000_001,
            f32::MIN_POSITIVE,
            f32::MAX,
        ];
        let walk = (0..200_000).map(|_| {
            bits = bits.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f32::from_bits(bits)
        });
        for v in specials.into_iter().chain(walk).filter(|v| v.is_finite()) {
            let written = crate::write::json_f32(v);
            let back = f32_from_json(written.as_f64().unwrap());
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} written as {written}");
            checked += 1;
        }
        assert!(checked > 190_000);
        assert!(crate::write::json_f32(f32::NAN).is_null());
    }

    #[test]
    fn a_document_that_is_not_a_model_is_refused_with_what_is_wrong() {
        let base = serde_json::json!({
            "k": 1, "features": ["a", "b"],
            "centroids": [{"class": 0, "name": "class 0", "centroid": {"a": 1.5, "b": null}}],
            "inertia": 2.0, "iterations": 3, "seed": 4, "counts": [5], "info": {"x": 1},
        });
        let m = parse(&base).unwrap();
        assert_eq!(m.centroids[[0, 0]], 1.5);
        assert!(m.centroids[[0, 1]].is_nan());
        assert_eq!((m.iterations, m.seed, m.counts.clone()), (3, 4, vec![5]));
        assert_eq!(m.info["x"], 1);
        let broken = |edit: &dyn Fn(&mut Json)| {
            let mut d = base.clone();
            edit(&mut d);
            parse(&d).unwrap_err()
        };
        assert!(broken(&|d| d["k"] = 2.into()).contains("`k` is 2"));
        assert!(
            broken(&|d| d["centroids"][0]["centroid"]["a"] = "x".into()).contains("not a number")
        );
        assert!(broken(&|d| {
            d["centroids"][0]["centroid"]
                .as_object_mut()
                .unwrap()
                .remove("b");
        })
        .contains("1 values for 2 features"));
        assert!(broken(&|d| d["counts"] = serde_json::json!([1, 2])).contains("2 counts"));
        assert!(broken(&|d| {
            d.as_object_mut().unwrap().remove("features");
        })
        .contains("no `features`"));
        assert!(parse(&serde_json::json!([1]))
            .unwrap_err()
            .contains("not a JSON object"));
    }
}
