//! Values as files: a JSON sidecar plus `.npy` arrays, the cache's on-disk format.
//!
//! [`to_parts`] and [`from_parts`] are pure; the engine writes the parts atomically. Every array a
//! value holds is one `<name>.npy` file that NumPy opens, and `value.json` is the value's
//! [`ValueMeta`]. Both directions go through [`Value::split`] and [`Value::assemble`].

use ndarray::ArrayD;
use serde::Deserialize;

use crate::meta::{ArrayRef, ArraySource, Dtype, Element, ValueMeta};
use crate::npy::{self, NpyElement};
use crate::value::Value;

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
    let (meta, arrays) = value.split();
    let arrays = arrays
        .iter()
        .map(|a| {
            let bytes = match &a.array {
                ArrayRef::F32(v) => npy::encode(v),
                ArrayRef::U16(v) => npy::encode(v),
                ArrayRef::U8(v) => npy::encode(v),
                ArrayRef::Bool(v) => npy::encode(v),
            };
            (format!("{}.npy", a.name), bytes)
        })
        .collect();
    Parts {
        meta: serde_json::to_value(&meta).unwrap_or_default(),
        arrays,
    }
}

/// The `.npy` files of a stored value, as an [`ArraySource`].
struct NpyFiles<'a>(&'a [(String, Vec<u8>)]);

impl ArraySource for NpyFiles<'_> {
    fn array<T: Element>(&mut self, name: &str) -> Result<ArrayD<T>, String> {
        let file = format!("{name}.npy");
        let bytes = self
            .0
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(_, b)| b)
            .ok_or_else(|| format!("missing file {file}"))?;
        // The element type decides the decoder; `Element` and `NpyElement` cover the same types.
        let any: Box<dyn std::any::Any> = match T::DTYPE {
            Dtype::F32 => Box::new(decode::<f32>(bytes)?),
            Dtype::U16 => Box::new(decode::<u16>(bytes)?),
            Dtype::U8 => Box::new(decode::<u8>(bytes)?),
            Dtype::Bool => Box::new(decode::<bool>(bytes)?),
        };
        any.downcast::<ArrayD<T>>()
            .map(|a| *a)
            .map_err(|_| format!("{file}: element type mismatch"))
    }
}

fn decode<T: NpyElement>(bytes: &[u8]) -> Result<ArrayD<T>, String> {
    npy::decode::<T>(bytes).map_err(|e| e.to_string())
}

/// Rebuilds a value from parts made by [`to_parts`].
///
/// # Errors
/// [`StoreError`] when the description is malformed or an array is missing or does not fit it.
pub fn from_parts(
    meta: &serde_json::Value,
    arrays: &[(String, Vec<u8>)],
) -> Result<Value, StoreError> {
    let meta = ValueMeta::deserialize(meta).map_err(|e| StoreError(e.to_string()))?;
    Value::assemble(meta, &mut NpyFiles(arrays)).map_err(|e| StoreError(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::value::{BandInfo, ClassInfo, Items, Labels, Matrix, Model, Raster};
    use ndarray::{Array2, Array4};
    use serde_json::json;

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

#[cfg(test)]
mod float_tests {
    use super::*;
    use crate::value::Model;
    use ndarray::Array2;

    /// A cached value must be bit-identical to the computed one: f64 fields survive the JSON
    /// sidecar exactly (serde_json's `float_roundtrip`).
    #[test]
    fn model_floats_survive_the_json_sidecar_bit_for_bit() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let inertia = f64::from_bits(state >> 2) % 1e12;
            let value = Value::Model(Model {
                centroids: Array2::zeros((1, 1)),
                features: vec!["a".into()],
                inertia,
                iterations: 1,
                seed: 0,
                counts: vec![1],
                info: serde_json::Value::Null,
            });
            let parts = to_parts(&value);
            let text = serde_json::to_string(&parts.meta).unwrap();
            let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
            let Value::Model(back) = from_parts(&meta, &parts.arrays).unwrap() else {
                panic!("not a model")
            };
            assert_eq!(back.inertia.to_bits(), inertia.to_bits(), "{inertia:e}");
        }
    }
}
