//! Errors of the cache.

use std::path::PathBuf;

/// A failure of the on-disk cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A file or directory of the cache could not be read or written.
    #[error("cache: {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The shared cache on object storage could not be opened, read or written.
    #[error("cache: {url}: {reason}")]
    Remote {
        /// The URL of the store, or of the object concerned.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A record name that is not a plain relative path.
    #[error("cache: record name {name:?}: {reason}")]
    RecordName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry exists but does not verify.
    #[error("cache entry {key}: {reason}")]
    Corrupt {
        /// The entry's key.
        key: String,
        /// What did not verify.
        reason: String,
    },
}

impl CacheError {
    /// The exit code this error maps to: local I/O or cache, local or remote (5).
    pub fn exit_code(&self) -> flow_core::ExitCode {
        flow_core::ExitCode::Io
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CacheError::Io {
            path: path.into(),
            source,
        }
    }
}
