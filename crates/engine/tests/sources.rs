//! Remote sources: a node that read remote files tells the engine whether they changed
//! (`Node::source_changed`); a changed one is a miss for the node and everything after it, one
//! it cannot tell about keeps the cached output.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use flow_core::{
    Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, Port, Registry, RunContext,
    Signature, Source, Value, ValueType,
};
use flow_engine::{Cache, NodeStatus, RunOptions, RunReport};
use flow_recipe::{Overrides, Plan};
use serde_json::json;

/// Files on a pretend server: name -> (value, version); `answers` false = the server cannot
/// tell (as for a 403 on a HEAD).
struct Server {
    files: BTreeMap<String, (i64, String)>,
    answers: bool,
}

fn server() -> &'static Mutex<Server> {
    static SERVER: OnceLock<Mutex<Server>> = OnceLock::new();
    SERVER.get_or_init(|| {
        Mutex::new(Server {
            files: (0..20)
                .map(|i| (format!("https://h/f{i}.tif"), (i, "\"v1\"".to_string())))
                .collect(),
            answers: true,
        })
    })
}

/// How often `source_changed` was asked.
static ASKED: AtomicUsize = AtomicUsize::new(0);

/// `remote`: sums the values of every file on the server, recording each as a remote source.
struct RemoteKind;
struct RemoteNode;
impl NodeKind for RemoteKind {
    fn name(&self) -> &str {
        "remote"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "sums remote files"
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
    fn build(&self, _: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(RemoteNode))
    }
}
impl Node for RemoteNode {
    fn run(&self, ctx: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
        let s = server().lock().unwrap();
        let mut sum = 0;
        for (location, (value, version)) in &s.files {
            sum += value;
            ctx.record_source(Source {
                location: location.clone(),
                size: Some(1),
                version: Some(version.clone()),
                local: false,
                credentials: None,
            });
        }
        Ok(Value::Json(json!(sum)))
    }

    fn source_changed(&self, source: &Source) -> Option<bool> {
        ASKED.fetch_add(1, Ordering::SeqCst);
        let s = server().lock().unwrap();
        if !s.answers {
            return None;
        }
        Some(match s.files.get(&source.location) {
            Some((_, version)) => Some(version) != source.version.as_ref(),
            None => true,
        })
    }
}

/// `plus`: its input plus one.
struct PlusKind;
struct PlusNode;
impl NodeKind for PlusKind {
    fn name(&self) -> &str {
        "plus"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "adds one"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required("input", ValueType::Json, "a number")],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![]
    }
    fn build(&self, _: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(PlusNode))
    }
}
impl Node for PlusNode {
    fn run(&self, _: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        match inputs.value("input")? {
            Value::Json(v) => Ok(Value::Json(json!(v.as_i64().unwrap_or(0) + 1))),
            _ => Err(NodeError::Failed("not a number".into())),
        }
    }
}

fn plan() -> Plan {
    let mut r = Registry::new();
    r.register(Arc::new(RemoteKind)).unwrap();
    r.register(Arc::new(PlusKind)).unwrap();
    let text = "name = \"remote\"\n[nodes.read]\nkind = \"remote\"\n[nodes.total]\nkind = \"plus\"\ninput = \"read\"\n";
    Plan::build("test.toml", text, &r, &Overrides::new(None, &[]))
        .unwrap_or_else(|d| panic!("{d:?}"))
}

fn run(cache: &Path) -> RunReport {
    let options = RunOptions {
        jobs: 2,
        cache: Some(Cache::open(cache).unwrap()),
        refresh: false,
        out_dir: std::env::temp_dir(),
        recipe_dir: ".".into(),
        data_dir: std::env::temp_dir(),
        datasets: Default::default(),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        registry: None,
        window: None,
        memory_limit: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(flow_engine::run(&plan(), options, |_| {}))
}

fn total(report: &RunReport) -> serde_json::Value {
    serde_json::to_value(report.node("total").and_then(|n| n.output.clone()).unwrap()).unwrap()
        ["value"]
        .clone()
}

#[test]
fn a_changed_remote_source_is_a_miss_and_one_that_cannot_be_checked_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path());
    assert_eq!(first.exit_code.code(), 0, "{first:?}");
    assert_eq!(total(&first), json!(191));

    // Nothing changed: all cached, every source asked about (on several threads).
    let second = run(dir.path());
    assert!(
        second.with_status(NodeStatus::Computed).is_empty(),
        "{second:?}"
    );
    assert_eq!(ASKED.load(Ordering::SeqCst), 20);

    // The server cannot tell: the cached output is kept.
    server().lock().unwrap().answers = false;
    let third = run(dir.path());
    assert!(
        third.with_status(NodeStatus::Computed).is_empty(),
        "{third:?}"
    );
    server().lock().unwrap().answers = true;

    // One file changed behind the same node and params: it and what follows recompute.
    server()
        .lock()
        .unwrap()
        .files
        .insert("https://h/f13.tif".into(), (113, "\"v2\"".into()));
    let fourth = run(dir.path());
    let mut computed = fourth.with_status(NodeStatus::Computed);
    computed.sort();
    assert_eq!(computed, ["read", "total"]);
    assert_eq!(total(&fourth), json!(291));
    let fifth = run(dir.path());
    assert!(
        fifth.with_status(NodeStatus::Computed).is_empty(),
        "{fifth:?}"
    );
    assert_eq!(total(&fifth), json!(291));
}
