//! Small helpers over GDAL: its messages routed to flow (never printed by GDAL) and captured per
//! thread, opening hrefs, raw file reads, raw calls the `gdal` crate does not wrap.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::Once;

use flow_core::Grid;

use gdal::{Dataset, DatasetOptions, GdalOpenFlags};

/// GDAL's error numbers (`CPLE_*` in cpl_error.h) that flow tells apart.
pub(crate) mod errno {
    /// CPLE_FileIO: a read, write or seek failed.
    pub(crate) const FILE_IO: i32 = 3;
    /// CPLE_OpenFailed: a file could not be opened or created.
    pub(crate) const OPEN_FAILED: i32 = 4;
}

/// One message GDAL emitted (through `CPLError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GdalMessage {
    /// `CPLErr`: CE_Debug, CE_Warning, CE_Failure or CE_Fatal.
    pub class: gdal_sys::CPLErr::Type,
    /// The `CPLE_*` number.
    pub number: i32,
    /// The text.
    pub text: String,
}

/// Words of GDAL and libtiff warnings that mean the pixels just read are not what the file holds
/// (a codec that could not decode a block, a truncated strip), lower case.
const DATA_WARNINGS: [&str; 10] = [
    "decod",
    "decompress",
    "corrupt",
    "checksum",
    "premature end",
    "not terminated",
    "truncat",
    "unexpected end",
    "ireadblock",
    "read error",
];

impl GdalMessage {
    /// True for a failure: CE_Failure or worse, or a warning that the data read is damaged.
    pub(crate) fn is_failure(&self) -> bool {
        if self.class >= gdal_sys::CPLErr::CE_Failure {
            return true;
        }
        if self.class != gdal_sys::CPLErr::CE_Warning {
            return false;
        }
        let text = self.text.to_ascii_lowercase();
        DATA_WARNINGS.iter().any(|w| text.contains(w))
    }
}

/// The most messages one capture keeps (a broken file can emit one per block).
const MAX_CAPTURED: usize = 64;

/// The messages of one open capture.
#[derive(Default)]
struct Frame {
    messages: Vec<GdalMessage>,
    /// Messages already handed out by [`take_failures`].
    seen: usize,
}

impl Frame {
    fn push(&mut self, m: GdalMessage) {
        if self.messages.len() < MAX_CAPTURED && !self.messages.contains(&m) {
            self.messages.push(m);
        }
    }
}

