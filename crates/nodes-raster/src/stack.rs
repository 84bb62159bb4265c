//! The `stack` kind: every chosen asset of every item onto one grid, as a `time x band x y x x`
//! f32 cube — stackstac's `stack`, without the float64.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use flow_core::{
    BandInfo, DeclaredParams, Grid, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec,
    Params, Port, Raster, RunContext, Signature, Value, ValueType,
};
use ndarray::Array4;
use rayon::prelude::*;

use crate::alloc;
use crate::error::RasterError;
use crate::gdalx::HttpOptions;
use crate::grid::{self, Bounds};
use crate::read::{read_asset, ReadError, ReadOptions, Resampling};
use crate::stac::{self, ItemRef};

/// The `stack` node kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct StackKind;

flow_core::param_enum! {
    /// What a missing or unreadable asset does.
    enum OnMissing {
        /// The node fails.
        Error = "error",
        /// The asset's band is NaN, with a warning.
        Nodata = "nodata",
    }
}

flow_core::params! {
    /// `stack` parameters as written in the recipe.
    struct StackParams {
        /// asset keys, in band order
        assets: Vec<String>,
        /// pixel size in units of the CRS
        resolution: f64,
        /// [min_lon, min_lat, max_lon, max_lat], reprojected to the CRS
        bounds_latlon: Option<Vec<f64>>,
        /// [min_x, min_y, max_x, max_y] in the CRS
        bounds: Option<Vec<f64>>,
        /// output CRS; default: the items' proj:code / proj:epsg
        epsg: Option<i64>,
        /// snap bounds outward to multiples of the resolution
        snap: bool = true,
        /// resampling method
        resampling: Resampling = Resampling::Nearest,
        /// asset key -> resampling method
        resampling_per_band: Option<toml::Table>,
        /// a missing or unreadable asset is an error, or NaN with a warning
        on_missing: OnMissing = OnMissing::Error,
        /// assets read at once
        max_parallel: i64 = 4,
        /// seconds each HTTP request for a remote asset may take, connecting included (default 30)
        timeout: Option<f64>,
        /// retries of an HTTP request that timed out or got 429 / 5xx (default 3)
        retries: Option<i64>,
    }
}

/// Where the grid's extent comes from.
#[derive(Debug, Clone, PartialEq)]
enum Extent {
    LatLon(Bounds),
    Projected(Bounds),
    Items,
}

/// Validated `stack` parameters.
#[derive(Debug, Clone)]
struct ValidStack {
    assets: Vec<String>,
    resolution: f64,
    extent: Extent,
    epsg: Option<u32>,
    snap: bool,
    resampling: Vec<Resampling>,
    missing_as_nodata: bool,
    max_parallel: usize,
    http: HttpOptions,
}

fn four(name: &str, v: &[f64]) -> Result<Bounds, ParamError> {
    if v.len() != 4 || v.iter().any(|x| !x.is_finite()) {
        return Err(ParamError::new(
            name,
            format!("`{name}` needs 4 finite numbers [min_x, min_y, max_x, max_y]"),
        ));
    }
    if v[0] >= v[2] || v[1] >= v[3] {
        return Err(ParamError::new(
            name,
            format!("`{name}` must have min < max on both axes, got {v:?}"),
        ));
    }
    Ok([v[0], v[1], v[2], v[3]])
}

/// The resampling method `value` of `resampling_per_band.asset`.
fn method(asset: &str, value: &toml::Value) -> Result<Resampling, ParamError> {
    let param = "resampling_per_band";
    let names = || {
        let names: Vec<_> = Resampling::ALL.iter().map(|r| r.name()).collect();
        format!("use one of {}", names.join(", "))
    };
    let Some(name) = value.as_str() else {
        return Err(ParamError::new(
            param,
            format!("`{param}.{asset}` must be a resampling method name"),
        )
        .with_help(names()));
    };
    Resampling::parse(name).ok_or_else(|| {
        ParamError::new(param, format!("unknown resampling `{name}`")).with_help(names())
    })
}

