//! flow's engine: runs a [`flow_recipe::Plan`] with a content-addressed [`Cache`].
//!
//! - [`key`] computes each node's cache key, Merkle-style: BLAKE3 over the kind, its version and
//!   origin, the canonical params, any extra key material the node declares, and the keys of its
//!   inputs. Values never enter keys, so keys are known before anything runs.
//! - [`Cache`] stores values as `.npy` + JSON directories, written to a temp directory, fsynced and
//!   renamed into place, with a BLAKE3 manifest verified on every read. With a [`Remote`] (a
//!   prefix on S3, GCS, Azure or a shared filesystem) it is the read-through copy of a cache
//!   that many runs share.
//! - [`run`] executes the plan on tokio: it works out which nodes are needed (a node whose
//!   consumers are all cached is not even loaded), runs ready nodes concurrently up to `jobs` on
//!   blocking threads, cancels the rest on the first failure or Ctrl-C, and returns a [`RunReport`].

#![warn(missing_docs, unreachable_pub)]

pub mod cache;
mod deferred;
pub mod error;
pub mod estimate;
pub mod executor;
pub mod key;
pub mod memory;
pub mod remote;
pub mod report;

pub use cache::{Cache, EntryInfo, Lookup};
pub use error::CacheError;
pub use estimate::{estimate, NodeEstimate, PlanEstimate};
pub use executor::{estimate_run, run, Event, RunOptions};
pub use key::Key;
pub use remote::{Remote, WriteMode};
pub use report::{NodeReport, NodeStatus, RunReport};
