//! Reading one asset onto the target grid: a plain windowed read when the asset's pixels line up
//! with the grid, a GDAL warp otherwise.

use flow_core::Grid;
use gdal::Dataset;

use crate::alloc;
use crate::gdalx::{self, http_status, ErrorCapture, GdalMessage, HttpOptions};
use crate::stac::AssetRef;
use crate::verify::{Checker, Window};

flow_core::param_enum! {
    /// Resampling methods of `stack`.
    pub enum Resampling {
        /// Nearest neighbour.
        Nearest = "nearest",
        /// Bilinear.
        Bilinear = "bilinear",
        /// Cubic convolution.
        Cubic = "cubic",
        /// Mean of the contributing pixels.
        Average = "average",
    }
}

impl Resampling {
    /// Parses a recipe name.
    pub fn parse(name: &str) -> Option<Self> {
        Resampling::ALL.iter().copied().find(|r| r.name() == name)
    }

    fn gdalwarp_name(self) -> &'static str {
        match self {
            Resampling::Nearest => "near",
            Resampling::Bilinear => "bilinear",
            Resampling::Cubic => "cubic",
            Resampling::Average => "average",
        }
    }
}

/// How an asset was read (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadPath {
    /// A windowed RasterIO of aligned pixels.
    Window,
    /// A windowed RasterIO of coarser pixels whose size is a whole multiple of the grid's and
    /// whose corners lie on it, each replicated onto the grid (nearest resampling).
    Replicate,
    /// A GDAL warp onto the grid.
    Warp,
}

/// The pixel offset of the target grid inside the source grid, when both are north-up with the
/// same pixel size and the offset is a whole number of pixels.
fn aligned_offset(src: &[f64; 6], dst: &[f64; 6]) -> Option<(i64, i64)> {
    if src[2] != 0.0 || src[4] != 0.0 || dst[2] != 0.0 || dst[4] != 0.0 {
        return None;
    }
    let tol = 1e-6 * dst[1].abs();
    if (src[1] - dst[1]).abs() > tol || (src[5] - dst[5]).abs() > tol {
        return None;
    }
    let col = (dst[0] - src[0]) / src[1];
    let row = (dst[3] - src[3]) / src[5];
    let (ci, ri) = (col.round(), row.round());
    if (col - ci).abs() > 1e-6 || (row - ri).abs() > 1e-6 {
        return None;
    }
    Some((ci as i64, ri as i64))
}

/// Source pixels `factor` times the target pixel on each axis, with the source origin `offset`
/// whole target pixels from the target origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Replication {
    factor: (i64, i64),
    offset: (i64, i64),
}

/// The replication of `src` pixels onto `dst` when both are north-up, the source pixel size is an
/// integer multiple (2 or more) of the target's on each axis and the source origin lies on the
/// target lattice. Then the source pixel containing a target pixel's centre — what GDAL's
/// nearest warp samples — is the one covering the whole target pixel.
fn replication(src: &[f64; 6], dst: &[f64; 6]) -> Option<Replication> {
    if src[2] != 0.0 || src[4] != 0.0 || dst[2] != 0.0 || dst[4] != 0.0 {
        return None;
    }
    let whole = |v: f64| {
        let r = v.round();
        ((v - r).abs() <= 1e-6).then_some(r as i64)
    };
    let fx = whole(src[1] / dst[1]).filter(|f| *f >= 2)?;
    let fy = whole(src[5] / dst[5]).filter(|f| *f >= 2)?;
    let ox = whole((src[0] - dst[0]) / dst[1])?;
    let oy = whole((src[3] - dst[3]) / dst[5])?;
    Some(Replication {
        factor: (fx, fy),
        offset: (ox, oy),
    })
}

fn same_crs(ds: &Dataset, epsg: u32, stac_epsg: Option<u32>) -> bool {
    match ds.spatial_ref() {
        Ok(mut srs) => {
            if let Ok(code) = srs.auth_code() {
                return code as u32 == epsg;
            }
            if srs.auto_identify_epsg().is_ok() {
                if let Ok(code) = srs.auth_code() {
                    return code as u32 == epsg;
                }
            }
            crate::grid::srs(epsg).map(|t| t == srs).unwrap_or(false)
        }
        // No CRS in the file: trust the STAC metadata.
        Err(_) => stac_epsg == Some(epsg),
    }
}

/// Why reading an asset failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The asset cannot be used — missing, damaged, or too large to hold: exit 3.
    Data(String),
    /// The server refused the request (HTTP 403: an expired or wrong signature, say): exit 3,
    /// unless signing the href again helps.
    Forbidden(String),
    /// The server did not answer in time, or failed after the retries: exit 4.
    Remote(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Data(m) | ReadError::Forbidden(m) | ReadError::Remote(m) => f.write_str(m),
        }
    }
}

/// How `stack` (and `read`) read a file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ReadOptions<'a> {
    /// The band of the file to read, from 1 (`stack` reads band 1 of each asset).
    pub band: usize,
    /// The resampling method.
    pub resampling: Resampling,
    /// GDAL_NUM_THREADS of the read (block decoding, warp kernel).
    pub gdal_threads: usize,
    /// Timeouts and retries of HTTP reads.
    pub http: HttpOptions,
    /// The GDAL drivers a file may be opened with (short names: `GTiff`, ...).
    pub drivers: &'a [&'a str],
}

/// Reads band `options.band` of `asset` onto `grid` (whose CRS is `EPSG:epsg`) into `out`
/// (row-major, `grid.len()` values, pre-filled with NaN): raw values, nodata as NaN, then
/// `value * scale + offset`.
///
/// The file is opened with `options.drivers` only. Before any pixel is read, the stored blocks
/// under the window are checked ([`Checker`]), and a file read whole is checked against the
/// asset's `file:checksum`. Any failure GDAL reports while reading counts, even from a call that
/// returned success. When a remote read fails and GDAL names no HTTP status (it names none for a
/// range request refused mid-file), the server is asked once more (a HEAD) for it.
///
/// # Errors
/// [`ReadError::Remote`] when the server timed out or failed (429, 5xx, unreachable) after the
/// retries; [`ReadError::Forbidden`] for HTTP 403; [`ReadError::Data`] for anything else (a
/// missing file, one no allowed driver opens, a damaged block, a window too large to hold). The
/// message says what was being read (band, block or window) and what GDAL said.
pub(crate) fn read_asset(
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    options: ReadOptions,
    out: &mut [f32],
) -> Result<ReadPath, ReadError> {
    let capture = ErrorCapture::start();
    gdalx::set_thread_options(options.gdal_threads, options.http);
    let path = gdalx::gdal_path(&asset.href);
    let result =
        read_inner(&path, asset, grid, epsg, &options, out).and_then(
            |p| match gdalx::take_failures() {
                Some(f) => Err(format!("reading band {}: {f}", options.band)),
                None => Ok(p),
            },
        );
    let read = match result {
        Ok(p) => p,
        Err(mut message) => {
            let mut messages = capture.messages();
            let remote = gdalx::is_network_path(&path);
            if remote {
                gdalx::forget_remote(&path);
                // GDAL does not say why a range request failed mid-file (a 403 once a signature
                // expired, say): the bytes are just missing. Ask the server once.
                if failed_status(&messages).is_none() {
                    if let Err(e) = gdalx::remote_stat(&path) {
                        message =
                            format!("{message} (asked again, the server says: {})", e.message);
                        messages.push(GdalMessage {
                            class: gdal_sys::CPLErr::CE_Failure,
                            number: 0,
                            text: e.message,
                        });
                    }
                    gdalx::forget_remote(&path);
                }
            }
            drop(capture);
            return Err(classify(message, &messages, options.http, remote));
        }
    };
    if asset.scale != 1.0 || asset.offset != 0.0 {
        let (scale, offset) = (asset.scale as f32, asset.offset as f32);
        for v in out.iter_mut() {
            *v = *v * scale + offset;
        }
    }
    Ok(read)
}

