//! The `stack` kind: every chosen asset of every item onto one grid, as a `time x band x y x x`
//! f32 cube — stackstac's `stack`, without the float64.
//!
//! What it reads, and how:
//!
//! - **Where hrefs may point.** An item from a remote catalog (an http(s) STAC API, as the
//!   search recorded in [`flow_core::Items::catalog`], or an item whose own `self` link is
//!   http(s)) may only name http(s) and cloud-store URLs. A local path, a `file://` URL or a
//!   GDAL virtual path (`/vsicurl/...`) in such an item fails the node before anything is read
//!   (exit 3, naming item, asset, href and why). Items of local catalogs may name local files.
//! - **Which formats.** Files are opened with GDAL's GTiff driver (GeoTIFF, COG) and the drivers
//!   the `drivers` param opts into, never with any other: a VRT served over HTTP is not opened,
//!   and drivers whose files name other files (VRT, ...) are refused for remote items.
//! - **Which version.** Before a remote file is read, one HEAD request (through GDAL) records its
//!   size and ETag (else Last-Modified) as a [`Source`] of the output, keyed by the href without
//!   its query (never a token); local files record size and modification time. When the cached
//!   cube is about to be reused, [`Node::source_changed`] asks again: a file that changed (or
//!   is gone) makes the cube and everything after it a miss; a server that cannot tell (403 on
//!   an unsigned URL, no network) keeps the cached cube.
//! - **Signatures that expire.** An asset signed by a `sign` node names its signer
//!   (`flow:signer`, [`flow_core::signer`]): the signer is asked for the href just before the
//!   read (the same href while its token is valid), and once more, renewing, when the server
//!   answers 403 mid-run; the read is then retried once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use flow_core::estimate::{Estimate, Known, Pixels, Shape};
use flow_core::polygon::Polygons;
use flow_core::{
    BandInfo, DeclaredParams, Grid, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec,
    Params, Port, Raster, RunContext, Signature, Source, Value, ValueType,
};
use ndarray::Array4;
use rayon::prelude::*;

use crate::alloc;
use crate::clip;
use crate::error::RasterError;
use crate::gdalx::{self, ErrorCapture, HttpOptions};
use crate::grid::{self, Bounds};
use crate::read::{
    allowed_drivers, probe_failure, read_asset, ReadError, ReadOptions, Resampling,
    INDIRECT_DRIVERS,
};
use crate::stac::{self, AssetRef, ItemRef};

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

