//! `gather`: the rows of several whole matrices, one after another, in one matrix.
//!
//! A run over many tiles samples each tile in a task of its own ([`crate::sample`]), fits one
//! model on all the samples gathered, then predicts each tile with it. `gather` takes its inputs
//! under names of the recipe's choosing (plain identifiers, see [`check_port_name`]).
//!
//! **Order.** Rows come in the byte order of the input names: `u0000`, `u0001`, ... in their
//! numeric order when they are zero-padded to one width (`u10` comes before `u2`). That is the
//! order the node sees its inputs in ([`flow_core::Inputs`] is keyed by port name) and the order
//! the cache key hashes them in, so the output cannot depend on anything else: the plan lists a
//! kind's declared ports first and then the ports a recipe names itself in the order the recipe
//! writes them, and two recipes that write the same inputs in another order share one cached
//! output.
//!
//! **Grid.** A gathered matrix has no grid of its own: it is one line of pixels
//! ([`line_grid`]): as wide as its rows, one pixel high, with the first input's CRS and transform
//! (so its resolution), every pixel valid. `kmeans-fit` (with or without its own `sample`, which
//! then keys each row by its place in the line), `classifier-fit` (with labels on that line) and
//! `predict` take it as any matrix; `reshape` gives the classes as one line too.

use flow_core::estimate::{Estimate, Known, Pixels, Shape};
use flow_core::{
    alloc, DeclaredParams, Grid, Inputs, Matrix, Node, NodeError, NodeKind, ParamError, ParamSpec,
    Params, RunContext, Scaling, Signature, Value, ValueType,
};
use ndarray::s;

use crate::error::MlError;

flow_core::params! {
    /// `gather` takes no parameters.
    pub struct GatherParams {}
}

/// The grid of a matrix of `rows` rows that has none of its own (a gathered matrix, or a
/// sample's rows): one line of `rows` pixels with `like`'s CRS and transform.
pub fn line_grid(like: &Grid, rows: usize) -> Grid {
    Grid {
        crs: like.crs.clone(),
        transform: like.transform,
        width: rows,
        height: 1,
    }
}

/// Whether `port` may name an input of `gather`: a plain identifier (ASCII letters, digits and
/// `_`, not starting with a digit).
///
/// # Errors
/// Why the name is refused.
pub fn check_port_name(port: &str) -> Result<(), String> {
    let plain = port.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && port.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(
            "name gather's inputs with plain identifiers (letters, digits and `_`, starting \
             with a letter or `_`), such as u0000, u0001: rows come in the byte order of the \
             names"
                .into(),
        )
    }
}

/// The `gather` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatherKind;

impl NodeKind for GatherKind {
    fn name(&self) -> &str {
        "gather"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Concatenates the rows of several whole matrices (one per tile, such as a `sample` of \
         each) to fit one model on all of them. Inputs take names of the recipe's choosing \
         (plain identifiers): inputs = { a = \"sample_a\", b = \"sample_b\" }; rows come in the \
         byte order of those names (u0000, u0001, ...), whatever order the recipe writes them \
         in. Every input must have the same features in the same order and the same scaling, \
         else exit 3 naming the input; a matrix computed window by window is refused (sample it \
         first). The gathered matrix has no grid of its own: it is one line of pixels as wide as \
         its rows, with the first input's CRS and transform, every pixel valid; kmeans-fit (with \
         or without `sample`), classifier-fit and predict take it as any matrix."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: Vec::new(),
            output: ValueType::Matrix,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        GatherParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        GatherParams::parse(params)?;
        Ok(Box::new(GatherNode))
    }

    fn open_port(&self, port: &str) -> Option<Result<ValueType, String>> {
        Some(check_port_name(port).map(|()| ValueType::Matrix))
    }
}

/// A built `gather` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatherNode;

/// A scaling for messages: `minmax (global) of [0, 3000] to [0, 255]`, or `none`.
fn describe_scaling(s: Option<&Scaling>) -> String {
    match s {
        None => "none".into(),
        Some(s) => format!(
            "{} ({}) of [{}, {}] to [{}, {}]{}",
            s.method,
            s.scope,
            s.statistics[0],
            s.statistics[1],
            s.range[0],
            s.range[1],
            if s.clip { ", clipped" } else { "" }
        ),
    }
}

/// The scaling of feature `i` (none when the matrix records no scaling).
fn scaling_of(m: &Matrix, i: usize) -> Option<&Scaling> {
    m.scaling.get(i).and_then(Option::as_ref)
}

