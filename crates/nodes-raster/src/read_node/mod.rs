//! The `read` kind: a file a recipe names, read back as a value — a GeoTIFF / COG as a
//! [`Raster`](flow_core::Raster) or as a class map ([`Labels`](flow_core::Labels)), on the
//! file's own grid or warped onto the grid of the value on its `like` port; a model JSON that
//! `write` wrote as a [`Model`](flow_core::Model).
//!
//! What it may read, and how:
//!
//! - **Where.** A local path, relative to the recipe (or absolute), or `builtin:NAME/FILE`, a
//!   file inside builtin dataset `NAME` ([`flow_core::dataset`]: `builtin:timberlea/truth.tif`
//!   is the offline scene's ground truth), materialized on first use. URLs and GDAL virtual
//!   paths (`/vsicurl/...`) are refused when the recipe is validated: remote files are read by
//!   `stac-search` + `stack`.
//! - **Which formats.** Rasters open with GDAL's GTiff driver only, plus those the `drivers`
//!   param opts into (as `stack`'s); a model is JSON. Blocks are checked before they are
//!   trusted, as `stack` checks its assets ([`crate::read::read_asset`]).
//! - **Which version.** A local file's size and modification time are recorded as a source of
//!   the output ([`RunContext::record_source`]): a cached value whose file changed (or is gone)
//!   is read again, and the nodes after it rerun. A builtin dataset's files are those of its
//!   version, which enters the key.
//! - **Failures.** A missing or unreadable file is an I/O error naming the path (exit 5); a file
//!   that is there but cannot be used (not a GeoTIFF, a damaged block, a class id that is not a
//!   whole number, a JSON that is not a model) is bad data (exit 3), naming the path too.

mod gtiff;
mod model;

use std::path::{Component, Path, PathBuf};

use flow_core::estimate::{Estimate, Known, Pixels, Shape};
use flow_core::{
    dataset, DeclaredParams, Grid, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec,
    Params, Port, RunContext, Signature, Source, Value, ValueType,
};

use crate::read::{allowed_drivers, Resampling};

/// The `read` node kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadKind;

flow_core::param_enum! {
    /// What `read` makes of its file.
    enum ReadAs {
        /// A `time x band x y x x` f32 cube.
        Raster = "raster",
        /// A class map (u16 class ids).
        Labels = "labels",
        /// A model JSON written by `write`.
        Model = "model",
    }
}

flow_core::params! {
    /// `read` parameters as written in the recipe.
    struct ReadParams {
        /// the file: a GeoTIFF / COG, or a model JSON written by `write`; relative to the recipe, or `builtin:NAME/FILE` for a file of a builtin dataset (`builtin:timberlea/truth.tif`, the offline scene's ground truth)
        path: String,
        /// what the file holds: "raster" (f32 bands, nodata -> NaN), "labels" (a class map: u16 class ids, nodata kept) or "model"; default "model" for a .json path, else "raster"
        r#as: Option<ReadAs>,
        /// resampling onto the grid of `like`; a class map is read with nearest only
        resampling: Resampling = Resampling::Nearest,
        /// the band of the file that holds the class ids (labels only; default 1)
        band: Option<i64>,
        /// names of the classes, by class id (labels only; default the file's category names, else "class N")
        class_names: Option<Vec<String>>,
        /// GDAL drivers allowed besides GTiff (GeoTIFF / COG), e.g. ["PNG"]
        drivers: Option<Vec<String>>,
    }
}

/// Where the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A path as the recipe wrote it, resolved against the recipe's directory.
    Local(String),
    /// `builtin:NAME/FILE`: `FILE` (relative, normal components only) in dataset `NAME`.
    Builtin { name: String, file: PathBuf },
}

impl Location {
    fn parse(path: &str) -> Result<Self, ParamError> {
        if path.trim().is_empty() {
            return Err(ParamError::new("path", "`path` must name a file"));
        }
        if let Some(rest) = path.strip_prefix("builtin:") {
            let (name, file) = rest.split_once('/').unwrap_or((rest, ""));
            let file = PathBuf::from(file);
            let normal = file.components().all(|c| matches!(c, Component::Normal(_)));
            if name.is_empty() || file.as_os_str().is_empty() || !normal {
                return Err(ParamError::new(
                    "path",
                    format!("`{path}` does not name a file inside a builtin dataset"),
                )
                .with_help("write `builtin:NAME/FILE`, e.g. `builtin:timberlea/truth.tif`"));
            }
            return Ok(Location::Builtin {
                name: name.to_string(),
                file,
            });
        }
        let lower = path.to_ascii_lowercase();
        if lower.contains("://") || lower.starts_with("/vsi") {
            return Err(ParamError::new(
                "path",
                format!("`read` reads local files, and `{path}` is not one"),
            )
            .with_help(
                "read remote rasters with `stac-search` + `stack`; give `read` a path relative \
                 to the recipe",
            ));
        }
        Ok(Location::Local(path.to_string()))
    }
}

