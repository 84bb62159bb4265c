//! Pixel-local nodes on deferred inputs: instead of running, the node becomes one more step of
//! the expression that computes each window (see [`flow_core::deferred`]).

use std::sync::Arc;

use flow_core::deferred::{probe, Deferred, Expr, Operand};
use flow_core::{Inputs, NodeError, RunContext, Value};
use flow_recipe::PlanNode;

/// The output of pixel-local `node` on `inputs`, some of them deferred (`first` among them): a
/// deferred value whose windows are `node` run on the same windows of its inputs. Its template
/// (bands, features, classes) comes from running the node on one pixel.
///
/// # Errors
/// Without a registry to rebuild nodes from, or when the node fails on that pixel.
pub(crate) fn apply(
    node: &PlanNode,
    ctx: &RunContext,
    inputs: &Inputs,
    first: &Deferred,
) -> Result<Value, NodeError> {
    let registry = ctx.registry().cloned().ok_or_else(|| {
        NodeError::Failed("windowed inputs need the run's registry; none was given".into())
    })?;
    let operands = inputs
        .iter()
        .map(|(port, v)| {
            let op = match v {
                Value::Deferred(d) => {
                    if d.grid() != first.grid() {
                        return Err(NodeError::Input {
                            port: port.into(),
                            message: "its grid differs from the grid of the other windowed inputs"
                                .into(),
                        });
                    }
                    Operand::Windowed(d.expr.clone())
                }
                other => Operand::Whole(Arc::new(other.clone())),
            };
            Ok((port.to_string(), op))
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    let expr = Arc::new(Expr {
        node_id: node.id.clone(),
        kind: node.kind.name().to_string(),
        params: node.params.clone(),
        inputs: operands,
    });
    let prepared = expr.prepare(&registry)?;
    let template = probe(&prepared, ctx, first.grid())?;
    Ok(Value::Deferred(Deferred::new(
        template,
        first.window,
        expr,
    )?))
}
