//! A small reader and writer of NumPy `.npy` files (format 1.0, little-endian, C order) for the
//! element types flow stores: f32, u16, u8 and bool.
//!
//! Written here rather than taken from a crate because flow only ever reads back what it wrote,
//! the format is a 10-line header plus raw bytes, and this keeps the engine's dependency tree small.
//! The files open in NumPy with `np.load`.
//!
//! Arrays are streamed: [`write`] sends the header and then the elements, converted to
//! little-endian bytes one chunk ([`CHUNK`], 1 MiB) at a time, to any [`Write`]; [`read`] checks
//! the header against the file's length, makes the array's one allocation (fallibly) and fills it
//! from the reader chunk by chunk. A cube therefore never needs a second copy of itself in memory
//! to be stored or loaded. [`encode`] and [`decode`] are the same over bytes in memory.

use std::io::{Read, Write};

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

/// Why an `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The bytes are not an `.npy` file of the expected element type (bad magic, another dtype,
    /// Fortran order, a malformed header, a length that does not fit the shape).
    #[error("npy: {0}")]
    Format(String),
    /// The array the header describes needs more memory than can be allocated.
    #[error(
        "npy: the array of shape {shape:?} needs {bytes} bytes, more memory than can be allocated"
    )]
    Memory {
        /// The shape in the header.
        shape: Vec<usize>,
        /// The bytes its elements take in memory.
        bytes: u128,
    },
    /// The file could not be read or written.
    #[error("npy: {0}")]
    Io(#[from] std::io::Error),
}

/// How many bytes are converted at a time between an array and a file: the only buffer besides
/// the array itself.
const CHUNK: usize = 1 << 20;

/// The `.npy` preamble of an array of `T` with `shape`: magic, version, header length and the
/// header, padded with spaces so that the data starts at a multiple of 64 bytes.
pub fn header<T: NpyElement>(shape: &[usize]) -> Vec<u8> {
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
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// The size in bytes of the `.npy` file of an array of `T` with `shape`.
pub fn encoded_len<T: NpyElement>(shape: &[usize]) -> u64 {
    let elements = shape.iter().map(|&d| d as u64).product::<u64>();
    header::<T>(shape).len() as u64 + elements * T::SIZE as u64
}

/// Writes an array (any dimension, any memory layout) as an `.npy` file to `out`: the header,
/// then the elements in C order, converted to little-endian bytes [`CHUNK`] bytes at a time.
/// Nothing the size of the array is allocated.
///
/// # Errors
/// When `out` fails.
pub fn write<T, S, D, W>(array: &ndarray::ArrayBase<S, D>, out: &mut W) -> std::io::Result<()>
where
    T: NpyElement,
    S: ndarray::Data<Elem = T>,
    D: ndarray::Dimension,
    W: Write + ?Sized,
{
    out.write_all(&header::<T>(array.shape()))?;
    let mut buf = Vec::with_capacity(CHUNK.min(array.len() * T::SIZE));
    let mut put = |v: T, buf: &mut Vec<u8>| -> std::io::Result<()> {
        v.put(buf);
        if buf.len() + T::SIZE > CHUNK {
            out.write_all(buf)?;
            buf.clear();
        }
        Ok(())
    };
    // A standard-layout array is walked as one slice (the common case, and the fastest);
    // any other layout element by element in logical order.
    match array.as_slice() {
        Some(slice) => slice.iter().try_for_each(|&v| put(v, &mut buf))?,
        None => array.iter().try_for_each(|&v| put(v, &mut buf))?,
    }
    if !buf.is_empty() {
        out.write_all(&buf)?;
    }
    Ok(())
}

/// Encodes an array (any dimension, any memory layout) as `.npy` bytes in memory. For small
/// arrays and tests; [`write`] streams an array to a file without this copy.
pub fn encode<T, S, D>(array: &ndarray::ArrayBase<S, D>) -> Vec<u8>
where
    T: NpyElement,
    S: ndarray::Data<Elem = T>,
    D: ndarray::Dimension,
{
    let mut out = Vec::with_capacity(encoded_len::<T>(array.shape()) as usize);
    // Writing into a Vec cannot fail.
    let _ = write(array, &mut out);
    out
}

/// The header text of an `.npy` file, parsed: its shape, after checking the magic, the dtype
/// and the order.
fn read_header<T: NpyElement, R: Read + ?Sized>(r: &mut R) -> Result<(Vec<usize>, u64), NpyError> {
    let mut pre = [0u8; 10];
    read_exact(r, &mut pre, "not an .npy version 1.0 file")?;
    if &pre[..8] != b"\x93NUMPY\x01\x00" {
        return Err(NpyError::Format("not an .npy version 1.0 file".into()));
    }
    let hlen = u16::from_le_bytes([pre[8], pre[9]]) as usize;
    let mut text = vec![0u8; hlen];
    read_exact(r, &mut text, "truncated header")?;
    let header =
        std::str::from_utf8(&text).map_err(|_| NpyError::Format("truncated header".into()))?;
    if !header.contains(&format!("'descr': '{}'", T::DESCR)) {
        return Err(NpyError::Format(format!(
            "expected dtype {}, header is {header}",
            T::DESCR
        )));
    }
    if !header.contains("'fortran_order': False") {
        return Err(NpyError::Format("Fortran order is not supported".into()));
    }
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| NpyError::Format("no shape in header".into()))?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| NpyError::Format(format!("bad shape `{shape_txt}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((shape, 10 + hlen as u64))
}

/// `read_exact`, with a short read told as a format error.
fn read_exact<R: Read + ?Sized>(r: &mut R, buf: &mut [u8], short: &str) -> Result<(), NpyError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => NpyError::Format(short.into()),
        _ => NpyError::Io(e),
    })
}

