//! What the script wrote, read back and checked against the node's declared output: the
//! `.npy` header first (element type, order, shape against the inputs' grid), before anything
//! the size of the array is allocated, then the array itself through [`flow_core::npy::read`],
//! which checks the file's length against the shape and allocates fallibly.

use std::io::{BufReader, Read};
use std::path::Path;

use flow_core::{npy, BandInfo, ClassInfo, Grid, Labels, Matrix, Raster, Value};
use ndarray::{Array2, ArrayD, Ix2, Ix4};
use serde::Deserialize;

use crate::params::OutputKind;

/// The largest `output.json` read (a Json output or a sidecar).
pub(crate) const MAX_JSON_BYTES: u64 = 64 << 20;

/// What is wrong with the script's output, in a sentence (the node's error adds the script).
type Wrong = String;

/// The inputs that decide the output's grid and default names: the first input on a grid, the
/// first raster (bands, times) and the first matrix (validity mask, features), each in the order
/// of [`crate::inputs::ordered`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reference<'a> {
    /// The first input on a grid, with its port.
    pub(crate) grid: Option<(&'a str, &'a Grid)>,
    /// The first raster input.
    pub(crate) raster: Option<&'a Raster>,
    /// The first matrix input.
    pub(crate) matrix: Option<&'a Matrix>,
}

impl<'a> Reference<'a> {
    /// The reference of inputs given in order.
    pub(crate) fn of(inputs: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Self {
        let mut r = Reference::default();
        for (port, value) in inputs {
            let grid = match value {
                Value::Raster(x) => {
                    r.raster.get_or_insert(x);
                    Some(&x.grid)
                }
                Value::Matrix(x) => {
                    r.matrix.get_or_insert(x);
                    Some(&x.grid)
                }
                Value::Labels(x) => Some(&x.grid),
                _ => None,
            };
            if let (None, Some(g)) = (r.grid, grid) {
                r.grid = Some((port, g));
            }
        }
        r
    }
}

/// What the output must be: its type, the names the recipe gives, and the inputs it is checked
/// against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expect<'a> {
    /// The declared type.
    pub(crate) kind: OutputKind,
    /// `bands` of the recipe.
    pub(crate) bands: Option<&'a [String]>,
    /// The inputs.
    pub(crate) reference: Reference<'a>,
}

/// The parsed header of an `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Header {
    /// The dtype descriptor (`<f4`).
    pub(crate) descr: String,
    /// Whether the data is in Fortran order.
    pub(crate) fortran: bool,
    /// The shape.
    pub(crate) shape: Vec<usize>,
}

/// The NumPy name of a dtype descriptor, for messages.
fn numpy_name(descr: &str) -> String {
    let name = match descr.trim_start_matches(['<', '|', '=']) {
        "f2" => "float16",
        "f4" => "float32",
        "f8" => "float64",
        "i1" => "int8",
        "i2" => "int16",
        "i4" => "int32",
        "i8" => "int64",
        "u1" => "uint8",
        "u2" => "uint16",
        "u4" => "uint32",
        "u8" => "uint64",
        "b1" => "bool",
        _ if descr.starts_with('>') => return format!("{descr} (big-endian)"),
        _ => return descr.to_string(),
    };
    format!("{name} ({descr})")
}

/// Reads and parses the header of an `.npy` file (format version 1.0, whose header is at most
/// 65,535 bytes).
///
/// # Errors
/// What is wrong: not an `.npy` file, another format version, a header that does not parse.
pub(crate) fn read_header(r: &mut impl Read) -> Result<Header, Wrong> {
    let mut pre = [0u8; 10];
    r.read_exact(&mut pre)
        .map_err(|_| "is shorter than an .npy header".to_string())?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("is not an .npy file (write it with numpy.save)".into());
    }
    if pre[6..8] != [1, 0] {
        return Err(format!(
            "is .npy format version {}.{}; flow reads version 1.0, which numpy.save writes for \
             any array whose header fits in 64 KiB",
            pre[6], pre[7]
        ));
    }
    let len = u16::from_le_bytes([pre[8], pre[9]]) as usize;
    let mut text = vec![0u8; len];
    r.read_exact(&mut text)
        .map_err(|_| "has a truncated header".to_string())?;
    let text =
        std::str::from_utf8(&text).map_err(|_| "has a header that is not text".to_string())?;
    parse_header(text).ok_or_else(|| {
        let shown: String = text.trim().chars().take(200).collect();
        format!("has a header that does not parse: {shown}")
    })
}

