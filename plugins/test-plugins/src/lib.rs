//! Test-only flow plugins for tests/plugins.rs; not for real recipes.
//!
//! Kinds:
//! - `test-labels`: a source node that makes a class map from `rows` (an array of arrays of
//!   integers; `nodata` marks pixels without a class), so tests can feed a known array to a node.
//! - `test-panic`: panics with "deliberate test panic: <message>".
//! - `test-fail`: fails with NodeError::InvalidData("deliberate test failure: <message>"),
//!   optionally once a file exists (`wait_for`).
//! - `test-wait`: runs until the run is cancelled, polling every 10 ms; fails by itself after
//!   `limit_secs` (60), so that a test can never hang.
//! - `test-bad-output`: returns a class map whose array does not match its grid.
//! - `test-stamp`: key material (the bytes of a file), freshness (a marker file it writes) and an
//!   unkeyed param.
//!
//! Its siblings `test-wrong-abi` and `test-no-entry` are the broken libraries of the same tests.

use std::time::{Duration, Instant};

use flow_plugin::prelude::*;

mod kinds {
    use super::*;

    /// `test-labels`.
    pub struct TestLabels;

    impl PluginKind for TestLabels {
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
        fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
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

    impl PluginNode for LabelsNode {
        fn run(
            &self,
            _ctx: &PluginContext,
            _inputs: &PluginInputs<'_>,
        ) -> Result<Value, NodeError> {
            Ok(Value::Labels(self.0.clone()))
        }
    }

    /// `test-panic` and `test-fail`.
    pub struct Misbehave {
        pub panic: bool,
    }