thread_local! {
    /// The open captures of this thread, innermost last.
    static CAPTURES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// The one GDAL error handler of the process: inside an [`ErrorCapture`] a message is recorded
/// for it; elsewhere (GDAL's worker threads, calls outside a capture) it goes to the log, at
/// debug level (the failures that matter reach the user through the call's result).
unsafe extern "C" fn route(class: gdal_sys::CPLErr::Type, number: c_int, msg: *const c_char) {
    let text = if msg.is_null() {
        String::new()
    } else {
        // SAFETY: GDAL passes a NUL-terminated message valid for the duration of the call.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    };
    // Never unwind into C.
    let _ = std::panic::catch_unwind(move || {
        let message = GdalMessage {
            class,
            number,
            text,
        };
        let kept = CAPTURES
            .try_with(|c| match c.try_borrow_mut() {
                Ok(mut stack) => match stack.last_mut() {
                    Some(top) => {
                        top.push(message.clone());
                        true
                    }
                    None => false,
                },
                Err(_) => false,
            })
            .unwrap_or(false);
        if !kept {
            log(&message);
        }
    });
}

fn log(m: &GdalMessage) {
    match m.class {
        gdal_sys::CPLErr::CE_Debug => tracing::trace!(target: "gdal", "{}", m.text),
        gdal_sys::CPLErr::CE_Warning => {
            tracing::debug!(target: "gdal", "warning {}: {}", m.number, m.text)
        }
        _ => tracing::debug!(target: "gdal", "error {}: {}", m.number, m.text),
    }
}

/// The failures ([`GdalMessage::is_failure`]) the innermost capture of this thread recorded
/// since it started or since the last call, joined with `; `, if any; with them, a failure GDAL
/// set as the thread's last error without reporting it (`CPLErrorSetState`, as `/vsicurl/` does
/// for the HTTP status of a URL). The last error is reset.
pub(crate) fn take_failures() -> Option<String> {
    // SAFETY: thread-local error state; the message is copied before any other GDAL call.
    let last = unsafe {
        let failed = gdal_sys::CPLGetLastErrorType() >= gdal_sys::CPLErr::CE_Failure;
        let msg = gdal_sys::CPLGetLastErrorMsg();
        let text = (failed && !msg.is_null())
            .then(|| CStr::from_ptr(msg).to_string_lossy().into_owned())
            .filter(|t| !t.is_empty());
        gdal_sys::CPLErrorReset();
        text
    };
    CAPTURES.with(|c| {
        let mut stack = c.borrow_mut();
        let top = stack.last_mut()?;
        let new = top.messages.get(top.seen..).unwrap_or_default();
        let mut failures: Vec<&str> = new
            .iter()
            .filter(|m| m.is_failure())
            .map(|m| m.text.as_str())
            .collect();
        if let Some(last) = last.as_deref() {
            if !failures.contains(&last) {
                failures.push(last);
            }
        }
        let text = (!failures.is_empty()).then(|| failures.join("; "));
        top.seen = top.messages.len();
        text
    })
}

/// Why a GDAL step failed: the failures GDAL reported during it (see [`take_failures`]), else
/// the error the `gdal` crate made of it.
pub(crate) fn why(e: impl std::fmt::Display) -> String {
    take_failures().unwrap_or_else(|| e.to_string())
}

/// The result of a GDAL step, failed when GDAL reported a failure during it even if the call
/// returned success; `what` says what the step did ("reading band 1, pixels x 0..10, y 0..10").
pub(crate) fn step<T, E: std::fmt::Display>(
    what: impl FnOnce() -> String,
    result: Result<T, E>,
) -> Result<T, String> {
    match (result, take_failures()) {
        (Ok(v), None) => Ok(v),
        (_, Some(failures)) => Err(format!("{}: {failures}", what())),
        (Err(e), None) => Err(format!("{}: {e}", what())),
    }
}

/// While alive, GDAL messages of this thread are recorded, not printed, and a failure is seen
/// even in a call that returned success ([`take_failures`], [`step`]). Captures nest: an inner
/// capture's messages are handed to the outer one when it ends.
pub(crate) struct ErrorCapture {
    /// Not `Send`: the capture belongs to the thread that started it.
    _thread: std::marker::PhantomData<*const ()>,
}

impl ErrorCapture {
    /// Starts capturing on this thread.
    pub(crate) fn start() -> Self {
        configure_process();
        CAPTURES.with(|c| c.borrow_mut().push(Frame::default()));
        // SAFETY: plain GDAL calls on thread-local state; `route` has the handler's signature and
        // is popped in Drop on this same thread.
        unsafe {
            gdal_sys::CPLPushErrorHandler(Some(route));
            gdal_sys::CPLErrorReset();
        }
        ErrorCapture {
            _thread: std::marker::PhantomData,
        }
    }

    /// Every message recorded so far.
    pub(crate) fn messages(&self) -> Vec<GdalMessage> {
        CAPTURES.with(|c| {
            c.borrow()
                .last()
                .map(|f| f.messages.clone())
                .unwrap_or_default()
        })
    }
}

impl Drop for ErrorCapture {
    fn drop(&mut self) {
        // SAFETY: pops the handler pushed in `start` on the same thread.
        unsafe { gdal_sys::CPLPopErrorHandler() }
        CAPTURES.with(|c| {
            let mut stack = c.borrow_mut();
            if let Some(done) = stack.pop() {
                if let Some(outer) = stack.last_mut() {
                    done.messages.into_iter().for_each(|m| outer.push(m));
                }
            }
        });
    }
}

/// Installs [`route`] as GDAL's process-wide error handler, so that no message reaches stderr
/// through GDAL's default handler.
fn install_handler() {
    // SAFETY: `route` has the handler's signature, never unwinds, and lives for the process.
    unsafe {
        gdal_sys::CPLSetErrorHandler(Some(route));
    }
}

/// Turns a STAC href into something GDAL opens: local paths and `file://` URLs as paths,
/// `http(s)://` through `/vsicurl/`, `s3://` and `gs://` through `/vsis3/` and `/vsigs/`, GDAL
/// virtual paths unchanged.
pub(crate) fn gdal_path(href: &str) -> String {
    if let Some(rest) = href.strip_prefix("file://") {
        // file:///abs/path or file://localhost/abs/path
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        percent_decode(rest)
    } else if href.starts_with("http://") || href.starts_with("https://") {
        format!("/vsicurl/{href}")
    } else if let Some(rest) = href.strip_prefix("s3://") {
        format!("/vsis3/{rest}")
    } else if let Some(rest) = href.strip_prefix("gs://") {
        format!("/vsigs/{rest}")
    } else {
        href.to_string()
    }
}

/// The hrefs GDAL reads over the network (see [`gdal_path`]): http(s) and cloud-store URLs. An
/// item of a remote catalog may name nothing else.
pub(crate) const NETWORK_SCHEMES: [&str; 4] = ["http://", "https://", "s3://", "gs://"];

/// True when `href` is read over the network ([`NETWORK_SCHEMES`]).
pub(crate) fn is_network_href(href: &str) -> bool {
    NETWORK_SCHEMES.iter().any(|s| href.starts_with(s))
}

/// GDAL's virtual file systems that read over the network.
pub(crate) const NETWORK_PREFIXES: [&str; 5] =
    ["/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/"];

/// True when the GDAL path `path` is read over the network ([`NETWORK_PREFIXES`]).
pub(crate) fn is_network_path(path: &str) -> bool {
    NETWORK_PREFIXES.iter().any(|p| path.starts_with(p))
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

/// Process-wide GDAL settings, applied once: flow's error handler (GDAL never prints), and the
/// block cache bound ([`CACHE_MAX_BYTES`]) unless `GDAL_CACHEMAX` is set in the environment or
/// GDAL's configuration.
pub(crate) fn configure_process() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        install_handler();
        let set = gdal::config::get_config_option("GDAL_CACHEMAX", "")
            .map(|v| !v.is_empty())
            .unwrap_or(false);
        if !set {
            // SAFETY: a plain setter of GDAL's global cache size.
            unsafe { gdal_sys::GDALSetCacheMax64(CACHE_MAX_BYTES) }
        }
    });
}