/// The value after `'key':` in a header's dict text.
fn after_key<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let at = text.find(&format!("'{key}':"))?;
    Some(text[at + key.len() + 3..].trim_start())
}

fn parse_header(text: &str) -> Option<Header> {
    let descr = after_key(text, "descr")?;
    let descr = descr.strip_prefix('\'')?;
    let descr = &descr[..descr.find('\'')?];
    let fortran = after_key(text, "fortran_order")?;
    let fortran = if fortran.starts_with("True") {
        true
    } else if fortran.starts_with("False") {
        false
    } else {
        return None;
    };
    let shape = after_key(text, "shape")?.strip_prefix('(')?;
    let shape = &shape[..shape.find(')')?];
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>().ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Header {
        descr: descr.to_string(),
        fortran,
        shape,
    })
}

/// A shape as Python writes it: `(2, 3)`, `(5,)`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A file the script wrote: a regular file (not a link, a pipe or a device), with its length.
fn regular_file(path: &Path, name: &str) -> Result<Option<u64>, Wrong> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(Some(m.len())),
        Ok(_) => Err(format!(
            "{name} is not a regular file (a link, directory or pipe); write the file itself"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{name} cannot be read: {e}")),
    }
}

/// Reads `name` from `dir`: its header is checked by `check` (element type `T` and the shape),
/// then its data read into one array.
fn read_array<T: npy::NpyElement>(
    dir: &Path,
    name: &str,
    what: &str,
    check: impl FnOnce(&[usize]) -> Result<(), Wrong>,
) -> Result<Option<ArrayD<T>>, Wrong> {
    let path = dir.join(name);
    let Some(len) = regular_file(&path, name)? else {
        return Ok(None);
    };
    let open = || {
        std::fs::File::open(&path)
            .map(BufReader::new)
            .map_err(|e| format!("{name} cannot be read: {e}"))
    };
    let header = read_header(&mut open()?).map_err(|m| format!("{name} {m}"))?;
    if header.descr != T::DESCR {
        let (want, hint) = match T::DESCR {
            "<f4" => ("float32 (<f4)", "np.float32"),
            "<u2" => ("uint16 (<u2)", "np.uint16"),
            "|b1" => ("bool (|b1)", "bool"),
            other => (other, other),
        };
        return Err(format!(
            "{name} holds {}, but {what} is {want}: save `array.astype({hint})`",
            numpy_name(&header.descr)
        ));
    }
    if header.fortran {
        return Err(format!(
            "{name} is in Fortran order; save `np.ascontiguousarray(array)`"
        ));
    }
    check(&header.shape)
        .map_err(|m| format!("{name} has shape {}: {m}", shape_text(&header.shape)))?;
    let array = npy::read::<T, _>(&mut open()?, len).map_err(|e| match e {
        npy::NpyError::Format(m) => format!("{name} is damaged: {m}"),
        other => format!("{name}: {other}"),
    })?;
    Ok(Some(array))
}

/// Reads `output.json` (at most [`MAX_JSON_BYTES`]) if the script wrote it.
fn read_json(dir: &Path) -> Result<Option<serde_json::Value>, Wrong> {
    let name = "output.json";
    let path = dir.join(name);
    let Some(len) = regular_file(&path, name)? else {
        return Ok(None);
    };
    if len > MAX_JSON_BYTES {
        return Err(format!(
            "{name} is {len} bytes, more than the {} MiB flow reads",
            MAX_JSON_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("{name} cannot be read: {e}"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{name} is not JSON: {e}"))
}

/// Deserializes the sidecar `output.json` (an object with the keys the output type takes).
fn sidecar<T: for<'de> Deserialize<'de> + Default>(
    json: Option<serde_json::Value>,
) -> Result<T, Wrong> {
    match json {
        None => Ok(T::default()),
        Some(v) => T::deserialize(v).map_err(|e| format!("output.json: {e}")),
    }
}

/// A band as `output.json` may give it: a name, or a name with a common name and wavelength.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BandEntry {
    Name(String),
    Info(BandInfo),
}

/// `output.json` beside a raster `output.npy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RasterSidecar {
    bands: Option<Vec<BandEntry>>,
    times: Option<Vec<String>>,
}

/// `output.json` beside a matrix `output.npy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixSidecar {
    features: Option<Vec<String>>,
}

/// A class as `output.json` may give it: a name, or a name with a colour.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClassEntry {
    Name(String),
    Info {
        name: String,
        color: Option<[u8; 3]>,
    },
}

