//! The crate's error type, and the redaction of secrets from URLs and text.

use std::path::PathBuf;

use flow_core::NodeError;

/// Why a STAC node failed. Converted into [`NodeError`] (remote failures, oversized responses
/// included, exit 4; bad local catalogs 3; local I/O 5). URLs and bodies in it are already
/// redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StacError {
    /// The server answered with an error status (after retries, when it was retryable).
    #[error("HTTP {status}{}", snippet_suffix(body))]
    Status {
        /// The request URL (redacted).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The first characters of the body (redacted).
        body: String,
    },
    /// The request could not be made or the response not read (connection, timeout, truncation).
    #[error("{message}")]
    Transport {
        /// The request URL (redacted).
        url: String,
        /// What happened.
        message: String,
    },
    /// The server answered 2xx with a body that is not what STAC promises.
    #[error("HTTP {status}: {message}{}", snippet_suffix(body))]
    BadResponse {
        /// The request URL (redacted).
        url: String,
        /// The HTTP status.
        status: u16,
        /// What is wrong with the body.
        message: String,
        /// The first characters of the body (redacted).
        body: String,
    },
    /// The response body is larger than the client's cap
    /// ([`crate::http::HttpConfig::max_response_bytes`]); reading stopped there.
    #[error("the response body is larger than the {} limit on responses{}; stopped reading", size_text(*limit), announced_suffix(*announced))]
    TooLarge {
        /// The request URL (redacted).
        url: String,
        /// The cap, in bytes.
        limit: u64,
        /// The length the server announced (`Content-Length`), when it did.
        announced: Option<u64>,
    },
    /// A retryable failure that persisted through every try.
    #[error("{last} (gave up after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    GaveUp {
        /// How many tries were made (the first one and the retries).
        attempts: u32,
        /// The failure of the last try.
        last: Box<StacError>,
    },
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A local catalog or ItemCollection is malformed.
    #[error("{}: {message}", path.display())]
    Catalog {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `builtin:` dataset is unknown or could not be materialized.
    #[error("{0}")]
    Dataset(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// `n` bytes as MiB when it is a whole number of them, else in bytes.
fn size_text(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{n}-byte")
    }
}

fn announced_suffix(announced: Option<u64>) -> String {
    announced.map_or_else(String::new, |n| format!(" (Content-Length: {n})"))
}

fn snippet_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl StacError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StacError::Io {
            path: path.into(),
            source,
        }
    }

    /// The (redacted) URL of a failed request, when the error is about one.
    pub fn url(&self) -> Option<&str> {
        match self {
            StacError::Status { url, .. }
            | StacError::Transport { url, .. }
            | StacError::BadResponse { url, .. }
            | StacError::TooLarge { url, .. } => Some(url),
            StacError::GaveUp { last, .. } => last.url(),
            _ => None,
        }
    }

    /// A malformed local catalog file.
    pub fn catalog(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        StacError::Catalog {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<StacError> for NodeError {
    fn from(e: StacError) -> Self {
        match e {
            StacError::Status { .. }
            | StacError::Transport { .. }
            | StacError::BadResponse { .. }
            | StacError::TooLarge { .. }
            | StacError::GaveUp { .. } => NodeError::Remote {
                url: e.url().unwrap_or_default().to_string(),
                message: e.to_string(),
            },
            StacError::Io { path, source } => NodeError::Io { path, source },
            StacError::Catalog { .. } | StacError::Dataset(_) => {
                NodeError::InvalidData(e.to_string())
            }
            StacError::Cancelled => NodeError::Cancelled,
        }
    }
}

/// How many characters of a response body go into an error message.
pub const SNIPPET_CHARS: usize = 200;

/// The first [`SNIPPET_CHARS`] characters of a body, lossily decoded, on one line, redacted.
pub fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() {
        out.push('…');
    }
    redact_text(&out.replace(['\r', '\n'], " "))
}

/// A URL fit for logs and messages: a query string that carries a signature (`sig=`) is
/// replaced by `?[redacted]`; other query strings are kept.
pub fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) if query.to_ascii_lowercase().contains("sig=") => {
            format!("{base}?[redacted]")
        }
        _ => url.to_string(),
    }
}

/// True for characters that end a URL or token inside free text.
fn is_boundary(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | '#'
        )
}

/// Redacts secrets from free text: wherever `sig=` appears, the whole query string around it
/// (or the whole bare token) becomes `[redacted]`; so does the value of a `"token"` JSON member.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let lower = text.to_ascii_lowercase();
    let mut i = 0;
    while let Some(pos) = lower[i..].find("sig=") {
        let at = i + pos;
        // back to the start of the word, then to just after its `?` if it has one
        let word_start = text[i..at].rfind(is_boundary).map_or(i, |b| {
            let c = text[i + b..].chars().next().map_or(1, char::len_utf8);
            i + b + c
        });
        let start = text[word_start..at]
            .rfind('?')
            .map_or(word_start, |q| word_start + q + 1);
        out.push_str(&text[i..start]);
        out.push_str("[redacted]");
        i = text[at..].find(is_boundary).map_or(text.len(), |e| at + e);
    }
    out.push_str(&text[i..]);
    redact_token_member(&out)
}

/// Replaces the string value of every `"token"` member with `[redacted]`.
fn redact_token_member(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("\"token\"") {
        let after_key = pos + "\"token\"".len();
        out.push_str(&rest[..after_key]);
        rest = &rest[after_key..];
        let trimmed = rest.trim_start_matches([' ', ':', '\t']);
        let colon_part = &rest[..rest.len() - trimmed.len()];
        if colon_part.contains(':') && trimmed.starts_with('"') {
            out.push_str(colon_part);
            out.push_str("\"[redacted]");
            // skip to the closing quote (or the end of the text)
            let body = &trimmed[1..];
            let close = body.find('"').map_or(body.len(), |c| c);
            rest = &body[close..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_urls_and_text() {
        assert_eq!(
            redact_url("https://a.blob.core.windows.net/c/x.tif?st=1&se=2&sig=abc%2F"),
            "https://a.blob.core.windows.net/c/x.tif?[redacted]"
        );
        assert_eq!(
            redact_url("http://h/search?page=2"),
            "http://h/search?page=2"
        );
        let t = redact_text("failed https://h/x?se=1&sig=SECRET&sp=r now, and SIG=abc");
        assert_eq!(t, "failed https://h/x?[redacted] now, and [redacted]");
        let t = redact_text("token st=1&sp=rl&sig=X%3D.");
        assert_eq!(t, "token [redacted]");
        let t = redact_text(r#"{"msft:expiry": "x", "token": "se=1&sp=r&sv=2"}"#);
        assert!(!t.contains("sp=r"), "{t}");
        assert!(t.contains("msft:expiry"), "{t}");
        let t = redact_text(r#"{"token": "unterminated"#);
        assert!(!t.contains("unterminated"), "{t}");
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        let body = "x".repeat(1000) + "\n";
        let s = body_snippet(body.as_bytes());
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(body_snippet(b"a\nb").contains("a b"));
    }
}
