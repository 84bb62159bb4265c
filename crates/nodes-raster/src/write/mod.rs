//! The `write` kind: GeoTIFF / COG (rasters, and class maps with a colour table and category
//! names), PNG quicklooks (RGB beside the class map, with a legend), PNG charts of a model's
//! `k = "auto"` sweep ([`sweep`]) and of an assessment's confusion matrix, and JSON (models with
//! class statistics, any Json value), and with `stac_item = true` a STAC Item beside a GeoTIFF /
//! COG.
//! Every file is written under a temporary name in its directory, fsynced and renamed into place
//! ([`flow_core::atomic`]), so a failed run leaves no half file.
//!
//! Every file stays inside the output directory (`--out`): `path` is relative without `..`
//! (checked when the recipe is validated), and before anything is written the directories on the
//! way to it are walked from the canonical output directory one at a time ([`place`]): a missing
//! one is created, an existing symbolic link is followed only when it resolves inside the output
//! directory, and one that leads out of it is refused with an I/O error (exit 5) naming the file,
//! the link, where it leads and the output directory. Nothing is written then, not even a
//! temporary file. The file, its temporary, GDAL's `.aux.xml` and the STAC Item all go into the
//! directory so resolved; a symbolic link in place of the file itself is replaced by the new file
//! (the rename), never written through.

mod confusion;
mod estimate;
mod font;
mod geotiff;
mod item;
mod json;
mod png;
mod sweep;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use flow_core::{
    atomic, ClassInfo, DeclaredParams, Inputs, Labels, Node, NodeError, NodeKind, ParamError,
    ParamSpec, Params, Port, RunContext, Signature, Value, ValueType,
};
use serde_json::json;

use crate::error::{RasterError, Result};

pub(crate) use json::f32_from_json;
#[cfg(test)]
pub(crate) use json::json_f32;

/// The `write` node kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriteKind;

flow_core::param_enum! {
    /// Output formats of `write`.
    enum Format {
        /// GeoTIFF, tiled and DEFLATE-compressed.
        GTiff = "gtiff",
        /// Cloud-optimized GeoTIFF.
        Cog = "cog",
        /// A PNG quicklook.
        Png = "png",
        /// Pretty JSON.
        Json = "json",
    }
}

flow_core::params! {
    /// `write` parameters as written in the recipe.
    struct WriteParams {
        /// file path relative to the output directory
        path: String,
        /// default: from the extension (.tif/.tiff gtiff, .png, .json)
        format: Option<Format>,
        /// bands of the RGB composite (red, green, blue), by name or common name; red, green and blue fall back to Sentinel-2's B04, B03, B02 where no band has that common name
        rgb_bands: Vec<String> = DEFAULT_RGB_BANDS.map(String::from).to_vec(),
        /// names of the classes, by class id
        class_names: Option<Vec<String>>,
        /// also write a STAC Item `<stem>.item.json` describing a GeoTIFF / COG
        stac_item: bool = false,
    }
}

/// Validated `write` parameters.
#[derive(Debug, Clone)]
struct ValidWrite {
    /// Relative to the run's output directory, without `..`.
    path: PathBuf,
    format: Format,
    rgb_bands: [String; 3],
    class_names: Option<Vec<String>>,
    /// Write `<stem>.item.json` beside a GeoTIFF / COG.
    stac_item: bool,
}

/// The default RGB composite: the bands whose common names are red, green and blue (any
/// collection that has them: Sentinel-2, Landsat), see [`png::composite`].
const DEFAULT_RGB_BANDS: [&str; 3] = ["red", "green", "blue"];

impl WriteParams {
    fn validate(self) -> Result<ValidWrite, ParamError> {
        let path = PathBuf::from(&self.path);
        if self.path.is_empty() || path.file_name().is_none() {
            return Err(ParamError::new("path", "`path` must name a file"));
        }
        if !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(ParamError::new(
                "path",
                format!(
                    "`path` {:?} must stay inside the output directory",
                    self.path
                ),
            )
            .with_help("use a relative path without `..`"));
        }
        let format = match self.format {
            Some(f) => f,
            None => {
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                match ext.as_str() {
                    "tif" | "tiff" => Format::GTiff,
                    "png" => Format::Png,
                    "json" => Format::Json,
                    _ => {
                        return Err(ParamError::new(
                            "format",
                            format!("cannot tell the format of {:?}", self.path),
                        )
                        .with_help("end `path` in .tif, .png or .json, or set `format`"))
                    }
                }
            }
        };
        let rgb_bands = <[String; 3]>::try_from(self.rgb_bands).map_err(|v| {
            ParamError::new(
                "rgb_bands",
                format!("`rgb_bands` needs 3 band names, got {}", v.len()),
            )
        })?;
        let stac_item = self.stac_item;
        if stac_item && !matches!(format, Format::GTiff | Format::Cog) {
            return Err(ParamError::new(
                "stac_item",
                format!(
                    "a STAC Item describes a GeoTIFF or COG, not a {} file",
                    format.name()
                ),
            ));
        }
        Ok(ValidWrite {
            path,
            format,
            rgb_bands,
            class_names: self.class_names,
            stac_item,
        })
    }
}

impl NodeKind for WriteKind {
    fn name(&self) -> &str {
        "write"
    }

