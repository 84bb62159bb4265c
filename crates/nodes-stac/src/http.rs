//! A small blocking HTTP client that retries what is worth retrying.
//!
//! - 429 and 5xx answers and transport failures (connection refused, timeouts, cut bodies) are
//!   retried with exponential backoff, honouring `Retry-After` given in seconds;
//! - each retry is logged at warn level (attempt `n` of `m`, the redacted URL, the status or
//!   error, the delay), and an error that outlasted them says how many attempts were made;
//! - other 4xx answers are returned at once;
//! - bodies are read up to a cap ([`DEFAULT_MAX_RESPONSE_BYTES`], 64 MiB, unless configured):
//!   a larger body, announced or streamed, fails the request at once ([`StacError::TooLarge`],
//!   not retried) without reading the rest;
//! - every error names the (redacted) URL, the status and the start of the body.

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use crate::error::{body_snippet, redact_url, StacError};

/// The delay before the first retry; each further retry doubles it.
const BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between two tries, whatever the server asks.
const MAX_DELAY: Duration = Duration::from_secs(120);
/// The largest response body read by default: 64 MiB, well above any STAC page or token answer
/// (a Sentinel-2 item is some 20 KB, so even a page of 1000 items stays near 20 MB), small
/// enough that an endless body cannot exhaust memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// The HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET.
    Get,
    /// POST with a JSON body.
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One request to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// GET or POST.
    pub method: Method,
    /// The full URL, query included.
    pub url: String,
    /// The JSON body of a POST.
    pub body: Option<serde_json::Value>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Request {
            method: Method::Get,
            url: url.into(),
            body: None,
            headers: Vec::new(),
        }
    }

    /// A POST of `body` to `url`.
    pub fn post(url: impl Into<String>, body: serde_json::Value) -> Self {
        Request {
            method: Method::Post,
            url: url.into(),
            body: Some(body),
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A response whose body has been read whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// The redacted URL it answered.
    pub url: String,
}

impl Response {
    /// Parses the body as JSON.
    ///
    /// # Errors
    /// [`StacError::BadResponse`] when it is not (e.g. a truncated body).
    pub fn json(&self) -> Result<serde_json::Value, StacError> {
        serde_json::from_slice(&self.body).map_err(|e| StacError::BadResponse {
            url: self.url.clone(),
            status: self.status,
            message: format!("invalid JSON: {e}"),
            body: body_snippet(&self.body),
        })
    }

    /// Like [`Response::json`], but never quotes the body (for bodies that carry secrets).
    ///
    /// # Errors
    /// [`StacError::BadResponse`] when the body is not JSON.
    pub fn json_secret(&self) -> Result<serde_json::Value, StacError> {
        serde_json::from_slice(&self.body).map_err(|e| StacError::BadResponse {
            url: self.url.clone(),
            status: self.status,
            message: format!("invalid JSON at line {} column {}", e.line(), e.column()),
            body: String::new(),
        })
    }
}

/// Retry and timeout settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpConfig {
    /// Retries after the first try (so `retries + 1` tries in all).
    pub retries: u32,
    /// Connect and read timeout.
    pub timeout: Duration,
    /// The largest response body read, in bytes; default [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            retries: 3,
            timeout: Duration::from_secs(30),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A blocking client with retries. Build it inside the node's `run` (on a blocking thread).
pub struct HttpClient {
    client: Client,
    config: HttpConfig,
}

/// What one try gave.
enum Attempt {
    Done(Response),
    Retry {
        error: StacError,
        after: Option<Duration>,
    },
    Fail(StacError),
}

impl HttpClient {
    /// A client with `config`.
    ///
    /// # Errors
    /// [`StacError::Transport`] when the TLS backend cannot be set up.
    pub fn new(config: HttpConfig) -> Result<Self, StacError> {
        let client = Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(15)))
            .timeout(config.timeout)
            .user_agent(concat!(
                "flow/",
                env!("CARGO_PKG_VERSION"),
                " (flow-nodes-stac)"
            ))
            .build()
            .map_err(|e| StacError::Transport {
                url: String::new(),
                message: e.to_string(),
            })?;
        Ok(HttpClient { client, config })
    }

    /// The settings.
    pub fn config(&self) -> HttpConfig {
        self.config
    }

    /// Sends `request`, retrying 429, 5xx and transport failures. Returns the first answer that
    /// is neither, whatever its status (callers decide what a 4xx means); `cancelled` is polled
    /// while waiting between tries. Each retry is logged at warn level.
    ///
    /// # Errors
    /// [`StacError::GaveUp`] (the last failure and the number of attempts) once the retries are
    /// spent; [`StacError::TooLarge`] for a body over the cap; [`StacError::Cancelled`] when
    /// cancelled.
    pub fn send(
        &self,
        request: &Request,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Response, StacError> {
        let attempts = self.config.retries.saturating_add(1);
        let mut tries = 0u32;
        loop {
            if cancelled() {
                return Err(StacError::Cancelled);
            }
            tries += 1;
            match self.try_once(request) {
                Attempt::Done(r) => return Ok(r),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { error, after } => {
                    if tries >= attempts {
                        return Err(StacError::GaveUp {
                            attempts: tries,
                            last: Box::new(error),
                        });
                    }
                    let backoff = BASE_DELAY.saturating_mul(1u32 << (tries - 1).min(16));
                    let wait = after.unwrap_or(backoff).min(MAX_DELAY);
                    tracing::warn!(
                        "{} {}: attempt {tries} of {attempts} failed: {error}; retrying in {:.1} s",
                        request.method.as_str(),
                        redact_url(&request.url),
                        wait.as_secs_f64(),
                    );
                    sleep_unless_cancelled(wait, cancelled)?;
                }
            }
        }
    }

    /// Sends `request` and fails on any non-2xx answer.
    ///
    /// # Errors
    /// As [`HttpClient::send`], plus [`StacError::Status`] for a non-2xx answer.
    pub fn send_ok(
        &self,
        request: &Request,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Response, StacError> {
        let r = self.send(request, cancelled)?;
        if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            Err(StacError::Status {
                url: r.url,
                status: r.status,
                body: body_snippet(&r.body),
            })
        }
    }

    fn try_once(&self, request: &Request) -> Attempt {
        let shown = redact_url(&request.url);
        let mut headers = HeaderMap::new();
        for (k, v) in &request.headers {
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(k), Ok(v)) => {
                    headers.insert(k, v);
                }
                _ => {
                    return Attempt::Fail(StacError::Transport {
                        url: shown,
                        message: format!("invalid header `{k}`"),
                    })
                }
            }
        }
        let builder = match request.method {
            Method::Get => self.client.get(&request.url),
            Method::Post => {
                let body = request
                    .body
                    .as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "{}".into());
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                self.client.post(&request.url).body(body)
            }
        };
        let started = Instant::now();
        tracing::debug!(method = request.method.as_str(), url = %shown, "request");
        let resp = match builder.headers(headers).send() {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    error: transport_error(&shown, &e),
                    after: None,
                }
            }
        };
        let status = resp.status().as_u16();
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match read_capped(resp, self.config.max_response_bytes, &shown) {
            Ok(b) => b,
            Err(e @ StacError::TooLarge { .. }) => return Attempt::Fail(e),
            Err(e) => {
                return Attempt::Retry {
                    error: e,
                    after: None,
                }
            }
        };
        tracing::debug!(
            status,
            bytes = body.len(),
            ms = started.elapsed().as_millis() as u64,
            url = %shown,
            "response"
        );
        let response = Response {
            status,
            body,
            url: shown,
        };
        if status == 429 || (500..600).contains(&status) {
            let error = StacError::Status {
                url: response.url.clone(),
                status,
                body: body_snippet(&response.body),
            };
            Attempt::Retry { error, after }
        } else {
            Attempt::Done(response)
        }
    }
}

