//! Values as files: a JSON sidecar plus `.npy` arrays, the cache's on-disk format.
//!
//! [`to_parts`] and [`from_parts`] are pure; the engine writes the parts atomically. Every array a
//! value holds is one `.npy` file that NumPy opens, and `value.json` says what the value is.

use ndarray::{Ix2, Ix4};
use serde_json::json;

use crate::grid::Grid;
use crate::npy::{self, NpyElement};
use crate::value::{BandInfo, ClassInfo, Items, Labels, Matrix, Model, Raster, Value};

/// A value split into a JSON description and named `.npy` files.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    /// Written as `value.json`.
    pub meta: serde_json::Value,
    /// `(file name, .npy bytes)`.
    pub arrays: Vec<(String, Vec<u8>)>,
}

/// Why stored parts could not be turned back into a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("stored value: {0}")]
pub struct StoreError(pub String);

/// Splits a value into parts.
pub fn to_parts(value: &Value) -> Parts {
    match value {
        Value::Items(items) => Parts {
            meta: json!({"type": "Items", "collection": items.collection}),
            arrays: vec![],
        },
        Value::Json(v) => Parts {
            meta: json!({"type": "Json", "value": v}),
            arrays: vec![],
        },
        Value::Raster(r) => Parts {
            meta: json!({"type": "Raster", "grid": r.grid, "bands": r.bands, "times": r.times}),
            arrays: vec![("data.npy".into(), npy::encode(&r.data))],
        },
        Value::Matrix(m) => Parts {
            meta: json!({"type": "Matrix", "grid": m.grid, "features": m.features}),
            arrays: vec![
                ("data.npy".into(), npy::encode(&m.data)),
                ("valid.npy".into(), npy::encode(&m.valid)),
            ],
        },
        Value::Model(m) => Parts {
            meta: json!({"type": "Model", "model": m}),
            arrays: vec![("centroids.npy".into(), npy::encode(&m.centroids))],
        },
        Value::Labels(l) => Parts {
            meta: json!({"type": "Labels", "grid": l.grid, "nodata": l.nodata, "classes": l.classes}),
            arrays: vec![("data.npy".into(), npy::encode(&l.data))],
        },
    }
}

fn field<T: serde::de::DeserializeOwned>(
    meta: &serde_json::Value,
    name: &str,
) -> Result<T, StoreError> {
    serde_json::from_value(meta.get(name).cloned().unwrap_or(serde_json::Value::Null))
        .map_err(|e| StoreError(format!("field `{name}`: {e}")))
}

fn array<T: NpyElement, D: ndarray::Dimension>(
    arrays: &[(String, Vec<u8>)],
    name: &str,
) -> Result<ndarray::Array<T, D>, StoreError> {
    let bytes = arrays
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b)
        .ok_or_else(|| StoreError(format!("missing array {name}")))?;
    npy::decode::<T>(bytes)
        .map_err(|e| StoreError(format!("{name}: {e}")))?
        .into_dimensionality::<D>()
        .map_err(|e| StoreError(format!("{name}: {e}")))
}

/// Rebuilds a value from parts made by [`to_parts`].
///
/// # Errors
/// [`StoreError`] when a field or array is missing or malformed.
pub fn from_parts(
    meta: &serde_json::Value,
    arrays: &[(String, Vec<u8>)],
) -> Result<Value, StoreError> {
    let ty = meta
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    Ok(match ty {
        "Items" => Value::Items(Items {
            collection: meta.get("collection").cloned().unwrap_or_default(),
        }),
        "Json" => Value::Json(meta.get("value").cloned().unwrap_or_default()),
        "Raster" => Value::Raster(Raster {
            data: array::<f32, Ix4>(arrays, "data.npy")?,
            grid: field::<Grid>(meta, "grid")?,
            bands: field::<Vec<BandInfo>>(meta, "bands")?,
            times: field::<Vec<String>>(meta, "times")?,
        }),
        "Matrix" => Value::Matrix(Matrix {
            data: array::<f32, Ix2>(arrays, "data.npy")?,
            valid: array::<bool, Ix2>(arrays, "valid.npy")?,
            grid: field(meta, "grid")?,
            features: field(meta, "features")?,
        }),
        "Model" => {
            let mut model: Model = field(meta, "model")?;
            model.centroids = array::<f32, Ix2>(arrays, "centroids.npy")?;
            Value::Model(model)
        }
        "Labels" => Value::Labels(Labels {
            data: array::<u16, Ix2>(arrays, "data.npy")?,
            nodata: field(meta, "nodata")?,
            classes: field::<Vec<ClassInfo>>(meta, "classes")?,
            grid: field(meta, "grid")?,
        }),
        other => return Err(StoreError(format!("unknown value type `{other}`"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, Array4};

    #[test]
    fn every_value_type_round_trips() {
        let grid = Grid::north_up("EPSG:32618", 0.0, 10.0, 1.0, 3, 2);
        let values = vec![
            Value::Items(Items::from_features(vec![json!({"id": "a"})])),
            Value::Json(json!({"x": 1})),
            Value::Raster(Raster {
                data: Array4::from_shape_fn((1, 2, 2, 3), |(_, b, y, x)| {
                    if x == 1 {
                        f32::NAN
                    } else {
                        (b + y) as f32
                    }
                }),
                grid: grid.clone(),
                bands: vec![
                    BandInfo {
                        name: "B04".into(),
                        common_name: Some("red".into()),
                        wavelength: Some(0.665),
                    },
                    BandInfo::default(),
                ],
                times: vec!["2021-08-03T00:00:00Z".into()],
            }),
            Value::Matrix(Matrix {
                data: Array2::from_elem((4, 2), 0.5),
                features: vec!["a".into(), "b".into()],
                valid: Array2::from_shape_fn((2, 3), |(y, x)| x != y),
                grid: grid.clone(),
            }),
            Value::Model(Model {
                centroids: Array2::from_elem((2, 2), 1.5),
                features: vec!["a".into(), "b".into()],
                inertia: 3.25,
                iterations: 7,
                seed: 42,
                counts: vec![1, 3],
                info: json!({"init": "k-means++"}),
            }),
            Value::Labels(Labels {
                data: Array2::from_shape_fn((2, 3), |(y, x)| (y * 3 + x) as u16),
                nodata: 65535,
                classes: vec![ClassInfo {
                    id: 0,
                    name: "class 0".into(),
                    color: [1, 2, 3],
                }],
                grid,
            }),
        ];
        for v in values {
            let parts = to_parts(&v);
            let meta: serde_json::Value = serde_json::from_str(&parts.meta.to_string()).unwrap();
            let back = from_parts(&meta, &parts.arrays).unwrap();
            match (&v, &back) {
                // NaN != NaN: compare rasters bit for bit.
                (Value::Raster(a), Value::Raster(b)) => {
                    assert!(a
                        .data
                        .iter()
                        .zip(b.data.iter())
                        .all(|(x, y)| x.to_bits() == y.to_bits()));
                    assert_eq!((&a.grid, &a.bands, &a.times), (&b.grid, &b.bands, &b.times));
                }
                _ => assert_eq!(v, back),
            }
        }
    }
}
