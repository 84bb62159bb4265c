//! The machine-learning nodes of flow: `composite`, `normalize`, `add-index`, `flatten`,
//! `sample`, `gather`, `kmeans-fit`, `classifier-fit`, `predict`, `reshape`, `assess`.
//!
//! ```text
//! Raster -composite-> Raster (one time step)
//! Raster -normalize-> Raster -add-index-> Raster -flatten-> Matrix -kmeans-fit-> Model
//!                                                             \------predict(+Model)-> Matrix -reshape-> Labels
//! Matrix + Labels -classifier-fit-> Model (a classifier, which predict applies the same way)
//! Matrix (tile a) -sample-> Matrix \
//! Matrix (tile b) -sample-> Matrix -gather-> Matrix -kmeans-fit-> Model (one model, many tiles)
//! ```
//!
//! Everything is f32 on the way, NaN meaning nodata: NaN never enters a statistic or a fit, and
//! comes back as nodata in the class map. Parallel reductions use fixed chunks combined in order,
//! so results do not depend on the number of threads.

#![warn(missing_docs, unreachable_pub)]

pub mod assess;
pub mod classifier;
mod common;
pub mod composite;
pub mod error;
pub mod flatten;
pub mod gather;
pub mod index;
pub mod kmeans;
pub mod normalize;
pub mod predict;
pub mod reshape;
pub mod sample;

use std::sync::Arc;

use flow_core::{NodeKind, Registry};

pub use assess::AssessKind;
pub use classifier::ClassifierFitKind;
pub use composite::CompositeKind;
pub use error::MlError;
pub use flatten::FlattenKind;
pub use gather::GatherKind;
pub use index::AddIndexKind;
pub use kmeans::KMeansFitKind;
pub use normalize::NormalizeKind;
pub use predict::PredictKind;
pub use reshape::ReshapeKind;
pub use sample::SampleKind;

/// Every node kind of this crate.
pub fn kinds() -> Vec<Arc<dyn NodeKind>> {
    vec![
        Arc::new(CompositeKind),
        Arc::new(NormalizeKind),
        Arc::new(AddIndexKind),
        Arc::new(FlattenKind),
        Arc::new(SampleKind),
        Arc::new(GatherKind),
        Arc::new(KMeansFitKind),
        Arc::new(ClassifierFitKind),
        Arc::new(PredictKind),
        Arc::new(ReshapeKind),
        Arc::new(AssessKind),
    ]
}

/// Registers [`kinds`] in `registry`. A kind whose name is already taken is skipped with a
/// warning (the first registration wins).
pub fn register(registry: &mut Registry) {
    for kind in kinds() {
        if let Err(e) = registry.register(kind) {
            tracing::warn!("{e}");
        }
    }
}
