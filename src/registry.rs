//! The node kinds compiled into `flow`.

use flow_core::Registry;

/// Every built-in node kind and dataset.
pub fn builtin() -> Registry {
    let registry = Registry::new();
    registry
}