/// `output.json` beside a labels `output.npy`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelsSidecar {
    classes: Option<Vec<ClassEntry>>,
    nodata: Option<u16>,
}

/// Names of `n` bands or features: from the script, else from the recipe, else those of the
/// reference input when it has as many, else `prefix1`, `prefix2`, ...
fn names(
    n: usize,
    what: &str,
    from_script: Option<Vec<BandInfo>>,
    from_recipe: Option<&[String]>,
    from_input: Option<Vec<BandInfo>>,
    prefix: &str,
) -> Result<Vec<BandInfo>, Wrong> {
    if let Some(b) = from_script {
        if b.len() != n {
            return Err(format!(
                "output.json names {} {what}s, but output.npy has {n}",
                b.len()
            ));
        }
        if let Some((i, x)) = b
            .iter()
            .enumerate()
            .find(|(i, x)| x.name.is_empty() || b[..*i].iter().any(|o| o.name == x.name))
        {
            return Err(format!(
                "output.json names {what} {} `{}`, which is empty or repeated",
                i + 1,
                x.name
            ));
        }
        return Ok(b);
    }
    if let Some(b) = from_recipe {
        if b.len() != n {
            return Err(format!(
                "the recipe's `bands` names {} {what}s, but output.npy has {n}",
                b.len()
            ));
        }
        return Ok(b
            .iter()
            .map(|name| BandInfo {
                name: name.clone(),
                ..BandInfo::default()
            })
            .collect());
    }
    Ok(match from_input.filter(|b| b.len() == n) {
        Some(b) => b,
        None => (1..=n)
            .map(|i| BandInfo {
                name: format!("{prefix}{i}"),
                ..BandInfo::default()
            })
            .collect(),
    })
}

/// The grid an array output must be on.
fn output_grid<'a>(expect: &Expect<'a>, what: &str) -> Result<(&'a str, &'a Grid), Wrong> {
    expect.reference.grid.ok_or_else(|| {
        format!(
            "{what} lies on the grid of an input, but no input is a raster, matrix or class map"
        )
    })
}

/// Checks that the last two axes of `shape` are `grid`'s rows and columns.
fn on_grid(shape: &[usize], port: &str, grid: &Grid) -> Result<(), Wrong> {
    let n = shape.len();
    let (h, w) = (shape[n - 2], shape[n - 1]);
    if (h, w) != (grid.height, grid.width) {
        return Err(format!(
            "its {h} x {w} pixels (y, x) are not the {} x {} of the grid of input `{port}`",
            grid.height, grid.width
        ));
    }
    Ok(())
}

/// Reads the script's output from `dir` and checks it against `expect`.
///
/// # Errors
/// What is wrong with it (a missing file, another element type or shape than the declared
/// output and the inputs' grid, a damaged file, a sidecar that does not fit), in a sentence.
pub(crate) fn read_output(dir: &Path, expect: &Expect<'_>) -> Result<Value, Wrong> {
    match expect.kind {
        OutputKind::Json => {
            let value = read_json(dir)?.ok_or_else(|| {
                "wrote no output.json (a json output is the JSON value in output.json)".to_string()
            })?;
            Ok(Value::Json(value))
        }
        OutputKind::Raster => read_raster(dir, expect).map(Value::Raster),
        OutputKind::Matrix => read_matrix(dir, expect).map(Value::Matrix),
        OutputKind::Labels => read_labels(dir, expect).map(Value::Labels),
    }
}

fn missing(what: &str, shape: &str) -> Wrong {
    format!("wrote no output.npy (a {what} output is output.npy, {shape})")
}