/// The reason phrase of common HTTP statuses.
fn reason(status: u16) -> &'static str {
    match status {
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        408 => " Request Timeout",
        410 => " Gone",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}

/// When asking the server about a file (a HEAD, [`gdalx::remote_stat`]) failed the way a read
/// would: no answer within the timeout, no connection, 408, 429 or 5xx after the retries (a
/// remote failure, exit 4, that reading would only repeat). None for anything else (a 403, a
/// server that refuses HEAD), which the read itself reports if it matters.
pub(crate) fn probe_failure(e: &gdalx::ProbeError, http: HttpOptions) -> Option<ReadError> {
    let messages = [GdalMessage {
        class: gdal_sys::CPLErr::CE_Failure,
        number: 0,
        text: e.message.clone(),
    }];
    let what = format!("asking for its size and version: {}", e.message);
    match classify(what, &messages, http, true) {
        remote @ ReadError::Remote(_) => Some(remote),
        _ => None,
    }
}

/// The HTTP status of the failures among `messages` (the highest; 0 when the server could not
/// be reached and answered nothing else).
fn failed_status(messages: &[GdalMessage]) -> Option<u16> {
    messages
        .iter()
        .filter(|m| m.class >= gdal_sys::CPLErr::CE_Failure)
        .filter_map(|m| http_status(&m.text))
        .max_by_key(|&s| (s != 0, s))
}

/// Sorts a failed read into bad data and remote failures by what GDAL reported over HTTP: a
/// timeout, no connection, 408, 429 or 5xx (after GDAL's retries) is the server's failure; any
/// other 4xx says the asset cannot be had (missing, expired signature).
fn classify(
    message: String,
    messages: &[GdalMessage],
    http: HttpOptions,
    remote: bool,
) -> ReadError {
    if !remote {
        return ReadError::Data(message);
    }
    let failures: Vec<&GdalMessage> = messages
        .iter()
        .filter(|m| m.class >= gdal_sys::CPLErr::CE_Failure)
        .collect();
    let timed_out = failures.iter().any(|m| {
        let t = m.text.to_ascii_lowercase();
        t.contains("timed out") || t.contains("timeout was reached") || t.contains("too slow")
    });
    let retries = match http.retries {
        1 => "1 retry".to_string(),
        n => format!("{n} retries"),
    };
    if timed_out {
        return ReadError::Remote(format!(
            "timed out: no answer within the {} s timeout ({retries}): {message}",
            http.timeout
        ));
    }
    match failed_status(messages) {
        Some(s @ (408 | 429 | 500..=599)) => {
            ReadError::Remote(format!("HTTP {s}{} after {retries}: {message}", reason(s)))
        }
        Some(0) => ReadError::Remote(format!(
            "the server could not be reached ({retries}): {message}"
        )),
        Some(403) => ReadError::Forbidden(format!("HTTP 403{}: {message}", reason(403))),
        Some(s @ 400..=499) => ReadError::Data(format!("HTTP {s}{}: {message}", reason(s))),
        _ => ReadError::Data(message),
    }
}

fn read_inner(
    path: &str,
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    options: &ReadOptions,
    out: &mut [f32],
) -> Result<ReadPath, String> {
    let resampling = options.resampling;
    // The full URL of a signed href, whose query the item's href in messages leaves out: the
    // engine redacts its secrets (`sig`, tokens) in every message it reports.
    let opening = || match asset.href != asset.public_href() {
        true => format!("opening `{}`", asset.href),
        false => "opening the file".to_string(),
    };
    let opened = gdalx::open_raster(path, options.drivers);
    let ds = gdalx::step(opening, opened).map_err(|failed| {
        match not_allowed(path, options.drivers) {
            Some(why) => format!("{failed}; {why}"),
            None => failed,
        }
    })?;
    if ds.raster_count() < 1 {
        return Err("the file has no raster band".into());
    }
    if options.band < 1 || options.band > ds.raster_count() {
        return Err(format!(
            "the file has {} band(s), not a band {}",
            ds.raster_count(),
            options.band
        ));
    }
    let gt = gdalx::step(|| "no geotransform".into(), ds.geo_transform())?;
    let name = format!("band {}", options.band);
    let band = gdalx::step(|| format!("opening {name}"), ds.rasterband(options.band))?;
    let validity = Validity::of(&band, &name, asset)?;
    let mut source = Source {
        band: &band,
        index: options.band,
        name,
        validity: &validity,
        checker: Checker::new(path),
        checksum: asset.checksum.as_deref(),
    };
    let same = same_crs(&ds, epsg, asset.epsg);
    // Probing the file's CRS for an EPSG code may report failures that only mean "no code".
    let _ = gdalx::take_failures();
    if same {
        if let Some((col_off, row_off)) = aligned_offset(&gt, &grid.transform) {
            window_read(&mut source, (col_off, row_off), grid, out)?;
            return Ok(ReadPath::Window);
        }
        if resampling == Resampling::Nearest {
            if let Some(rep) = replication(&gt, &grid.transform) {
                replicate_read(&mut source, rep, grid, out)?;
                return Ok(ReadPath::Replicate);
            }
        }
    }
    warp_read(&ds, &mut source, asset, grid, epsg, resampling, out)?;
    Ok(ReadPath::Warp)
}

/// A band of an open file, how its invalid pixels are marked, and the checks of its bytes.
struct Source<'a> {
    band: &'a gdal::raster::RasterBand<'a>,
    /// The band's number in the file, from 1.
    index: usize,
    /// `band N`, for messages.
    name: String,
    validity: &'a Validity<'a>,
    checker: Checker,
    /// The asset's `file:checksum`.
    checksum: Option<&'a str>,
}

