//! The crate's error type and its mapping onto flow's [`NodeError`].

use std::path::PathBuf;

use flow_core::NodeError;

/// Everything that can go wrong in the raster nodes and the scene generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RasterError {
    /// The input data cannot be used (an unreadable asset, items in several CRSs, a missing band).
    #[error("{0}")]
    InvalidData(String),
    /// An asset of an item could not be read.
    #[error("item `{item}`, asset `{asset}` ({href}): {message}")]
    Asset {
        /// The item id.
        item: String,
        /// The asset key.
        asset: String,
        /// The href that was read.
        href: String,
        /// What GDAL said.
        message: String,
    },
    /// A remote asset could not be read: the server timed out, could not be reached or failed
    /// (429, 5xx) after the retries.
    #[error("item `{item}`, asset `{asset}` ({href}): {message}")]
    Remote {
        /// The item id.
        item: String,
        /// The asset key.
        asset: String,
        /// The href that was read (without its query string).
        href: String,
        /// What went wrong.
        message: String,
    },
    /// A local file could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A GDAL call failed while writing or computing something local.
    #[error("{context}: {message}")]
    Gdal {
        /// What was being done.
        context: String,
        /// GDAL's message.
        message: String,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A node failed computing a window of a windowed value being written.
    #[error(transparent)]
    Node(NodeError),
}

impl RasterError {
    /// A GDAL failure while doing `context`.
    pub(crate) fn gdal(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        RasterError::Gdal {
            context: context.into(),
            message: err.to_string(),
        }
    }

    /// An I/O failure on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RasterError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<RasterError> for NodeError {
    fn from(e: RasterError) -> Self {
        match e {
            RasterError::InvalidData(_) | RasterError::Asset { .. } => {
                NodeError::InvalidData(e.to_string())
            }
            RasterError::Remote {
                item,
                asset,
                href,
                message,
            } => NodeError::Remote {
                url: href,
                message: format!("item `{item}`, asset `{asset}`: {message}"),
            },
            RasterError::Io { path, source } => NodeError::Io { path, source },
            RasterError::Gdal { .. } => NodeError::Failed(e.to_string()),
            RasterError::Cancelled => NodeError::Cancelled,
            RasterError::Node(e) => e,
        }
    }
}

/// Shorthand for results of this crate.
pub(crate) type Result<T, E = RasterError> = std::result::Result<T, E>;
