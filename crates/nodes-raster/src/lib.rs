//! Raster node kinds of flow — `stack`, `mask-nodata`, `write`, `read` — and the synthetic
//! Timberlea Sentinel-2 scene that the demo and the tests run on.
//!
//! ```no_run
//! let mut registry = flow_core::Registry::new();
//! flow_nodes_raster::register(&mut registry);
//! assert!(registry.get("stack").is_some());
//! ```

#![warn(missing_docs, unreachable_pub)]

mod alloc;
mod clip;
mod error;
mod gdalx;
mod grid;
mod mask;
mod read;
mod read_node;
pub mod scene;
mod stac;
mod stack;
mod time_select;
mod verify;
mod write;

use std::sync::Arc;

pub use error::RasterError;
pub use mask::{MaskKind, DEFAULT_SCL_CLASSES};
pub use read::Resampling;
pub use read_node::ReadKind;
pub use scene::{generate_timberlea, TimberleaProvider, TIMBERLEA_VERSION};
pub use stack::StackKind;
pub use write::WriteKind;

/// Registers `stack`, `mask-nodata`, `write` and `read`, and the `timberlea` dataset, and installs flow's
/// GDAL error handler for the process.
///
/// A kind that is already registered (a plugin registered first, say) is left as it is.
pub fn register(registry: &mut flow_core::Registry) {
    // From here on GDAL's messages go to flow (its errors and log), never straight to stderr.
    gdalx::configure_process();
    for kind in [
        Arc::new(StackKind) as Arc<dyn flow_core::NodeKind>,
        Arc::new(MaskKind),
        Arc::new(WriteKind),
        Arc::new(ReadKind),
    ] {
        if let Err(e) = registry.register(kind) {
            tracing::warn!("{e}");
        }
    }
    registry.datasets.add("timberlea", scene::provider());
    registry
        .datasets
        .add("mosaic", Arc::new(scene::tile::MosaicProvider));
}
