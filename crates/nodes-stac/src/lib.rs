//! STAC node kinds of flow.
//!
//! - `stac-search`: item search against a live STAC API (POST with GET fallback, `next` pages
//!   followed safely, logged retries with backoff, responses capped at 64 MiB) or the same
//!   filters applied to a local ItemCollection, a static `catalog.json` tree or a `builtin:NAME`
//!   dataset; the output names its catalog (`flow:catalog`).
//! - `sign`: makes asset hrefs readable (`planetary-computer` SAS tokens, or `none`); signed
//!   assets name a [`flow_core::signer::HrefSigner`] (`flow:signer`) that readers ask to re-sign
//!   an href whose token expired or was refused.
//!
//! Items stay plain `serde_json` STAC items inside [`flow_core::Items`], so every extension field
//! survives.
//!
//! ```
//! let mut registry = flow_core::Registry::new();
//! flow_nodes_stac::register(&mut registry);
//! assert!(registry.get("stac-search").is_some() && registry.get("sign").is_some());
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod datetime;
pub mod error;
pub mod geometry;
pub mod http;
pub mod items;
pub mod search;
pub mod sign;

use std::sync::Arc;

pub use error::StacError;
pub use search::StacSearchKind;
pub use sign::SignKind;

/// Registers `stac-search` and `sign` (a kind already registered under one of those names is
/// kept, with a warning).
pub fn register(registry: &mut flow_core::Registry) {
    let kinds: [Arc<dyn flow_core::NodeKind>; 2] =
        [Arc::new(StacSearchKind), Arc::new(SignKind::new())];
    for kind in kinds {
        if let Err(e) = registry.register(kind) {
            tracing::warn!("{e}");
        }
    }
}
