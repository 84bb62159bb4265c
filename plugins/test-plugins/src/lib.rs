//! Test-only flow plugins for tests/plugins.rs; not for real recipes.
//!
//! Kinds (default build):
//! - `test-labels`: a source node that makes a class map from `rows` (an array of arrays of
//!   integers; `nodata` marks pixels without a class), so tests can feed a known array to a node.
//! - `test-panic`: panics with "deliberate test panic: <message>".
//! - `test-fail`: fails with NodeError::InvalidData("deliberate test failure").
//!
//! Its siblings `test-wrong-abi` and `test-no-entry` are the broken libraries of the same tests.

use flow_plugin::prelude::*;

mod kinds {
    use super::*;

    /// `test-labels`.
    pub struct TestLabels;

    impl NodeKind for TestLabels {
        fn name(&self) -> &str {
            "test-labels"
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &str {
            "Test only: a class map made from `rows` on a 10 m grid in EPSG:32618."
        }
        fn signature(&self) -> Signature {
            Signature {
                inputs: vec![],
                output: ValueType::Labels,
            }
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![
                ParamSpec::required(
                    "rows",
                    ParamType::array(ParamType::array(ParamType::Integer)),
                    "class ids, row by row",
                ),
                ParamSpec::with_default("nodata", ParamType::Integer, 65535, "nodata value"),
            ]
        }
        fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
            let nodata = params
                .get("nodata")
                .and_then(|v| v.as_integer())
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| ParamError::new("nodata", "`nodata` must fit in u16"))?;
            let rows: Vec<Vec<u16>> = params
                .get("rows")
                .and_then(|v| v.as_array())
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            r.as_array()
                                .map(|r| {
                                    r.iter()
                                        .filter_map(|v| v.as_integer())
                                        .filter_map(|v| u16::try_from(v).ok())
                                        .collect()
                                })
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let width = rows.first().map_or(0, Vec::len);
            if rows.is_empty() || rows.iter().any(|r| r.len() != width || width == 0) {
                return Err(ParamError::new(
                    "rows",
                    "`rows` must be a non-empty rectangle of u16",
                ));
            }
            let data = ndarray::Array2::from_shape_fn((rows.len(), width), |(y, x)| rows[y][x]);
            Ok(Box::new(LabelsNode(Labels {
                classes: (0..data
                    .iter()
                    .filter(|&&v| v != nodata)
                    .max()
                    .map_or(0, |&m| m + 1))
                    .map(|id| ClassInfo {
                        id,
                        name: format!("class {id}"),
                        color: [(id * 40 % 256) as u8, 100, 200],
                    })
                    .collect(),
                grid: Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, width, rows.len()),
                nodata,
                data,
            })))
        }
    }

    struct LabelsNode(Labels);

    impl Node for LabelsNode {
        fn run(&self, _ctx: &RunContext, _inputs: &Inputs<'_>) -> Result<Value, NodeError> {
            Ok(Value::Labels(self.0.clone()))
        }
    }

    /// `test-panic` and `test-fail`.
    pub struct Misbehave {
        pub panic: bool,
    }

    impl NodeKind for Misbehave {
        fn name(&self) -> &str {
            if self.panic {
                "test-panic"
            } else {
                "test-fail"
            }
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &str {
            "Test only: panics (test-panic) or fails (test-fail) when run, or when built."
        }
        fn signature(&self) -> Signature {
            Signature {
                inputs: vec![Port::optional("input", ValueType::Any, "ignored")],
                output: ValueType::Labels,
            }
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![
                ParamSpec::with_default(
                    "message",
                    ParamType::String,
                    "boom",
                    "the panic or error message",
                ),
                ParamSpec::with_default(
                    "when",
                    ParamType::String,
                    "run",
                    "`run`, or `build` to misbehave while the node is built (validation)",
                ),
            ]
        }
        fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
            let message = params
                .get("message")
                .and_then(|v| v.as_str())
                .unwrap_or("boom")
                .to_string();
            if params.get("when").and_then(|v| v.as_str()) == Some("build") {
                if self.panic {
                    panic!("deliberate test panic while building: {message}");
                }
                return Err(ParamError::new(
                    "when",
                    format!("deliberate test failure while building: {message}"),
                ));
            }
            Ok(Box::new(MisbehaveNode {
                panic: self.panic,
                message,
            }))
        }
    }

    struct MisbehaveNode {
        panic: bool,
        message: String,
    }

    impl Node for MisbehaveNode {
        fn run(&self, _ctx: &RunContext, _inputs: &Inputs<'_>) -> Result<Value, NodeError> {
            if self.panic {
                panic!("deliberate test panic: {}", self.message);
            }
            Err(NodeError::InvalidData(format!(
                "deliberate test failure: {}",
                self.message
            )))
        }
    }
}

flow_plugin::export_plugin! {
    name: "test-plugins",
    version: env!("CARGO_PKG_VERSION"),
    kinds: [kinds::TestLabels, kinds::Misbehave { panic: true }, kinds::Misbehave { panic: false }],
}