impl StackParams {
    fn validate(self) -> Result<ValidStack, ParamError> {
        if self.assets.is_empty() {
            return Err(ParamError::new(
                "assets",
                "`assets` must name at least one asset",
            ));
        }
        let mut seen = BTreeSet::new();
        for a in &self.assets {
            if !seen.insert(a) {
                return Err(ParamError::new(
                    "assets",
                    format!("asset `{a}` is listed twice"),
                ));
            }
        }
        if !(self.resolution.is_finite() && self.resolution > 0.0) {
            return Err(ParamError::new(
                "resolution",
                "`resolution` must be a positive number",
            ));
        }
        let extent = match (&self.bounds_latlon, &self.bounds) {
            (Some(_), Some(_)) => {
                return Err(ParamError::new(
                    "bounds",
                    "give either `bounds` or `bounds_latlon`, not both",
                ))
            }
            (Some(b), None) => {
                let b = four("bounds_latlon", b)?;
                if b[0] < -180.0 || b[2] > 180.0 || b[1] < -90.0 || b[3] > 90.0 {
                    return Err(ParamError::new(
                        "bounds_latlon",
                        "`bounds_latlon` is [min_lon, min_lat, max_lon, max_lat] in degrees",
                    ));
                }
                Extent::LatLon(b)
            }
            (None, Some(b)) => Extent::Projected(four("bounds", b)?),
            (None, None) => Extent::Items,
        };
        let epsg = match self.epsg {
            None => None,
            Some(e) if e > 0 && e < i64::from(u32::MAX) => {
                grid::srs(e as u32).map_err(|err| ParamError::new("epsg", err.to_string()))?;
                Some(e as u32)
            }
            Some(e) => {
                return Err(ParamError::new(
                    "epsg",
                    format!("`epsg` {e} is not an EPSG code"),
                ))
            }
        };
        let mut per_band = BTreeMap::new();
        for (k, v) in self.resampling_per_band.iter().flatten() {
            if !self.assets.contains(k) {
                return Err(ParamError::new(
                    "resampling_per_band",
                    format!("`{k}` is not one of `assets`"),
                ));
            }
            per_band.insert(k.as_str(), method(k, v)?);
        }
        let resampling = self
            .assets
            .iter()
            .map(|a| per_band.get(a.as_str()).copied().unwrap_or(self.resampling))
            .collect();
        let missing_as_nodata = self.on_missing == OnMissing::Nodata;
        let max_parallel = match self.max_parallel {
            n if (1..=256).contains(&n) => n as usize,
            n => {
                return Err(ParamError::new(
                    "max_parallel",
                    format!("`max_parallel` must be 1..=256, got {n}"),
                ))
            }
        };
        let mut http = HttpOptions::DEFAULT;
        if let Some(t) = self.timeout {
            if !(t.is_finite() && t > 0.0 && t <= 3600.0) {
                return Err(ParamError::new(
                    "timeout",
                    format!("`timeout` must be 0 < seconds <= 3600, got {t}"),
                ));
            }
            http.timeout = t;
        }
        if let Some(r) = self.retries {
            http.retries = match u32::try_from(r) {
                Ok(r) if r <= 10 => r,
                _ => {
                    return Err(ParamError::new(
                        "retries",
                        format!("`retries` must be 0..=10, got {r}"),
                    ))
                }
            };
        }
        Ok(ValidStack {
            assets: self.assets,
            resolution: self.resolution,
            extent,
            epsg,
            snap: self.snap,
            resampling,
            missing_as_nodata,
            max_parallel,
            http,
        })
    }
}

impl NodeKind for StackKind {
    fn name(&self) -> &str {
        "stack"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Reads the chosen assets of every item onto one grid (resolution, bounds or bounds_latlon, CRS; \
         snapped outward to the resolution like stackstac) as a time x band x y x x f32 cube: nodata -> NaN, \
         raster:bands scale/offset applied, items ordered by datetime, assets read in parallel \
         (GDAL /vsicurl/ for http(s)). Stored blocks are checked before they are trusted (DEFLATE \
         checksums, sizes, COG leaders and trailers), and a file read whole against its \
         file:checksum."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Items,
                "the items to stack",
            )],
            output: ValueType::Raster,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        StackParams::specs()
    }

    fn unkeyed_params(&self) -> &[&str] {
        // How patiently remote files are read does not change the cube.
        &["timeout", "retries"]
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let p = StackParams::parse(params)?;
        Ok(Box::new(StackNode {
            params: p.validate()?,
            written: params.clone(),
        }))
    }
}