/// Validated `read` parameters.
#[derive(Debug, Clone)]
struct ValidRead {
    location: Location,
    what: ReadAs,
    resampling: Resampling,
    /// The band of a class map, from 1.
    band: usize,
    /// Names of a class map's classes, by id.
    class_names: Option<Vec<String>>,
    drivers: Vec<String>,
}

impl ReadParams {
    fn validate(self) -> Result<ValidRead, ParamError> {
        let location = Location::parse(&self.path)?;
        let json = Path::new(&self.path)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let what = self
            .r#as
            .unwrap_or(if json { ReadAs::Model } else { ReadAs::Raster });
        if what == ReadAs::Labels && self.resampling != Resampling::Nearest {
            return Err(ParamError::new(
                "resampling",
                format!(
                    "a class map is read with nearest resampling only, not {}: class ids are \
                     not numbers to average",
                    self.resampling
                ),
            )
            .with_help("leave `resampling` out (nearest)"));
        }
        let band = match (self.band, what) {
            (None, _) => 1,
            (Some(b), ReadAs::Labels) if b >= 1 && b <= i64::from(u16::MAX) => b as usize,
            (Some(b), ReadAs::Labels) => {
                return Err(ParamError::new(
                    "band",
                    format!("`band` counts from 1, got {b}"),
                ))
            }
            (Some(_), other) => {
                return Err(ParamError::new(
                    "band",
                    format!(
                        "`band` chooses the band of a class map (`as = \"labels\"`); a {} reads {}",
                        other.name(),
                        match other {
                            ReadAs::Model => "a JSON file",
                            _ => "every band",
                        }
                    ),
                ))
            }
        };
        if self.class_names.is_some() && what != ReadAs::Labels {
            return Err(ParamError::new(
                "class_names",
                format!(
                    "`class_names` names the classes of a class map (`as = \"labels\"`), not of a {}",
                    what.name()
                ),
            ));
        }
        let drivers = allowed_drivers(self.drivers.as_deref())?;
        Ok(ValidRead {
            location,
            what,
            resampling: self.resampling,
            band,
            class_names: self.class_names,
            drivers,
        })
    }
}

impl NodeKind for ReadKind {
    fn name(&self) -> &str {
        "read"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Reads a file the recipe names: a GeoTIFF / COG as a Raster (every band as f32, nodata -> \
         NaN, bands named by their descriptions or b1..bn, time steps from the bands' datetime \
         metadata as `write` records them) or, with as = \"labels\", as a class map (u16 class \
         ids, nodata kept; classes from the ids present, named by `class_names` or the file's \
         category names, coloured by its colour table); on the file's own grid, or warped by GDAL onto the grid of the value \
         connected to `like` (nearest by default, the only method for class maps). A .json \
         written by `write` from a Model reads back as that Model (centroids bit for bit). The \
         path is relative to the recipe, or builtin:NAME/FILE for a file of a builtin dataset \
         (builtin:timberlea/truth.tif); URLs are refused; rasters open with the GTiff driver \
         and those `drivers` adds. The file's size and mtime are recorded: a changed file is \
         read again. A missing file exits 5, an unusable one 3."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::optional(
                "like",
                ValueType::Any,
                "a Raster, Labels or Matrix whose grid the file is warped onto",
            )],
            output: ValueType::Any,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        ReadParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let p = ReadParams::parse(params)?;
        Ok(Box::new(ReadNode {
            params: p.validate()?,
        }))
    }
}

/// A built `read` node.
struct ReadNode {
    params: ValidRead,
}

impl ReadNode {
    /// The file to read, a builtin dataset materialized first.
    fn file(&self, ctx: &RunContext) -> Result<PathBuf, NodeError> {
        match &self.params.location {
            Location::Local(p) => Ok(ctx.resolve(p)),
            Location::Builtin { name, file } => {
                dataset::materialize(ctx, name)?;
                Ok(dataset::dir(ctx, name)?.join(file))
            }
        }
    }
}

/// The grid of the value on `like`.
fn grid_of(like: &Value) -> Result<Grid, NodeError> {
    match like {
        Value::Raster(r) => Ok(r.grid.clone()),
        Value::Labels(l) => Ok(l.grid.clone()),
        Value::Matrix(m) => Ok(m.grid.clone()),
        Value::Deferred(d) => Ok(d.grid().clone()),
        other => Err(NodeError::Input {
            port: "like".into(),
            message: format!(
                "a {} has no grid; connect a Raster, Labels or Matrix",
                other.value_type()
            ),
        }),
    }
}

