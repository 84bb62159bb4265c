//! Values as files: a JSON sidecar plus `.npy` arrays, the cache's on-disk format.
//!
//! Every array a value holds is one `<name>.npy` file that NumPy opens, and `value.json` is the
//! value's [`ValueMeta`]. Both directions go through [`Value::split`] and [`Value::assemble`].
//!
//! Arrays are streamed, never copied: [`to_files`] gives the description and one [`NpyFile`] per
//! array, a borrowed view that writes itself to any [`Write`] (header, then the elements a chunk
//! at a time, see [`npy::write`]); [`from_files`] reads each array from a [`StoredFiles`] straight
//! into its final allocation ([`npy::read`]). Storing or loading a cube thus needs the cube once,
//! plus a chunk, so a cube that fits in memory once can be cached and loaded again. [`to_parts`]
//! and [`from_parts`] are the same over bytes in memory, for small values and tests.

use std::io::{Read, Write};

use ndarray::ArrayD;
use serde::Deserialize;

use crate::meta::{ArrayRef, ArraySource, Dtype, Element, ValueMeta};
use crate::npy::{self, NpyElement, NpyError};
use crate::value::Value;

/// A value split into a JSON description and named `.npy` files, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    /// Written as `value.json`.
    pub meta: serde_json::Value,
    /// `(file name, .npy bytes)`.
    pub arrays: Vec<(String, Vec<u8>)>,
}

/// Why stored files could not be turned back into a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The description or a file is malformed, missing, damaged or does not fit the description.
    #[error("stored value: {0}")]
    Invalid(String),
    /// An array is larger than the memory that can be allocated; the files may well be intact.
    #[error("stored value: {0}")]
    Memory(String),
}

/// One array of a value as an `.npy` file to write: a borrowed view, nothing copied.
#[derive(Debug, Clone)]
pub struct NpyFile<'a> {
    name: String,
    array: ArrayRef<'a>,
}

impl NpyFile<'_> {
    /// The file name, `<array name>.npy`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size of the file in bytes.
    pub fn size(&self) -> u64 {
        match &self.array {
            ArrayRef::F32(v) => npy::encoded_len::<f32>(v.shape()),
            ArrayRef::U16(v) => npy::encoded_len::<u16>(v.shape()),
            ArrayRef::U8(v) => npy::encoded_len::<u8>(v.shape()),
            ArrayRef::Bool(v) => npy::encoded_len::<bool>(v.shape()),
        }
    }

    /// Writes the file's bytes to `out`, streaming the array ([`npy::write`]).
    ///
    /// # Errors
    /// When `out` fails.
    pub fn write_to<W: Write + ?Sized>(&self, out: &mut W) -> std::io::Result<()> {
        match &self.array {
            ArrayRef::F32(v) => npy::write(v, out),
            ArrayRef::U16(v) => npy::write(v, out),
            ArrayRef::U8(v) => npy::write(v, out),
            ArrayRef::Bool(v) => npy::write(v, out),
        }
    }
}

/// Splits a value into its description (written as `value.json`) and its arrays as `.npy` files
/// to stream, without copying any array.
pub fn to_files(value: &Value) -> (serde_json::Value, Vec<NpyFile<'_>>) {
    let (meta, arrays) = value.split();
    let files = arrays
        .into_iter()
        .map(|a| NpyFile {
            name: format!("{}.npy", a.name),
            array: a.array,
        })
        .collect();
    (serde_json::to_value(&meta).unwrap_or_default(), files)
}

/// Splits a value into parts in memory (the bytes of every `.npy` file): for small values and
/// tests; the cache streams with [`to_files`].
pub fn to_parts(value: &Value) -> Parts {
    let (meta, files) = to_files(value);
    let arrays = files
        .iter()
        .map(|f| {
            let mut bytes = Vec::with_capacity(f.size() as usize);
            // Writing into a Vec cannot fail.
            let _ = f.write_to(&mut bytes);
            (f.name.clone(), bytes)
        })
        .collect();
    Parts { meta, arrays }
}