    fn version(&self) -> u32 {
        // 2: model JSON areas are true ground areas. 3: model JSON centroids are the shortest
        // decimals that read back as the same f32 (`read`), no longer rounded to 8 digits.
        3
    }

    fn doc(&self) -> &str {
        "Writes a value under the output directory: a Raster or Labels as GeoTIFF / COG (class maps with a \
         colour table and category names), Labels as a PNG quicklook (the `rgb` raster beside the class map, \
         with a legend), a Model as JSON (centroids, inertia, info with a k = \"auto\" sweep; class pixel \
         counts and areas with `labels`, per-class band means with `spectra`) or, when it holds a k = \"auto\" \
         sweep, as a PNG chart (the criterion and the inertia against k, the chosen k marked), Json as pretty \
         JSON (and an `assess` result as a PNG of its confusion matrix). With `stac_item`, a STAC Item beside a \
         GeoTIFF / COG (footprint, proj:*, raster:bands, classes, checksum; datetime and derived_from links \
         from `items`). Outputs the list of files with their BLAKE3 hashes."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required("input", ValueType::Any, "the value to write"),
                Port::optional(
                    "rgb",
                    ValueType::Raster,
                    "raster for the RGB panel of a PNG quicklook",
                ),
                Port::optional(
                    "labels",
                    ValueType::Labels,
                    "class map for a model's class statistics",
                ),
                Port::optional(
                    "spectra",
                    ValueType::Raster,
                    "raster whose per-class band means go into a model's JSON",
                ),
                Port::optional(
                    "items",
                    ValueType::Items,
                    "the STAC items the output comes from: the STAC Item's datetime and links",
                ),
            ],
            output: ValueType::Json,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        WriteParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let p = WriteParams::parse(params)?;
        Ok(Box::new(WriteNode {
            params: p.validate()?,
        }))
    }
}

/// A built `write` node.
struct WriteNode {
    params: ValidWrite,
}

/// A distinct palette for classes without a colour (tab10-like).
pub(crate) const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [44, 160, 44],
    [188, 189, 34],
    [127, 127, 127],
    [140, 86, 75],
    [255, 127, 14],
    [148, 103, 189],
    [214, 39, 40],
    [227, 119, 194],
    [23, 190, 207],
];

/// The classes of a class map: its own, extended to every id present, renamed by `class_names`.
pub(crate) fn classes_of(labels: &Labels, names: Option<&[String]>) -> Vec<ClassInfo> {
    let max_id = labels
        .data
        .iter()
        .filter(|&&v| v != labels.nodata)
        .max()
        .copied();
    classes_up_to(labels, max_id, names)
}

/// The classes of a class map whose largest class id (nodata aside) is `max_id`: its own
/// (`labels.classes`; its pixels are not read), extended to every id up to `max_id` and to
/// every name of `class_names`, renamed by them. Ids without a class of their own are named
/// `class <id>` and coloured from a palette.
pub(crate) fn classes_up_to(
    labels: &Labels,
    max_id: Option<u16>,
    names: Option<&[String]>,
) -> Vec<ClassInfo> {
    let n = labels
        .classes
        .iter()
        .map(|c| c.id as usize + 1)
        .max()
        .unwrap_or(0)
        .max(max_id.map_or(0, |m| m as usize + 1));
    let n = n.max(names.map_or(0, <[String]>::len));
    (0..n)
        .filter(|&id| id != labels.nodata as usize)
        .map(|id| {
            let own = labels.classes.iter().find(|c| c.id as usize == id);
            let name = names
                .and_then(|v| v.get(id).cloned())
                .or_else(|| own.map(|c| c.name.clone()))
                .unwrap_or_else(|| format!("class {id}"));
            let color = own.map(|c| c.color).unwrap_or(PALETTE[id % PALETTE.len()]);
            ClassInfo {
                id: id as u16,
                name,
                color,
            }
        })
        .collect()
}

fn aux(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".aux.xml");
    PathBuf::from(s)
}

/// Fsyncs a file that a writer (GDAL, say) has closed.
fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| RasterError::io(path, e))
}

/// The process id in the name of a temporary file of `target` ([`atomic::temp_path_for`]:
/// `.<name>.tmp-<pid>-<n>`, possibly followed by a suffix GDAL added, such as `.aux.xml` or
/// `.ovr.tmp`), or None for any other name.
fn temp_owner(target_name: &str, file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix(&format!(".{target_name}.tmp-"))?;
    let (pid, rest) = rest.split_once('-')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let suffix = &rest[digits..];
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || digits == 0 {
        return None;
    }
    if !(suffix.is_empty() || suffix.starts_with('.')) {
        return None;
    }
    pid.parse().ok()
}

/// True unless process `pid` is known to be gone (`/proc/<pid>` missing while `/proc/self`
/// exists): without /proc, every process counts as alive.
fn alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files of `target` that processes which are gone left behind (a run
/// killed, interrupted or out of space in the middle of a write), with GDAL's files beside
/// them; the files of live processes, this one included, are kept. Returns the files removed.
fn remove_stale_temps(target: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name, &file_name) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !alive(pid) && std::fs::remove_file(entry.path()).is_ok() {
            tracing::info!(file = %entry.path().display(), pid, "removed a stale temporary file");
            removed.push(entry.path());
        }
    }
    removed
}