fn read_raster(dir: &Path, expect: &Expect<'_>) -> Result<Raster, Wrong> {
    let (port, grid) = output_grid(expect, "a raster output")?;
    let data = read_array::<f32>(dir, "output.npy", "a raster", |shape| {
        if !(2..=4).contains(&shape.len()) {
            return Err("a raster is (time, band, y, x), (band, y, x) or (y, x)".into());
        }
        on_grid(shape, port, grid)?;
        if shape[..shape.len() - 2].contains(&0) {
            return Err("a raster has at least one band and time step".into());
        }
        Ok(())
    })?
    .ok_or_else(|| {
        missing(
            "raster",
            "float32 (time, band, y, x), (band, y, x) or (y, x)",
        )
    })?;
    let (t, b) = match data.shape() {
        [_, _] => (1, 1),
        [b, _, _] => (1, *b),
        [t, b, _, _] => (*t, *b),
        _ => (0, 0),
    };
    let data = data
        .into_shape_with_order((t, b, grid.height, grid.width))
        .map_err(|e| e.to_string())?
        .into_dimensionality::<Ix4>()
        .map_err(|e| e.to_string())?;
    let side: RasterSidecar = sidecar(read_json(dir)?)?;
    let from_script = side.bands.map(|b| {
        b.into_iter()
            .map(|e| match e {
                BandEntry::Name(name) => BandInfo {
                    name,
                    ..BandInfo::default()
                },
                BandEntry::Info(info) => info,
            })
            .collect()
    });
    let bands = names(
        b,
        "band",
        from_script,
        expect.bands,
        expect.reference.raster.map(|r| r.bands.clone()),
        "band",
    )?;
    let reference_times = expect.reference.raster.map(|r| r.times.as_slice());
    let times = match (side.times, reference_times) {
        (Some(times), _) if times.len() == t => times,
        (Some(times), _) => {
            return Err(format!(
                "output.json gives {} times, but output.npy has {t} time steps",
                times.len()
            ))
        }
        (None, Some(r)) if r.len() == t => r.to_vec(),
        // One step made of the reference's steps: labelled as `composite` labels it.
        (None, Some(r)) if t == 1 && !r.is_empty() => vec![flow_nodes_ml::composite::span(r)],
        (None, _) => {
            return Err(format!(
                "output.npy has {t} time steps and no input raster has as many; give their \
                 labels as `times` in output.json"
            ))
        }
    };
    Ok(Raster {
        data,
        grid: grid.clone(),
        bands,
        times,
    })
}

fn read_matrix(dir: &Path, expect: &Expect<'_>) -> Result<Matrix, Wrong> {
    let data = read_array::<f32>(dir, "output.npy", "a matrix", |shape| {
        if shape.len() != 2 {
            return Err("a matrix is (rows, features)".into());
        }
        if shape[1] == 0 {
            return Err("a matrix has at least one feature".into());
        }
        Ok(())
    })?
    .ok_or_else(|| missing("matrix", "float32 (rows, features)"))?
    .into_dimensionality::<Ix2>()
    .map_err(|e| e.to_string())?;
    // The pixels the rows are: the script's own mask, else the first input matrix's.
    let (port, grid) = output_grid(expect, "a matrix output")?;
    let own = read_array::<bool>(dir, "output.valid.npy", "a validity mask", |shape| {
        if shape.len() != 2 {
            return Err("a validity mask is (y, x)".into());
        }
        on_grid(shape, port, grid)
    })?;
    let (valid, grid) = match (own, expect.reference.matrix) {
        (Some(v), _) => (
            v.into_dimensionality::<Ix2>().map_err(|e| e.to_string())?,
            grid.clone(),
        ),
        (None, Some(m)) => (m.valid.clone(), m.grid.clone()),
        (None, None) => {
            return Err(
                "a matrix output needs its validity mask: write output.valid.npy \
                 (bool, (y, x), true where a pixel has a row) or give the node a matrix input \
                 whose mask it keeps"
                    .into(),
            )
        }
    };
    let rows = valid.iter().filter(|&&v| v).count();
    if rows != data.nrows() {
        return Err(format!(
            "output.npy has {} rows, but its validity mask has {rows} valid pixels",
            data.nrows()
        ));
    }
    let side: MatrixSidecar = sidecar(read_json(dir)?)?;
    let from_script = side.features.map(|f| {
        f.into_iter()
            .map(|name| BandInfo {
                name,
                ..BandInfo::default()
            })
            .collect()
    });
    let from_input = expect.reference.matrix.map(|m| {
        m.features
            .iter()
            .map(|name| BandInfo {
                name: name.clone(),
                ..BandInfo::default()
            })
            .collect()
    });
    let features = names(
        data.ncols(),
        "feature",
        from_script,
        expect.bands,
        from_input,
        "feature",
    )?
    .into_iter()
    .map(|b| b.name)
    .collect();
    Ok(Matrix {
        scaling: Default::default(),
        data,
        features,
        valid,
        grid,
    })
}