    impl PluginKind for Misbehave {
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
                ParamSpec::optional(
                    "wait_for",
                    ParamType::String,
                    "a file (relative to the recipe) to wait for before misbehaving (60 s at most)",
                ),
            ]
        }
        fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
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
                wait_for: params
                    .get("wait_for")
                    .and_then(|v| v.as_str())
                    .map(String::from),
            }))
        }
    }

    struct MisbehaveNode {
        panic: bool,
        message: String,
        wait_for: Option<String>,
    }

    impl PluginNode for MisbehaveNode {
        fn run(&self, ctx: &PluginContext, _inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
            if let Some(file) = &self.wait_for {
                let file = ctx.resolve(file);
                let t0 = Instant::now();
                while !file.exists() && t0.elapsed() < LIMIT {
                    ctx.check_cancelled()?;
                    std::thread::sleep(POLL);
                }
            }
            if self.panic {
                panic!("deliberate test panic: {}", self.message);
            }
            Err(NodeError::InvalidData(format!(
                "deliberate test failure: {}",
                self.message
            )))
        }
    }

    /// How often the waiting kinds look at the cancel flag or a file.
    const POLL: Duration = Duration::from_millis(10);
    /// How long the waiting kinds wait at most.
    const LIMIT: Duration = Duration::from_secs(60);

    fn no_inputs(output: ValueType) -> Signature {
        Signature {
            inputs: vec![],
            output,
        }
    }

    /// `test-wait`.
    pub struct Wait;

    impl PluginKind for Wait {
        fn name(&self) -> &str {
            "test-wait"
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &str {
            "Test only: runs until the run is cancelled (polling every 10 ms), then stops; fails by \
             itself after `limit_secs`."
        }
        fn signature(&self) -> Signature {
            no_inputs(ValueType::Json)
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![
                ParamSpec::optional(
                    "started",
                    ParamType::String,
                    "a file (relative to the recipe) written once the node runs",
                ),
                ParamSpec::with_default(
                    "limit_secs",
                    ParamType::Integer,
                    LIMIT.as_secs() as i64,
                    "how long to wait for the cancellation before failing, at most 60",
                ),
            ]
        }
        fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
            let limit = params
                .get("limit_secs")
                .and_then(|v| v.as_integer())
                .filter(|s| (0..=LIMIT.as_secs() as i64).contains(s))
                .ok_or_else(|| ParamError::new("limit_secs", "must be from 0 to 60"))?;
            Ok(Box::new(WaitNode {
                started: params
                    .get("started")
                    .and_then(|v| v.as_str())
                    .map(String::from),
                limit: Duration::from_secs(limit as u64),
            }))
        }
    }

    struct WaitNode {
        started: Option<String>,
        limit: Duration,
    }

    impl PluginNode for WaitNode {
        fn run(&self, ctx: &PluginContext, _inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
            let t0 = Instant::now();
            if let Some(file) = &self.started {
                let file = ctx.resolve(file);
                std::fs::write(&file, ctx.node_id.as_bytes())
                    .map_err(|e| NodeError::io(&file, e))?;
            }
            while t0.elapsed() < self.limit {
                if ctx.is_cancelled() {
                    ctx.warn(format!(
                        "test-wait saw the cancellation after {} ms",
                        t0.elapsed().as_millis()
                    ));
                    return Err(NodeError::Cancelled);
                }
                std::thread::sleep(POLL);
            }
            Err(NodeError::Failed(format!(
                "test-wait was not cancelled within {} s",
                self.limit.as_secs()
            )))
        }
    }

    /// `test-bad-output`.
    pub struct BadOutput;

    impl PluginKind for BadOutput {
        fn name(&self) -> &str {
            "test-bad-output"
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &str {
            "Test only: returns a class map of 2 x 2 pixels on a 3 x 3 grid."
        }
        fn signature(&self) -> Signature {
            no_inputs(ValueType::Labels)
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![]
        }
        fn build(&self, _params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
            Ok(Box::new(BadOutputNode))
        }
    }

    struct BadOutputNode;

    impl PluginNode for BadOutputNode {
        fn run(
            &self,
            _ctx: &PluginContext,
            _inputs: &PluginInputs<'_>,
        ) -> Result<Value, NodeError> {
            Ok(Value::Labels(Labels {
                data: ndarray::Array2::zeros((2, 2)),
                nodata: 65535,
                classes: vec![],
                grid: Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, 3, 3),
            }))
        }
    }

    /// `test-stamp`.
    pub struct Stamp;

    impl PluginKind for Stamp {
        fn name(&self) -> &str {
            "test-stamp"
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &str {
            "Test only: counts the bytes of `path` (whose contents are its key material) and writes \
             `marker` into the output directory (it is fresh while the marker exists); `note` is \
             not part of the key."
        }
        fn signature(&self) -> Signature {
            no_inputs(ValueType::Json)
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![
                ParamSpec::required("path", ParamType::String, "a file, relative to the recipe"),
                ParamSpec::with_default(
                    "marker",
                    ParamType::String,
                    "stamp.txt",
                    "a file written into the output directory",
                ),
                ParamSpec::optional("note", ParamType::String, "anything; not in the cache key"),
            ]
        }
        fn unkeyed_params(&self) -> &[&str] {
            &["note"]
        }
        fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
            let text = |k: &str| params.get(k).and_then(|v| v.as_str()).unwrap_or_default();
            Ok(Box::new(StampNode {
                path: text("path").to_string(),
                marker: text("marker").to_string(),
            }))
        }
    }

    struct StampNode {
        path: String,
        marker: String,
    }

    impl StampNode {
        fn read(&self, ctx: &PluginContext) -> Result<Vec<u8>, NodeError> {
            let path = ctx.resolve(&self.path);
            std::fs::read(&path).map_err(|e| NodeError::io(&path, e))
        }
    }

    impl PluginNode for StampNode {
        fn run(&self, ctx: &PluginContext, _inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
            let bytes = self.read(ctx)?;
            let marker = ctx.out_dir.join(&self.marker);
            std::fs::write(&marker, &bytes).map_err(|e| NodeError::io(&marker, e))?;
            Ok(Value::Json(serde_json::json!({ "bytes": bytes.len() })))
        }

        fn key_material(&self, ctx: &PluginContext) -> Result<Option<Vec<u8>>, NodeError> {
            self.read(ctx).map(Some)
        }

        fn is_fresh(&self, ctx: &PluginContext, cached: &ValueView<'_>) -> bool {
            matches!(cached, ValueView::Json(j) if j.get("bytes").is_some())
                && ctx.out_dir.join(&self.marker).is_file()
        }
    }
}

flow_plugin::export_plugin! {
    name: "test-plugins",
    version: env!("CARGO_PKG_VERSION"),
    kinds: [
        kinds::TestLabels,
        kinds::Misbehave { panic: true },
        kinds::Misbehave { panic: false },
        kinds::Wait,
        kinds::BadOutput,
        kinds::Stamp,
    ],
}