/// How reads over HTTP (`/vsicurl/`) behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HttpOptions {
    /// Seconds one request may take, connecting included.
    pub timeout: f64,
    /// Retries of a request that timed out or was answered 429 or 5xx.
    pub retries: u32,
}

impl HttpOptions {
    /// The defaults: 30 s per request, 3 retries.
    pub(crate) const DEFAULT: HttpOptions = HttpOptions {
        timeout: 30.0,
        retries: 3,
    };
}

/// Sets the GDAL behaviour of this (reader) thread: HTTP timeouts and retries, no directory
/// listing, and `threads` for GDAL's own multi-threading (GeoTIFF block decoding, the warp
/// kernel) unless `GDAL_NUM_THREADS` is set process-wide.
pub(crate) fn set_thread_options(threads: usize, http: HttpOptions) {
    let timeout = format!("{}", http.timeout);
    for (k, v) in [
        ("GDAL_HTTP_MAX_RETRY", http.retries.to_string().as_str()),
        ("GDAL_HTTP_RETRY_DELAY", "1"),
        ("GDAL_HTTP_TIMEOUT", timeout.as_str()),
        ("GDAL_HTTP_CONNECTTIMEOUT", timeout.as_str()),
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

/// Forgets what GDAL's network file systems (`/vsicurl/`, `/vsis3/`, ...) cached about `path`
/// (its size, that it does not exist), so that the next read asks the server again.
pub(crate) fn forget_remote(path: &str) {
    if let Ok(c) = CString::new(path) {
        // SAFETY: a NUL-terminated path; GDAL only reads it.
        unsafe { gdal_sys::VSICurlPartialClearCache(c.as_ptr()) }
    }
}

/// A file opened read-only through GDAL's virtual file systems (local files, `/vsicurl/`,
/// `/vsis3/`, ...): the bytes GDAL itself reads, through the same caches.
pub(crate) struct VsiFile {
    handle: *mut gdal_sys::VSILFILE,
}

impl VsiFile {
    /// Opens `path`.
    pub(crate) fn open(path: &str) -> Result<Self, String> {
        let c = CString::new(path).map_err(|e| e.to_string())?;
        // SAFETY: NUL-terminated path and mode; a null handle is checked below.
        let handle = unsafe { gdal_sys::VSIFOpenL(c.as_ptr(), c"rb".as_ptr()) };
        if handle.is_null() {
            return Err(format!("opening the file: {}", why("cannot open the file")));
        }
        Ok(VsiFile { handle })
    }

    /// Reads into `buf` from byte `offset`; returns how many bytes were read (fewer than
    /// `buf.len()` when the file ends first).
    pub(crate) fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, String> {
        // SAFETY: `handle` is open until Drop; `buf` is writable for `buf.len()` bytes.
        unsafe {
            if gdal_sys::VSIFSeekL(self.handle, offset, 0) != 0 {
                return Err(format!("cannot seek to byte {offset}"));
            }
            Ok(gdal_sys::VSIFReadL(
                buf.as_mut_ptr().cast::<c_void>(),
                1,
                buf.len(),
                self.handle,
            ))
        }
    }
}

impl Drop for VsiFile {
    fn drop(&mut self) {
        // SAFETY: closes the handle opened in `open`, once.
        unsafe {
            gdal_sys::VSIFCloseL(self.handle);
        }
    }
}

/// Inflates the zlib stream `data` into `out` with GDAL's inflater (libdeflate or zlib), which
/// checks the stream's Adler-32; returns the number of bytes written, or None when the stream is
/// damaged, fails its check or does not fit in `out`.
pub(crate) fn zlib_inflate(data: &[u8], out: &mut [u8]) -> Option<usize> {
    if out.is_empty() {
        return None;
    }
    let mut written = 0usize;
    // SAFETY: `data` is readable and `out` writable for their lengths; GDAL writes at most
    // `out.len()` bytes into `out` and returns it (or null), never a pointer it allocated, since
    // `out` is not null.
    let rv = unsafe {
        gdal_sys::CPLZLibInflate(
            data.as_ptr().cast::<c_void>(),
            data.len(),
            out.as_mut_ptr().cast::<c_void>(),
            out.len(),
            &mut written,
        )
    };
    (!rv.is_null() && written <= out.len()).then_some(written)
}

/// The GDAL driver that reads GeoTIFFs and COGs, the one `stack` always allows.
pub(crate) const GTIFF: &str = "GTiff";

/// Opens a raster read-only with one of `drivers` (GDAL short names such as `GTiff`): a file
/// that needs another driver is not opened at all.
pub(crate) fn open_raster(path: &str, drivers: &[&str]) -> gdal::errors::Result<Dataset> {
    Dataset::open_ex(
        path,
        DatasetOptions {
            open_flags: GdalOpenFlags::GDAL_OF_RASTER
                | GdalOpenFlags::GDAL_OF_READONLY
                | GdalOpenFlags::GDAL_OF_VERBOSE_ERROR,
            allowed_drivers: Some(drivers),
            ..Default::default()
        },
    )
}

/// GDAL_OF_RASTER of gdal.h (the bindings leave the `GDAL_OF_*` macros out).
const GDAL_OF_RASTER: std::ffi::c_uint = 0x02;

/// The short name of the raster driver that would open `path` (`VRT`, `JP2OpenJPEG`), found
/// from the file's first bytes and name without opening it (GDALIdentifyDriverEx), if any.
pub(crate) fn identify_driver(path: &str) -> Option<String> {
    let c = CString::new(path).ok()?;
    // SAFETY: a NUL-terminated path; no driver or file list (null); the driver handle returned is
    // owned by GDAL's driver manager and lives for the process; its name is copied at once.
    unsafe {
        let driver = gdal_sys::GDALIdentifyDriverEx(
            c.as_ptr(),
            GDAL_OF_RASTER,
            std::ptr::null(),
            std::ptr::null(),
        );
        if driver.is_null() {
            return None;
        }
        let name = gdal_sys::GDALGetDriverShortName(driver);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}

/// True when GDAL has a driver `name` that opens rasters.
pub(crate) fn opens_rasters(name: &str) -> bool {
    let Ok(driver) = gdal::DriverManager::get_driver_by_name(name) else {
        return false;
    };
    let yes = |key: &str| {
        gdal::Metadata::metadata_item(&driver, key, "")
            .is_some_and(|v| v.eq_ignore_ascii_case("YES"))
    };
    yes("DCAP_RASTER") && yes("DCAP_OPEN")
}

// GDAL's error state of its virtual file systems (cpl_vsi_error.h), which the bindings leave out:
// `/vsicurl/` reports the HTTP status of a failed HEAD there, not through CPLError.
extern "C" {
    fn VSIErrorReset();
    fn VSIGetLastErrorMsg() -> *const c_char;
}

/// What a server says of a remote file (a HEAD request): its size and what names its version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RemoteStat {
    /// `Content-Length`, or the total of a `Content-Range`.
    pub size: Option<u64>,
    /// `ETag`.
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

impl RemoteStat {
    /// What names the file's version: its ETag, else its Last-Modified date.
    pub(crate) fn version(&self) -> Option<String> {
        self.etag.clone().or_else(|| self.last_modified.clone())
    }

    /// Reads the headers GDAL returns (`Name=value` strings, any case).
    fn from_headers(headers: &[String]) -> RemoteStat {
        let get = |name: &str| {
            headers.iter().find_map(|h| {
                let (k, v) = h.split_once(['=', ':'])?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            })
        };
        let size = get("Content-Range")
            .and_then(|r| r.rsplit_once('/').and_then(|(_, t)| t.trim().parse().ok()))
            .or_else(|| get("Content-Length").and_then(|l| l.parse().ok()));
        RemoteStat {
            size,
            etag: get("ETag"),
            last_modified: get("Last-Modified"),
        }
    }
}

/// Why a remote file could not be examined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeError {
    /// The HTTP status, when the server answered (0: it could not be reached).
    pub status: Option<u16>,
    /// What GDAL said.
    pub message: String,
}

/// Asks the server about the network file `path` (`/vsicurl/...`, `/vsis3/...`) with one HEAD
/// request, through GDAL (its HTTP settings of this thread: timeout, retries, credentials), and
/// reads its size, ETag and Last-Modified. Run it inside an [`ErrorCapture`].
///
/// # Errors
/// When the server refuses or cannot be reached; [`ProbeError::status`] says how.
pub(crate) fn remote_stat(path: &str) -> Result<RemoteStat, ProbeError> {
    let c = CString::new(path).map_err(|e| ProbeError {
        status: None,
        message: e.to_string(),
    })?;
    // SAFETY: NUL-terminated path and domain, no options; the returned list is owned by the
    // caller, copied into Strings and destroyed here once.
    let headers = unsafe {
        VSIErrorReset();
        let list =
            gdal_sys::VSIGetFileMetadata(c.as_ptr(), c"HEADERS".as_ptr(), std::ptr::null_mut());
        if list.is_null() {
            None
        } else {
            let out = string_list(list);
            gdal_sys::CSLDestroy(list);
            Some(out)
        }
    };
    // SAFETY: reads GDAL's thread-local VSI error message, copied at once.
    let vsi_error = unsafe {
        let msg = VSIGetLastErrorMsg();
        let text = (!msg.is_null())
            .then(|| CStr::from_ptr(msg).to_string_lossy().into_owned())
            .filter(|t| !t.is_empty());
        VSIErrorReset();
        text
    };
    let failures = take_failures();
    match headers {
        Some(h) if !h.is_empty() && vsi_error.is_none() => Ok(RemoteStat::from_headers(&h)),
        _ => {
            let message = vsi_error
                .into_iter()
                .chain(failures)
                .collect::<Vec<_>>()
                .join("; ");
            let message = if message.is_empty() {
                "the server sent no headers".to_string()
            } else {
                message
            };
            Err(ProbeError {
                status: http_status(&message),
                message,
            })
        }
    }
}

/// The HTTP status in a GDAL message: "HTTP response code: 404", "HTTP response code on URL: 0",
/// "HTTP error code: 503 - URL. Retrying ...", "HTTP error code : 502", "response_code=503";
/// 0 for a curl error (no answer).
pub(crate) fn http_status(text: &str) -> Option<u16> {
    let lower = text.to_ascii_lowercase();
    for marker in ["http response code", "http error code", "response_code"] {
        let Some(i) = lower.find(marker) else {
            continue;
        };
        let rest = &text[i + marker.len()..];
        let rest = match rest.strip_prefix(" on ") {
            // The status follows the URL.
            Some(url_and_status) => url_and_status.rsplit_once(": ")?.1,
            None => rest.trim_start_matches([' ', ':', '=']),
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() {
            return digits.parse().ok();
        }
    }
    lower.starts_with("curl error").then_some(0)
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
    let argv = argv(args)?;
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
        let opts = gdal_sys::GDALWarpAppOptionsNew(argv.as_ptr() as *mut _, std::ptr::null_mut());
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

/// A virtual dataset (an in-memory VRT, GDALTranslate `-of VRT -b index`) holding only band
/// `index` (from 1) of `src`, with band `alpha` as its mask when given: what GDAL's warp, which
/// before 3.7 warps every band of its source, is given to warp one band of a file of several.
/// The VRT reads `src`'s file by its name.
pub(crate) fn band_subset(
    src: &Dataset,
    index: usize,
    alpha: Option<usize>,
) -> Result<Dataset, String> {
    let mut args = vec![
        "-of".to_string(),
        "VRT".into(),
        "-b".into(),
        index.to_string(),
    ];
    if let Some(a) = alpha {
        args.extend(["-mask".into(), a.to_string()]);
    }
    let argv = argv(&args)?;
    let empty = c"";
    // SAFETY: argv is NUL-terminated and outlives the calls; the options are freed after use;
    // GDALTranslate returns a new dataset handle (or null), owned by the `Dataset` made from it,
    // which closes it when dropped; `src` stays open for the call.
    unsafe {
        let opts = gdal_sys::GDALTranslateOptionsNew(argv.as_ptr() as *mut _, std::ptr::null_mut());
        if opts.is_null() {
            return Err(last_message("invalid translate options"));
        }
        let mut usage_error: c_int = 0;
        let out = gdal_sys::GDALTranslate(empty.as_ptr(), src.c_dataset(), opts, &mut usage_error);
        gdal_sys::GDALTranslateOptionsFree(opts);
        if out.is_null() {
            return Err(last_message("cannot select the band"));
        }
        Ok(Dataset::from_c_dataset(out))
    }
}

/// The category names of a band (GDALGetRasterCategoryNames): one per class id from 0, empty
/// for ids without a name; empty when the band has none.
pub(crate) fn category_names(band: &gdal::raster::RasterBand) -> Vec<String> {
    // SAFETY: the band handle is valid while `band` lives; the list returned is owned by the
    // band (not freed here) and NULL-terminated; each entry is a NUL-terminated string, copied
    // at once.
    unsafe {
        let list = gdal_sys::GDALGetRasterCategoryNames(band.c_rasterband());
        if list.is_null() {
            return Vec::new();
        }
        string_list(list)
    }
}

/// Command-line words as the NULL-terminated argv that GDAL's utility options take (GDAL only
/// reads it).
fn argv(args: &[String]) -> Result<gdal::cpl::CslStringList, String> {
    let mut list = gdal::cpl::CslStringList::new();
    for a in args {
        list.add_string(a).map_err(|e| e.to_string())?;
    }
    Ok(list)
}

/// The strings of a GDAL string list (CSL), copied.
///
/// # Safety
/// `list` is a non-null, NULL-terminated array of NUL-terminated strings that stays valid for
/// the call.
unsafe fn string_list(list: *mut *mut std::ffi::c_char) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: the caller guarantees a NULL-terminated list; `i` never passes its NULL.
        let entry = unsafe { *list.add(i) };
        if entry.is_null() {
            break;
        }
        // SAFETY: each entry before the NULL is a NUL-terminated string, copied at once.
        let text = unsafe { CStr::from_ptr(entry) };
        out.push(text.to_string_lossy().into_owned());
        i += 1;
    }
    out
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

/// Writes `data` into bands 1 to `bands` of `ds` in one call (GDALDatasetRasterIO): `bands`
/// planes one after the other, each `size.1` rows of `size.0` values, at pixel `offset`
/// (column, row). A GeoTIFF interleaved by pixel then gets every band of a block at once, rather
/// than a block rewritten band after band.
pub(crate) fn write_bands<T: gdal::raster::GdalType + Copy>(
    ds: &mut Dataset,
    offset: (usize, usize),
    size: (usize, usize),
    bands: usize,
    data: &[T],
) -> Result<(), String> {
    if bands == 0 || bands > ds.raster_count() || data.len() != bands * size.0 * size.1 {
        return Err(format!(
            "{} values do not fill {bands} band(s) of {} x {} pixels of a dataset of {} band(s)",
            data.len(),
            size.0,
            size.1,
            ds.raster_count()
        ));
    }
    let int = |v: usize| c_int::try_from(v).map_err(|_| format!("{v} is too large for GDAL"));
    let (x, y, w, h, n) = (
        int(offset.0)?,
        int(offset.1)?,
        int(size.0)?,
        int(size.1)?,
        int(bands)?,
    );
    // SAFETY: the dataset handle is valid while `ds` is borrowed; `data` holds exactly `bands`
    // planes of w x h values of the type GDAL is told (`T::gdal_ordinal`), laid out as GDAL's
    // default spacings (0) say; in GF_Write mode GDAL only reads the buffer; a null band map
    // selects bands 1 to `bands`, which exist (checked above).
    let rv = unsafe {
        gdal_sys::GDALDatasetRasterIO(
            ds.c_dataset(),
            gdal_sys::GDALRWFlag::GF_Write,
            x,
            y,
            w,
            h,
            data.as_ptr() as *mut c_void,
            w,
            h,
            T::gdal_ordinal(),
            n,
            std::ptr::null_mut(),
            0,
            0,
            0,
        )
    };
    if rv != gdal_sys::CPLErr::CE_None {
        return Err(last_message("cannot write the bands"));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_stats_are_read_from_the_headers_gdal_returns() {
        let h = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let stat = RemoteStat::from_headers(&h(&[
            "Content-Length=6",
            "ETag=\"6-18eda8b7\"",
            "Last-Modified=Thu, 03 Dec 2026 05:55:34 GMT",
        ]));
        assert_eq!(stat.size, Some(6));
        assert_eq!(stat.version().as_deref(), Some("\"6-18eda8b7\""));
        let stat = RemoteStat::from_headers(&h(&[
            "content-range=bytes 0-15/4096",
            "content-length=16",
            "last-modified=Thu, 03 Dec 2026 05:55:34 GMT",
        ]));
        assert_eq!(stat.size, Some(4096));
        assert_eq!(
            stat.version().as_deref(),
            Some("Thu, 03 Dec 2026 05:55:34 GMT")
        );
        assert_eq!(
            RemoteStat::from_headers(&h(&["Server=x"])),
            RemoteStat::default()
        );
    }

    #[test]
    fn hrefs_map_onto_gdal_paths_and_network_ones_are_known() {
        assert_eq!(gdal_path("https://h/a.tif"), "/vsicurl/https://h/a.tif");
        assert_eq!(gdal_path("s3://b/a.tif"), "/vsis3/b/a.tif");
        assert_eq!(gdal_path("gs://b/a.tif"), "/vsigs/b/a.tif");
        assert_eq!(gdal_path("file:///data/a%20b.tif"), "/data/a b.tif");
        assert!(is_network_path(&gdal_path("gs://b/a.tif")));
        assert!(!is_network_path(&gdal_path("file:///data/a.tif")));
        assert_eq!(
            http_status("CURL error: Couldn't connect to server"),
            Some(0)
        );
        assert!(opens_rasters("GTiff") && opens_rasters("VRT"));
        assert!(!opens_rasters("COG") && !opens_rasters("ESRI Shapefile"));
    }
}