impl Source<'_> {
    /// Checks the stored blocks of the band (and of its mask) under `window` at full
    /// resolution, and the whole file against the asset's checksum when the window is all of it.
    fn check(&mut self, window: Window) -> Result<(), String> {
        self.checker.check_blocks(self.band, &self.name, window)?;
        if let Some(mask) = &self.validity.mask {
            self.checker
                .check_blocks(mask, &format!("the mask of {}", self.name), window)?;
        }
        if let Some(sum) = self.checksum {
            if window.covers(self.band.size()) {
                self.checker.check_file(sum)?;
            }
        }
        Ok(())
    }
}

/// How a band (`band N` in messages) marks invalid pixels: its nodata value (else the
/// asset's), and the file's mask band when it has one that the nodata value does not express
/// (an internal or sidecar mask, per dataset or per band, or an alpha band).
struct Validity<'a> {
    nodata: Option<f64>,
    mask: Option<gdal::raster::RasterBand<'a>>,
    /// `the mask of band N`, for messages.
    mask_name: String,
}

impl<'a> Validity<'a> {
    fn of(
        band: &'a gdal::raster::RasterBand<'a>,
        name: &str,
        asset: &AssetRef,
    ) -> Result<Self, String> {
        let flags = gdalx::step(
            || format!("reading the mask flags of {name}"),
            band.mask_flags(),
        )?;
        let mask_name = format!("the mask of {name}");
        let mask = if flags.is_all_valid() || flags.is_nodata() {
            None
        } else {
            Some(gdalx::step(
                || format!("opening {mask_name}"),
                band.open_mask_band(),
            )?)
        };
        Ok(Validity {
            nodata: band.no_data_value().or(asset.nodata),
            mask,
            mask_name,
        })
    }

    /// Sets to NaN the invalid values of the `nw x nh` source window at column `c0`, row `r0`
    /// (`values` row-major): nodata values, and pixels the mask band marks 0.
    fn apply(
        &self,
        values: &mut [f32],
        (c0, r0): (i64, i64),
        (nw, nh): (usize, usize),
    ) -> Result<(), String> {
        if let Some(nd) = self.nodata {
            let nd = nd as f32;
            values
                .iter_mut()
                .filter(|v| **v == nd)
                .for_each(|v| *v = f32::NAN);
        }
        if let Some(mask) = &self.mask {
            let valid = read_window::<u8>(mask, &self.mask_name, (c0, r0), (nw, nh))?;
            for (v, &m) in values.iter_mut().zip(&valid) {
                if m == 0 {
                    *v = f32::NAN;
                }
            }
        }
        Ok(())
    }
}

/// Why a file that did not open may not be read: it needs a driver other than `drivers`.
pub(crate) fn not_allowed(path: &str, drivers: &[&str]) -> Option<String> {
    let driver = gdalx::identify_driver(path)?;
    // Identifying may report failures of its own; the open failure is the one that counts.
    let _ = gdalx::take_failures();
    if drivers.iter().any(|d| d.eq_ignore_ascii_case(&driver)) {
        return None;
    }
    let indirect = if INDIRECT_DRIVERS
        .iter()
        .any(|d| d.eq_ignore_ascii_case(&driver))
    {
        " (it names other files to read, so it is never opened for an item of a remote catalog)"
    } else {
        ""
    };
    Some(format!(
        "the file is for GDAL's {driver} driver{indirect}, and files are opened with {} only \
         (`drivers` opts into others)",
        drivers.join(", ")
    ))
}

/// The GDAL drivers files may be opened with: GTiff (GeoTIFF, COG), then the drivers of a
/// node's `drivers` param (GDAL short names), each once.
///
/// # Errors
/// A [`flow_core::ParamError`] on `drivers` for `COG` (read by GTiff) and for a name that is
/// not a GDAL driver opening rasters.
pub(crate) fn allowed_drivers(
    extra: Option<&[String]>,
) -> Result<Vec<String>, flow_core::ParamError> {
    use flow_core::ParamError;
    let mut drivers = vec![gdalx::GTIFF.to_string()];
    for d in extra.into_iter().flatten() {
        if d.eq_ignore_ascii_case("COG") {
            return Err(ParamError::new(
                "drivers",
                "COGs are read by the GTiff driver, which is always allowed",
            )
            .with_help("leave `COG` out of `drivers`"));
        }
        if !gdalx::opens_rasters(d) {
            return Err(ParamError::new(
                "drivers",
                format!("`{d}` is not a GDAL driver that opens rasters"),
            )
            .with_help("use GDAL's short driver names, as `gdalinfo --formats` lists them (JP2OpenJPEG, netCDF, ...)"));
        }
        if !drivers.iter().any(|x| x.eq_ignore_ascii_case(d)) {
            drivers.push(d.clone());
        }
    }
    Ok(drivers)
}

/// GDAL drivers whose files name other files or datasets to read (a VRT can name any local
/// file): never used for the items of a remote catalog.
pub(crate) const INDIRECT_DRIVERS: [&str; 4] = ["VRT", "DERIVED", "GTI", "MEM"];

fn window_read(
    source: &mut Source,
    (col_off, row_off): (i64, i64),
    grid: &Grid,
    out: &mut [f32],
) -> Result<(), String> {
    let band = source.band;
    let (sw, sh) = band.size();
    let (w, h) = (grid.width as i64, grid.height as i64);
    // Source columns col_off .. col_off + w, clipped to the file.
    let (c0, c1) = (col_off.max(0), (col_off + w).min(sw as i64));
    let (r0, r1) = (row_off.max(0), (row_off + h).min(sh as i64));
    if c0 >= c1 || r0 >= r1 {
        return Ok(()); // no overlap: all nodata
    }
    let (nw, nh) = ((c1 - c0) as usize, (r1 - r0) as usize);
    let (dc, dr) = ((c0 - col_off) as usize, (r0 - row_off) as usize);
    let window = Window::of((c0, r0), (nw, nh));
    source.check(window)?;
    if nw == grid.width && nh == grid.height {
        // The whole plane: straight into the output.
        gdalx::step(
            || format!("reading {}, {window}", source.name),
            band.read_into_slice::<f32>((c0 as isize, r0 as isize), (nw, nh), (nw, nh), out, None),
        )?;
        source.validity.apply(out, (c0, r0), (nw, nh))?;
    } else {
        let mut buf = read_window::<f32>(band, &source.name, (c0, r0), (nw, nh))?;
        source.validity.apply(&mut buf, (c0, r0), (nw, nh))?;
        for (r, row) in buf.chunks_exact(nw).enumerate() {
            let start = (dr + r) * grid.width + dc;
            out[start..start + nw].copy_from_slice(row);
        }
    }
    Ok(())
}

