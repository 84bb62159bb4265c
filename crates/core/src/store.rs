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

    #[test]
    fn every_value_type_round_trips() {
        for v in crate::meta::examples() {
            let parts = to_parts(&v);
            let meta: serde_json::Value = serde_json::from_str(&parts.meta.to_string()).unwrap();
            let back = from_parts(&meta, &parts.arrays).unwrap();
            assert!(crate::meta::same(&v, &back), "{v:?} != {back:?}");
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