/// An error of writing `tmp` (or its sidecar, or the GeoTIFF a COG is copied from) told as one
/// of writing `target`.
fn about_target(e: RasterError, tmp: &Path, target: &Path) -> RasterError {
    match e {
        RasterError::Io { path, source } => RasterError::Io {
            path: if path == aux(tmp) {
                aux(target)
            } else {
                target.to_path_buf()
            },
            source,
        },
        RasterError::Gdal { context, message } => RasterError::Gdal {
            context: context
                .replace(
                    &geotiff::cog_source(tmp).display().to_string(),
                    &target.display().to_string(),
                )
                .replace(&tmp.display().to_string(), &target.display().to_string()),
            message,
        },
        other => other,
    }
}

/// Writes `target` through `fill(tmp)`, `tmp` a temporary file beside it
/// ([`atomic::temp_path_for`]); fsyncs it and GDAL's `.aux.xml` sidecar if one was made, then
/// renames them into place and fsyncs the directory ([`atomic::commit`]). On any failure the
/// temporary files are removed and the target is left as it was; temporary files of `target`
/// that dead processes left are removed first ([`remove_stale_temps`]). Returns the files now in
/// place.
fn write_atomically(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<Vec<PathBuf>> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| RasterError::io(dir, e))?;
    remove_stale_temps(target);
    let tmp = atomic::temp_path_for(target);
    let cleanup = |tmp: &Path| {
        let _ = std::fs::remove_file(tmp);
        let _ = std::fs::remove_file(aux(tmp));
        // The GeoTIFF a windowed COG is copied from.
        geotiff::remove_cog_source(tmp);
        // What GDAL's COG driver writes beside its output while building overviews.
        for suffix in [".ovr.tmp", ".msk.ovr.tmp"] {
            let mut s = tmp.as_os_str().to_owned();
            s.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(s));
        }
    };
    let staged = fill(&tmp).and_then(|()| {
        sync_file(&tmp)?;
        if aux(&tmp).exists() {
            sync_file(&aux(&tmp))?;
        }
        Ok(())
    });
    if let Err(e) = staged {
        cleanup(&tmp);
        return Err(about_target(e, &tmp, target));
    }
    let mut files = vec![target.to_path_buf()];
    let result = (|| {
        if aux(&tmp).exists() {
            atomic::commit(&aux(&tmp), &aux(target))
                .map_err(|e| RasterError::io(aux(target), e))?;
            files.push(aux(target));
        } else if aux(target).exists() {
            std::fs::remove_file(aux(target)).map_err(|e| RasterError::io(aux(target), e))?;
        }
        atomic::commit(&tmp, target).map_err(|e| RasterError::io(target, e))
    })();
    if let Err(e) = result {
        cleanup(&tmp);
        return Err(e);
    }
    Ok(files)
}

/// The file `rel` (relative, only normal components) under the output directory `out_dir`,
/// with the directories on the way resolved: walked from the canonical output directory one
/// component at a time, a missing directory is created when `create` is true (and is an error
/// otherwise), an existing one is entered, and a symbolic link is followed only when it resolves
/// inside the output directory. Returns the file's path in its resolved directory.
///
/// # Errors
/// An I/O error naming the file when a component leads outside the output directory (a symbolic
/// link to elsewhere; the message names the link, its target and the output directory) or is not
/// a directory, or when a directory cannot be read or created.
fn place(out_dir: &Path, rel: &Path, create: bool) -> Result<PathBuf> {
    use std::io::{Error, ErrorKind};
    let logical = out_dir.join(rel);
    let failed = |e: Error| RasterError::io(&logical, e);
    if create {
        std::fs::create_dir_all(out_dir).map_err(|e| RasterError::io(out_dir, e))?;
    }
    let root = std::fs::canonicalize(out_dir).map_err(|e| RasterError::io(out_dir, e))?;
    let file_name = rel
        .file_name()
        .ok_or_else(|| failed(Error::new(ErrorKind::InvalidInput, "not a file name")))?;
    let mut dir = root.clone();
    let mut shown = PathBuf::new();
    for part in rel.parent().into_iter().flat_map(Path::components) {
        let name = match part {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => {
                return Err(failed(Error::new(
                    ErrorKind::InvalidInput,
                    "the path leaves the output directory",
                )))
            }
        };
        shown.push(name);
        let next = dir.join(name);
        dir = loop {
            match std::fs::symlink_metadata(&next) {
                Ok(m) if m.file_type().is_symlink() => {
                    let real = std::fs::canonicalize(&next).map_err(|e| {
                        failed(Error::new(
                            e.kind(),
                            format!(
                                "`{}` is a symbolic link that leads nowhere ({e})",
                                shown.display()
                            ),
                        ))
                    })?;
                    if !real.starts_with(&root) {
                        return Err(failed(Error::new(
                            ErrorKind::PermissionDenied,
                            format!(
                                "refused: `{}` is a symbolic link to {}, outside the output \
                                 directory {}; `write` writes only inside the output directory",
                                shown.display(),
                                real.display(),
                                root.display()
                            ),
                        )));
                    }
                    if !real.is_dir() {
                        return Err(failed(Error::new(
                            ErrorKind::NotADirectory,
                            format!("`{}` is not a directory", shown.display()),
                        )));
                    }
                    break real;
                }
                Ok(m) if m.is_dir() => break next,
                Ok(_) => {
                    return Err(failed(Error::new(
                        ErrorKind::NotADirectory,
                        format!("`{}` is not a directory", shown.display()),
                    )))
                }
                Err(e) if e.kind() == ErrorKind::NotFound && create => {
                    match std::fs::create_dir(&next) {
                        // Made by someone else meanwhile: look again at what it is.
                        Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(failed(within(&shown, e))),
                        Ok(()) => break next,
                    }
                }
                Err(e) => return Err(failed(within(&shown, e))),
            }
        };
    }
    Ok(dir.join(file_name))
}