fn read_labels(dir: &Path, expect: &Expect<'_>) -> Result<Labels, Wrong> {
    let (port, grid) = output_grid(expect, "a labels output")?;
    let data: Array2<u16> = read_array::<u16>(dir, "output.npy", "a class map", |shape| {
        if shape.len() != 2 {
            return Err("a class map is (y, x)".into());
        }
        on_grid(shape, port, grid)
    })?
    .ok_or_else(|| missing("labels", "uint16 (y, x)"))?
    .into_dimensionality::<Ix2>()
    .map_err(|e| e.to_string())?;
    let side: LabelsSidecar = sidecar(read_json(dir)?)?;
    let nodata = side.nodata.unwrap_or(flow_nodes_ml::reshape::NODATA);
    let largest = data.iter().filter(|&&v| v != nodata).max().copied();
    let classes: Vec<ClassInfo> = match side.classes {
        Some(list) => {
            if list.len() > usize::from(u16::MAX) {
                return Err("output.json names more classes than a class map holds".into());
            }
            if let Some(id) = largest.filter(|&id| usize::from(id) >= list.len()) {
                return Err(format!(
                    "output.npy holds class {id}, but output.json names {} classes (ids 0 to {})",
                    list.len(),
                    list.len().saturating_sub(1)
                ));
            }
            list.into_iter()
                .zip(0u16..)
                .map(|(entry, id)| match entry {
                    ClassEntry::Name(name) => ClassInfo {
                        id,
                        name,
                        color: flow_nodes_ml::reshape::class_color(id),
                    },
                    ClassEntry::Info { name, color } => ClassInfo {
                        id,
                        name,
                        color: color.unwrap_or_else(|| flow_nodes_ml::reshape::class_color(id)),
                    },
                })
                .collect()
        }
        None => (0..largest.map_or(0, |l| u32::from(l) + 1))
            .map(|id| {
                let id = id as u16;
                ClassInfo {
                    id,
                    name: format!("class {id}"),
                    color: flow_nodes_ml::reshape::class_color(id),
                }
            })
            .collect(),
    };
    Ok(Labels {
        data,
        nodata,
        classes,
        grid: grid.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, Array4};

    fn grid() -> Grid {
        Grid::north_up("EPSG:32618", 0.0, 30.0, 10.0, 4, 3)
    }

    fn raster(bands: &[&str], times: &[&str]) -> Raster {
        Raster {
            data: Array4::zeros((times.len(), bands.len(), 3, 4)),
            grid: grid(),
            bands: bands
                .iter()
                .map(|b| BandInfo {
                    name: b.to_string(),
                    common_name: Some("x".into()),
                    ..BandInfo::default()
                })
                .collect(),
            times: times.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn expect<'a>(
        kind: OutputKind,
        bands: Option<&'a [String]>,
        inputs: &'a [(&'a str, Value)],
    ) -> Expect<'a> {
        Expect {
            kind,
            bands,
            reference: Reference::of(inputs.iter().map(|(p, v)| (*p, v))),
        }
    }

    fn put(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn headers_parse_as_numpy_writes_them() {
        let bytes = npy::encode(&Array3::<f32>::zeros((2, 3, 4)));
        let h = read_header(&mut &bytes[..]).unwrap();
        assert_eq!(
            (h.descr.as_str(), h.fortran, h.shape.as_slice()),
            ("<f4", false, &[2, 3, 4][..])
        );
        // NumPy's own spelling, a 1-d shape and a 0-d one.
        let h = parse_header("{'descr': '<i8', 'fortran_order': True, 'shape': (5,), }").unwrap();
        assert_eq!(
            (h.descr.as_str(), h.fortran, h.shape),
            ("<i8", true, vec![5])
        );
        assert_eq!(
            parse_header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }")
                .unwrap()
                .shape,
            Vec::<usize>::new()
        );
        for bad in [
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
            "{'descr': '<f4', 'shape': (2,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
        ] {
            assert_eq!(parse_header(bad), None, "{bad}");
        }
        assert!(read_header(&mut &b"PK\x03\x04 a zip file"[..])
            .unwrap_err()
            .contains("not an .npy"));
        let mut v2 = bytes.clone();
        v2[6] = 2;
        assert!(read_header(&mut &v2[..])
            .unwrap_err()
            .contains("version 2.0"));
        assert!(read_header(&mut &bytes[..40])
            .unwrap_err()
            .contains("truncated"));
    }

    #[test]
    fn a_raster_takes_the_grid_names_and_times_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [(
            "cube",
            Value::Raster(raster(&["B8A", "B11"], &["2021-07-01", "2021-08-01"])),
        )];
        // One band over two dates, named by the recipe, on the input's times.
        put(
            dir.path(),
            "output.npy",
            &npy::encode(&Array4::<f32>::from_elem((2, 1, 3, 4), 0.5)),
        );
        let bands = ["NDMI".to_string()];
        let Value::Raster(r) = read_output(
            dir.path(),
            &expect(OutputKind::Raster, Some(&bands), &inputs),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(r.grid, grid());
        assert_eq!(r.bands[0].name, "NDMI");
        assert_eq!(r.times, ["2021-07-01", "2021-08-01"]);
        // (y, x): one band, one step labelled with the inputs' span; no names: band1.
        put(
            dir.path(),
            "output.npy",
            &npy::encode(&Array2::<f32>::zeros((3, 4))),
        );
        let Value::Raster(r) =
            read_output(dir.path(), &expect(OutputKind::Raster, None, &inputs)).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.data.dim(), (1, 1, 3, 4));
        assert_eq!(r.bands[0].name, "band1");
        assert_eq!(r.times, ["2021-07-01/2021-08-01"]);
        // As many bands as the input: the input's bands, common names and all.
        put(
            dir.path(),
            "output.npy",
            &npy::encode(&Array3::<f32>::zeros((2, 3, 4))),
        );
        let Value::Raster(r) =
            read_output(dir.path(), &expect(OutputKind::Raster, None, &inputs)).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.bands[1].name, "B11");
        assert_eq!(r.bands[1].common_name.as_deref(), Some("x"));
        // output.json wins over the recipe.
        put(
            dir.path(),
            "output.json",
            br#"{"bands": ["a", {"name": "b", "common_name": "nir"}], "times": ["t"]}"#,
        );
        let Value::Raster(r) =
            read_output(dir.path(), &expect(OutputKind::Raster, None, &inputs)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.bands[0].name.as_str(), r.bands[1].common_name.as_deref()),
            ("a", Some("nir"))
        );
        assert_eq!(r.times, ["t"]);
        put(dir.path(), "output.json", br#"{"bands": ["a", "a"]}"#);
        let m = read_output(dir.path(), &expect(OutputKind::Raster, None, &inputs)).unwrap_err();
        assert!(
            m.contains("names band 2 `a`, which is empty or repeated"),
            "{m}"
        );
    }

    #[test]
    fn what_does_not_fit_is_told_with_expected_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [("cube", Value::Raster(raster(&["B8A"], &["t"])))];
        let bands = ["NDMI".to_string()];
        let e = expect(OutputKind::Raster, Some(&bands), &inputs);
        let err = |bytes: &[u8]| {
            put(dir.path(), "output.npy", bytes);
            read_output(dir.path(), &e).unwrap_err()
        };
        let _ = std::fs::remove_file(dir.path().join("output.npy"));
        assert!(read_output(dir.path(), &e)
            .unwrap_err()
            .contains("wrote no output.npy"));
        let m = err(&npy::encode(&Array2::<f32>::zeros((4, 3))));
        assert_eq!(m, "output.npy has shape (4, 3): its 4 x 3 pixels (y, x) are not the 3 x 4 of the grid of input `cube`");
        let m = err(&npy::encode(&ndarray::Array1::<f32>::zeros(12)));
        assert!(
            m.contains("(12,)") && m.contains("(time, band, y, x)"),
            "{m}"
        );
        let m = err(&npy::encode(&Array2::<u16>::zeros((3, 4))));
        assert!(m.contains("holds uint16 (<u2), but a raster is float32 (<f4): save `array.astype(np.float32)`"), "{m}");
        let m = err(&npy::encode(&Array3::<f32>::zeros((2, 3, 4))));
        assert!(
            m.contains("`bands` names 1 bands, but output.npy has 2"),
            "{m}"
        );
        let m = err(&npy::encode(&Array3::<f32>::zeros((0, 3, 4))));
        assert!(m.contains("at least one band"), "{m}");
        // Truncated data, bytes after it, a header claiming far more than the file holds.
        let good = npy::encode(&Array2::<f32>::zeros((3, 4)));
        assert!(err(&good[..good.len() - 3]).contains("damaged"));
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(err(&longer).contains("damaged"));
        let mut huge = npy::header::<f32>(&[1 << 40, 3, 4]);
        huge.extend_from_slice(&good[64..]);
        let m = err(&huge);
        assert!(
            m.contains("damaged: expected") && m.contains("data bytes"),
            "{m}"
        );
        // A sidecar with a key the output does not take.
        put(dir.path(), "output.npy", &good);
        put(dir.path(), "output.json", br#"{"band": ["x"]}"#);
        assert!(read_output(dir.path(), &e)
            .unwrap_err()
            .contains("unknown field `band`"));
        put(dir.path(), "output.json", br#"{"times": ["a", "b"]}"#);
        assert!(read_output(dir.path(), &e)
            .unwrap_err()
            .contains("gives 2 times"));
        std::fs::remove_file(dir.path().join("output.json")).unwrap();
        // No input on a grid.
        let none: [(&str, Value); 1] = [("x", Value::Json(serde_json::json!(1)))];
        let m = read_output(dir.path(), &expect(OutputKind::Raster, None, &none)).unwrap_err();
        assert!(m.contains("no input is a raster"), "{m}");
        // A link instead of a file is refused, not followed.
        #[cfg(unix)]
        {
            std::fs::remove_file(dir.path().join("output.npy")).unwrap();
            std::os::unix::fs::symlink("/dev/zero", dir.path().join("output.npy")).unwrap();
            assert!(read_output(dir.path(), &e)
                .unwrap_err()
                .contains("not a regular file"));
        }
    }

    #[test]
    fn labels_matrices_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = [("cube", Value::Raster(raster(&["B8A"], &["t"])))];
        let mut map = Array2::<u16>::zeros((3, 4));
        map[[0, 0]] = 2;
        map[[1, 1]] = 65535;
        put(dir.path(), "output.npy", &npy::encode(&map));
        let Value::Labels(l) =
            read_output(dir.path(), &expect(OutputKind::Labels, None, &inputs)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (l.classes.len(), l.nodata, l.classes[2].name.as_str()),
            (3, 65535, "class 2")
        );
        put(
            dir.path(),
            "output.json",
            br#"{"classes": ["water", {"name": "forest", "color": [0, 128, 0]}]}"#,
        );
        let m = read_output(dir.path(), &expect(OutputKind::Labels, None, &inputs)).unwrap_err();
        assert!(
            m.contains("holds class 2, but output.json names 2 classes"),
            "{m}"
        );
        put(
            dir.path(),
            "output.json",
            br#"{"classes": ["water", {"name": "forest", "color": [0, 128, 0]}, "city"]}"#,
        );
        let Value::Labels(l) =
            read_output(dir.path(), &expect(OutputKind::Labels, None, &inputs)).unwrap()
        else {
            panic!()
        };
        assert_eq!(l.classes[1].color, [0, 128, 0]);
        std::fs::remove_file(dir.path().join("output.json")).unwrap();

        // A matrix needs a mask: its own, or its input matrix's.
        put(
            dir.path(),
            "output.npy",
            &npy::encode(&Array2::<f32>::zeros((5, 2))),
        );
        let m = read_output(dir.path(), &expect(OutputKind::Matrix, None, &inputs)).unwrap_err();
        assert!(m.contains("output.valid.npy"), "{m}");
        let valid = Array2::from_shape_fn((3, 4), |(y, x)| y * 4 + x < 5);
        put(dir.path(), "output.valid.npy", &npy::encode(&valid));
        let Value::Matrix(mx) =
            read_output(dir.path(), &expect(OutputKind::Matrix, None, &inputs)).unwrap()
        else {
            panic!()
        };
        assert_eq!(mx.features, ["feature1", "feature2"]);
        assert_eq!(mx.valid, valid);
        put(
            dir.path(),
            "output.npy",
            &npy::encode(&Array2::<f32>::zeros((4, 2))),
        );
        let m = read_output(dir.path(), &expect(OutputKind::Matrix, None, &inputs)).unwrap_err();
        assert!(
            m.contains("4 rows, but its validity mask has 5 valid pixels"),
            "{m}"
        );

        put(dir.path(), "output.json", br#"{"mean": 0.25}"#);
        let v = read_output(dir.path(), &expect(OutputKind::Json, None, &inputs)).unwrap();
        assert_eq!(v, Value::Json(serde_json::json!({"mean": 0.25})));
        put(dir.path(), "output.json", b"{not json");
        assert!(
            read_output(dir.path(), &expect(OutputKind::Json, None, &inputs))
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
