//! A small reader and writer of NumPy `.npy` files (format 1.0, little-endian, C order) for the
//! element types flow stores: f32, u16, u8 and bool.
//!
//! Written here rather than taken from a crate because flow only ever reads back what it wrote,
//! the format is a 10-line header plus raw bytes, and this keeps the engine's dependency tree small.
//! The files open in NumPy with `np.load`.

use ndarray::{ArrayD, IxDyn};

/// An element type that can be stored in an `.npy` file.
pub trait NpyElement: Copy + Default {
    /// The NumPy dtype descriptor (`<f4`, `<u2`, `|u1`, `|b1`).
    const DESCR: &'static str;
    /// Bytes per element.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self`.
    fn put(self, out: &mut Vec<u8>);
    /// Reads one element from `SIZE` bytes.
    fn get(bytes: &[u8]) -> Self;
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl NpyElement for u16 {
    const DESCR: &'static str = "<u2";
    const SIZE: usize = 2;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u16::from_le_bytes([b[0], b[1]])
    }
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
    const SIZE: usize = 1;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self);
    }
    fn get(b: &[u8]) -> Self {
        b[0]
    }
}

impl NpyElement for bool {
    const DESCR: &'static str = "|b1";
    const SIZE: usize = 1;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn get(b: &[u8]) -> Self {
        b[0] != 0
    }
}

/// Why an `.npy` buffer could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("npy: {0}")]
pub struct NpyError(pub String);

/// Encodes an array (any dimension, any memory layout) as `.npy` bytes.
pub fn encode<T, S, D>(array: &ndarray::ArrayBase<S, D>) -> Vec<u8>
where
    T: NpyElement,
    S: ndarray::Data<Elem = T>,
    D: ndarray::Dimension,
{
    let shape = array.shape();
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_txt
    );
    // Magic (6) + version (2) + header length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + array.len() * T::SIZE);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in array.iter() {
        v.put(&mut out);
    }
    out
}

/// Decodes `.npy` bytes written by [`encode`] with element type `T`.
///
/// # Errors
/// [`NpyError`] on a bad magic, another dtype, Fortran order or a short buffer.
pub fn decode<T: NpyElement>(bytes: &[u8]) -> Result<ArrayD<T>, NpyError> {
    if bytes.len() < 10 || &bytes[..8] != b"\x93NUMPY\x01\x00" {
        return Err(NpyError("not an .npy version 1.0 file".into()));
    }
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = bytes
        .get(10..10 + hlen)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| NpyError("truncated header".into()))?;
    if !header.contains(&format!("'descr': '{}'", T::DESCR)) {
        return Err(NpyError(format!(
            "expected dtype {}, header is {header}",
            T::DESCR
        )));
    }
    if !header.contains("'fortran_order': False") {
        return Err(NpyError("Fortran order is not supported".into()));
    }
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| NpyError("no shape in header".into()))?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| NpyError(format!("bad shape `{shape_txt}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n: usize = shape.iter().product();
    let data = &bytes[10 + hlen..];
    if data.len() != n * T::SIZE {
        return Err(NpyError(format!(
            "expected {} data bytes, found {}",
            n * T::SIZE,
            data.len()
        )));
    }
    let values: Vec<T> = data.chunks_exact(T::SIZE).map(T::get).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| NpyError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};

    #[test]
    fn round_trips_and_pads_header_to_64() {
        let a = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as f32 * 0.5);
        let bytes = encode(&a);
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        let back = decode::<f32>(&bytes).unwrap();
        assert_eq!(back.into_dimensionality::<ndarray::Ix3>().unwrap(), a);
        let b = array![true, false, true];
        assert_eq!(
            decode::<bool>(&encode(&b))
                .unwrap()
                .into_dimensionality::<ndarray::Ix1>()
                .unwrap(),
            b
        );
    }

    #[test]
    fn refuses_wrong_dtype_and_truncation() {
        let bytes = encode(&array![1u16, 2, 3]);
        assert!(decode::<f32>(&bytes).is_err());
        assert!(decode::<u16>(&bytes[..bytes.len() - 1]).is_err());
    }
}