/// An error about directory `dir` (relative to the output directory), keeping its kind.
fn within(dir: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("`{}`: {e}", dir.display()))
}

/// BLAKE3 hash (hex) and size of a file, read in pieces.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let (hash, bytes) = flow_core::digest::hash_file(path)?;
    Ok((hash.to_hex().to_string(), bytes))
}

/// The name under the output directory of `file`, written beside `rel` (the file a recipe asked
/// for: `file` is it or a sidecar in its directory), with `/` separators.
fn relative(file: &Path, rel: &Path) -> String {
    rel.parent()
        .into_iter()
        .flat_map(Path::components)
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .chain(file.file_name())
        .map(|n| n.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The per-class band means of `spectra` (a raster held whole, or windowed and read window by
/// window, never whole) over the classes of `labels`.
fn class_means(
    ctx: &RunContext,
    labels: &Labels,
    spectra: Option<&Value>,
) -> Result<Option<json::ClassMeans>, NodeError> {
    let band_names =
        |r: &flow_core::Raster| r.bands.iter().map(|b| b.name.clone()).collect::<Vec<_>>();
    match spectra {
        None => Ok(None),
        Some(Value::Raster(r)) => {
            let mut means = json::ClassMeans::new(labels, band_names(r));
            means.add(labels.data.view(), labels.nodata, &r.data.view())?;
            Ok(Some(means))
        }
        Some(Value::Deferred(d)) => {
            let Value::Raster(template) = d.template.as_ref() else {
                return Err(NodeError::Input {
                    port: "spectra".into(),
                    message: "expected a Raster".into(),
                });
            };
            let grid = d.grid();
            if (grid.height, grid.width) != labels.data.dim() {
                return Err(NodeError::InvalidData(format!(
                    "write: `spectra` is {} x {} pixels but the class map is {} x {}",
                    grid.width, grid.height, labels.grid.width, labels.grid.height
                )));
            }
            let names = band_names(template);
            let parts = d.fold(
                ctx,
                || json::ClassMeans::new(labels, names.clone()),
                |acc, w, v| {
                    let Value::Raster(r) = v else {
                        return Err(NodeError::Failed(
                            "write: a window of `spectra` is not a Raster".into(),
                        ));
                    };
                    let part = labels
                        .data
                        .slice(ndarray::s![w.row..w.row + w.height, w.col..w.col + w.width]);
                    acc.add(part, labels.nodata, &r.data.view())
                },
            )?;
            let mut all = json::ClassMeans::new(labels, names);
            for p in &parts {
                all.merge(p);
            }
            Ok(Some(all))
        }
        Some(other) => Err(NodeError::Input {
            port: "spectra".into(),
            message: format!("expected a Raster, got a {}", other.value_type()),
        }),
    }
}

/// How many times the free space a file's uncompressed pixels may take before `write`
/// refuses it (compression makes up the rest, or the write fails with "no space left").
const ROOM_FACTOR: u64 = 4;

/// Refuses to write `value` beside `target` when its pixels, uncompressed, exceed
/// [`ROOM_FACTOR`] times the space free there: a cube computed window by window can be far larger than memory and
/// than the disk, and writing it would fill the disk after hours. An I/O error (exit 5) naming
/// the file, the value, both sizes; nothing is written. Where the free space is unknown, the
/// write goes ahead.
fn check_room(target: &Path, value: &Value) -> Result<(), NodeError> {
    let Some(pixels) = flow_core::estimate::Shape::of(value).pixels().cloned() else {
        return Ok(());
    };
    let bytes = pixels.bytes();
    let dir = target.parent().unwrap_or(Path::new("."));
    let Ok(c_dir) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return Ok(());
    };
    // SAFETY: a NUL-terminated path valid for the call; GDAL only reads it.
    let free = unsafe { gdal_sys::VSIGetDiskFreeSpace(c_dir.as_ptr()) };
    let Ok(free) = u64::try_from(free) else {
        return Ok(()); // -1: not known
    };
    // DEFLATE may well shrink it a few times; what a few times cannot fit is refused now.
    if bytes <= free.saturating_mul(ROOM_FACTOR) {
        return Ok(());
    }
    use flow_core::estimate::human_bytes;
    Err(NodeError::io(
        target,
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "no space left on device for it: the {:?} of {} pixels takes {} uncompressed, \
                 and {} has {} free; write a smaller area or a coarser resolution",
                pixels.ty,
                pixels.dims(),
                human_bytes(bytes),
                dir.display(),
                human_bytes(free)
            ),
        ),
    ))
}

/// The longest side of a PNG quicklook, in pixels; larger rasters are thinned out to it.
pub(crate) const QUICKLOOK_MAX: usize = 2048;

