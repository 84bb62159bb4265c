//! A static file server on 127.0.0.1 for tests, shaped like the object stores COGs live on:
//! HEAD and GET with byte ranges (206 and `Content-Range`), an `ETag` (a hash of the content)
//! and `Last-Modified` (the file's modification time) on every answer. A hook sees each request
//! first and may answer it itself (a STAC API's `/search`, a 403 for an expired signature).
//!
//! Shared by the root tests (`tests/tests.rs`) and the raster crate's own
//! (`crates/nodes-raster/tests/`, through `#[path]`); std only.

#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

/// One request as the hook sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, `POST`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?` (empty when there is none).
    pub query: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The body (POST).
    pub body: Vec<u8>,
}

/// An answer the hook gives in place of the file.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status line after `HTTP/1.1 `: `403 Forbidden`.
    pub status: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON answer with status 200.
    pub fn json(body: String) -> Reply {
        Reply {
            status: "200 OK",
            content_type: "application/json",
            body: body.into_bytes(),
        }
    }

    /// An answer with `status` and a short text body.
    pub fn status(status: &'static str) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: status.as_bytes().to_vec(),
        }
    }
}

type Hook = dyn Fn(&Request) -> Option<Reply> + Send + Sync;

/// A running server; it lives as long as the test process.
pub struct FileServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Every request so far: `METHOD path?query`.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    /// The requests so far whose line contains `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// Serves the files under `root`, asking `hook` first about each request.
pub fn serve(
    root: &Path,
    hook: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static,
) -> FileServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let root = root.to_path_buf();
    let hook: Arc<Hook> = Arc::new(hook);
    let log = Arc::new(Mutex::new(Vec::new()));
    let server_log = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (root, hook, log) = (root.clone(), hook.clone(), server_log.clone());
            std::thread::spawn(move || {
                let _ = answer(stream, &root, hook.as_ref(), &log);
            });
        }
    });
    FileServer { base, log }
}

fn answer(
    stream: TcpStream,
    root: &Path,
    hook: &Hook,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    // Requests on one connection, until the client closes it.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let (mut range, mut length) = (None, 0usize);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "range" => range = Some(v.trim().to_string()),
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        log.lock().unwrap().push(format!("{method} {target}"));
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let request = Request {
            method,
            path,
            query,
            range,
            body,
        };
        let head = request.method == "HEAD";
        let (status, headers, body) = match hook(&request) {
            Some(reply) => (
                reply.status,
                format!("Content-Type: {}\r\n", reply.content_type),
                reply.body,
            ),
            None => file_answer(root, &request),
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if !head {
            response.extend_from_slice(&body);
        }
        out.write_all(&response)?;
    }
}

/// The file under `root` that `request` names, whole or the range it asks for.
fn file_answer(root: &Path, request: &Request) -> (&'static str, String, Vec<u8>) {
    let relative = request.path.trim_start_matches('/');
    let file: PathBuf = root.join(relative);
    let inside = !relative.split('/').any(|c| c == "..");
    let (Ok(bytes), true) = (std::fs::read(&file), inside) else {
        return ("404 Not Found", String::new(), b"not found".to_vec());
    };
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let modified = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut headers = format!(
        "Accept-Ranges: bytes\r\nETag: \"{:016x}\"\r\nLast-Modified: {}\r\n",
        hasher.finish(),
        http_date(modified)
    );
    let total = bytes.len();
    let range = request
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let a: usize = a.parse().ok()?;
            let b: usize = if b.is_empty() {
                total.checked_sub(1)?
            } else {
                b.parse().ok()?
            };
            (a < total).then_some((a, b.min(total - 1)))
        });
    match range {
        Some((a, b)) if request.method == "GET" => {
            headers.push_str(&format!("Content-Range: bytes {a}-{b}/{total}\r\n"));
            ("206 Partial Content", headers, bytes[a..=b].to_vec())
        }
        _ => ("200 OK", headers, bytes),
    }
}

/// An HTTP date (RFC 7231 IMF-fixdate) of `secs` since the epoch.
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days.rem_euclid(7)) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn http_dates_are_imf_fixdates() {
    assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(http_date(1_796_277_334), "Thu, 03 Dec 2026 05:55:34 GMT");
}
