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
    let operands = inputs
        .shared()
        .map(|(port, v)| {
            let op = match v.as_ref() {
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
                _ => Operand::Whole(v.clone()),
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
    let prepared = expr.prepare_in(ctx)?;
    let template = probe(&prepared, ctx, first.grid())?;
    Ok(Value::Deferred(Deferred::new(
        template,
        first.window,
        expr,
    )?))
}
