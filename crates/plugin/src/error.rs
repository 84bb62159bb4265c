//! Errors of loading and calling plugins, and how node errors cross the boundary as JSON.

use std::path::PathBuf;

use flow_core::{ExitCode, NodeError, ParamError};
use serde_json::{json, Value as Json};

/// Why a plugin could not be loaded or called. Every variant maps to [`ExitCode::Plugin`] (6).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The file could not be opened as a shared library (missing, not a library, wrong
    /// architecture, unresolved symbols).
    #[error("cannot load plugin {}: {reason}", path.display())]
    Load {
        /// The library path.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library could have been replaced by someone else (anyone may write it or its
    /// directory, or it belongs to another user), so it is not loaded.
    #[error("refusing to load plugin {}: {reason}", path.display())]
    Untrusted {
        /// The library path.
        path: PathBuf,
        /// Why it is not trusted.
        reason: String,
    },
    /// The library has no `flow_plugin_entry` symbol.
    #[error(
        "{} is not a flow plugin: it exports no `flow_plugin_entry` symbol (a plugin is built with \
         flow_plugin::export_plugin!)",
        path.display()
    )]
    NoEntry {
        /// The library path.
        path: PathBuf,
    },
    /// The library was built against another version of the plugin ABI.
    #[error(
        "plugin {} was built for plugin ABI version {found}, but this flow expects ABI version \
         {expected}: rebuild the plugin against this flow's flow-plugin crate",
        path.display()
    )]
    AbiMismatch {
        /// The library path.
        path: PathBuf,
        /// The ABI version of this flow.
        expected: u32,
        /// The ABI version the library declares.
        found: u32,
    },
    /// The library's descriptor or kind list is not what the ABI says.
    #[error("plugin {} is malformed: {message}", path.display())]
    Malformed {
        /// The library path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plugin kind has the name of a kind that is already registered.
    #[error("plugin {}: node kind `{kind}` is already registered", path.display())]
    DuplicateKind {
        /// The library path.
        path: PathBuf,
        /// The kind name.
        kind: String,
    },
    /// Plugin code panicked; the panic was caught at the boundary.
    #[error("plugin `{plugin}` panicked: {message}")]
    Panicked {
        /// The plugin's name.
        plugin: String,
        /// The panic message.
        message: String,
    },
    /// A plugin call broke the protocol (bad status, bad value).
    #[error("plugin `{plugin}`: {message}")]
    Failed {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        message: String,
    },
}

impl PluginError {
    /// The process exit code: [`ExitCode::Plugin`].
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::Plugin
    }
}

impl From<PluginError> for NodeError {
    fn from(e: PluginError) -> Self {
        NodeError::Plugin(e.to_string())
    }
}

/// A [`NodeError`] as JSON (plugin side).
pub(crate) fn node_error_to_json(e: &NodeError) -> Json {
    match e {
        NodeError::InvalidData(m) => json!({"kind": "invalid-data", "message": m}),
        NodeError::Remote { url, message } => {
            json!({"kind": "remote", "url": url, "message": message})
        }
        NodeError::Io { path, source } => {
            json!({"kind": "io", "path": path, "message": source.to_string()})
        }
        NodeError::Plugin(m) => json!({"kind": "plugin", "message": m}),
        NodeError::Input { port, message } => {
            json!({"kind": "input", "port": port, "message": message})
        }
        NodeError::Cancelled => json!({"kind": "cancelled", "message": "cancelled"}),
        other => json!({"kind": "failed", "message": other.to_string()}),
    }
}

/// A [`NodeError`] back from JSON (host side). Text that is not the expected JSON becomes a
/// plugin error carrying the text.
pub(crate) fn node_error_from_json(plugin: &str, text: &str) -> NodeError {
    let Ok(j) = serde_json::from_str::<Json>(text) else {
        return PluginError::Failed {
            plugin: plugin.into(),
            message: format!("node failed with a malformed error: {text}"),
        }
        .into();
    };
    let s = |k: &str| {
        j.get(k)
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let message = s("message");
    match j.get("kind").and_then(Json::as_str).unwrap_or_default() {
        "invalid-data" => NodeError::InvalidData(message),
        "remote" => NodeError::Remote {
            url: s("url"),
            message,
        },
        "io" => NodeError::Io {
            path: PathBuf::from(s("path")),
            source: std::io::Error::other(message),
        },
        "input" => NodeError::Input {
            port: s("port"),
            message,
        },
        "cancelled" => NodeError::Cancelled,
        "plugin" => PluginError::Failed {
            plugin: plugin.into(),
            message,
        }
        .into(),
        _ => NodeError::Failed(message),
    }
}

/// A [`ParamError`] as JSON (plugin side).
pub(crate) fn param_error_to_json(e: &ParamError) -> Json {
    json!({"param": e.param, "message": e.message, "help": e.help})
}

/// A [`ParamError`] back from JSON (host side).
pub(crate) fn param_error_from_json(plugin: &str, text: &str) -> ParamError {
    match serde_json::from_str::<Json>(text) {
        Ok(j) => {
            let s = |k: &str| j.get(k).and_then(Json::as_str).map(String::from);
            ParamError {
                param: s("param"),
                message: s("message").unwrap_or_else(|| text.to_string()),
                help: s("help"),
                plugin_fault: false,
            }
        }
        Err(_) => ParamError::general(format!("plugin `{plugin}`: {text}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_errors_keep_their_exit_codes_across() {
        for e in [
            NodeError::InvalidData("no pixels".into()),
            NodeError::Remote {
                url: "http://x".into(),
                message: "503".into(),
            },
            NodeError::io("/tmp/x", std::io::Error::other("denied")),
            NodeError::Input {
                port: "input".into(),
                message: "m".into(),
            },
            NodeError::Failed("f".into()),
            NodeError::Plugin("p".into()),
        ] {
            let back = node_error_from_json("p", &node_error_to_json(&e).to_string());
            assert_eq!(back.exit_code(), e.exit_code(), "{e}");
        }
        assert_eq!(
            node_error_from_json("p", "not json").exit_code(),
            ExitCode::Plugin
        );
        let cancelled = node_error_to_json(&NodeError::Cancelled).to_string();
        assert!(matches!(
            node_error_from_json("p", &cancelled),
            NodeError::Cancelled
        ));
    }

    #[test]
    fn param_errors_keep_the_param() {
        let e = ParamError::new("size", "must be odd").with_help("try 3");
        let back = param_error_from_json("p", &param_error_to_json(&e).to_string());
        assert_eq!(back, e);
    }
}
