//! Small helpers over GDAL: thread-local error capture, opening hrefs, raw calls the `gdal` crate
//! does not wrap.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::Once;

use flow_core::Grid;

use gdal::{Dataset, DatasetOptions, GdalOpenFlags};

/// While alive, GDAL messages of this thread are silenced and recorded as the thread's last error;
/// [`ErrorCapture::failure`] tells whether a failure happened, even in a call that returned success.
pub(crate) struct ErrorCapture(());

impl ErrorCapture {
    /// Starts capturing on this thread.
    pub(crate) fn start() -> Self {
        // SAFETY: plain GDAL calls on thread-local state.
        unsafe {
            gdal_sys::CPLPushErrorHandler(Some(gdal_sys::CPLQuietErrorHandler));
            gdal_sys::CPLErrorReset();
        }
        ErrorCapture(())
    }

    /// The message of a failure (CE_Failure or worse) seen since [`ErrorCapture::start`] or the
    /// last call of this function, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        // SAFETY: thread-local error state; the message pointer is valid until the next GDAL call.
        unsafe {
            let ty = gdal_sys::CPLGetLastErrorType();
            if ty >= gdal_sys::CPLErr::CE_Failure {
                let msg = gdal_sys::CPLGetLastErrorMsg();
                let text = if msg.is_null() {
                    "GDAL error".to_string()
                } else {
                    CStr::from_ptr(msg).to_string_lossy().into_owned()
                };
                gdal_sys::CPLErrorReset();
                Some(text)
            } else {
                None
            }
        }
    }
}

impl Drop for ErrorCapture {
    fn drop(&mut self) {
        // SAFETY: pops the handler pushed in `start` on the same thread.
        unsafe { gdal_sys::CPLPopErrorHandler() }
    }
}

/// Turns a STAC href into something GDAL opens: local paths and `file://` URLs as paths,
/// `http(s)://` through `/vsicurl/`, GDAL virtual paths unchanged.
pub(crate) fn gdal_path(href: &str) -> String {
    if let Some(rest) = href.strip_prefix("file://") {
        // file:///abs/path or file://localhost/abs/path
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        percent_decode(rest)
    } else if href.starts_with("http://") || href.starts_with("https://") {
        format!("/vsicurl/{href}")
    } else if let Some(rest) = href.strip_prefix("s3://") {
        format!("/vsis3/{rest}")
    } else {
        href.to_string()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GDAL's raster block cache for the whole process when `GDAL_CACHEMAX` is not set: `stack`
/// decodes each source block once, so a bigger cache (GDAL's default is 5 % of RAM) only holds
/// memory.
const CACHE_MAX_BYTES: i64 = 256 << 20;

/// Process-wide GDAL settings, applied once: the block cache bound ([`CACHE_MAX_BYTES`]) unless
/// `GDAL_CACHEMAX` is set in the environment or GDAL's configuration.
pub(crate) fn configure_process() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let set = gdal::config::get_config_option("GDAL_CACHEMAX", "")
            .map(|v| !v.is_empty())
            .unwrap_or(false);
        if !set {
            // SAFETY: a plain setter of GDAL's global cache size.
            unsafe { gdal_sys::GDALSetCacheMax64(CACHE_MAX_BYTES) }
        }
    });
}

/// Sets the GDAL behaviour of this (reader) thread: HTTP retries, timeouts, no directory listing,
/// and `threads` for GDAL's own multi-threading (GeoTIFF block decoding, the warp kernel) unless
/// `GDAL_NUM_THREADS` is set process-wide.
pub(crate) fn set_thread_options(threads: usize) {
    for (k, v) in [
        ("GDAL_HTTP_MAX_RETRY", "3"),
        ("GDAL_HTTP_RETRY_DELAY", "1"),
        ("GDAL_HTTP_TIMEOUT", "60"),
        ("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR"),
    ] {
        let _ = gdal::config::set_thread_local_config_option(k, v);
    }
    let global = gdal::config::get_config_option("GDAL_NUM_THREADS", "")
        .map(|v| !v.is_empty())
        .unwrap_or(false);
    if !global {
        let _ = gdal::config::set_thread_local_config_option(
            "GDAL_NUM_THREADS",
            &threads.max(1).to_string(),
        );
    }
}

/// Opens a raster read-only.
pub(crate) fn open_raster(path: &str) -> gdal::errors::Result<Dataset> {
    Dataset::open_ex(
        path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_RASTER | GdalOpenFlags::GDAL_OF_READONLY,
            ..Default::default()
        },
    )
}

