//! flow's plugins: the C ABI, the plugin-author SDK and the host loader.
//!
//! A plugin is a `cdylib` that depends on this crate only. Its author implements [`PluginKind`]
//! and [`PluginNode`] (the plugin side of flow's `NodeKind` and `Node`) and calls
//! [`export_plugin!`] once; flow loads the library from `--plugin PATH`, the recipe's
//! `plugins = [...]` or `FLOW_PLUGIN_PATH`, and its kinds become usable in recipes like built-in
//! ones.
//!
//! - [`abi`]: the `#[repr(C)]` types that cross the boundary (ABI version first; serde JSON of
//!   flow-core's own types for kinds, params, value metadata and the run context; arrays as
//!   pointer + shape + dtype + release callback; host callbacks for cancellation and warnings).
//! - [`sdk`]: the author's traits and the `extern "C"` functions behind [`export_plugin!`], each
//!   wrapped in `catch_unwind`; [`PluginContext`] and [`PluginInputs`] are what a node receives.
//! - [`host`]: [`load`] / [`load_into`] (libloading; libraries are never unloaded) and the
//!   wrappers [`ForeignKind`] / [`ForeignNode`] that make each plugin kind a `flow_core::NodeKind`
//!   with `Origin::Plugin`.
//! - [`plugin_paths`]: which libraries to load.
//!
//! # Example
//!
//! A plugin with one node kind that counts the classified pixels of a class map:
//!
//! ```
//! use flow_plugin::prelude::*;
//!
//! struct CountKind;
//!
//! impl PluginKind for CountKind {
//!     fn name(&self) -> &str { "count-classified" }
//!     fn version(&self) -> u32 { 1 }
//!     fn doc(&self) -> &str { "Counts the pixels that have a class." }
//!     fn signature(&self) -> Signature {
//!         Signature {
//!             inputs: vec![Port::required("input", ValueType::Labels, "a class map")],
//!             output: ValueType::Json,
//!         }
//!     }
//!     fn params(&self) -> Vec<ParamSpec> { vec![] }
//!     fn build(&self, _params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
//!         Ok(Box::new(CountNode))
//!     }
//! }
//!
//! struct CountNode;
//!
//! impl PluginNode for CountNode {
//!     fn run(&self, ctx: &PluginContext, inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
//!         let labels = inputs.labels("input")?; // a view of flow's array: no copy
//!         let mut n = 0;
//!         for row in labels.data.rows() {
//!             ctx.check_cancelled()?; // Ctrl-C, or another node failed
//!             n += row.iter().filter(|&&v| v != labels.nodata).count();
//!         }
//!         Ok(Value::Json(serde_json::json!({ "classified": n })))
//!     }
//! }
//!
//! flow_plugin::export_plugin! {
//!     name: "count",
//!     version: "0.1.0",
//!     kinds: [CountKind],
//! }
//! # fn main() {}
//! ```
//!
//! See `docs/plugins.md` for building and loading, with `plugins/majority-filter` as the worked
//! example.

#![warn(missing_docs, unreachable_pub)]

pub mod abi;
mod buf;
pub mod context;
pub mod error;
pub mod host;
pub mod kinds;
pub mod paths;
pub mod sdk;
pub mod views;
mod wire;

pub use context::PluginContext;
pub use error::PluginError;
pub use host::{load, load_into, ForeignKind, ForeignNode, LoadedPlugin, PluginLibrary};
pub use paths::plugin_paths;
pub use sdk::{PluginKind, PluginNode};
pub use views::{LabelsView, MatrixView, PluginInputs, RasterView, ValueView};

/// Re-exported so that a plugin needs no other dependency.
pub use flow_core;
/// Re-exported so that a plugin needs no other dependency.
pub use ndarray;
/// Re-exported so that a plugin needs no other dependency.
pub use serde_json;
/// Re-exported so that a plugin needs no other dependency.
pub use toml;

/// Everything a plugin's node code usually names.
pub mod prelude {
    pub use crate::context::PluginContext;
    pub use crate::sdk::{PluginKind, PluginNode};
    pub use crate::views::{LabelsView, MatrixView, PluginInputs, RasterView, ValueView};
    pub use crate::{ndarray, serde_json, toml};
    pub use flow_core::{
        BandInfo, Caching, ClassInfo, Grid, Items, Labels, Matrix, Model, NodeError, ParamError,
        ParamSpec, ParamType, Params, Port, Raster, Signature, Value, ValueType,
    };
}

/// Loads the plugins for one command and registers their kinds: the recipe's `plugins`
/// (`recipe` = its list, with the libraries of the recipes it extends, and its directory),
/// `FLOW_PLUGIN_PATH`, then `cli` (`--plugin`).
///
/// # Errors
/// The first [`PluginError`] (exit code 6).
pub fn load_all(
    registry: &mut flow_core::Registry,
    recipe: Option<(&[String], &std::path::Path)>,
    cli: &[std::path::PathBuf],
) -> Result<Vec<LoadedPlugin>, PluginError> {
    load_into(registry, &plugin_paths(recipe, cli))
}