/// A transport failure of a request to `shown` (a redacted URL).
fn transport_error(shown: &str, e: &reqwest::Error) -> StacError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body could not be read"
    } else {
        "request failed"
    };
    // reqwest's own message may quote the URL: redact it.
    let detail = crate::error::redact_text(&error_chain(e));
    StacError::Transport {
        url: shown.to_string(),
        message: format!("{kind}: {detail}"),
    }
}

/// Reads the body of `resp`, at most `cap` bytes: an announced length over the cap fails before
/// reading anything, a streamed body fails as soon as it passes the cap.
///
/// # Errors
/// [`StacError::TooLarge`] past the cap, [`StacError::Transport`] when the body cannot be read.
fn read_capped(
    mut resp: reqwest::blocking::Response,
    cap: u64,
    shown: &str,
) -> Result<Vec<u8>, StacError> {
    let too_large = |announced| StacError::TooLarge {
        url: shown.to_string(),
        limit: cap,
        announced,
    };
    let announced = resp.content_length();
    if let Some(n) = announced.filter(|n| *n > cap) {
        return Err(too_large(Some(n)));
    }
    // room for what was announced, never more than the cap up front
    let initial = announced.unwrap_or(0).min(cap).min(1 << 20);
    let mut body = Vec::with_capacity(usize::try_from(initial).unwrap_or(0));
    let read = Read::by_ref(&mut resp)
        .take(cap.saturating_add(1))
        .read_to_end(&mut body);
    match read {
        Ok(_) if body.len() as u64 > cap => Err(too_large(announced)),
        Ok(_) => Ok(body),
        Err(e) => Err(
            match e.get_ref().and_then(|i| i.downcast_ref::<reqwest::Error>()) {
                Some(re) => transport_error(shown, re),
                None => StacError::Transport {
                    url: shown.to_string(),
                    message: format!(
                        "response body could not be read: {}",
                        crate::error::redact_text(&error_chain(&e))
                    ),
                },
            },
        ),
    }
}

/// The error and its sources, joined with `: `.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Sleeps for `wait`, waking every 100 ms to check `cancelled`.
fn sleep_unless_cancelled(wait: Duration, cancelled: &dyn Fn() -> bool) -> Result<(), StacError> {
    let end = Instant::now() + wait;
    loop {
        if cancelled() {
            return Err(StacError::Cancelled);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}