/// Where the `.npy` files of a stored value are read from: the cache's entry directory (which
/// checks each file against its manifest) or bytes in memory.
pub trait StoredFiles {
    /// Opens file `name` and calls `read` with a reader over it and its length in bytes; returns
    /// what `read` returned, unless the file turns out to be damaged, which is an error.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the file is missing, unreadable or damaged; whatever `read`
    /// returned otherwise.
    fn read<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&mut dyn Read, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

/// `.npy` files in memory, by name.
struct InMemory<'a>(&'a [(String, Vec<u8>)]);

impl StoredFiles for InMemory<'_> {
    fn read<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&mut dyn Read, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let bytes = self
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
            .ok_or_else(|| StoreError::Invalid(format!("missing file {name}")))?;
        read(&mut &bytes[..], bytes.len() as u64)
    }
}

/// The `.npy` files of a stored value, as the [`ArraySource`] that [`Value::assemble`] asks for
/// each array by name. Remembers an error that was about memory, so that [`from_files`] can tell
/// it from damage.
struct NpyArrays<'a, F> {
    files: &'a mut F,
    memory: Option<String>,
}

impl<F: StoredFiles> ArraySource for NpyArrays<'_, F> {
    fn array<T: Element>(&mut self, name: &str) -> Result<ArrayD<T>, String> {
        let file = format!("{name}.npy");
        // The element type decides the reader; `Element` and `NpyElement` cover the same types.
        let read = self.files.read(&file, |r, len| {
            Ok::<Box<dyn std::any::Any>, StoreError>(match T::DTYPE {
                Dtype::F32 => Box::new(read_npy::<f32>(&file, r, len)?),
                Dtype::U16 => Box::new(read_npy::<u16>(&file, r, len)?),
                Dtype::U8 => Box::new(read_npy::<u8>(&file, r, len)?),
                Dtype::Bool => Box::new(read_npy::<bool>(&file, r, len)?),
            })
        });
        let any = read.map_err(|e| match e {
            StoreError::Memory(m) => {
                self.memory = Some(m.clone());
                m
            }
            StoreError::Invalid(m) => m,
        })?;
        any.downcast::<ArrayD<T>>()
            .map(|a| *a)
            .map_err(|_| format!("{file}: element type mismatch"))
    }
}

fn read_npy<T: NpyElement>(
    file: &str,
    r: &mut dyn Read,
    len: u64,
) -> Result<ArrayD<T>, StoreError> {
    npy::read::<T, _>(r, len).map_err(|e| match e {
        NpyError::Memory { .. } => StoreError::Memory(format!("{file}: {e}")),
        e => StoreError::Invalid(format!("{file}: {e}")),
    })
}

/// Rebuilds a value from its description (`value.json`) and its `.npy` files, each read
/// straight into its array.
///
/// # Errors
/// [`StoreError::Memory`] when an array cannot be allocated; [`StoreError::Invalid`] when the
/// description is malformed or an array is missing, damaged or does not fit it.
pub fn from_files<F: StoredFiles>(
    meta: &serde_json::Value,
    files: &mut F,
) -> Result<Value, StoreError> {
    let meta = ValueMeta::deserialize(meta).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut arrays = NpyArrays {
        files,
        memory: None,
    };
    Value::assemble(meta, &mut arrays).map_err(|e| match arrays.memory.take() {
        Some(_) => StoreError::Memory(e.0),
        None => StoreError::Invalid(e.0),
    })
}

/// Rebuilds a value from parts made by [`to_parts`].
///
/// # Errors
/// As [`from_files`].
pub fn from_parts(
    meta: &serde_json::Value,
    arrays: &[(String, Vec<u8>)],
) -> Result<Value, StoreError> {
    from_files(meta, &mut InMemory(arrays))
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
                scaling: Default::default(),
                centroids: Array2::zeros((1, 1)),
                features: vec!["a".into()],
                inertia,
                iterations: 1,
                seed: 0,
                counts: vec![1],
                info: serde_json::Value::Null,
                classifier: None,
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
