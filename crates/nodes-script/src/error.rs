//! The crate's error type and its mapping onto [`flow_core::NodeError`].

use std::path::PathBuf;

use flow_core::NodeError;

/// Why a `script` node failed.
///
/// A script that fails, runs too long or writes an output that does not fit the node is a failed
/// node (exit code 1, [`NodeError::Failed`]); a script file or work file that cannot be read or
/// written is a local I/O error (exit code 5, [`NodeError::Io`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The script file named by the recipe cannot be read.
    #[error("script {}: {source}", path.display())]
    Script {
        /// The script's path, resolved against the recipe's directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The interpreter cannot be started or cannot tell its version.
    #[error("interpreter `{interpreter}`: {message}")]
    Interpreter {
        /// The interpreter as the node runs it.
        interpreter: String,
        /// What went wrong, and how to choose another.
        message: String,
    },
    /// The script ended with a non-zero status.
    #[error("script `{script}` failed ({status}){}", stderr_block(stderr))]
    Exited {
        /// The script as the recipe names it.
        script: String,
        /// `exit status 1`, `killed by signal 9`.
        status: String,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The script ran longer than its timeout and was killed, with the processes it started.
    #[error(
        "script `{script}` ran longer than its timeout of {timeout} and was killed; raise `timeout` if it needs longer{}",
        stderr_block(stderr)
    )]
    TimedOut {
        /// The script as the recipe names it.
        script: String,
        /// The timeout as the recipe gives it (`10m`).
        timeout: String,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The script ended well, but what it wrote is not the node's declared output.
    #[error("script `{script}`: {message}")]
    Output {
        /// The script as the recipe names it.
        script: String,
        /// What is wrong, with what was expected and what was found.
        message: String,
    },
    /// The script file changed between the cache lookup and the run, so the output would be
    /// stored under the key of other contents.
    #[error("script {} changed while the run was starting; run again", path.display())]
    Changed {
        /// The script's path.
        path: PathBuf,
    },
    /// A file of the work directory could not be written or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled; the script was killed.
    #[error("cancelled")]
    Cancelled,
}

/// The stderr tail of a failed script as the end of a message, or nothing when it wrote none.
fn stderr_block(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        "; it wrote nothing to stderr".into()
    } else {
        format!("; its stderr ends with:\n{}", stderr.trim_end())
    }
}

impl From<ScriptError> for NodeError {
    fn from(e: ScriptError) -> Self {
        match e {
            ScriptError::Cancelled => NodeError::Cancelled,
            ScriptError::Io { path, source } => NodeError::Io { path, source },
            ScriptError::Script { path, source } => NodeError::Io {
                path,
                source: std::io::Error::new(
                    source.kind(),
                    format!("the script the recipe names cannot be read: {source}"),
                ),
            },
            other => NodeError::Failed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_the_script_exit_1_and_files_exit_5() {
        let failed: NodeError = ScriptError::Exited {
            script: "s.py".into(),
            status: "exit status 1".into(),
            stderr: "Traceback\nValueError: boom\n".into(),
        }
        .into();
        assert_eq!(failed.exit_code().code(), 1);
        assert!(
            failed
                .to_string()
                .ends_with("ends with:\nTraceback\nValueError: boom"),
            "{failed}"
        );
        let silent: NodeError = ScriptError::TimedOut {
            script: "s.py".into(),
            timeout: "2s".into(),
            stderr: String::new(),
        }
        .into();
        assert_eq!(silent.exit_code().code(), 1);
        assert!(silent.to_string().contains("timeout of 2s"), "{silent}");
        assert!(silent.to_string().contains("wrote nothing"), "{silent}");
        let missing: NodeError = ScriptError::Script {
            path: "/r/s.py".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }
        .into();
        assert_eq!(missing.exit_code().code(), 5);
        assert!(
            missing.to_string().starts_with("/r/s.py: the script"),
            "{missing}"
        );
        assert!(matches!(
            NodeError::from(ScriptError::Cancelled),
            NodeError::Cancelled
        ));
    }
}
