//! The node's inputs as files for the script: `<port>.npy` arrays (NumPy's format, C order,
//! little-endian) and a `<port>.json` description of each, plus `node.json`.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;

use flow_core::{npy, Grid, NodeError, RunContext, Value};
use serde_json::{json, Value as Json};

use crate::error::ScriptError;

/// Port names that the script's own files take, so no input may have them.
pub const RESERVED: [&str; 2] = ["output", "node"];

/// The longest input name.
const MAX_NAME: usize = 64;

/// Whether an input may be called `port`: its files are `<port>.npy` and `<port>.json`, so it
/// must be a plain identifier (letters, digits and `_`, not starting with a digit) and not one
/// of the names of the script's own files ([`RESERVED`]).
///
/// # Errors
/// Why the name is refused, as a hint for the recipe's author.
pub fn check_port_name(port: &str) -> Result<(), String> {
    let plain = !port.is_empty()
        && port.len() <= MAX_NAME
        && port.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && port.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(format!(
            "an input's name is the name of its files (NAME.npy, NAME.json): use up to {MAX_NAME} \
             letters, digits and `_`, starting with a letter or `_`"
        ));
    }
    if RESERVED.contains(&port) {
        return Err(format!(
            "`{port}.npy` and `{port}.json` are the script's own files; name the input otherwise"
        ));
    }
    Ok(())
}

/// The inputs of a run in the order the script's files and the node use them: the first port
/// (`input`) first, then the others by name; deferred values computed whole.
///
/// # Errors
/// When a deferred input cannot be computed.
pub(crate) fn ordered<'a>(
    ctx: &RunContext,
    inputs: &'a flow_core::Inputs,
) -> Result<Vec<(&'a str, Cow<'a, Value>)>, NodeError> {
    let mut out = Vec::new();
    let mut rest = Vec::new();
    for (port, value) in inputs.iter() {
        let value = match value {
            Value::Deferred(d) => Cow::Owned(d.materialize(ctx)?),
            v => Cow::Borrowed(v),
        };
        if port == "input" {
            out.push((port, value));
        } else {
            rest.push((port, value));
        }
    }
    out.extend(rest);
    Ok(out)
}

/// A grid as the script sees it.
pub(crate) fn grid_json(grid: &Grid) -> Json {
    json!({
        "crs": grid.crs,
        "epsg": grid.epsg(),
        "transform": grid.transform,
        "width": grid.width,
        "height": grid.height,
    })
}

/// Writes `array` as the `.npy` file `path`.
fn write_npy<T, D>(path: &Path, array: &ndarray::Array<T, D>) -> Result<(), ScriptError>
where
    T: npy::NpyElement,
    D: ndarray::Dimension,
{
    let io = |source| ScriptError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = BufWriter::new(file);
    npy::write(array, &mut out).map_err(io)?;
    out.flush().map_err(io)
}

