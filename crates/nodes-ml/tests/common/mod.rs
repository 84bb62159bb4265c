//! Helpers shared by the nodes-ml integration tests: the registry, nodes built from TOML params,
//! a run context and a run.

use std::sync::Arc;

use flow_core::{schema, Inputs, Node, NodeError, Params, Registry, RunContext, Value};

/// The registry with this crate's kinds.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    flow_nodes_ml::register(&mut r);
    r
}

/// Builds a node of `kind` from TOML params, checked and completed by the kind's schema.
pub fn build(kind: &str, src: &str) -> Box<dyn Node> {
    let reg = registry();
    let kind = reg.get(kind).unwrap();
    let mut params: Params = toml::from_str(src).unwrap();
    let spec = kind.params();
    assert!(
        schema::check(&spec, &params).is_empty(),
        "{:?}",
        schema::check(&spec, &params)
    );
    schema::apply_defaults(&spec, &mut params);
    kind.build(&params).unwrap()
}

/// A run context writing under /tmp.
pub fn ctx() -> RunContext {
    RunContext::new("test", "/tmp".into(), "/tmp".into(), "/tmp".into())
}

/// Runs `node` on `inputs`.
pub fn run(
    node: &dyn Node,
    ctx: &RunContext,
    inputs: Vec<(&str, Value)>,
) -> Result<Value, NodeError> {
    node.run(
        ctx,
        &Inputs::new(
            inputs
                .into_iter()
                .map(|(k, v)| (k.to_string(), Arc::new(v))),
        ),
    )
}
