//! The node kinds compiled into `flow`.

use flow_core::Registry;

/// Every built-in node kind and dataset.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    flow_nodes_stac::register(&mut registry);
    flow_nodes_raster::register(&mut registry);
    flow_nodes_ml::register(&mut registry);
    flow_nodes_script::register(&mut registry);
    registry
}
