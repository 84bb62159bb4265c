//! The vocabulary shared by every part of flow.
//!
//! - [`Value`] and its variants ([`Raster`], [`Matrix`], [`Model`], [`Labels`], [`Items`]) are what
//!   flows along the edges of a recipe's graph; [`ValueType`] is the type of a port.
//! - [`NodeKind`] describes one kind of node (`stack`, `kmeans-fit`, ...): its signature, its
//!   parameter schema, and how to build a runnable [`Node`] from validated parameters.
//! - [`Registry`] holds every known kind, built-in or from a plugin.
//! - [`ValueMeta`] ([`meta`]) is the one description of a value's shape, used by the store, the
//!   summaries and the plugin wire format; [`params!`] declares a kind's params once.
//! - [`ExitCode`] is flow's table of exit codes.
//! - [`store`] turns values into `.npy` arrays plus a JSON sidecar and back, the format of the cache.
//!
//! This crate does no I/O of its own beyond what [`store`] is handed, links no GDAL and opens no
//! network connection, so the engine and plugins build fast against it.
//!
//! # Example
//!
//! ```
//! use flow_core::{ParamSpec, ParamType, Params};
//!
//! let spec = vec![ParamSpec::required("k", ParamType::Integer, "number of clusters")];
//! let mut params = Params::new();
//! params.insert("k".into(), toml::Value::Integer(4));
//! assert!(flow_core::schema::check(&spec, &params).is_empty());
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod alloc;
pub mod area;
pub mod atomic;
pub mod classifier;
pub mod dataset;
pub mod declare;
pub mod deferred;
pub mod digest;
pub mod error;
pub mod estimate;
pub mod exact;
pub mod exit;
pub mod grid;
pub mod meta;
pub mod node;
pub mod npy;
pub mod polygon;
pub mod redact;
pub mod registry;
pub mod schema;
pub mod signer;
pub mod store;
pub mod summary;
pub mod time;
pub mod value;
pub mod window;

pub use classifier::{Classifier, Holdout, Tree};
pub use declare::{DeclaredParams, ParamKind};
pub use error::{NodeError, ParamError};
pub use exit::ExitCode;
pub use grid::Grid;
pub use meta::{ArrayRef, Dtype, NamedArray, ValueMeta};
pub use node::{
    Caching, DatasetProvider, Datasets, Inputs, Node, NodeKind, Origin, Port, ProgressSink,
    RunContext, Signature, Source, Work,
};
pub use registry::Registry;
pub use schema::{ParamSpec, ParamType, Params};
pub use summary::{ClassifierSummary, Summary};
pub use value::{
    BandInfo, ClassInfo, Items, Labels, Matrix, Model, Raster, Scaling, Value, ValueType,
};

#[doc(hidden)]
pub use toml as __toml;