/// The `nw x nh` source pixels of `band` (named `what` in messages) from column `c0`, row `r0`,
/// row-major, with one RasterIO.
fn read_window<T: gdal::raster::GdalType + Copy + Default>(
    band: &gdal::raster::RasterBand,
    what: &str,
    (c0, r0): (i64, i64),
    (nw, nh): (usize, usize),
) -> Result<Vec<T>, String> {
    let window = Window::of((c0, r0), (nw, nh));
    let len = nw
        .checked_mul(nh)
        .ok_or_else(|| format!("reading {what}, {window}: too many pixels"))?;
    let mut buf = alloc::filled(len, T::default())
        .map_err(|e| format!("reading {what}, {window}: the buffer {e}"))?;
    gdalx::step(
        || format!("reading {what}, {window}"),
        band.read_into_slice::<T>(
            (c0 as isize, r0 as isize),
            (nw, nh),
            (nw, nh),
            &mut buf,
            None,
        ),
    )?;
    Ok(buf)
}

/// Reads the source pixels covering `grid` with one RasterIO and replicates each onto the
/// `factor.0 x factor.1` target pixels it covers; target pixels outside the source are NaN.
fn replicate_read(
    source: &mut Source,
    rep: Replication,
    grid: &Grid,
    out: &mut [f32],
) -> Result<(), String> {
    let band = source.band;
    let (sw, sh) = band.size();
    let ((fx, fy), (ox, oy)) = (rep.factor, rep.offset);
    let (w, h) = (grid.width as i64, grid.height as i64);
    // Target column c lies in source column (c - ox) div fx.
    let (c0, c1) = (
        (-ox).div_euclid(fx).max(0),
        (w - 1 - ox).div_euclid(fx).min(sw as i64 - 1),
    );
    let (r0, r1) = (
        (-oy).div_euclid(fy).max(0),
        (h - 1 - oy).div_euclid(fy).min(sh as i64 - 1),
    );
    out.fill(f32::NAN);
    if c0 > c1 || r0 > r1 {
        return Ok(()); // no overlap: all nodata
    }
    let (nw, nh) = ((c1 - c0 + 1) as usize, (r1 - r0 + 1) as usize);
    source.check(Window::of((c0, r0), (nw, nh)))?;
    let mut buf = read_window::<f32>(band, &source.name, (c0, r0), (nw, nh))?;
    source.validity.apply(&mut buf, (c0, r0), (nw, nh))?;
    // Target columns covered by source columns c0..=c1, and target rows by rows r0..=r1.
    let (tc0, tc1) = ((ox + c0 * fx).max(0), (ox + (c1 + 1) * fx).min(w));
    let (tr0, tr1) = ((oy + r0 * fy).max(0), (oy + (r1 + 1) * fy).min(h));
    let width = grid.width;
    let mut previous: Option<(i64, usize)> = None;
    for tr in tr0..tr1 {
        let sr = (tr - oy).div_euclid(fy);
        let start = tr as usize * width;
        match previous {
            // Same source row as the target row above: copy it.
            Some((prev_sr, prev_start)) if prev_sr == sr => {
                out.copy_within(
                    prev_start + tc0 as usize..prev_start + tc1 as usize,
                    start + tc0 as usize,
                );
            }
            _ => {
                let src_row = &buf[(sr - r0) as usize * nw..][..nw];
                let row = &mut out[start..start + width];
                for tc in tc0..tc1 {
                    row[tc as usize] = src_row[((tc - ox).div_euclid(fx) - c0) as usize];
                }
            }
        }
        previous = Some((sr, start));
    }
    Ok(())
}

/// GDAL's warp working memory per reader, in MB (`-wm`): the warp goes chunk by chunk within it.
const WARP_MEMORY_MB: u32 = 16;

/// The full-resolution source pixels a warp onto `grid` reads — the grid's bounds in the file's
/// CRS, in pixels, grown by a margin for the kernel and clipped to the file — and the size of a
/// target pixel in source pixels. None when unknown (a rotated geotransform, a CRS that does not
/// transform) or when the grid misses the file.
fn warp_window(
    ds: &Dataset,
    gt: &[f64; 6],
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
) -> Option<(Window, f64)> {
    if gt[2] != 0.0 || gt[4] != 0.0 || gt[1] == 0.0 || gt[5] == 0.0 {
        return None;
    }
    let (sw, sh) = ds.raster_size();
    let src_srs = match ds.spatial_ref() {
        Ok(mut s) => {
            s.set_axis_mapping_strategy(
                gdal::spatial_ref::AxisMappingStrategy::TraditionalGisOrder,
            );
            s
        }
        Err(_) => crate::grid::srs(asset.epsg?).ok()?,
    };
    let t = gdal::spatial_ref::CoordTransform::new(&crate::grid::srs(epsg).ok()?, &src_srs).ok()?;
    let g = &grid.transform;
    let (x1, y1) = (
        g[0] + grid.width as f64 * g[1],
        g[3] + grid.height as f64 * g[5],
    );
    let b = t
        .transform_bounds(
            &[g[0].min(x1), g[3].min(y1), g[0].max(x1), g[3].max(y1)],
            21,
        )
        .ok()?;
    let cols = [(b[0] - gt[0]) / gt[1], (b[2] - gt[0]) / gt[1]];
    let rows = [(b[1] - gt[3]) / gt[5], (b[3] - gt[3]) / gt[5]];
    let (cmin, cmax) = (cols[0].min(cols[1]), cols[0].max(cols[1]));
    let (rmin, rmax) = (rows[0].min(rows[1]), rows[0].max(rows[1]));
    if !(cmin.is_finite() && cmax.is_finite() && rmin.is_finite() && rmax.is_finite()) {
        return None;
    }
    let ratio = ((cmax - cmin) / grid.width as f64).min((rmax - rmin) / grid.height as f64);
    let margin = 2.0 + ratio.ceil().max(1.0);
    let clip = |v: f64, n: usize| v.clamp(0.0, n as f64) as usize;
    let (c0, c1) = (
        clip((cmin - margin).floor(), sw),
        clip((cmax + margin).ceil(), sw),
    );
    let (r0, r1) = (
        clip((rmin - margin).floor(), sh),
        clip((rmax + margin).ceil(), sh),
    );
    (c0 < c1 && r0 < r1).then_some((
        Window {
            col: c0,
            row: r0,
            width: c1 - c0,
            height: r1 - r0,
        },
        ratio,
    ))
}

/// The overview a warp reads when each target pixel spans `ratio` source pixels (None: full
/// resolution) — GDAL's own choice for `-ovr AUTO`: the overview whose reduction is the closest
/// to the ratio without being coarser (within 0.1).
fn overview_for(band: &gdal::raster::RasterBand, ratio: f64) -> Option<usize> {
    let n = band.overview_count().ok().filter(|&n| n > 0)? as isize;
    if ratio.is_nan() || ratio <= 1.0 {
        return None;
    }
    let width = band.size().0 as f64;
    let reduction = |i: isize| -> f64 {
        if i < 0 {
            return 1.0;
        }
        band.overview(i as usize)
            .map(|o| width / o.size().0.max(1) as f64)
            .unwrap_or(f64::INFINITY)
    };
    let mut i = -1;
    while i < n - 1 {
        let (r, next) = (reduction(i), reduction(i + 1));
        if (r < ratio && next > ratio) || (r - ratio).abs() < 0.1 {
            break;
        }
        i += 1;
    }
    usize::try_from(i).ok()
}