/// The reader pool of `threads` threads, built once per process and size and shared by every
/// `stack` run (concurrent runs with the same `max_parallel` share its readers).
fn reader_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, rayon::ThreadPoolBuildError> {
    static POOLS: OnceLock<Mutex<BTreeMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(pool) = pools.get(&threads) {
        return Ok(Arc::clone(pool));
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("stack-reader-{i}"))
            .build()?,
    );
    pools.insert(threads, Arc::clone(&pool));
    Ok(pool)
}

/// A built `stack` node.
struct StackNode {
    params: ValidStack,
    /// The params as the recipe gave them, which a windowed run's expression repeats.
    written: Params,
}

impl StackNode {
    /// The output CRS: the `epsg` param, else the one CRS of all requested assets.
    fn crs(&self, items: &[ItemRef]) -> Result<u32, RasterError> {
        if let Some(e) = self.params.epsg {
            return Ok(e);
        }
        let mut found: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for item in items {
            for a in item.assets.iter().flatten() {
                if let Some(e) = a.epsg {
                    let ids = found.entry(e).or_default();
                    if !ids.contains(&item.id) {
                        ids.push(item.id.clone());
                    }
                }
            }
        }
        match found.len() {
            1 => Ok(*found.keys().next().unwrap_or(&0)),
            0 => Err(RasterError::InvalidData(
                "the items carry no proj:code / proj:epsg for the requested assets; set `epsg`"
                    .into(),
            )),
            _ => {
                let list: Vec<String> = found
                    .iter()
                    .map(|(e, ids)| format!("EPSG:{e} (items {})", ids.join(", ")))
                    .collect();
                Err(RasterError::InvalidData(format!(
                    "the items are in different CRSs: {}; set `epsg` to choose the output CRS",
                    list.join("; ")
                )))
            }
        }
    }

    /// The output grid.
    fn grid(&self, items: &[ItemRef], epsg: u32) -> Result<Grid, RasterError> {
        let res = self.params.resolution;
        let bounds = match &self.params.extent {
            Extent::LatLon(b) => grid::transform_bounds(*b, 4326, epsg)?,
            Extent::Projected(b) => *b,
            Extent::Items => {
                let mut all = Vec::new();
                for item in items {
                    let mut any = false;
                    for a in item.assets.iter().flatten() {
                        if let (Some(b), Some(e)) = (a.bounds(), a.epsg) {
                            all.push(grid::transform_bounds(b, e, epsg)?);
                            any = true;
                        }
                    }
                    if let (false, Some(b)) = (any, item.bbox) {
                        all.push(grid::transform_bounds(b, 4326, epsg)?);
                    }
                }
                grid::union(all).ok_or_else(|| {
                    RasterError::InvalidData(
                        "no extent known for the items (no proj:transform / proj:shape or bbox); set `bounds`".into(),
                    )
                })?
            }
        };
        let bounds = if self.params.snap {
            grid::snap_outward(bounds, res, (0.0, 0.0))
        } else {
            match self.native_origin(items, epsg) {
                Some(origin) => grid::snap_outward(bounds, res, origin),
                None => bounds,
            }
        };
        grid::grid_of(format!("EPSG:{epsg}"), bounds, res)
    }

    /// The upper-left corner of the first asset whose native grid has the target CRS and resolution.
    fn native_origin(&self, items: &[ItemRef], epsg: u32) -> Option<(f64, f64)> {
        let res = self.params.resolution;
        items
            .iter()
            .flat_map(|i| i.assets.iter().flatten())
            .find_map(|a| {
                let t = a.transform?;
                let same = a.epsg == Some(epsg)
                    && (t[1] - res).abs() < 1e-9 * res
                    && (t[5] + res).abs() < 1e-9 * res;
                same.then_some((t[0], t[3]))
            })
    }
}