impl WriteNode {
    /// The inputs as this write needs them: for a PNG quicklook, every n-th pixel of rasters and
    /// class maps so that the picture's long side is at most [`QUICKLOOK_MAX`] (windowed values
    /// are computed window by window to that size); a windowed raster or class map to write as
    /// GeoTIFF / COG, and windowed `spectra`, as they are (they are read window by window); other
    /// windowed values whole.
    fn inputs_to_write(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Inputs, NodeError> {
        let png = self.params.format == Format::Png;
        let tiff = matches!(self.params.format, Format::GTiff | Format::Cog);
        let side = |v: &Value| -> usize {
            let g = match v {
                Value::Raster(r) => &r.grid,
                Value::Labels(l) => &l.grid,
                Value::Deferred(d) => d.grid(),
                _ => return 0,
            };
            g.width.max(g.height)
        };
        let longest = inputs.iter().map(|(_, v)| side(v)).max().unwrap_or(0);
        let step = if png {
            longest.div_ceil(QUICKLOOK_MAX).max(1)
        } else {
            1
        };
        let mut out = Vec::new();
        for (port, v) in inputs.shared() {
            let v = match v.as_ref() {
                // Per-class means are gathered window by window (`class_means`).
                Value::Deferred(_) if port == "spectra" && !png => v.clone(),
                // Written window by window (`geotiff::write_deferred_*`).
                Value::Deferred(d)
                    if port == "input"
                        && tiff
                        && matches!(d.template.as_ref(), Value::Raster(_) | Value::Labels(_)) =>
                {
                    v.clone()
                }
                Value::Deferred(d) if png => Arc::new(d.materialize_every(ctx, step)?),
                Value::Deferred(d) => Arc::new(d.materialize(ctx)?),
                other if png && step > 1 => Arc::new(flow_core::deferred::thin(other, step)),
                _ => v.clone(),
            };
            out.push((port.to_string(), v));
        }
        Ok(Inputs::new(out))
    }

    fn write(
        &self,
        ctx: &RunContext,
        inputs: &Inputs,
        target: &Path,
    ) -> Result<Vec<PathBuf>, NodeError> {
        let p = &self.params;
        let input = inputs.value("input")?;
        let names = p.class_names.as_deref();
        let unsupported = || {
            NodeError::InvalidData(format!(
                "write: cannot write {} as {} (path {})",
                input.value_type(),
                p.format.name(),
                p.path.display()
            ))
        };
        let cog = p.format == Format::Cog;
        if matches!(p.format, Format::GTiff | Format::Cog) {
            check_room(target, input)?;
        }
        let files = match (input, p.format) {
            (Value::Raster(r), Format::GTiff | Format::Cog) => {
                let mut files = write_atomically(target, |tmp| geotiff::write_raster(r, tmp, cog))?;
                if p.stac_item {
                    let bands: Vec<_> = (0..r.times.len().max(1))
                        .flat_map(|_| r.bands.iter().cloned())
                        .collect();
                    files.extend(self.write_item(inputs, target, None, Some(&bands), &r.times)?);
                }
                files
            }
            (Value::Labels(l), Format::GTiff | Format::Cog) => {
                let classes = classes_of(l, names);
                let mut files =
                    write_atomically(target, |tmp| geotiff::write_labels(l, &classes, tmp, cog))?;
                if p.stac_item {
                    files.extend(self.write_item(inputs, target, Some(&classes), None, &[])?);
                }
                files
            }
            (Value::Deferred(d), Format::GTiff | Format::Cog) => match d.template.as_ref() {
                Value::Raster(t) => {
                    let mut files = write_atomically(target, |tmp| {
                        geotiff::write_deferred_raster(ctx, d, tmp, cog)
                    })?;
                    if p.stac_item {
                        let bands: Vec<_> = (0..t.times.len().max(1))
                            .flat_map(|_| t.bands.iter().cloned())
                            .collect();
                        files.extend(self.write_item(
                            inputs,
                            target,
                            None,
                            Some(&bands),
                            &t.times,
                        )?);
                    }
                    files
                }
                Value::Labels(t) => {
                    let mut classes = Vec::new();
                    let mut files = write_atomically(target, |tmp| {
                        classes = geotiff::write_deferred_labels(ctx, d, tmp, cog, |max_id| {
                            classes_up_to(t, max_id, names)
                        })?;
                        Ok(())
                    })?;
                    if p.stac_item {
                        files.extend(self.write_item(inputs, target, Some(&classes), None, &[])?);
                    }
                    files
                }
                _ => return Err(unsupported()),
            },
            (Value::Labels(l), Format::Png) => {
                let classes = classes_of(l, names);
                let rgb = inputs.raster_opt("rgb")?;
                let image = png::figure(Some((l, &classes)), rgb.map(|r| (r, &p.rgb_bands)))?;
                write_atomically(target, |tmp| png::save(&image, tmp))?
            }
            (Value::Raster(r), Format::Png) => {
                let image = png::figure(None, Some((r, &p.rgb_bands)))?;
                write_atomically(target, |tmp| png::save(&image, tmp))?
            }
            (Value::Model(m), Format::Png) => {
                let image = sweep::chart(m)?;
                write_atomically(target, |tmp| png::save(&image, tmp))?
            }
            (Value::Model(m), Format::Json) => {
                let labels = inputs.labels_opt("labels")?;
                let means = match labels {
                    Some(l) => class_means(ctx, l, inputs.get("spectra"))?,
                    None => None,
                };
                if labels.is_none() && inputs.get("spectra").is_some() {
                    return Err(NodeError::Input {
                        port: "spectra".into(),
                        message: "needs `labels` to know the classes".into(),
                    });
                }
                let doc = json::model(m, labels, names, means.as_ref())?;
                write_atomically(target, |tmp| json::save(&doc, tmp))?
            }
            (Value::Labels(l), Format::Json) => {
                let means = class_means(ctx, l, inputs.get("spectra"))?;
                let doc = json::labels(l, names, means.as_ref())?;
                write_atomically(target, |tmp| json::save(&doc, tmp))?
            }
            (Value::Json(v), Format::Json) => write_atomically(target, |tmp| json::save(v, tmp))?,
            (Value::Json(v), Format::Png) if confusion::is_assessment(v) => {
                let image = confusion::figure(v)?;
                write_atomically(target, |tmp| png::save(&image, tmp))?
            }
            (Value::Items(items), Format::Json) => {
                write_atomically(target, |tmp| json::save(&items.collection, tmp))?
            }
            _ => return Err(unsupported()),
        };
        Ok(files)
    }
}

impl WriteNode {
    /// Writes the STAC Item of the GeoTIFF / COG at `target` as `<stem>.item.json` beside it.
    fn write_item(
        &self,
        inputs: &Inputs,
        target: &Path,
        classes: Option<&[ClassInfo]>,
        bands: Option<&[flow_core::BandInfo]>,
        times: &[String],
    ) -> Result<Vec<PathBuf>, NodeError> {
        let stem = target
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let href = target
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let doc = item::describe(&item::Describe {
            id: &stem,
            file: target,
            href: &href,
            cog: self.params.format == Format::Cog,
            classes,
            bands,
            sources: inputs.items_opt("items")?,
            times,
        })?;
        let path = target.with_file_name(format!("{stem}.item.json"));
        Ok(write_atomically(&path, |tmp| json::save(&doc, tmp))?)
    }
}

impl Node for WriteNode {
    fn writes(&self) -> Vec<PathBuf> {
        let path = &self.params.path;
        let mut files = vec![path.clone(), aux(path)];
        if self.params.stac_item {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push(path.with_file_name(format!("{stem}.item.json")));
        }
        files
    }

