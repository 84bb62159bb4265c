//! The `write` kind: GeoTIFF / COG (rasters, and class maps with a colour table and category
//! names), PNG quicklooks (RGB beside the class map, with a legend) and JSON (models with class
//! statistics, any Json value), and with `stac_item = true` a STAC Item beside a GeoTIFF / COG.
//! Every file is written under a temporary name in its directory, fsynced and renamed into place
//! ([`flow_core::atomic`]), so a failed run leaves no half file.

mod font;
mod geotiff;
mod item;
mod json;
mod png;

use std::path::{Component, Path, PathBuf};

use flow_core::{
    atomic, ClassInfo, DeclaredParams, Inputs, Labels, Node, NodeError, NodeKind, ParamError,
    ParamSpec, Params, Port, RunContext, Signature, Value, ValueType,
};
use serde_json::json;

use crate::error::{RasterError, Result};

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
        /// bands of the RGB composite (red, green, blue)
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

/// The default RGB composite: Sentinel-2 red, green, blue.
const DEFAULT_RGB_BANDS: [&str; 3] = ["B04", "B03", "B02"];

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
        1
    }

    fn doc(&self) -> &str {
        "Writes a value under the output directory: a Raster or Labels as GeoTIFF / COG (class maps with a \
         colour table and category names), Labels as a PNG quicklook (the `rgb` raster beside the class map, \
         with a legend), a Model as JSON (centroids, inertia; class pixel counts and areas with `labels`, \
         per-class band means with `spectra`), Json as pretty JSON. With `stac_item`, a STAC Item beside a \
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
const PALETTE: [[u8; 3]; 10] = [
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

/// Writes `target` through `fill(tmp)`, `tmp` a temporary file beside it
/// ([`atomic::temp_path_for`]); fsyncs it and GDAL's `.aux.xml` sidecar if one was made, then
/// renames them into place and fsyncs the directory ([`atomic::commit`]). On any failure the
/// temporary files are removed and the target is left as it was. Returns the files now in place.
fn write_atomically(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<Vec<PathBuf>> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| RasterError::io(dir, e))?;
    let tmp = atomic::temp_path_for(target);
    let cleanup = |tmp: &Path| {
        let _ = std::fs::remove_file(tmp);
        let _ = std::fs::remove_file(aux(tmp));
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
        return Err(e);
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

/// BLAKE3 hash (hex) and size of a file.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let bytes = std::fs::read(path)?;
    Ok((
        blake3::hash(&bytes).to_hex().to_string(),
        bytes.len() as u64,
    ))
}

/// `path` relative to `base`, with `/` separators.
fn relative(path: &Path, base: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

impl WriteNode {
    fn write(&self, inputs: &Inputs, target: &Path) -> Result<Vec<PathBuf>, NodeError> {
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
            (Value::Model(m), Format::Json) => {
                let labels = inputs.labels_opt("labels")?;
                let spectra = inputs.raster_opt("spectra")?;
                let doc = json::model(m, labels, names, spectra)?;
                write_atomically(target, |tmp| json::save(&doc, tmp))?
            }
            (Value::Labels(l), Format::Json) => {
                let doc = json::labels(l, names, inputs.raster_opt("spectra")?)?;
                write_atomically(target, |tmp| json::save(&doc, tmp))?
            }
            (Value::Json(v), Format::Json) => write_atomically(target, |tmp| json::save(v, tmp))?,
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

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let target = ctx.out_dir.join(&self.params.path);
        let files = self.write(inputs, &target)?;
        let mut list = Vec::new();
        for f in files {
            let (hash, bytes) = hash_file(&f).map_err(|e| NodeError::io(&f, e))?;
            list.push(json!({"path": relative(&f, &ctx.out_dir), "bytes": bytes, "blake3": hash}));
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
                hash_file(&ctx.out_dir.join(path)).is_ok_and(|(h, _)| h == hash)
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
            Err(RasterError::InvalidData("no".into()))
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(names(dir.path()), ["a.json"]);
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
}