/// Checks what a warp reads: the blocks of the band (and its mask) under `window` at the chosen
/// level — the full resolution, or overview `level` with the window scaled onto it.
fn check_warp_source(
    source: &mut Source,
    window: Window,
    level: Option<usize>,
) -> Result<(), String> {
    let Some(level) = level else {
        return source.check(window);
    };
    let band = source.band;
    let overview = gdalx::step(
        || format!("opening overview {level} of {}", source.name),
        band.overview(level),
    )?;
    let (w, h) = band.size();
    let (ow, oh) = overview.size();
    let scale = |v: usize, from: usize, to: usize, up: bool| {
        let x = v as f64 * to as f64 / from.max(1) as f64;
        (if up { x.ceil() } else { x.floor() }).clamp(0.0, to as f64) as usize
    };
    let (c0, c1) = (
        scale(window.col, w, ow, false),
        scale(window.col + window.width, w, ow, true),
    );
    let (r0, r1) = (
        scale(window.row, h, oh, false),
        scale(window.row + window.height, h, oh, true),
    );
    let scaled = Window {
        col: c0,
        row: r0,
        width: c1.saturating_sub(c0),
        height: r1.saturating_sub(r0),
    };
    let what = format!("{}, overview {level}", source.name);
    source.checker.check_blocks(&overview, &what, scaled)?;
    if source.validity.mask.is_some() {
        let mask = gdalx::step(
            || format!("opening the mask of {what}"),
            overview.open_mask_band(),
        )?;
        source
            .checker
            .check_blocks(&mask, &format!("the mask of {what}"), scaled)?;
    }
    Ok(())
}

