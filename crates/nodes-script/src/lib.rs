//! The `script` node kind of flow: a computation flow lacks (a custom index, a filter), written
//! as a script of the recipe's own instead of a Rust plugin, as openEO's UDFs or Snakemake's
//! `script:` allow.
//!
//! ```toml
//! [nodes.ndmi]
//! kind = "script"
//! inputs = { cube = "mask" }      # any names; each input becomes cube.npy + cube.json
//! script = "scripts/ndmi.py"      # relative to the recipe
//! args = ["--eps", "1e-6"]
//! output = "raster"               # raster, matrix, labels or json
//! bands = ["NDMI"]
//! timeout = "10m"
//! ```
//!
//! A run writes the inputs into a temporary directory ([`inputs`]), runs
//! `interpreter script args...` there with a timeout (the script and the processes it starts
//! are killed when it passes or the run is cancelled), and reads `output.npy` / `output.json`
//! back, checking them against the declared output and the inputs' grid before anything the
//! size of the array is allocated. The cache key holds the script's
//! contents, the interpreter's name and its `--version` answer ([`ScriptNode`]'s key material);
//! the params hold the args. The file contract is in docs/scripts.md.

#![warn(missing_docs, unreachable_pub)]

pub mod error;
pub mod inputs;
mod node;
mod output;
pub mod params;
mod process;

use std::sync::Arc;

use flow_core::{NodeKind, Registry};

pub use error::ScriptError;
pub use node::{ScriptKind, ScriptNode};
pub use params::{OutputKind, ScriptParams, ValidScriptParams};

/// Every node kind of this crate.
pub fn kinds() -> Vec<Arc<dyn NodeKind>> {
    vec![Arc::new(ScriptKind)]
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