    fn takes_deferred(&self) -> bool {
        true
    }

    fn estimate(
        &self,
        known: &flow_core::estimate::Known,
    ) -> Option<flow_core::estimate::Estimate> {
        Some(estimate::estimate(self.params.format, known))
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let rel = &self.params.path;
        // Refused before the inputs are computed (a windowed input is read here).
        let target = place(&ctx.out_dir, rel, true)?;
        let inputs = self.inputs_to_write(ctx, inputs)?;
        let files = self.write(ctx, &inputs, &target)?;
        let mut list = Vec::new();
        for f in files {
            let (hash, bytes) = hash_file(&f).map_err(|e| NodeError::io(&f, e))?;
            list.push(json!({"path": relative(&f, rel), "bytes": bytes, "blake3": hash}));
        }
        Ok(Value::Json(
            json!({"format": self.params.format.name(), "files": list}),
        ))
    }

    fn is_fresh(&self, ctx: &RunContext, cached: &Value) -> bool {
        let Value::Json(doc) = cached else {
            return false;
        };
        let Some(files) = doc.get("files").and_then(|f| f.as_array()) else {
            return false;
        };
        !files.is_empty()
            && files.iter().all(|f| {
                let (Some(path), Some(hash)) = (
                    f.get("path").and_then(|p| p.as_str()),
                    f.get("blake3").and_then(|h| h.as_str()),
                ) else {
                    return false;
                };
                // A file that is no longer inside the output directory is not fresh: the
                // run then refuses to write it.
                place(&ctx.out_dir, Path::new(path), false)
                    .is_ok_and(|f| hash_file(&f).is_ok_and(|(h, _)| h == hash))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<Box<dyn Node>, ParamError> {
        WriteKind.build(&toml::from_str(text).unwrap())
    }

    #[test]
    fn paths_must_stay_in_the_output_directory() {
        assert!(build("path = \"classes.tif\"").is_ok());
        assert!(build("path = \"maps/classes.tif\"").is_ok());
        for bad in ["/tmp/x.tif", "../x.tif", "maps/../../x.tif", ""] {
            let err = build(&format!("path = {bad:?}")).err().unwrap();
            assert_eq!(err.param.as_deref(), Some("path"), "{bad}");
        }
        assert_eq!(
            build("path = \"x.bin\"").err().unwrap().param.as_deref(),
            Some("format")
        );
        assert!(build("path = \"x.bin\"\nformat = \"cog\"").is_ok());
        assert!(build("path = \"x.png\"\nrgb_bands = [\"B04\"]").is_err());
        assert_eq!(
            build("path = \"x.tif\"\nformat = \"tiff\"")
                .err()
                .unwrap()
                .param
                .as_deref(),
            Some("format")
        );
    }

    #[test]
    fn defaults_and_format_from_the_extension() {
        let valid = |text: &str| {
            WriteParams::parse(&toml::from_str(text).unwrap())
                .unwrap()
                .validate()
        };
        let v = valid("path = \"maps/a.TIFF\"").unwrap();
        assert_eq!(v.format, Format::GTiff);
        assert_eq!(v.rgb_bands, DEFAULT_RGB_BANDS.map(String::from));
        assert!(!v.stac_item && v.class_names.is_none());
        assert_eq!(valid("path = \"a.json\"").unwrap().format, Format::Json);
        let v = valid("path = \"a.bin\"\nformat = \"cog\"\nstac_item = true").unwrap();
        assert!(v.format == Format::Cog && v.stac_item);
        assert_eq!(
            valid("path = \"a.png\"\nstac_item = true")
                .unwrap_err()
                .param
                .as_deref(),
            Some("stac_item")
        );
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The kind and message of an I/O error about `file`.
    fn io_error(e: RasterError, file: &Path) -> (std::io::ErrorKind, String) {
        match e {
            RasterError::Io { path, source } => {
                assert_eq!(path, file);
                (source.kind(), source.to_string())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_are_placed_inside_the_output_directory_through_symbolic_links_that_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let root = || std::fs::canonicalize(&out).unwrap();
        // Missing directories are made one by one.
        let placed = place(&out, Path::new("maps/./2021/a.tif"), true).unwrap();
        assert_eq!(placed, root().join("maps/2021/a.tif"));
        assert!(root().join("maps/2021").is_dir());
        // A link to a directory inside the output directory is followed.
        std::fs::create_dir_all(out.join("real")).unwrap();
        std::os::unix::fs::symlink(out.join("real"), out.join("alias")).unwrap();
        std::os::unix::fs::symlink("../real", out.join("maps/up")).unwrap();
        let placed = place(&out, Path::new("alias/x.tif"), true).unwrap();
        assert_eq!(placed, root().join("real/x.tif"));
        let placed = place(&out, Path::new("maps/up/y/x.tif"), true).unwrap();
        assert_eq!(placed, root().join("real/y/x.tif"));
        assert_eq!(
            relative(&placed, Path::new("maps/up/y/x.tif")),
            "maps/up/y/x.tif"
        );
        assert_eq!(
            relative(&aux(&placed), Path::new("./x.tif")),
            "x.tif.aux.xml"
        );
        // Without `create`, a missing directory is an error.
        let e = place(&out, Path::new("none/x.tif"), false).unwrap_err();
        assert_eq!(
            io_error(e, &out.join("none/x.tif")).0,
            std::io::ErrorKind::NotFound
        );
    }

    #[test]
    fn a_symbolic_link_out_of_the_output_directory_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::create_dir_all(out.join("maps")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();
        // Also behind a link that stays inside, and through `..`.
        std::os::unix::fs::symlink(out.join("maps"), out.join("alias")).unwrap();
        std::os::unix::fs::symlink("../..", out.join("maps/up")).unwrap();
        for (rel, link) in [
            ("sub/x.tif", "sub"),
            ("sub/deeper/x.tif", "sub"),
            ("alias/up/x.tif", "alias/up"),
        ] {
            let e = place(&out, Path::new(rel), true).unwrap_err();
            let (kind, message) = io_error(e, &out.join(rel));
            assert_eq!(kind, std::io::ErrorKind::PermissionDenied, "{message}");
            for needle in [
                format!("`{link}` is a symbolic link to"),
                "outside the output directory".to_string(),
                std::fs::canonicalize(&out).unwrap().display().to_string(),
            ] {
                assert!(message.contains(&needle), "`{needle}` in: {message}");
            }
        }
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(!out.join("sub/deeper").exists());
        // A link that leads nowhere, and a file where a directory should be.
        std::os::unix::fs::symlink(tmp.path().join("gone"), out.join("dangling")).unwrap();
        let e = place(&out, Path::new("dangling/x.tif"), true).unwrap_err();
        let (_, message) = io_error(e, &out.join("dangling/x.tif"));
        assert!(message.contains("leads nowhere"), "{message}");
        std::fs::write(out.join("file"), "x").unwrap();
        let e = place(&out, Path::new("file/x.tif"), true).unwrap_err();
        let (kind, _) = io_error(e, &out.join("file/x.tif"));
        assert_eq!(kind, std::io::ErrorKind::NotADirectory);
        assert_eq!(
            NodeError::from(place(&out, Path::new("sub/x.tif"), true).unwrap_err()).exit_code(),
            flow_core::ExitCode::Io
        );
    }

    #[test]
    fn atomic_writes_replace_whole_files_with_their_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("maps").join("a.tif");
        let files = write_atomically(&target, |tmp| {
            std::fs::write(tmp, "one").unwrap();
            std::fs::write(aux(tmp), "<aux/>").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(files, [target.clone(), aux(&target)]);
        assert_eq!(names(&dir.path().join("maps")), ["a.tif", "a.tif.aux.xml"]);
        // A new version without a sidecar drops the old one.
        let files = write_atomically(&target, |tmp| {
            std::fs::write(tmp, "two").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(files, std::slice::from_ref(&target));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "two");
        assert_eq!(names(&dir.path().join("maps")), ["a.tif"]);
    }

    #[test]
    fn failed_atomic_writes_leave_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.json");
        std::fs::write(&target, "old").unwrap();
        let e = write_atomically(&target, |tmp| {
            std::fs::write(tmp, "half").unwrap();
            std::fs::write(aux(tmp), "<aux/>").unwrap();
            // The GeoTIFF a windowed COG is copied from, and its sidecar.
            let src = geotiff::cog_source(tmp);
            std::fs::write(&src, "tiff").unwrap();
            std::fs::write(aux(&src), "<aux/>").unwrap();
            Err(RasterError::InvalidData("no".into()))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(names(dir.path()), ["a.json"]);
        // A failure about that GeoTIFF is told as one about the target.
        let e = write_atomically(&target, |tmp| {
            Err(RasterError::io(
                geotiff::cog_source(tmp),
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ))
        })
        .unwrap_err();
        assert!(
            matches!(&e, RasterError::Io { path, .. } if path == &target),
            "{e:?}"
        );
        let e = write_atomically(&target, |tmp| {
            Err(RasterError::gdal(
                format!("writing {}", geotiff::cog_source(tmp).display()),
                "full",
            ))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), format!("writing {}: full", target.display()));
        // The rename itself fails: the target is a non-empty directory.
        let busy = dir.path().join("busy");
        std::fs::create_dir_all(busy.join("inside")).unwrap();
        let e = write_atomically(&busy, |tmp| {
            std::fs::write(tmp, "x").unwrap();
            Ok(())
        });
        assert!(matches!(e, Err(RasterError::Io { .. })), "{e:?}");
        assert_eq!(names(dir.path()), ["a.json", "busy"]);
    }

    /// The id of a process that has exited.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn files_are_hashed_in_pieces_as_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        // Larger than any one read.
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (hash, size) = hash_file(&path).unwrap();
        assert_eq!(hash, blake3::hash(&bytes).to_hex().to_string());
        assert_eq!(size, bytes.len() as u64);
        assert!(hash_file(&dir.path().join("none")).is_err());
    }

    #[test]
    fn temporary_names_are_recognised_with_their_gdal_suffixes() {
        assert_eq!(temp_owner("a.tif", ".a.tif.tmp-123-0"), Some(123));
        assert_eq!(temp_owner("a.tif", ".a.tif.tmp-123-45.aux.xml"), Some(123));
        assert_eq!(temp_owner("a.tif", ".a.tif.tmp-9-1.ovr.tmp"), Some(9));
        assert_eq!(temp_owner("a.tif", ".a.tif.tmp-9-1.src.tif"), Some(9));
        assert_eq!(
            temp_owner("a.tif", ".a.tif.tmp-9-1.src.tif.aux.xml"),
            Some(9)
        );
        for other in [
            "a.tif",
            ".b.tif.tmp-123-0",
            ".a.tif.tmp-x-0",
            ".a.tif.tmp-123-",
            ".a.tif.tmp-123-0x",
            ".a.tif.tmp--0",
        ] {
            assert_eq!(temp_owner("a.tif", other), None, "{other}");
        }
    }

    #[test]
    fn stale_temporary_files_of_dead_processes_are_removed_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.tif");
        let dead = dead_pid();
        let me = std::process::id();
        let stale = [
            format!(".a.tif.tmp-{dead}-0"),
            format!(".a.tif.tmp-{dead}-0.aux.xml"),
            format!(".a.tif.tmp-{dead}-3.ovr.tmp"),
        ];
        // A live process's write in progress, another target's temporary file, a user's file.
        let kept = [
            format!(".a.tif.tmp-{me}-99"),
            ".a.tif.tmp-1-0".to_string(),
            format!(".b.tif.tmp-{dead}-0"),
            "notes.txt".to_string(),
        ];
        for name in stale.iter().chain(&kept) {
            std::fs::write(dir.path().join(name), vec![0u8; 1000]).unwrap();
        }
        let files = write_atomically(&target, |tmp| {
            std::fs::write(tmp, "new").map_err(|e| RasterError::io(tmp, e))
        })
        .unwrap();
        assert_eq!(files, std::slice::from_ref(&target));
        let mut want: Vec<String> = kept.to_vec();
        want.push("a.tif".into());
        want.sort();
        assert_eq!(names(dir.path()), want);
    }

    #[test]
    fn gdal_write_failures_that_are_io_become_io_errors() {
        let msg = |number, text: &str| crate::gdalx::GdalMessage {
            class: gdal_sys::CPLErr::CE_Failure,
            number,
            text: text.into(),
        };
        let full = geotiff::io_failure(&[
            msg(1, "_tiffWriteProc:No space left on device"),
            msg(1, "TIFFAppendToStrip:Write error at scanline 0"),
        ])
        .unwrap();
        assert_eq!(full.kind(), std::io::ErrorKind::StorageFull);
        assert!(
            full.to_string().contains("No space left on device"),
            "{full}"
        );
        let io = geotiff::io_failure(&[msg(4, "Attempt to create new tiff file failed")]).unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::Other);
        assert!(geotiff::io_failure(&[msg(1, "Invalid creation option")]).is_none());
    }

    #[test]
    fn a_full_disk_is_an_io_error_naming_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.tif");
        let e = write_atomically(&target, |tmp| {
            std::fs::write(tmp, "half").unwrap();
            Err(RasterError::io(
                tmp,
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ))
        })
        .unwrap_err();
        assert!(
            matches!(&e, RasterError::Io { path, .. } if path == &target),
            "{e:?}"
        );
        assert_eq!(NodeError::from(e).exit_code(), flow_core::ExitCode::Io);
        assert!(names(dir.path()).is_empty());
    }
}