fn warp_read(
    ds: &Dataset,
    source: &mut Source,
    asset: &AssetRef,
    grid: &Grid,
    epsg: u32,
    resampling: Resampling,
    out: &mut [f32],
) -> Result<(), String> {
    let validity = source.validity;
    let wkt = crate::grid::srs(epsg)
        .map_err(|e| e.to_string())?
        .to_wkt()
        .map_err(|e| e.to_string())?;
    let gt = gdalx::step(|| "no geotransform".into(), ds.geo_transform())?;
    let planned = warp_window(ds, &gt, asset, grid, epsg);
    // Transforming bounds may report failures that only mean "not transformable".
    let _ = gdalx::take_failures();
    let level = planned.and_then(|(_, ratio)| overview_for(source.band, ratio));
    if let Some((window, _)) = planned {
        check_warp_source(source, window, level)?;
    }
    let mut args: Vec<String> = vec![
        "-r".into(),
        resampling.gdalwarp_name().into(),
        "-wm".into(),
        WARP_MEMORY_MB.to_string(),
        "-wo".into(),
        "INIT_DEST=NO_DATA".into(),
        "-dstnodata".into(),
        "nan".into(),
        // The level checked above (GDAL's AUTO would choose the same).
        "-ovr".into(),
        level.map_or("NONE".to_string(), |l| l.to_string()),
    ];
    if ds.spatial_ref().is_err() {
        if let Some(e) = asset.epsg {
            args.extend(["-s_srs".into(), format!("EPSG:{e}")]);
        }
    }
    let _ = gdalx::take_failures();
    // GDAL's warp uses either the nodata value or the file's mask band, not both: with a mask
    // band, the warp follows the mask and the nodata values are turned into NaN afterwards
    // (exact with nearest; with other kernels a nodata pixel outside the mask is averaged in).
    match (validity.nodata, &validity.mask) {
        (Some(_), Some(_)) => args.extend(["-srcnodata".into(), "None".into()]),
        (Some(nd), None) => args.extend(["-srcnodata".into(), format!("{nd}")]),
        (None, _) => {}
    }
    let what = || match planned {
        Some((window, _)) => format!("warping {} ({window}) onto the grid", source.name),
        None => format!("warping {} onto the grid", source.name),
    };
    // GDAL's warp (before 3.7, no `-srcband`) warps every band of its source but an alpha
    // band: a file of several is warped through a virtual dataset of the one band read (its
    // alpha band, if any, as its mask).
    let alpha = (1..=ds.raster_count()).find(|&i| {
        ds.rasterband(i)
            .is_ok_and(|b| b.color_interpretation() == gdal::raster::ColorInterpretation::AlphaBand)
    });
    let bands = ds.raster_count() - usize::from(alpha.is_some());
    let band_only;
    let from = if source.index != 1 || bands > 1 {
        band_only = gdalx::step(
            || format!("selecting {} for the warp", source.name),
            gdalx::band_subset(ds, source.index, alpha),
        )?;
        &band_only
    } else {
        ds
    };
    let warped = gdalx::warp_into(from, &args, grid, &wkt, out);
    gdalx::step(what, warped)?;
    if let (Some(nd), Some(_)) = (validity.nodata, &validity.mask) {
        let nd = nd as f32;
        out.iter_mut()
            .filter(|v| **v == nd)
            .for_each(|v| *v = f32::NAN);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_needs_same_pixel_size_and_whole_offsets() {
        let src = [584000.0, 10.0, 0.0, 5034000.0, 0.0, -10.0];
        assert_eq!(
            aligned_offset(&src, &[585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]),
            Some((108, 105))
        );
        assert_eq!(
            aligned_offset(&src, &[583000.0, 10.0, 0.0, 5035000.0, 0.0, -10.0]),
            Some((-100, -100))
        );
        assert_eq!(
            aligned_offset(&src, &[585085.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]),
            None
        );
        assert_eq!(
            aligned_offset(&src, &[585080.0, 20.0, 0.0, 5032950.0, 0.0, -20.0]),
            None
        );
    }

    #[test]
    fn replication_needs_integer_factors_and_a_source_origin_on_the_grid() {
        let src = [583980.0, 20.0, 0.0, 5034000.0, 0.0, -20.0];
        assert_eq!(
            replication(&src, &[585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]),
            Some(Replication {
                factor: (2, 2),
                offset: (-110, -105)
            })
        );
        let src60 = [583980.0, 60.0, 0.0, 5034000.0, 0.0, -60.0];
        assert_eq!(
            replication(&src60, &[585060.0, 20.0, 0.0, 5034100.0, 0.0, -20.0]),
            Some(Replication {
                factor: (3, 3),
                offset: (-54, 5)
            })
        );
        // Same size (a window read), a coarser grid, a half-pixel shift, a non-integer factor.
        for dst in [
            [585080.0, 20.0, 0.0, 5032950.0, 0.0, -20.0],
            [585080.0, 40.0, 0.0, 5032950.0, 0.0, -40.0],
            [585085.0, 10.0, 0.0, 5032950.0, 0.0, -10.0],
            [585080.0, 8.0, 0.0, 5032952.0, 0.0, -8.0],
        ] {
            assert_eq!(replication(&src, &dst), None, "{dst:?}");
        }
    }

    fn scene_assets(dir: &std::path::Path, keys: &[&str]) -> Vec<AssetRef> {
        let items = crate::scene::generate_timberlea(dir).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&items).unwrap()).unwrap();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let item = crate::stac::item_ref(&v["features"][0], &keys, items.parent().unwrap(), None);
        item.assets.into_iter().map(Option::unwrap).collect()
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    /// Options of a read with `resampling` and `threads` GDAL threads.
    fn options(resampling: Resampling, threads: usize) -> ReadOptions<'static> {
        ReadOptions {
            band: 1,
            resampling,
            gdal_threads: threads,
            http: HttpOptions::DEFAULT,
            drivers: &[gdalx::GTIFF],
        }
    }

    /// The nearest warp of `asset` onto `grid`, as the read would do without replication.
    fn warped(asset: &AssetRef, grid: &Grid) -> Vec<f32> {
        let path = gdalx::gdal_path(&asset.href);
        let ds = gdalx::open_raster(&path, &[gdalx::GTIFF]).unwrap();
        let band = ds.rasterband(1).unwrap();
        let validity = Validity::of(&band, "band 1", asset).unwrap();
        let mut source = Source {
            band: &band,
            index: 1,
            name: "band 1".into(),
            validity: &validity,
            checker: Checker::new(&path),
            checksum: None,
        };
        let mut out = vec![f32::NAN; grid.len()];
        warp_read(
            &ds,
            &mut source,
            asset,
            grid,
            32618,
            Resampling::Nearest,
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn coarser_aligned_bands_are_replicated_exactly_like_the_nearest_warp() {
        let dir = tempfile::tempdir().unwrap();
        // B01 / B09 60 m, B05 / B8A 20 m, B04 10 m; the scene's origin is (583980, 5034000) and
        // its north-east corner (588420, 5034000).
        let assets = scene_assets(dir.path(), &["B01", "B05", "B8A", "B09", "B04"]);
        let grids = [
            // The notebook AOI at 10 m.
            Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, 228, 207),
            // Odd offsets: target edges cut through source pixels.
            Grid::north_up("EPSG:32618", 585090.0, 5032970.0, 10.0, 131, 77),
            // Partly outside the scene (north-east corner), and wholly outside.
            Grid::north_up("EPSG:32618", 588300.0, 5034100.0, 10.0, 20, 20),
            Grid::north_up("EPSG:32618", 588150.0, 5034130.0, 10.0, 41, 33),
            Grid::north_up("EPSG:32618", 590000.0, 5034100.0, 10.0, 5, 5),
            // 60 m onto 20 m.
            Grid::north_up("EPSG:32618", 585060.0, 5034100.0, 20.0, 60, 50),
        ];
        let mut replicated = 0;
        for grid in &grids {
            for asset in &assets {
                let mut out = vec![f32::NAN; grid.len()];
                let path = read_asset(
                    asset,
                    grid,
                    32618,
                    options(Resampling::Nearest, 1),
                    &mut out,
                )
                .unwrap();
                let native = asset.transform.unwrap()[1];
                let expected = if native == grid.transform[1] {
                    ReadPath::Window
                } else if native > grid.transform[1] {
                    ReadPath::Replicate
                } else {
                    ReadPath::Warp
                };
                assert_eq!(path, expected, "{} on {:?}", asset.href, grid.transform);
                if path == ReadPath::Replicate {
                    replicated += 1;
                    let mut want = warped(asset, grid);
                    let (scale, offset) = (asset.scale as f32, asset.offset as f32);
                    for v in want.iter_mut() {
                        *v = *v * scale + offset;
                    }
                    assert!(
                        same_bits(&out, &want),
                        "{} on {:?}: replication differs from the nearest warp",
                        asset.href,
                        grid.transform
                    );
                    if grid.transform[0] < 588000.0 {
                        assert!(out.iter().any(|v| v.is_finite()), "{}", asset.href);
                    }
                }
            }
        }
        assert!(replicated >= 20, "{replicated}");
        // Other resampling methods still warp.
        let grid = &grids[0];
        let mut out = vec![f32::NAN; grid.len()];
        let path = read_asset(
            &assets[1],
            grid,
            32618,
            options(Resampling::Bilinear, 2),
            &mut out,
        )
        .unwrap();
        assert_eq!(path, ReadPath::Warp);
    }
    /// A 4 x 4 GeoTIFF at `pixel` m (values 1..=16) with, when `mask` is given, an internal
    /// per-dataset mask (0 = invalid) or an alpha band; without alpha, pixel 0 is nodata (0).
    fn masked_tiff(path: &std::path::Path, pixel: f64, mask: Option<&[u8]>, alpha: bool) {
        use gdal::raster::ColorInterpretation;
        let driver = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        // GDAL takes an alpha band as the mask of UInt16 (or Byte) data only.
        let mut ds = if alpha {
            driver.create_with_band_type::<u16, _>(path, 4, 4, 2)
        } else {
            driver.create_with_band_type::<f32, _>(path, 4, 4, 1)
        }
        .unwrap();
        ds.set_geo_transform(&[585000.0, pixel, 0.0, 5033000.0, 0.0, -pixel])
            .unwrap();
        ds.set_spatial_ref(&crate::grid::srs(32618).unwrap())
            .unwrap();
        let mut values: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let mut band = ds.rasterband(1).unwrap();
        if !alpha {
            // (GDAL ignores an alpha band when the band has a nodata value.)
            values[0] = 0.0;
            band.set_no_data_value(Some(0.0)).unwrap();
        }
        let mut buf = gdal::raster::Buffer::new((4, 4), values);
        band.write((0, 0), (4, 4), &mut buf).unwrap();
        if let Some(m) = mask {
            if alpha {
                let mut a = ds.rasterband(2).unwrap();
                a.set_color_interpretation(ColorInterpretation::AlphaBand)
                    .unwrap();
                let v: Vec<u16> = m.iter().map(|&x| x as u16 * 65535).collect();
                let mut buf = gdal::raster::Buffer::new((4, 4), v);
                a.write((0, 0), (4, 4), &mut buf).unwrap();
            } else {
                let mut band = ds.rasterband(1).unwrap();
                // Inside the TIFF, as in COGs (flow reads without listing sidecar files).
                gdal::config::set_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK", "YES")
                    .unwrap();
                band.create_mask_band(true).unwrap();
                let mut mb = band.open_mask_band().unwrap();
                let v: Vec<u8> = m.iter().map(|&x| x * 255).collect();
                let mut buf = gdal::raster::Buffer::new((4, 4), v);
                mb.write((0, 0), (4, 4), &mut buf).unwrap();
            }
        }
    }

    #[test]
    fn mask_and_alpha_bands_are_honoured_by_every_read_path() {
        let dir = tempfile::tempdir().unwrap();
        // Invalid: pixels 5 and 10 (row-major); pixel 0 is nodata.
        let mut mask = [1u8; 16];
        mask[5] = 0;
        mask[10] = 0;
        let asset = |name: &str| AssetRef {
            href: dir.path().join(name).to_string_lossy().into_owned(),
            epsg: Some(32618),
            transform: None,
            shape: None,
            scale: 1.0,
            offset: 0.0,
            nodata: None,
            band: Default::default(),
            checksum: None,
            signer: None,
        };
        for (name, m, alpha) in [
            ("plain.tif", None, false),
            ("mask.tif", Some(&mask[..]), false),
            ("alpha.tif", Some(&mask[..]), true),
        ] {
            // Same pixel size: the windowed read; 20 m onto 10 m: replication; 10 m onto 20 m:
            // the warp (each target pixel's centre on a source pixel corner: GDAL's nearest
            // takes the pixel below and to the right, as `src` does).
            for (pixel, target, path) in [
                (10.0, 10.0, ReadPath::Window),
                (20.0, 10.0, ReadPath::Replicate),
                (10.0, 20.0, ReadPath::Warp),
            ] {
                let file = format!("{pixel}_{name}");
                masked_tiff(&dir.path().join(&file), pixel, m, alpha);
                let n = (4.0 * pixel / target) as usize;
                let grid = Grid::north_up("EPSG:32618", 585000.0, 5033000.0, target, n, n);
                let mut out = vec![f32::NAN; grid.len()];
                let got = read_asset(
                    &asset(&file),
                    &grid,
                    32618,
                    options(Resampling::Nearest, 1),
                    &mut out,
                )
                .unwrap();
                assert_eq!(got, path, "{file}");
                // The source pixel under each target pixel (nearest).
                let src = |r: usize, c: usize| -> usize {
                    let (y, x) = ((r as f64 + 0.5) * target, (c as f64 + 0.5) * target);
                    (y / pixel) as usize * 4 + (x / pixel) as usize
                };
                for r in 0..n {
                    for c in 0..n {
                        let s = src(r, c);
                        let invalid = (s == 0 && !alpha) || (m.is_some() && mask[s] == 0);
                        let v = out[r * n + c];
                        if invalid {
                            assert!(v.is_nan(), "{file} {path:?} ({r}, {c}) = {v}: masked");
                        } else if path != ReadPath::Warp {
                            assert_eq!(v, (s + 1) as f32, "{file} ({r}, {c})");
                        } else {
                            assert!(v.is_finite(), "{file} ({r}, {c})");
                        }
                    }
                }
            }
        }
    }

    /// A 1024 x 1024 UInt16 COG at 10 m (DEFLATE, 256-pixel tiles, two overviews, an internal
    /// mask that hides the first row) at `path`.
    fn cog_with_overviews_and_mask(dir: &std::path::Path, path: &std::path::Path) {
        let tiff = dir.join("source.tif");
        let driver = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        let options =
            gdal::raster::RasterCreationOptions::from_iter(["TILED=YES", "COMPRESS=DEFLATE"]);
        let mut ds = driver
            .create_with_band_type_with_options::<u16, _>(&tiff, 1024, 1024, 1, &options)
            .unwrap();
        ds.set_geo_transform(&[585000.0, 10.0, 0.0, 5033000.0, 0.0, -10.0])
            .unwrap();
        ds.set_spatial_ref(&crate::grid::srs(32618).unwrap())
            .unwrap();
        let values: Vec<u16> = (0..1024 * 1024)
            .map(|i| (i % 1024 + i / 1024) as u16)
            .collect();
        let mut band = ds.rasterband(1).unwrap();
        band.write(
            (0, 0),
            (1024, 1024),
            &mut gdal::raster::Buffer::new((1024, 1024), values),
        )
        .unwrap();
        gdal::config::set_thread_local_config_option("GDAL_TIFF_INTERNAL_MASK", "YES").unwrap();
        band.create_mask_band(true).unwrap();
        let mut mask = band.open_mask_band().unwrap();
        let valid: Vec<u8> = (0..1024 * 1024)
            .map(|i| if i < 1024 { 0 } else { 255 })
            .collect();
        mask.write(
            (0, 0),
            (1024, 1024),
            &mut gdal::raster::Buffer::new((1024, 1024), valid),
        )
        .unwrap();
        let cog = gdal::DriverManager::get_driver_by_name("COG").unwrap();
        let options = gdal::raster::RasterCreationOptions::from_iter([
            "COMPRESS=DEFLATE",
            "BLOCKSIZE=256",
            "OVERVIEWS=AUTO",
        ]);
        ds.create_copy(&cog, path, &options).unwrap();
    }

    /// Flips 4 bytes in the middle of block (0, 0) of `band`.
    fn damage_first_block(path: &std::path::Path, band: &gdal::raster::RasterBand) {
        // SAFETY: a live band handle, only read through.
        let handle = unsafe { band.c_rasterband() };
        let item = |key: &str| -> u64 {
            let (k, d) = (std::ffi::CString::new(key).unwrap(), c"TIFF");
            // SAFETY: NUL-terminated key and domain; the value is copied at once.
            unsafe {
                let v = gdal_sys::GDALGetMetadataItem(handle.cast(), k.as_ptr(), d.as_ptr());
                assert!(!v.is_null(), "{key}");
                std::ffi::CStr::from_ptr(v)
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            }
        };
        let (offset, size) = (item("BLOCK_OFFSET_0_0"), item("BLOCK_SIZE_0_0"));
        let mut bytes = std::fs::read(path).unwrap();
        let at = (offset + size / 2) as usize;
        for b in &mut bytes[at..at + 4] {
            *b ^= 0xff;
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn damaged_blocks_of_overviews_and_masks_fail_the_reads_that_use_them() {
        let dir = tempfile::tempdir().unwrap();
        let asset = |path: &std::path::Path| AssetRef {
            href: path.to_string_lossy().into_owned(),
            epsg: Some(32618),
            transform: None,
            shape: None,
            scale: 1.0,
            offset: 0.0,
            nodata: None,
            band: Default::default(),
            checksum: None,
            signer: None,
        };
        // The full-resolution window (aligned), and a 20 m grid, which GDAL warps from overview 0.
        let fine = Grid::north_up("EPSG:32618", 585000.0, 5033000.0, 10.0, 300, 300);
        let coarse = Grid::north_up("EPSG:32618", 585000.0, 5033000.0, 20.0, 150, 150);
        let read = |path: &std::path::Path, grid: &Grid| {
            let mut out = vec![f32::NAN; grid.len()];
            read_asset(
                &asset(path),
                grid,
                32618,
                options(Resampling::Nearest, 1),
                &mut out,
            )
            .map(|p| (p, out))
        };
        let clean = dir.path().join("clean.tif");
        cog_with_overviews_and_mask(dir.path(), &clean);
        let (path, out) = read(&clean, &fine).unwrap();
        assert_eq!(path, ReadPath::Window);
        assert!(
            out[..300].iter().all(|v| v.is_nan()),
            "the mask hides row 0"
        );
        assert_eq!(out[300 + 5], 6.0);
        let (path, out) = read(&clean, &coarse).unwrap();
        assert_eq!(path, ReadPath::Warp);
        assert!(out[150..].iter().all(|v| v.is_finite()));

        // A damaged tile of overview 0: the coarse read fails, naming it; the fine one is fine.
        let ovr = dir.path().join("overview.tif");
        std::fs::copy(&clean, &ovr).unwrap();
        {
            let ds = gdalx::open_raster(&ovr.to_string_lossy(), &[gdalx::GTIFF]).unwrap();
            let band = ds.rasterband(1).unwrap();
            damage_first_block(&ovr, &band.overview(0).unwrap());
        }
        let err = read(&ovr, &coarse).unwrap_err();
        let ReadError::Data(message) = &err else {
            panic!("{err:?}")
        };
        for needle in ["band 1, overview 0", "block (0, 0)", "Adler-32"] {
            assert!(message.contains(needle), "`{needle}` in {message}");
        }
        assert!(read(&ovr, &fine).is_ok());

        // A damaged tile of the mask: the full-resolution read fails, naming the mask.
        let masked = dir.path().join("mask.tif");
        std::fs::copy(&clean, &masked).unwrap();
        {
            let ds = gdalx::open_raster(&masked.to_string_lossy(), &[gdalx::GTIFF]).unwrap();
            let band = ds.rasterband(1).unwrap();
            damage_first_block(&masked, &band.open_mask_band().unwrap());
        }
        let err = read(&masked, &fine).unwrap_err().to_string();
        assert!(err.contains("the mask of band 1, block (0, 0)"), "{err}");
    }

    #[test]
    fn a_file_read_whole_is_checked_against_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut asset = scene_assets(dir.path(), &["B01"]).remove(0);
        let bytes = std::fs::read(&asset.href).unwrap();
        // B01 is 60 m: the whole scene on a 60 m grid reads all of it.
        let t = asset.transform.unwrap();
        let (rows, cols) = asset.shape.unwrap();
        let whole = Grid::north_up("EPSG:32618", t[0], t[3], 60.0, cols, rows);
        let part = Grid::north_up("EPSG:32618", t[0] + 60.0, t[3], 60.0, cols - 1, rows);
        let read = |asset: &AssetRef, grid: &Grid| {
            let mut out = vec![f32::NAN; grid.len()];
            read_asset(
                asset,
                grid,
                32618,
                options(Resampling::Nearest, 1),
                &mut out,
            )
        };
        use ring::digest::{digest, SHA256};
        let sha = |b: &[u8]| -> String {
            digest(&SHA256, b)
                .as_ref()
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        };
        for good in [
            format!("1220{}", sha(&bytes)),
            format!("1e20{}", blake3::hash(&bytes).to_hex()),
        ] {
            asset.checksum = Some(good);
            assert_eq!(read(&asset, &whole), Ok(ReadPath::Window));
        }
        for bad in [
            format!("1220{}", sha(b"another file")),
            format!("1e20{}", blake3::hash(b"another file").to_hex()),
        ] {
            asset.checksum = Some(bad);
            let err = read(&asset, &whole).unwrap_err();
            assert!(
                matches!(&err, ReadError::Data(m) if m.contains("file:checksum")),
                "{err:?}"
            );
            // A window of the file does not read it whole: nothing to check it against.
            assert_eq!(read(&asset, &part), Ok(ReadPath::Window));
        }
    }

    #[test]
    fn http_failures_are_told_apart_by_status_and_timeout() {
        let msg = |class, number, text: &str| GdalMessage {
            class,
            number,
            text: text.into(),
        };
        let failure = gdal_sys::CPLErr::CE_Failure;
        let warning = gdal_sys::CPLErr::CE_Warning;
        assert_eq!(http_status("HTTP response code: 404"), Some(404));
        assert_eq!(
            http_status("HTTP response code on http://127.0.0.1:80/a.tif: 0"),
            Some(0)
        );
        assert_eq!(
            http_status("HTTP error code: 503 - http://h/a.tif. Retrying again in 1.0 secs"),
            Some(503)
        );
        assert_eq!(http_status("HTTP error code : 502"), Some(502));
        assert_eq!(
            http_status("DownloadRegion(http://h/a.tif): response_code=429, msg=slow down"),
            Some(429)
        );
        assert_eq!(http_status("IReadBlock failed at X offset 0"), None);
        let http = HttpOptions {
            timeout: 2.0,
            retries: 1,
        };
        let classify = |messages: &[GdalMessage], remote| {
            classify("opening the file".into(), messages, http, remote)
        };
        let e = classify(&[msg(failure, 11, "HTTP response code: 404")], true);
        assert_eq!(
            e,
            ReadError::Data("HTTP 404 Not Found: opening the file".into())
        );
        let e = classify(&[msg(failure, 11, "HTTP response code: 503")], true);
        assert!(
            matches!(&e, ReadError::Remote(m) if m.starts_with("HTTP 503 Service Unavailable after 1 retry")),
            "{e:?}"
        );
        let e = classify(
            &[
                msg(
                    warning,
                    1,
                    "HTTP error code: 0 - http://h/a.tif. Retrying again in 1.0 secs",
                ),
                msg(
                    failure,
                    11,
                    "CURL error: Operation timed out after 2000 milliseconds",
                ),
            ],
            true,
        );
        assert!(
            matches!(&e, ReadError::Remote(m) if m.contains("timed out") && m.contains("2 s")),
            "{e:?}"
        );
        let e = classify(
            &[
                msg(failure, 11, "CURL error: Couldn't connect to server"),
                msg(failure, 11, "HTTP response code on http://h/a.tif: 0"),
            ],
            true,
        );
        assert!(
            matches!(&e, ReadError::Remote(m) if m.contains("could not be reached")),
            "{e:?}"
        );
        // A retried warning is not the failure; local files are never remote.
        let e = classify(&[msg(warning, 1, "HTTP error code: 503 - retrying")], true);
        assert_eq!(e, ReadError::Data("opening the file".into()));
        let e = classify(&[msg(failure, 11, "HTTP response code: 503")], false);
        assert_eq!(e, ReadError::Data("opening the file".into()));
    }
}