/// Reads an `.npy` file of `len` bytes written by [`write`] with element type `T` from `r`,
/// straight into the array's one allocation: the file is read [`CHUNK`] bytes at a time and
/// converted into the array's memory, and the array is allocated only after its size has been
/// checked against `len` (so a damaged header can never ask for more memory than the file holds)
/// and with a fallible allocation (so too little memory is an error, never an abort).
///
/// # Errors
/// [`NpyError::Format`] on a bad magic, another dtype, Fortran order, a length that does not fit
/// the shape or bytes after the data; [`NpyError::Memory`] when the array cannot be allocated;
/// [`NpyError::Io`] when reading fails.
pub fn read<T: NpyElement, R: Read + ?Sized>(r: &mut R, len: u64) -> Result<ArrayD<T>, NpyError> {
    let (shape, start) = read_header::<T, R>(r)?;
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let expected = n.and_then(|n| (n as u64).checked_mul(T::SIZE as u64));
    let data_len = len.saturating_sub(start);
    let n = match (n, expected) {
        (Some(n), Some(bytes)) if bytes == data_len => n,
        (_, Some(bytes)) => {
            return Err(NpyError::Format(format!(
                "expected {bytes} data bytes, found {data_len}"
            )))
        }
        (_, None) => {
            return Err(NpyError::Format(format!(
                "the shape {shape:?} is too large"
            )))
        }
    };
    let mut values: Vec<T> = Vec::new();
    values.try_reserve_exact(n).map_err(|_| NpyError::Memory {
        shape: shape.clone(),
        bytes: n as u128 * std::mem::size_of::<T>() as u128,
    })?;
    let mut buf = vec![0u8; CHUNK.min(n * T::SIZE) / T::SIZE * T::SIZE];
    while values.len() < n {
        let take = ((n - values.len()) * T::SIZE).min(buf.len());
        read_exact(r, &mut buf[..take], "the data is shorter than its shape")?;
        values.extend(buf[..take].chunks_exact(T::SIZE).map(T::get));
    }
    let mut more = [0u8; 1];
    loop {
        match r.read(&mut more) {
            Ok(0) => break,
            Ok(_) => return Err(NpyError::Format("bytes after the data".into())),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(NpyError::Io(e)),
        }
    }
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| NpyError::Format(e.to_string()))
}

/// Decodes `.npy` bytes written by [`encode`] with element type `T`.
///
/// # Errors
/// As [`read`].
pub fn decode<T: NpyElement>(bytes: &[u8]) -> Result<ArrayD<T>, NpyError> {
    read(&mut &bytes[..], bytes.len() as u64)
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

    #[test]
    fn any_layout_streams_the_bytes_of_its_standard_layout() {
        // Several chunks, and a length that is not a multiple of a chunk.
        let a = Array3::from_shape_fn((3, 300, 500), |(i, j, k)| (i * 1000 + j * 3 + k) as f32);
        let bytes = encode(&a);
        assert_eq!(bytes.len() as u64, encoded_len::<f32>(a.shape()));
        let mut streamed = Vec::new();
        write(&a, &mut streamed).unwrap();
        assert_eq!(streamed, bytes);
        // A transposed view is written in its logical C order.
        let t = a.t();
        assert!(t.as_slice().is_none());
        assert_eq!(encode(&t), encode(&t.as_standard_layout()));
        let back = read::<f32, _>(&mut &bytes[..], bytes.len() as u64).unwrap();
        assert_eq!(back.into_dimensionality::<ndarray::Ix3>().unwrap(), a);
        // Empty arrays too.
        let e = ndarray::Array2::<u16>::zeros((0, 4));
        assert_eq!(decode::<u16>(&encode(&e)).unwrap().shape(), [0, 4]);
    }

    #[test]
    fn a_header_is_checked_against_the_length_before_anything_is_allocated() {
        let bytes = encode(&array![1f32, 2., 3.]);
        // A header claiming 2^60 elements in a file of 76 bytes: refused, not allocated.
        let mut huge = header::<f32>(&[1 << 30, 1 << 30]);
        huge.extend_from_slice(&bytes[64..]);
        match decode::<f32>(&huge) {
            Err(NpyError::Format(m)) => assert!(m.contains("data bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode::<f32>(&longer), Err(NpyError::Format(_))));
        // A length that matches but bytes that run out early.
        assert!(matches!(
            read::<f32, _>(&mut &bytes[..70], bytes.len() as u64),
            Err(NpyError::Format(_))
        ));
        // An overflowing shape.
        let mut overflow = header::<f32>(&[usize::MAX, 2]);
        overflow.extend_from_slice(&bytes[64..]);
        assert!(matches!(decode::<f32>(&overflow), Err(NpyError::Format(_))));
        // A shape that fits its length but not in memory: an error, not an abort.
        let big = header::<f32>(&[1 << 61]);
        let len = big.len() as u64 + (4u64 << 61);
        match read::<f32, _>(&mut &big[..], len) {
            Err(e @ NpyError::Memory { .. }) => {
                assert!(
                    e.to_string().contains("more memory than can be allocated"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
