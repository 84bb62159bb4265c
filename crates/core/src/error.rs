//! Errors raised by nodes while they are built or run.

use std::path::PathBuf;

use crate::exit::ExitCode;

/// A parameter that a node kind refused while building a node.
///
/// `param` names the offending parameter when there is one, so that the recipe layer can point at
/// its line and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The parameter at fault, when the error is about one.
    pub param: Option<String>,
    /// What is wrong, in a sentence.
    pub message: String,
    /// An optional hint on how to fix it.
    pub help: Option<String>,
    /// The node kind's own code failed (a plugin panicked or broke its contract) rather than the
    /// params being wrong: the command exits 6, not 2.
    pub plugin_fault: bool,
}

impl ParamError {
    /// An error about parameter `param`.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: Some(param.into()),
            message: message.into(),
            help: None,
            plugin_fault: false,
        }
    }

    /// An error about the node as a whole.
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            param: None,
            message: message.into(),
            help: None,
            plugin_fault: false,
        }
    }

    /// A failure of a plugin's own code while building a node (a panic, a broken contract).
    pub fn plugin_fault(message: impl Into<String>) -> Self {
        Self {
            plugin_fault: true,
            ..Self::general(message)
        }
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Why a node failed while running. Each variant maps to one of flow's exit codes
/// (see [`NodeError::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The input data cannot be processed (no valid pixels, an unreadable asset, ...): exit 3.
    #[error("{0}")]
    InvalidData(String),
    /// A remote service failed after the configured retries: exit 4.
    #[error("{url}: {message}")]
    Remote {
        /// The URL that failed (never with secrets in it).
        url: String,
        /// HTTP status or transport error, and the start of the body.
        message: String,
    },
    /// A local file could not be read or written: exit 5.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A plugin failed (a panic, a bad status, a bad value): exit 6.
    #[error("{0}")]
    Plugin(String),
    /// An input that the engine should have supplied is missing or has the wrong type: exit 1.
    #[error("input `{port}`: {message}")]
    Input {
        /// The port name.
        port: String,
        /// What was wrong.
        message: String,
    },
    /// The run would need more memory than its limit ([`crate::estimate`]): exit 2 when the
    /// plan alone shows it, 3 when only data known once part of the run is done (a search's
    /// items) does.
    #[error("{message}")]
    OverMemory {
        /// The node, the estimate and the limit.
        message: String,
        /// Known from the plan, before anything ran.
        from_plan: bool,
    },
    /// The run was cancelled (Ctrl-C or another node failed).
    #[error("cancelled")]
    Cancelled,
    /// Any other failure of the node: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl NodeError {
    /// The process exit code this error maps to (see the README's table of exit codes).
    pub fn exit_code(&self) -> ExitCode {
        match self {
            NodeError::InvalidData(_) => ExitCode::BadData,
            NodeError::Remote { .. } => ExitCode::Remote,
            NodeError::Io { .. } => ExitCode::Io,
            NodeError::Plugin(_) => ExitCode::Plugin,
            NodeError::OverMemory {
                from_plan: true, ..
            } => ExitCode::Usage,
            NodeError::OverMemory { .. } => ExitCode::BadData,
            NodeError::Cancelled => ExitCode::Interrupted,
            NodeError::Input { .. } | NodeError::Failed(_) => ExitCode::NodeFailed,
        }
    }

    /// Shorthand for an [`NodeError::Io`] error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NodeError::Io {
            path: path.into(),
            source,
        }
    }
}