impl Node for StackNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let features = inputs.items("input")?.features();
        if features.is_empty() {
            return Err(NodeError::InvalidData(
                "stack: the input has no items".into(),
            ));
        }
        let mut items: Vec<ItemRef> = features
            .iter()
            .map(|f| stac::item_ref(f, &self.params.assets, &ctx.recipe_dir))
            .collect();
        items.sort_by(|a, b| a.datetime.cmp(&b.datetime));
        let epsg = self.crs(&items)?;
        let whole = self.grid(&items, epsg)?;
        if let Some(deferred) = self.deferred(ctx, inputs, &items, &whole)? {
            return Ok(deferred);
        }
        let grid = match ctx.window() {
            Some(w) => w.grid_of(&whole),
            None => whole,
        };
        let (nt, nb) = (items.len(), self.params.assets.len());
        let plane = grid.len();
        tracing::debug!(node = %ctx.node_id, times = nt, bands = nb, width = grid.width, height = grid.height, "stack");
        let shape = (nt, nb, grid.height, grid.width);
        let mut data: Array4<f32> = alloc::array4(shape, f32::NAN).map_err(|e| {
            NodeError::InvalidData(format!(
                "stack: the cube of {nt} time(s) x {nb} band(s) x {} x {} pixels (f32) {e}; \
                 use a coarser `resolution` or smaller bounds",
                grid.height, grid.width
            ))
        })?;
        let slice = data
            .as_slice_memory_order_mut()
            .ok_or_else(|| NodeError::Failed("stack: the output array is not contiguous".into()))?;
        let pool = reader_pool(self.params.max_parallel)
            .map_err(|e| NodeError::Failed(format!("stack: cannot start reader threads: {e}")))?;
        // The cores left to each reader for GDAL's own threads (block decoding, warp kernel).
        let readers = self.params.max_parallel.min(nt * nb).max(1);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let gdal_threads = (cores / readers).max(1);
        let results: Vec<Result<(), RasterError>> = pool.install(|| {
            slice
                .par_chunks_mut(plane)
                .enumerate()
                .map(|(i, out)| {
                    let (t, b) = (i / nb, i % nb);
                    let item = &items[t];
                    let key = &self.params.assets[b];
                    if ctx.is_cancelled() {
                        return Err(RasterError::Cancelled);
                    }
                    let Some(asset) = &item.assets[b] else {
                        return Err(RasterError::Asset {
                            item: item.id.clone(),
                            asset: key.clone(),
                            href: "-".into(),
                            message: "the item has no such asset".into(),
                        });
                    };
                    let options = ReadOptions {
                        resampling: self.params.resampling[b],
                        gdal_threads,
                        http: self.params.http,
                    };
                    read_asset(asset, &grid, epsg, options, out)
                        .map(|_| ())
                        .map_err(|e| {
                            out.fill(f32::NAN);
                            let (item, asset_key, href) = (
                                item.id.clone(),
                                key.clone(),
                                asset.public_href().to_string(),
                            );
                            match e {
                                ReadError::Data(message) => RasterError::Asset {
                                    item,
                                    asset: asset_key,
                                    href,
                                    message,
                                },
                                ReadError::Remote(message) => RasterError::Remote {
                                    item,
                                    asset: asset_key,
                                    href,
                                    message,
                                },
                            }
                        })
                })
                .collect()
        });
        ctx.check_cancelled()?;
        for r in results {
            match r {
                Ok(()) => {}
                Err(RasterError::Cancelled) => return Err(NodeError::Cancelled),
                Err(e) if self.params.missing_as_nodata => {
                    ctx.warn(format!("{e}; filled with NaN"));
                    // A band filled with NaN for a failed read is not the data: never cached.
                    ctx.mark_incomplete(format!("{e}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The versions of the local files read, so that a changed file is a miss next time
        // (remote assets are identified by the items that name them).
        for asset in items.iter().flat_map(|i| i.assets.iter().flatten()) {
            let path = crate::gdalx::gdal_path(&asset.href);
            if !path.starts_with("/vsi") {
                if let Ok(source) = flow_core::Source::local_file(std::path::Path::new(&path)) {
                    ctx.record_source(source);
                }
            }
        }
        let (bands, times) = self.bands_and_times(&items);
        Ok(Value::Raster(Raster {
            data,
            grid,
            bands,
            times,
        }))
    }
}

/// Cubes larger than this are computed window by window even without `--window`.
const AUTO_WINDOW_BYTES: u128 = 1 << 30;

impl StackNode {
    /// Band descriptions and time labels of the cube, from the items alone.
    fn bands_and_times(&self, items: &[ItemRef]) -> (Vec<BandInfo>, Vec<String>) {
        let bands = self
            .params
            .assets
            .iter()
            .enumerate()
            .map(|(b, key)| {
                items
                    .iter()
                    .find_map(|i| i.assets[b].as_ref().map(|a| a.band.clone()))
                    .unwrap_or_else(|| BandInfo {
                        name: key.clone(),
                        ..Default::default()
                    })
            })
            .collect();
        let times = items.iter().map(|i| i.datetime.clone()).collect();
        (bands, times)
    }

    /// The cube as a deferred value, read window by window by whatever needs it, when it spans
    /// more than one window: of the size asked for (`--window`), or of
    /// [`flow_core::window::DEFAULT_WINDOW`] when the whole cube would exceed
    /// [`AUTO_WINDOW_BYTES`]. `None` reads it now (a cube within one window, or a window of a
    /// windowed run).
    fn deferred(
        &self,
        ctx: &RunContext,
        inputs: &Inputs,
        items: &[ItemRef],
        grid: &flow_core::Grid,
    ) -> Result<Option<Value>, NodeError> {
        if ctx.window().is_some() {
            return Ok(None);
        }
        let bytes = items.len() as u128 * self.params.assets.len() as u128 * grid.len() as u128 * 4;
        let size = match ctx.window_size() {
            Some(size) => size,
            None if bytes > AUTO_WINDOW_BYTES => flow_core::window::DEFAULT_WINDOW,
            None => return Ok(None),
        };
        if grid.width <= size && grid.height <= size {
            return Ok(None);
        }
        let (bands, times) = self.bands_and_times(items);
        let template = Raster {
            data: Array4::zeros((items.len(), self.params.assets.len(), 0, 0)),
            grid: grid.clone(),
            bands,
            times,
        };
        let expr = flow_core::deferred::Expr {
            node_id: ctx.node_id.clone(),
            kind: "stack".into(),
            params: self.written.clone(),
            inputs: vec![(
                "input".into(),
                flow_core::deferred::Operand::Whole(Arc::new(inputs.value("input")?.clone())),
            )],
        };
        tracing::info!(node = %ctx.node_id, width = grid.width, height = grid.height, window = size, "the cube is read window by window");
        Ok(Some(Value::Deferred(flow_core::deferred::Deferred::new(
            Value::Raster(template),
            size,
            Arc::new(expr),
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(src: &str) -> Result<ValidStack, ParamError> {
        StackParams::parse(&toml::from_str(src).unwrap())?.validate()
    }

    #[test]
    fn defaults_and_per_band_resampling() {
        let v = valid("assets = [\"B04\", \"B05\"]\nresolution = 10").unwrap();
        assert_eq!(v.resampling, [Resampling::Nearest; 2]);
        assert_eq!(v.extent, Extent::Items);
        assert!(v.snap && !v.missing_as_nodata);
        assert_eq!((v.max_parallel, v.epsg), (4, None));
        let v = valid(
            "assets = [\"B04\", \"B05\"]\nresolution = 10\nresampling = \"cubic\"\n\
             resampling_per_band = { B05 = \"average\" }\non_missing = \"nodata\"",
        )
        .unwrap();
        assert_eq!(v.resampling, [Resampling::Cubic, Resampling::Average]);
        assert!(v.missing_as_nodata);
        assert_eq!(v.http, HttpOptions::DEFAULT);
        let v = valid("assets = [\"B04\"]\nresolution = 10\ntimeout = 2.5\nretries = 0").unwrap();
        assert_eq!(
            v.http,
            HttpOptions {
                timeout: 2.5,
                retries: 0
            }
        );
        assert_eq!(StackKind.unkeyed_params(), ["timeout", "retries"]);
    }

    #[test]
    fn errors_name_the_param() {
        let param = |src: &str| valid(src).unwrap_err().param;
        let base = "assets = [\"B04\"]\nresolution = 10\n";
        for (extra, name) in [
            ("resampling = \"lanczos\"", "resampling"),
            (
                "resampling_per_band = { B04 = \"lanczos\" }",
                "resampling_per_band",
            ),
            ("resampling_per_band = { B04 = 3 }", "resampling_per_band"),
            (
                "resampling_per_band = { B05 = \"cubic\" }",
                "resampling_per_band",
            ),
            ("on_missing = \"skip\"", "on_missing"),
            ("max_parallel = 0", "max_parallel"),
            ("timeout = 0", "timeout"),
            ("timeout = 1e9", "timeout"),
            ("retries = -1", "retries"),
            ("retries = 11", "retries"),
        ] {
            assert_eq!(
                param(&format!("{base}{extra}")).as_deref(),
                Some(name),
                "{extra}"
            );
        }
    }
}