flow_core::param_enum! {
    /// How items become time steps.
    enum Mosaic {
        /// Items of the same UTC date are one time step: where they overlap, the first valid
        /// pixel wins, items taken in order of datetime, then id (stackstac.mosaic).
        Date = "date",
        /// Every item is a time step of its own.
        None = "none",
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
        /// the area of interest, a GeoJSON geometry in lon/lat (by default the recipe's top-level `aoi`): its bbox is the grid's bounds when neither `bounds` nor `bounds_latlon` is given
        aoi: Option<toml::Table>,
        /// pixels whose centre is outside `aoi` become NaN, as rasterio's geometry_mask with all_touched = false (default true when there is an `aoi`)
        clip: Option<bool>,
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
        /// items of one UTC date form one time step, first valid pixel first ("date"), or each
        /// item is a time step ("none")
        mosaic: Mosaic = Mosaic::Date,
        /// only the items of a date "2021-07-15" (that UTC day), a month "2021-07", or an
        /// inclusive range "2021-07-01/2021-07-31" (open ends as "../2021-07-31"), as STAC
        /// datetime; default every item
        time: Option<String>,
        /// only the items of any of these dates or ranges, e.g. ["2021-07-05", "2021-07-15"]
        /// (instead of `time`)
        times: Option<Vec<String>>,
        /// GDAL drivers allowed besides GTiff (GeoTIFF / COG), e.g. ["JP2OpenJPEG"]; drivers whose files name other files (VRT) are refused for items of remote catalogs
        drivers: Option<Vec<String>>,
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
    /// GDAL drivers files may be opened with: GTiff, then those the recipe opted into.
    drivers: Vec<String>,
    mosaic: Mosaic,
    /// The area outside which pixels become NaN, in longitude / latitude.
    clip: Option<Polygons>,
    /// The items stacked, by date ([`crate::time_select`]); all when `None`.
    dates: Option<flow_core::time::DateSelection>,
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
        let aoi = match &self.aoi {
            None => None,
            Some(t) => Some(
                Polygons::from_geojson(&toml::Value::Table(t.clone()))
                    .map_err(|e| ParamError::new("aoi", e))?,
            ),
        };
        let clip = match (self.clip, &aoi) {
            (Some(true), None) => {
                return Err(ParamError::new(
                    "clip",
                    "`clip` needs an area: give the recipe an `aoi` (or the node one)",
                ))
            }
            (Some(false), _) => None,
            (_, aoi) => aoi.clone(),
        };
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
            (None, None) => match &aoi {
                Some(area) => Extent::LatLon(area.bbox()),
                None => Extent::Items,
            },
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
        let drivers = allowed_drivers(self.drivers.as_deref())?;
        let dates = flow_core::time::DateSelection::from_params(
            self.time.as_deref(),
            self.times.as_deref(),
        )?;
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
            drivers,
            mosaic: self.mosaic,
            clip,
            dates,
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
         raster:bands scale/offset applied, items ordered by datetime (only those of the dates \
         `time` or `times` select), assets read in parallel (GDAL /vsicurl/ for http(s)). \
         Stored blocks are checked before they are trusted (DEFLATE checksums, sizes, COG \
         leaders and trailers), and a file read whole against its file:checksum. Items of a remote (http) catalog may only point at http(s) and cloud-store \
         URLs; files open with the GTiff driver and those `drivers` adds (never VRT for remote \
         items). Each file's version (size and mtime; for remote files size and ETag or \
         Last-Modified, from one HEAD) is recorded, and a cached cube whose files changed is \
         recomputed. Hrefs signed by `sign` are signed again when the server answers 403 mid-run."
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
    /// The requested assets of every item of `input` (relative hrefs taken from `recipe_dir`)
    /// that `time` / `times` select, in reading order: by datetime, then id.
    ///
    /// # Errors
    /// [`RasterError::InvalidData`] when the dates select no item.
    fn items(
        &self,
        input: &flow_core::Items,
        recipe_dir: &std::path::Path,
    ) -> Result<Vec<ItemRef>, RasterError> {
        let catalog = input.catalog();
        let mut items: Vec<ItemRef> = input
            .features()
            .iter()
            .map(|f| {
                let remote = stac::remote_origin(f, catalog);
                stac::item_ref(f, &self.params.assets, recipe_dir, remote)
            })
            .collect();
        items.sort_by(|a, b| a.datetime.cmp(&b.datetime).then_with(|| a.id.cmp(&b.id)));
        crate::time_select::select(items, self.params.dates.as_ref())
    }

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

impl StackNode {
    /// Refuses, before anything is read, what items of remote catalogs may not do: name hrefs
    /// other than http(s) and cloud-store URLs ([`stac::refusal`]), or be opened with a driver
    /// whose files name other files ([`INDIRECT_DRIVERS`]).
    fn check_origins(&self, items: &[ItemRef]) -> Result<(), RasterError> {
        let Some((first, origin)) = items
            .iter()
            .find_map(|i| i.remote.as_deref().map(|o| (i, o)))
        else {
            return Ok(());
        };
        let indirect = self
            .params
            .drivers
            .iter()
            .find(|d| INDIRECT_DRIVERS.iter().any(|x| x.eq_ignore_ascii_case(d)));
        if let Some(d) = indirect {
            return Err(RasterError::InvalidData(format!(
                "stack: `drivers` opts into {d}, whose files name other files to read (local \
                 ones too), and item `{}` comes from the remote catalog {origin}: {d} is never \
                 used for the items of a remote catalog; leave it out of `drivers`",
                first.id
            )));
        }
        for item in items {
            let Some(origin) = &item.remote else {
                continue;
            };
            for (key, asset) in self.params.assets.iter().zip(&item.assets) {
                let Some(asset) = asset else {
                    continue;
                };
                if let Some(why) = stac::refusal(&asset.href) {
                    return Err(RasterError::Asset {
                        item: item.id.clone(),
                        asset: key.clone(),
                        href: asset.public_href().to_string(),
                        message: format!(
                            "refused, nothing read: the item comes from the remote catalog \
                             {origin}, whose items may only point at http(s) or cloud-store \
                             (s3://, gs://) URLs, and this href is {why}"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// What reading an asset's public href again takes ([`Source::credentials`]): its signer, or
/// the query the public href leaves out.
fn credentials(asset: &AssetRef) -> Option<String> {
    match &asset.signer {
        Some(id) => Some(format!("signer:{id}")),
        None if asset.public_href() != asset.href => Some("query".into()),
        None => None,
    }
}

/// The version of the file behind `asset` as it is now: a local file's size and modification
/// time, or what one HEAD request tells of a remote one (size, ETag else Last-Modified), under
/// the href without its query. A server that refuses the HEAD gives a source with no version
/// (the read that follows says what is wrong, if anything).
///
/// # Errors
/// [`ReadError::Remote`] when the server did not answer in time, could not be reached or
/// failed after the retries (reading would only wait as long again).
fn version_of(asset: &AssetRef, options: &ReadOptions) -> Result<Option<Source>, ReadError> {
    let path = gdalx::gdal_path(&asset.href);
    if !gdalx::is_network_path(&path) {
        return Ok(Source::local_file(std::path::Path::new(&path)).ok());
    }
    let _capture = ErrorCapture::start();
    gdalx::set_thread_options(options.gdal_threads, options.http);
    let location = asset.public_href().to_string();
    let credentials = credentials(asset);
    match gdalx::remote_stat(&path) {
        Ok(stat) => Ok(Some(Source {
            location,
            size: stat.size,
            version: stat.version(),
            local: false,
            credentials,
        })),
        Err(e) => {
            // GDAL remembers a failed HEAD: let the read ask again.
            gdalx::forget_remote(&path);
            if let Some(failure) = probe_failure(&e, options.http) {
                return Err(failure);
            }
            tracing::debug!(href = %location, "no version known: {}", flow_core::redact::secrets(&e.message));
            Ok(Some(Source {
                location,
                size: None,
                version: None,
                local: false,
                credentials,
            }))
        }
    }
}

/// Reads `asset` onto `grid` ([`read_asset`]) and returns the version of the file it read
/// ([`version_of`], taken just before the read). An asset signed by a registered signer
/// (`flow:signer`) is signed again just before the read (the same href while the signature is
/// valid) and, when the server answers 403, once more with fresh credentials and read again,
/// once.
fn fetch(
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    options: ReadOptions,
    out: &mut [f32],
) -> Result<Option<Source>, ReadError> {
    let signer = asset.signer.as_deref().and_then(|id| {
        let signer = flow_core::signer::lookup(id);
        if signer.is_none() {
            tracing::debug!(
                signer = id,
                href = asset.public_href(),
                "no such signer in this process: the href is read as it is"
            );
        }
        signer
    });
    let mut current = asset.clone();
    if let Some(s) = &signer {
        current.href = s
            .sign(&asset.href, false)
            .map_err(|e| ReadError::Remote(format!("signing the href: {e}")))?;
    }
    let mut renewed = false;
    loop {
        let source = version_of(&current, &options)?;
        let message = match read_asset(&current, grid, epsg, options, out) {
            Ok(_) => return Ok(source),
            Err(ReadError::Forbidden(message)) => message,
            Err(e) => return Err(e),
        };
        let Some(s) = signer.as_ref().filter(|_| !renewed) else {
            let again = if renewed { " (signed again)" } else { "" };
            return Err(ReadError::Forbidden(format!("{message}{again}")));
        };
        renewed = true;
        tracing::info!(
            href = asset.public_href(),
            "HTTP 403: signing the href again"
        );
        current.href = s.sign(&current.href, true).map_err(|e| {
            ReadError::Forbidden(format!("{message}; signing it again failed: {e}"))
        })?;
        out.fill(f32::NAN);
    }
}

/// Whether a remote file recorded as `then` differs from what its server says `now`: a
/// different size, or a different ETag / Last-Modified; None when neither tells.
fn remote_changed(then: &Source, now: &gdalx::RemoteStat) -> Option<bool> {
    if let (Some(a), Some(b)) = (then.size, now.size) {
        if a != b {
            return Some(true);
        }
    }
    match (&then.version, now.version()) {
        (Some(a), Some(b)) => Some(*a != b),
        _ => None,
    }
}

impl Node for StackNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let input = inputs.items("input")?;
        let features = input.features();
        if features.is_empty() {
            return Err(NodeError::InvalidData(
                "stack: the input has no items: the search before it found none (its warning \
                 says what it searched for)"
                    .into(),
            ));
        }
        let items = self.items(input, &ctx.recipe_dir)?;
        self.check_origins(&items)?;
        let epsg = self.crs(&items)?;
        // A picture-sized version reads a coarser grid (GDAL takes the overviews).
        let whole = match ctx.coarsen() {
            1 => self.grid(&items, epsg)?,
            step => self.grid(&items, epsg)?.coarsened(step),
        };
        let groups = self.time_steps(&items);
        if let Some(deferred) = self.deferred(ctx, inputs, &items, &groups, &whole)? {
            return Ok(deferred);
        }
        let grid = match ctx.window() {
            Some(w) => w.grid_of(&whole),
            None => whole,
        };
        let (nt, nb) = (groups.len(), self.params.assets.len());
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
        let drivers: Vec<&str> = self.params.drivers.iter().map(String::as_str).collect();
        // One asset of one item read onto the grid: its source, or what went wrong.
        let read_one =
            |item: &ItemRef, b: usize, out: &mut [f32]| -> Result<Option<Source>, RasterError> {
                let key = &self.params.assets[b];
                let Some(asset) = &item.assets[b] else {
                    return Err(RasterError::Asset {
                        item: item.id.clone(),
                        asset: key.clone(),
                        href: "-".into(),
                        message: "the item has no such asset".into(),
                    });
                };
                let options = ReadOptions {
                    band: 1,
                    resampling: self.params.resampling[b],
                    gdal_threads,
                    http: self.params.http,
                    drivers: &drivers,
                };
                fetch(asset, &grid, epsg, options, out).map_err(|e| {
                    out.fill(f32::NAN);
                    let (item, asset_key, href) = (
                        item.id.clone(),
                        key.clone(),
                        asset.public_href().to_string(),
                    );
                    match e {
                        ReadError::Data(message) | ReadError::Forbidden(message) => {
                            RasterError::Asset {
                                item,
                                asset: asset_key,
                                href,
                                message,
                            }
                        }
                        ReadError::Remote(message) => RasterError::Remote {
                            item,
                            asset: asset_key,
                            href,
                            message,
                        },
                    }
                })
            };
        let results: Vec<Result<Vec<Source>, RasterError>> = pool.install(|| {
            slice
                .par_chunks_mut(plane)
                .enumerate()
                .map(|(i, out)| {
                    let (t, b) = (i / nb, i % nb);
                    let mut sources = Vec::new();
                    let mut other: Vec<f32> = Vec::new();
                    let mut first = true;
                    for &it in &groups[t] {
                        if ctx.is_cancelled() {
                            return Err(RasterError::Cancelled);
                        }
                        let item = &items[it];
                        if !first && !out.iter().any(|v| v.is_nan()) {
                            break; // every pixel already has a value
                        }
                        if groups[t].len() > 1 && !overlaps(item, b, epsg, &grid) {
                            continue;
                        }
                        if first {
                            sources.extend(read_one(item, b, out)?);
                            ctx.count_read(plane as u64 * 4);
                            first = false;
                        } else {
                            other.resize(plane, f32::NAN);
                            sources.extend(read_one(item, b, &mut other)?);
                            ctx.count_read(plane as u64 * 4);
                            for (o, v) in out.iter_mut().zip(&other) {
                                if o.is_nan() {
                                    *o = *v;
                                }
                            }
                        }
                    }
                    Ok(sources)
                })
                .collect()
        });
        ctx.check_cancelled()?;
        // The versions of the files read, in item and asset order, so that a changed file is a
        // miss next time.
        let mut sources = Vec::new();
        for r in results {
            match r {
                Ok(read) => sources.extend(read),
                Err(RasterError::Cancelled) => return Err(NodeError::Cancelled),
                Err(e) if self.params.missing_as_nodata => {
                    ctx.warn(format!("{e}; filled with NaN"));
                    // A band filled with NaN for a failed read is not the data: never cached.
                    ctx.mark_incomplete(format!("{e}"));
                }
                Err(e) => return Err(e.into()),
            }
        }
        for source in sources {
            ctx.record_source(source);
        }
        if let Some(area) = &self.params.clip {
            let area = clip::reproject(area, epsg)?;
            let outside = clip::outside_to_nan(&area, &grid, &mut data);
            tracing::debug!(node = %ctx.node_id, outside, "clipped to the area of interest");
        }
        let (bands, times) = self.bands_and_times(&items, &groups);
        Ok(Value::Raster(Raster {
            data,
            grid,
            bands,
            times,
        }))
    }

    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let bands = self.params.assets.len();
        // The grid and the items of each time step: from the items once the search has run,
        // else from the params alone (bounds and `epsg` given), with at least one time step.
        let (grid, steps, covered, at_least, labels) = match known.value("input") {
            Some(Value::Items(input)) => {
                let items = self.items(input, std::path::Path::new(".")).ok()?;
                let epsg = self.crs(&items).ok()?;
                let grid = self.grid(&items, epsg).ok()?;
                let groups = self.time_steps(&items);
                let steps: Vec<usize> = groups.iter().map(Vec::len).collect();
                // Each item is read where it overlaps the grid.
                let covered: f64 = items.iter().map(|i| coverage(i, epsg, &grid)).sum();
                let labels = self.bands_and_times(&items, &groups).1;
                (grid, steps, covered, false, labels)
            }
            _ => {
                let epsg = self.params.epsg?;
                if self.params.extent == Extent::Items {
                    return None;
                }
                (self.grid(&[], epsg).ok()?, vec![1], 1.0, true, Vec::new())
            }
        };
        let plane = grid.len() as u64 * 4;
        let bytes = steps.len() as u128 * bands as u128 * u128::from(plane);
        let mut output =
            Pixels::whole(ValueType::Raster, steps.len(), bands, grid).with_time_labels(&labels);
        output.window = window_side(bytes, &output.grid, known.window, known.memory_limit);
        output.at_least = at_least;
        // Each reader of a mosaic holds a second plane to merge the next item into.
        let merging = steps.iter().any(|&n| n > 1) && output.window.is_none();
        let readers = self.params.max_parallel.min(steps.len() * bands).max(1) as u64;
        Some(Estimate {
            working_bytes: if merging { readers * plane } else { 0 },
            read_bytes: (covered * (bands as u64 * plane) as f64) as u64,
            ..Estimate::of(Shape::Pixels(output))
        })
    }

    fn source_changed(&self, source: &Source) -> Option<bool> {
        if source.local {
            return source.changed();
        }
        // A signed URL is asked about signed again, when its signer is known in this process.
        let signer = match source.credentials.as_deref() {
            Some(c) => c.strip_prefix("signer:"),
            None => None,
        };
        let href = match signer {
            Some(id) => {
                let Some(signer) = flow_core::signer::lookup(id) else {
                    tracing::debug!(href = %source.location, signer = id, "its signer is not known in this process: cannot tell whether it changed; the cached output is kept");
                    return None;
                };
                match signer.sign(&source.location, false) {
                    Ok(href) => href,
                    Err(e) => {
                        tracing::debug!(href = %source.location, "cannot sign it ({e}): cannot tell whether it changed; the cached output is kept");
                        return None;
                    }
                }
            }
            None => source.location.clone(),
        };
        let path = gdalx::gdal_path(&href);
        if !gdalx::is_network_path(&path) {
            return None;
        }
        let _capture = ErrorCapture::start();
        // One HEAD, within the node's timeout; a server that fails it cannot tell.
        let http = HttpOptions {
            retries: 0,
            ..self.params.http
        };
        gdalx::set_thread_options(1, http);
        gdalx::forget_remote(&path);
        match gdalx::remote_stat(&path) {
            Ok(now) => {
                let changed = remote_changed(source, &now);
                if changed.is_none() {
                    tracing::debug!(href = %source.location, "the server tells no version: the cached output is kept");
                }
                changed
            }
            // Gone, unless the URL asked about lacks the token it was read with (a private
            // container answers 404 to a request without one).
            Err(e)
                if matches!(e.status, Some(404 | 410))
                    && source.credentials.as_deref() != Some("query") =>
            {
                Some(true)
            }
            Err(e) => {
                tracing::debug!(
                    href = %source.location,
                    "cannot tell whether it changed ({}): the cached output is kept",
                    flow_core::redact::secrets(&e.message)
                );
                None
            }
        }
    }
}

/// The UTC date (`YYYY-MM-DD`) of an RFC 3339 datetime.
fn utc_date(datetime: &str) -> Option<jiff::civil::Date> {
    let ts: jiff::Timestamp = datetime.parse().ok()?;
    Some(ts.to_zoned(jiff::tz::TimeZone::UTC).date())
}

/// Whether asset `b` of `item` can cover part of `grid`: false only when its footprint, known in
/// the grid's CRS, lies wholly outside (its read would give nothing but NaN).
fn overlaps(item: &ItemRef, b: usize, epsg: u32, grid: &flow_core::Grid) -> bool {
    let Some(asset) = &item.assets[b] else {
        return true;
    };
    let (Some(bounds), Some(asset_epsg)) = (asset.bounds(), asset.epsg) else {
        return true;
    };
    if asset_epsg != epsg {
        return true;
    }
    let (x0, y0, x1, y1) = grid.bounds();
    bounds[0] < x1 && bounds[2] > x0 && bounds[1] < y1 && bounds[3] > y0
}

/// The share of `grid` that `item` covers (by its first asset's footprint, else its bbox); 1
/// when unknown.
fn coverage(item: &ItemRef, epsg: u32, grid: &flow_core::Grid) -> f64 {
    let footprint = item
        .assets
        .iter()
        .flatten()
        .find_map(|a| Some((a.bounds()?, a.epsg?)))
        .or_else(|| item.bbox.map(|b| (b, 4326)));
    let Some(b) = footprint.and_then(|(b, e)| grid::transform_bounds(b, e, epsg).ok()) else {
        return 1.0;
    };
    let (x0, y0, x1, y1) = grid.bounds();
    let w = (b[2].min(x1) - b[0].max(x0)).max(0.0);
    let h = (b[3].min(y1) - b[1].max(y0)).max(0.0);
    let area = (x1 - x0) * (y1 - y0);
    if area > 0.0 {
        (w * h / area).min(1.0)
    } else {
        1.0
    }
}

/// Cubes larger than this are computed window by window even without `--window`.
const AUTO_WINDOW_BYTES: u128 = 1 << 30;

/// The side of the windows a cube of `bytes` on `grid` is computed in, or `None` to read it
/// whole: the side asked for (`--window`); else [`flow_core::window::DEFAULT_WINDOW`] when the
/// cube would exceed [`AUTO_WINDOW_BYTES`] or a quarter of the memory limit. `None` as well when
/// the cube fits in one window.
fn window_side(
    bytes: u128,
    grid: &flow_core::Grid,
    asked: Option<usize>,
    memory_limit: Option<u64>,
) -> Option<usize> {
    let auto = memory_limit.map_or(AUTO_WINDOW_BYTES, |l| {
        AUTO_WINDOW_BYTES.min(u128::from(l) / 4)
    });
    let size = match asked {
        Some(size) => size,
        None if bytes > auto => flow_core::window::DEFAULT_WINDOW,
        None => return None,
    };
    (grid.width > size || grid.height > size).then_some(size)
}

impl StackNode {
    /// The items of each time step, in reading order: one step per UTC date with
    /// `mosaic = "date"` (items already sorted by datetime, then id), else one per item.
    fn time_steps(&self, items: &[ItemRef]) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let same_date = self.params.mosaic == Mosaic::Date
                && i > 0
                && utc_date(&items[i - 1].datetime) == utc_date(&item.datetime)
                && utc_date(&item.datetime).is_some();
            match groups.last_mut() {
                Some(g) if same_date => g.push(i),
                _ => groups.push(vec![i]),
            }
        }
        groups
    }

    /// Band descriptions and time labels of the cube, from the items alone (a time step is
    /// labelled by its first item's datetime).
    fn bands_and_times(
        &self,
        items: &[ItemRef],
        groups: &[Vec<usize>],
    ) -> (Vec<BandInfo>, Vec<String>) {
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
        let times = groups
            .iter()
            .map(|g| items[g[0]].datetime.clone())
            .collect();
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
        groups: &[Vec<usize>],
        grid: &flow_core::Grid,
    ) -> Result<Option<Value>, NodeError> {
        if ctx.window().is_some() {
            return Ok(None);
        }
        let bytes =
            groups.len() as u128 * self.params.assets.len() as u128 * grid.len() as u128 * 4;
        let Some(size) = window_side(bytes, grid, ctx.window_size(), ctx.memory_limit()) else {
            return Ok(None);
        };
        let (bands, times) = self.bands_and_times(items, groups);
        let template = Raster {
            data: Array4::zeros((groups.len(), self.params.assets.len(), 0, 0)),
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
                flow_core::deferred::Operand::Whole(
                    inputs
                        .get_shared("input")
                        .cloned()
                        .ok_or_else(|| NodeError::Input {
                            port: "input".into(),
                            message: "not connected".into(),
                        })?,
                ),
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
        assert_eq!(v.drivers, ["GTiff"]);
        let v =
            valid("assets = [\"B04\"]\nresolution = 10\ndrivers = [\"PNG\", \"GTiff\", \"VRT\"]")
                .unwrap();
        assert_eq!(v.drivers, ["GTiff", "PNG", "VRT"]);
    }

    #[test]
    fn a_remote_file_changed_when_its_size_or_version_did() {
        let then = Source {
            location: "https://h/a.tif".into(),
            size: Some(10),
            version: Some("\"e1\"".into()),
            local: false,
            credentials: None,
        };
        let now =
            |size: Option<u64>, etag: Option<&str>, modified: Option<&str>| gdalx::RemoteStat {
                size,
                etag: etag.map(String::from),
                last_modified: modified.map(String::from),
            };
        assert_eq!(
            remote_changed(&then, &now(Some(10), Some("\"e1\""), None)),
            Some(false)
        );
        assert_eq!(
            remote_changed(&then, &now(Some(10), Some("\"e2\""), None)),
            Some(true)
        );
        assert_eq!(
            remote_changed(&then, &now(Some(11), None, None)),
            Some(true)
        );
        assert_eq!(remote_changed(&then, &now(Some(10), None, None)), None);
        let unversioned = Source {
            version: None,
            ..then.clone()
        };
        assert_eq!(
            remote_changed(&unversioned, &now(Some(10), Some("\"e1\""), None)),
            None
        );
        assert_eq!(
            remote_changed(&unversioned, &now(Some(9), Some("\"e1\""), None)),
            Some(true)
        );
        // A local source is checked on disk: a missing file has changed.
        let gone = Source {
            location: "/nonexistent/flow/a.tif".into(),
            local: true,
            ..then
        };
        let node = StackKind
            .build(&toml::from_str("assets = [\"B04\"]\nresolution = 10").unwrap())
            .unwrap();
        assert_eq!(node.source_changed(&gone), Some(true));
        // A signed URL whose signer this process does not know cannot be asked about.
        let signed = Source {
            location: "http://127.0.0.1:9/a.tif".into(),
            local: false,
            credentials: Some("signer:test:unknown".into()),
            ..gone
        };
        assert_eq!(node.source_changed(&signed), None);
        let mut asset = crate::stac::AssetRef {
            href: "https://h/a.tif?sig=x".into(),
            epsg: None,
            transform: None,
            shape: None,
            scale: 1.0,
            offset: 0.0,
            nodata: None,
            band: Default::default(),
            checksum: None,
            signer: None,
        };
        assert_eq!(credentials(&asset).as_deref(), Some("query"));
        asset.signer = Some("pc".into());
        assert_eq!(credentials(&asset).as_deref(), Some("signer:pc"));
        asset.signer = None;
        asset.href = "https://h/a.tif".into();
        assert_eq!(credentials(&asset), None);
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
            ("drivers = [\"NoSuchDriver\"]", "drivers"),
            ("drivers = [\"COG\"]", "drivers"),
            ("drivers = [\"ESRI Shapefile\"]", "drivers"),
            ("time = \"2021-07-32\"", "time"),
            ("times = [\"2021-07-15\", \"mid-July\"]", "times"),
            ("time = \"2021\"\ntimes = [\"2021\"]", "times"),
        ] {
            assert_eq!(
                param(&format!("{base}{extra}")).as_deref(),
                Some(name),
                "{extra}"
            );
        }
    }
}
