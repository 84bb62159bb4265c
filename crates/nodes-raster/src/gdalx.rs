//! Small helpers over GDAL: thread-local error capture, opening hrefs, raw calls the `gdal` crate
//! does not wrap.

use std::ffi::{CStr, CString};

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

/// Sets the HTTP behaviour of GDAL for this thread (retries, timeouts, no directory listing).
pub(crate) fn set_http_options() {
    for (k, v) in [
        ("GDAL_HTTP_MAX_RETRY", "3"),
        ("GDAL_HTTP_RETRY_DELAY", "1"),
        ("GDAL_HTTP_TIMEOUT", "60"),
        ("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR"),
    ] {
        let _ = gdal::config::set_thread_local_config_option(k, v);
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

/// Runs GDAL's `gdalwarp` program logic on `src` with command-line `args`, into a MEM dataset.
pub(crate) fn warp_to_mem(src: &Dataset, args: &[String]) -> Result<Dataset, String> {
    let c_args: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut ptrs: Vec<*mut std::ffi::c_char> =
        c_args.iter().map(|c| c.as_ptr() as *mut _).collect();
    ptrs.push(std::ptr::null_mut());
    let dest = CString::new("").map_err(|e| e.to_string())?;
    // SAFETY: argv is NUL-terminated and outlives the call; the options are freed below; the
    // returned dataset handle is owned by the new `Dataset`.
    unsafe {
        let opts = gdal_sys::GDALWarpAppOptionsNew(ptrs.as_mut_ptr(), std::ptr::null_mut());
        if opts.is_null() {
            return Err(last_message("invalid warp options"));
        }
        let mut srcs = [src.c_dataset()];
        let mut usage_error: std::ffi::c_int = 0;
        let out = gdal_sys::GDALWarp(
            dest.as_ptr(),
            std::ptr::null_mut(),
            1,
            srcs.as_mut_ptr(),
            opts,
            &mut usage_error,
        );
        gdal_sys::GDALWarpAppOptionsFree(opts);
        if out.is_null() {
            return Err(last_message("warp failed"));
        }
        Ok(Dataset::from_c_dataset(out))
    }
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
