//! flow's recipes: TOML text in, a validated [`Plan`] out, or every mistake at once.
//!
//! Loading happens in two phases, like ripgrep's low and high arguments:
//!
//! 1. [`source::SpannedDoc`] parses the text and remembers where every key and value is, so that
//!    any later error can point at `file:line:col` with a caret.
//! 2. [`Plan::build`] resolves `[params]`, the chosen `[profiles.NAME]`, `--set` overrides and
//!    `${params.NAME}` references; checks every node against its kind's schema and signature; wires
//!    the inputs into a petgraph DAG; and refuses cycles. All errors are collected into one
//!    [`Diagnostics`] before anything is fetched or written: each is a [`RecipeError`], a typed
//!    [`Problem`] (whose wording lives in [`problem`]) at its location.
//!
//! A recipe may build on another with `extends = "base.toml"` ([`extends`]): the files are merged
//! in phase 1, each key keeping the file and position it came from.
//!
//! # Example
//!
//! ```
//! use flow_recipe::{Overrides, Plan};
//!
//! let registry = flow_core::Registry::new();
//! let text = "name = \"empty\"\n";
//! let plan = Plan::build("r.toml", text, &registry, &Overrides::default()).unwrap();
//! assert_eq!(plan.name, "empty");
//! assert!(plan.nodes.is_empty());
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod diagnostic;
pub mod extends;
pub mod interpolate;
pub mod overrides;
pub mod plan;
pub mod problem;
pub mod render;
pub mod source;

pub use diagnostic::{Diagnostics, RecipeError};
pub use overrides::{Overrides, SetOverride};
pub use plan::{is_plain_name, Plan, PlanNode, Scale};
pub use problem::Problem;