/// Writes `value` as JSON to `path`.
pub(crate) fn write_json(path: &Path, value: &Json) -> Result<(), ScriptError> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    std::fs::write(path, bytes).map_err(|source| ScriptError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes input `port` into `dir`: `<port>.npy` (with `<port>.valid.npy` for a matrix) for the
/// arrays and `<port>.json` describing them (see docs/scripts.md).
///
/// # Errors
/// When a file cannot be written.
pub(crate) fn write_input(dir: &Path, port: &str, value: &Value) -> Result<(), ScriptError> {
    let npy_name = format!("{port}.npy");
    let npy_path = dir.join(&npy_name);
    let meta = match value {
        Value::Raster(r) => {
            write_npy(&npy_path, &r.data)?;
            json!({
                "type": "raster",
                "file": npy_name,
                "dtype": "float32",
                "shape": r.data.shape(),
                "axes": ["time", "band", "y", "x"],
                "nodata": "NaN",
                "grid": grid_json(&r.grid),
                "bands": r.bands.iter().map(|b| &b.name).collect::<Vec<_>>(),
                "band_info": r.bands,
                "times": r.times,
            })
        }
        Value::Matrix(m) => {
            write_npy(&npy_path, &m.data)?;
            let valid_name = format!("{port}.valid.npy");
            write_npy(&dir.join(&valid_name), &m.valid)?;
            json!({
                "type": "matrix",
                "file": npy_name,
                "dtype": "float32",
                "shape": m.data.shape(),
                "axes": ["row", "feature"],
                "nodata": "NaN",
                "features": m.features,
                "valid_file": valid_name,
                "grid": grid_json(&m.grid),
            })
        }
        Value::Labels(l) => {
            write_npy(&npy_path, &l.data)?;
            json!({
                "type": "labels",
                "file": npy_name,
                "dtype": "uint16",
                "shape": l.data.shape(),
                "axes": ["y", "x"],
                "nodata": l.nodata,
                "classes": l.classes,
                "grid": grid_json(&l.grid),
            })
        }
        Value::Model(m) => {
            write_npy(&npy_path, &m.centroids)?;
            let mut doc = json!({
                "type": "model",
                "file": npy_name,
                "dtype": "float32",
                "shape": m.centroids.shape(),
                "axes": ["class", "feature"],
                "features": m.features,
                "inertia": m.inertia,
                "iterations": m.iterations,
                "seed": m.seed,
                "counts": m.counts,
                "info": m.info,
            });
            if let Some(c) = &m.classifier {
                doc["classifier"] = json!(c);
            }
            doc
        }
        Value::Items(items) => json!({"type": "items", "collection": items.collection}),
        Value::Json(v) => json!({"type": "json", "value": v}),
        // `ordered` computes deferred values whole before they get here.
        Value::Deferred(d) => json!({"type": d.template.value_type().name().to_lowercase()}),
    };
    write_json(&dir.join(format!("{port}.json")), &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::meta::examples;

    #[test]
    fn port_names_are_plain_identifiers_and_not_the_scripts_own() {
        for ok in ["cube", "input", "_x", "a1_b2", "B8A"] {
            assert_eq!(check_port_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "../x", "a b", "é", &"x".repeat(65)] {
            assert!(check_port_name(bad).is_err(), "{bad}");
        }
        let e = check_port_name("output").unwrap_err();
        assert!(e.contains("script's own files"), "{e}");
        assert!(check_port_name("node").is_err());
    }

    #[test]
    fn every_value_type_is_written_with_its_description() {
        let dir = tempfile::tempdir().unwrap();
        for (i, value) in examples().into_iter().enumerate() {
            let port = format!("v{i}");
            write_input(dir.path(), &port, &value).unwrap();
            let meta: Json = serde_json::from_slice(
                &std::fs::read(dir.path().join(format!("{port}.json"))).unwrap(),
            )
            .unwrap();
            let ty = meta["type"].as_str().unwrap();
            assert_eq!(ty, value.value_type().name().to_lowercase());
            let npy_file = dir.path().join(format!("{port}.npy"));
            match &value {
                Value::Raster(r) => {
                    let back = npy::decode::<f32>(&std::fs::read(&npy_file).unwrap()).unwrap();
                    assert_eq!(back.shape(), r.data.shape());
                    assert_eq!(
                        back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        r.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                    );
                    assert_eq!(meta["grid"]["width"], r.grid.width);
                    assert_eq!(meta["times"].as_array().unwrap().len(), r.times.len());
                    assert_eq!(meta["bands"].as_array().unwrap().len(), r.bands.len());
                }
                Value::Matrix(m) => {
                    let valid = npy::decode::<bool>(
                        &std::fs::read(dir.path().join(format!("{port}.valid.npy"))).unwrap(),
                    )
                    .unwrap();
                    assert_eq!(valid.shape(), m.valid.shape());
                    assert_eq!(meta["features"].as_array().unwrap().len(), m.features.len());
                }
                Value::Labels(l) => {
                    let back = npy::decode::<u16>(&std::fs::read(&npy_file).unwrap()).unwrap();
                    assert_eq!(
                        back.into_raw_vec_and_offset().0,
                        l.data.iter().copied().collect::<Vec<_>>()
                    );
                    assert_eq!(meta["nodata"], l.nodata);
                }
                Value::Model(m) => {
                    let back = npy::decode::<f32>(&std::fs::read(&npy_file).unwrap()).unwrap();
                    assert_eq!(back.shape(), m.centroids.shape());
                    match &m.classifier {
                        Some(c) => assert_eq!(
                            serde_json::from_value::<flow_core::Classifier>(
                                meta["classifier"].clone()
                            )
                            .unwrap(),
                            **c
                        ),
                        None => assert!(meta.get("classifier").is_none()),
                    }
                }
                Value::Items(_) | Value::Json(_) => assert!(!npy_file.exists()),
                Value::Deferred(_) => {}
            }
        }
    }
}