impl Node for ReadNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let path = self.file(ctx)?;
        // Missing or unreadable: an I/O error naming the path (exit 5).
        std::fs::File::open(&path).map_err(|e| NodeError::io(&path, e))?;
        if let Location::Local(_) = self.params.location {
            let source = Source::local_file(&path).map_err(|e| NodeError::io(&path, e))?;
            ctx.record_source(source);
        }
        let like = match inputs.get("like") {
            Some(v) => Some(grid_of(v)?),
            None => None,
        };
        match self.params.what {
            ReadAs::Model => {
                if like.is_some() {
                    return Err(NodeError::Input {
                        port: "like".into(),
                        message: "a model has no grid to warp onto; leave `like` unconnected"
                            .into(),
                    });
                }
                Ok(Value::Model(model::read(&path)?))
            }
            ReadAs::Raster | ReadAs::Labels => {
                let options = gtiff::Options {
                    labels: self.params.what == ReadAs::Labels,
                    band: self.params.band,
                    class_names: self.params.class_names.as_deref(),
                    resampling: self.params.resampling,
                    drivers: &self.params.drivers,
                    threads: ctx.threads.max(1),
                };
                let value = gtiff::read(&path, like.as_ref(), &options)?;
                ctx.check_cancelled()?;
                Ok(value)
            }
        }
    }

    fn key_material(&self, ctx: &RunContext) -> Result<Option<Vec<u8>>, NodeError> {
        // A builtin dataset's files are fixed by its version; a local file's version is a
        // recorded source.
        match &self.params.location {
            Location::Local(_) => Ok(None),
            Location::Builtin { name, .. } => {
                let provider = ctx
                    .datasets
                    .get(name)
                    .ok_or_else(|| dataset::unknown(ctx, name))?;
                Ok(Some(
                    format!("builtin\0{name}\0{}", provider.version()).into_bytes(),
                ))
            }
        }
    }

    fn estimate(&self, known: &Known) -> Option<Estimate> {
        match self.params.what {
            ReadAs::Model => Some(Estimate::of(Shape::Small)),
            // On `like`'s grid, one plane (read as f32) becoming u16 class ids.
            ReadAs::Labels => {
                let grid = known.pixels("like")?.grid.clone();
                let plane = grid.len() as u64 * 4;
                Some(Estimate {
                    working_bytes: plane,
                    read_bytes: plane,
                    ..Estimate::of(Shape::Pixels(Pixels::whole(ValueType::Labels, 1, 1, grid)))
                })
            }
            // Its bands are known once the file is opened.
            ReadAs::Raster => None,
        }
    }

    fn takes_deferred(&self) -> bool {
        // `like` only lends its grid: a windowed value is never computed for it.
        true
    }

    fn output_type(&self) -> Option<ValueType> {
        Some(match self.params.what {
            ReadAs::Raster => ValueType::Raster,
            ReadAs::Labels => ValueType::Labels,
            ReadAs::Model => ValueType::Model,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<ValidRead, ParamError> {
        let params: Params = toml::from_str(text).unwrap();
        ReadParams::parse(&params)?.validate()
    }

    #[test]
    fn the_kind_is_read_from_the_extension_unless_given() {
        assert_eq!(build("path = \"m.json\"").unwrap().what, ReadAs::Model);
        assert_eq!(build("path = \"a.tif\"").unwrap().what, ReadAs::Raster);
        let l = build("path = \"a.tif\"\nas = \"labels\"\nband = 2").unwrap();
        assert_eq!((l.what, l.band), (ReadAs::Labels, 2));
        assert_eq!(
            build("path = \"builtin:timberlea/truth.tif\"")
                .unwrap()
                .location,
            Location::Builtin {
                name: "timberlea".into(),
                file: PathBuf::from("truth.tif")
            }
        );
    }

    #[test]
    fn paths_and_params_that_cannot_work_are_refused_with_the_param_named() {
        for (text, param, words) in [
            ("path = \"\"", "path", "must name a file"),
            ("path = \"https://h/a.tif\"", "path", "reads local files"),
            (
                "path = \"/vsicurl/https://h/a.tif\"",
                "path",
                "reads local files",
            ),
            ("path = \"builtin:timberlea\"", "path", "builtin dataset"),
            (
                "path = \"builtin:timberlea/../x.tif\"",
                "path",
                "builtin dataset",
            ),
            ("path = \"builtin:/truth.tif\"", "path", "builtin dataset"),
            (
                "path = \"a.tif\"\nas = \"labels\"\nresampling = \"bilinear\"",
                "resampling",
                "nearest",
            ),
            ("path = \"a.tif\"\nband = 2", "band", "class map"),
            (
                "path = \"a.tif\"\nclass_names = [\"w\"]",
                "class_names",
                "class map",
            ),
            (
                "path = \"a.tif\"\nas = \"labels\"\nband = 0",
                "band",
                "from 1",
            ),
            ("path = \"a.tif\"\ndrivers = [\"COG\"]", "drivers", "GTiff"),
        ] {
            let e = build(text).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
        }
    }
}