impl GatherNode {
    /// The rows of `inputs` (port name and matrix), in the order given, in one matrix on
    /// [`line_grid`] of the first.
    ///
    /// # Errors
    /// [`MlError::Shape`] without an input; [`MlError::Gather`] for an input whose
    /// features or scaling differ from the first's; [`MlError::Shape`] for a matrix whose
    /// columns are not its features, or a gathered matrix too large for memory.
    pub fn apply(&self, inputs: &[(&str, &Matrix)]) -> Result<Matrix, MlError> {
        let Some(&(first_port, first)) = inputs.first() else {
            return Err(MlError::Shape(
                "gather has no input: connect the matrices to gather with inputs = { a = \
                 \"NODE\", b = \"NODE\" }"
                    .into(),
            ));
        };
        let f = first.features.len();
        for &(port, m) in inputs {
            if m.features != first.features {
                return Err(MlError::Gather {
                    port: port.into(),
                    problem: format!(
                        "has features [{}] but the first input `{first_port}` has [{}]; every \
                         gathered matrix needs the same features in the same order",
                        m.features.join(", "),
                        first.features.join(", ")
                    ),
                });
            }
            if m.scaling != first.scaling {
                let i = (0..f.max(1))
                    .find(|&i| scaling_of(m, i) != scaling_of(first, i))
                    .unwrap_or(0);
                let feature = first.features.get(i).map_or("?", String::as_str);
                return Err(MlError::Gather {
                    port: port.into(),
                    problem: format!(
                        "was scaled otherwise than the first input `{first_port}` (feature \
                         `{feature}`: {} against {}); normalize every input with the same \
                         statistics (normalize's `statistics` input) before gathering",
                        describe_scaling(scaling_of(m, i)),
                        describe_scaling(scaling_of(first, i))
                    ),
                });
            }
            if m.data.ncols() != f {
                return Err(MlError::Shape(format!(
                    "gather: input `{port}` has {} columns for {f} features",
                    m.data.ncols()
                )));
            }
        }
        let total = inputs
            .iter()
            .try_fold(0usize, |acc, (_, m)| acc.checked_add(m.data.nrows()))
            .ok_or_else(|| MlError::Shape("gather: too many rows".into()))?;
        let too_large = |e: alloc::AllocError| {
            MlError::Shape(format!(
                "gather: the gathered matrix of {total} rows x {f} features {e}"
            ))
        };
        let mut data = alloc::array2((total, f), 0f32).map_err(too_large)?;
        let mut at = 0usize;
        for (_, m) in inputs {
            let n = m.data.nrows();
            data.slice_mut(s![at..at + n, ..]).assign(&m.data);
            at += n;
        }
        let valid = alloc::array2((1, total), true).map_err(too_large)?;
        tracing::debug!(inputs = inputs.len(), rows = total, "gather");
        Ok(Matrix {
            data,
            features: first.features.clone(),
            valid,
            grid: line_grid(&first.grid, total),
            scaling: first.scaling.clone(),
        })
    }
}

impl Node for GatherNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        // Each input's rows are at most its pixels (a sample describes itself by its rows).
        let mut total = 0usize;
        for (_, shape) in &known.shapes {
            total = total.saturating_add(shape.pixels()?.grid.len());
        }
        let (_, first) = known.shapes.iter().min_by(|a, b| a.0.cmp(&b.0))?;
        let first = first.pixels()?;
        Some(Estimate::of(Shape::Pixels(Pixels::whole(
            ValueType::Matrix,
            1,
            first.bands,
            line_grid(&first.grid, total),
        ))))
    }

    /// Windowed inputs are refused with a message, not computed whole.
    fn takes_deferred(&self) -> bool {
        true
    }

    fn run(&self, _ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        // By port name: see the module's doc.
        let mut matrices = Vec::new();
        for (port, value) in inputs.iter() {
            match value {
                Value::Matrix(m) => matrices.push((port, m)),
                Value::Deferred(d) => {
                    return Err(NodeError::InvalidData(format!(
                        "gather: input `{port}` is {} computed window by window (node `{}`); \
                         gather holds its inputs whole: sample it first (a node of kind \
                         \"sample\" with input = \"{}\" and a `size`) and gather the sample",
                        d.describe(),
                        d.expr.node_id,
                        d.expr.node_id
                    )))
                }
                other => {
                    return Err(NodeError::Input {
                        port: port.into(),
                        message: format!("expected Matrix, got {}", other.value_type()),
                    })
                }
            }
        }
        Ok(Value::Matrix(self.apply(&matrices)?))
    }
}
