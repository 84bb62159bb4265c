//! Test only (tests/plugins.rs): a plugin whose descriptor declares ABI version 999. flow must
//! refuse it after reading that number and nothing else; its one kind panics as soon as anything
//! asks for its name, so a host that called into it would fail the test with "panicked".

use flow_plugin::prelude::*;

/// A kind that must never be described.
pub struct NeverDescribed;

impl NodeKind for NeverDescribed {
    fn name(&self) -> &str {
        panic!("flow called into a library built for another ABI version")
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        ""
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn build(&self, _params: &Params) -> Result<Box<dyn Node>, ParamError> {
        Err(ParamError::general("never built"))
    }
}

flow_plugin::export_plugin! {
    @abi_version 999,
    name: "test-wrong-abi",
    version: env!("CARGO_PKG_VERSION"),
    kinds: [NeverDescribed],
}