/// Runs GDAL's `gdalwarp` program logic on `src` with command-line `args` (resampling, nodata,
/// warp options; not the output grid, CRS or type) straight into `out`, the row-major f32 plane of
/// `grid`: a MEM dataset is laid over `out` (no full-grid copy), `srs_wkt` is its CRS.
/// `out` is filled with NaN first and pixels no source pixel reaches stay NaN.
pub(crate) fn warp_into(
    src: &Dataset,
    args: &[String],
    grid: &Grid,
    srs_wkt: &str,
    out: &mut [f32],
) -> Result<(), String> {
    let (w, h) = (grid.width, grid.height);
    if out.len() != w * h {
        return Err(format!(
            "output buffer of {} values for a {w} x {h} grid",
            out.len()
        ));
    }
    let (cw, ch) = (
        c_int::try_from(w).map_err(|_| format!("grid width {w} is too large for GDAL"))?,
        c_int::try_from(h).map_err(|_| format!("grid height {h} is too large for GDAL"))?,
    );
    let line = w
        .checked_mul(4)
        .ok_or_else(|| format!("grid width {w} is too large"))?;
    out.fill(f32::NAN);
    let c_args: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut ptrs: Vec<*mut c_char> = c_args.iter().map(|c| c.as_ptr() as *mut _).collect();
    ptrs.push(std::ptr::null_mut());
    let mut band_opts = gdal::cpl::CslStringList::new();
    for o in [
        format!("DATAPOINTER={:p}", out.as_mut_ptr()),
        "PIXELOFFSET=4".to_string(),
        format!("LINEOFFSET={line}"),
    ] {
        band_opts.add_string(&o).map_err(|e| e.to_string())?;
    }
    let (mem, empty) = (c"MEM", c"");
    // SAFETY: the MEM band created with DATAPOINTER reads and writes `out` in place: w * h f32
    // values, 4 bytes apart, 4 * w bytes per row — exactly `out`, whose length was checked above.
    // The MEM driver never frees nor reallocates memory it was given. `out` is mutably borrowed
    // for this whole function and not touched through the slice while the dataset exists; the
    // dataset (`dst`) is closed (GDALClose via Drop) at the end of this block, on every path,
    // before the borrow ends, so GDAL never holds the pointer beyond the buffer's lifetime.
    // argv is NUL-terminated and outlives the calls; the warp options are freed after use;
    // GDALWarp with a destination handle returns that same handle (not a new one to close).
    unsafe {
        let driver = gdal_sys::GDALGetDriverByName(mem.as_ptr());
        if driver.is_null() {
            return Err("GDAL has no MEM driver".into());
        }
        let raw = gdal_sys::GDALCreate(
            driver,
            empty.as_ptr(),
            cw,
            ch,
            0,
            gdal_sys::GDALDataType::GDT_Float32,
            std::ptr::null_mut(),
        );
        if raw.is_null() {
            return Err(last_message("cannot create the MEM dataset"));
        }
        let mut dst = Dataset::from_c_dataset(raw);
        if gdal_sys::GDALAddBand(
            dst.c_dataset(),
            gdal_sys::GDALDataType::GDT_Float32,
            band_opts.as_ptr(),
        ) != gdal_sys::CPLErr::CE_None
        {
            return Err(last_message("cannot lay the MEM band over the output"));
        }
        dst.set_geo_transform(&grid.transform)
            .map_err(|e| e.to_string())?;
        dst.set_projection(srs_wkt).map_err(|e| e.to_string())?;
        dst.rasterband(1)
            .and_then(|mut b| b.set_no_data_value(Some(f64::NAN)))
            .map_err(|e| e.to_string())?;
        let opts = gdal_sys::GDALWarpAppOptionsNew(ptrs.as_mut_ptr(), std::ptr::null_mut());
        if opts.is_null() {
            return Err(last_message("invalid warp options"));
        }
        let mut srcs = [src.c_dataset()];
        let mut usage_error: c_int = 0;
        let res = gdal_sys::GDALWarp(
            std::ptr::null(),
            dst.c_dataset(),
            1,
            srcs.as_mut_ptr(),
            opts,
            &mut usage_error,
        );
        gdal_sys::GDALWarpAppOptionsFree(opts);
        if res.is_null() {
            return Err(last_message("warp failed"));
        }
        drop(dst);
    }
    Ok(())
}

/// GDAL's last error message, or `fallback`.
pub(crate) fn last_message(fallback: &str) -> String {
    // SAFETY: reads thread-local error state.
    unsafe {
        let msg = gdal_sys::CPLGetLastErrorMsg();
        if msg.is_null() {
            return fallback.into();
        }
        let s = CStr::from_ptr(msg).to_string_lossy().into_owned();
        if s.is_empty() {
            fallback.into()
        } else {
            s
        }
    }
}

/// Sets the category names of a band (GDALSetRasterCategoryNames).
pub(crate) fn set_category_names(
    band: &gdal::raster::RasterBand,
    names: &[String],
) -> Result<(), String> {
    let mut list = gdal::cpl::CslStringList::new();
    for n in names {
        list.add_string(n).map_err(|e| e.to_string())?;
    }
    // SAFETY: the band handle is valid while `band` lives; the list is copied by GDAL.
    let rv = unsafe { gdal_sys::GDALSetRasterCategoryNames(band.c_rasterband(), list.as_ptr()) };
    if rv != gdal_sys::CPLErr::CE_None {
        return Err(last_message("cannot set category names"));
    }
    Ok(())
}
