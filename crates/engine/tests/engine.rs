//! The engine against node kinds that exist only in this test: caching, recomputation after a
//! change, corruption, interrupted writes, concurrency.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use flow_core::{
    Grid, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, ParamType, Params, Port,
    Raster, Registry, RunContext, Signature, Value, ValueType,
};
use flow_engine::{Cache, NodeStatus, RunOptions, RunReport};
use flow_recipe::{Overrides, Plan};
use ndarray::Array4;
use serde_json::json;

/// Counts how often each test kind really ran, across the whole test binary.
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// `number`: emits its `value` param.
struct NumberKind;
struct NumberNode(i64);
impl NodeKind for NumberKind {
    fn name(&self) -> &str {
        "number"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "emits a number"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::required(
            "value",
            ParamType::Integer,
            "the number",
        )]
    }
    fn build(&self, p: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(NumberNode(p["value"].as_integer().unwrap_or(0))))
    }
}
impl Node for NumberNode {
    fn run(&self, _: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        Ok(Value::Json(json!(self.0)))
    }
}

/// `sum`: adds its inputs `a` and `b` (and `offset`); fails when the sum is negative.
struct SumKind;
struct SumNode(i64);
impl NodeKind for SumKind {
    fn name(&self) -> &str {
        "sum"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "adds"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required("a", ValueType::Json, "a"),
                Port::optional("b", ValueType::Json, "b"),
            ],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::with_default(
            "offset",
            ParamType::Integer,
            0,
            "added",
        )]
    }
    fn build(&self, p: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(SumNode(p["offset"].as_integer().unwrap_or(0))))
    }
}
impl Node for SumNode {
    fn run(&self, _: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let get = |p: &str| match inputs.get(p) {
            Some(Value::Json(v)) => v.as_i64().unwrap_or(0),
            _ => 0,
        };
        let total = get("a") + get("b") + self.0;
        if total < 0 {
            return Err(NodeError::InvalidData(format!("negative sum {total}")));
        }
        Ok(Value::Json(json!(total)))
    }
}

/// `live`: a stand-in for a live catalog search; emits the number in the file `path`, cached
/// with a time-to-live like `stac-search` against an API.
struct LiveKind;
struct LiveNode(String);
impl NodeKind for LiveKind {
    fn name(&self) -> &str {
        "live"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "reads a number that may change"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::required("path", ParamType::String, "the file")]
    }
    fn build(&self, p: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(LiveNode(
            p["path"].as_str().unwrap_or_default().into(),
        )))
    }
}
impl Node for LiveNode {
    fn run(&self, _: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
        let text = std::fs::read_to_string(&self.0).map_err(|e| NodeError::io(&self.0, e))?;
        Ok(Value::Json(json!(text.trim().parse::<i64>().unwrap_or(0))))
    }
    fn caching(&self) -> flow_core::Caching {
        flow_core::Caching::Ttl(3600)
    }
}

/// `file`: emits the number in the file `path`, recording the file as its source; with
/// `partial = true` it records nothing and says its output is incomplete.
struct FileKind;
struct FileNode(String, bool);
impl NodeKind for FileKind {
    fn name(&self) -> &str {
        "file"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "reads a number from a local file"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("path", ParamType::String, "the file"),
            ParamSpec::with_default("partial", ParamType::Bool, false, "incomplete output"),
        ]
    }
    fn build(&self, p: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(FileNode(
            p["path"].as_str().unwrap_or_default().into(),
            p["partial"].as_bool().unwrap_or(false),
        )))
    }
}
impl Node for FileNode {
    fn run(&self, ctx: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
        let path = Path::new(&self.0);
        let text = std::fs::read_to_string(path).map_err(|e| NodeError::io(path, e))?;
        if self.1 {
            // Like an asset that could not be read and was replaced by nodata: no source is
            // recorded for it, and the output says it is incomplete.
            ctx.mark_incomplete("one asset was replaced by nodata");
        } else {
            let source = flow_core::Source::local_file(path).map_err(|e| NodeError::io(path, e))?;
            ctx.record_source(source);
        }
        Ok(Value::Json(json!(text.trim().parse::<i64>().unwrap_or(0))))
    }
}

/// `rendezvous`: waits until `parties` nodes of this kind are running at the same time (or fails
/// after 20 s), then emits how many met. Proves overlap without timing races.
struct RendezvousKind(Arc<(Mutex<usize>, Condvar)>);
struct RendezvousNode(Arc<(Mutex<usize>, Condvar)>, usize);
impl NodeKind for RendezvousKind {
    fn name(&self) -> &str {
        "rendezvous"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "waits for its peers"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("parties", ParamType::Integer, "how many"),
            ParamSpec::required("name", ParamType::String, "id"),
        ]
    }
    fn build(&self, p: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(RendezvousNode(
            self.0.clone(),
            p["parties"].as_integer().unwrap_or(2) as usize,
        )))
    }
}
impl Node for RendezvousNode {
    fn run(&self, _: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
        let (lock, cv) = &*self.0;
        let mut arrived = lock.lock().unwrap();
        *arrived += 1;
        cv.notify_all();
        let (arrived, timeout) = cv
            .wait_timeout_while(arrived, Duration::from_secs(20), |n| *n < self.1)
            .unwrap();
        if timeout.timed_out() {
            return Err(NodeError::Failed(format!(
                "only {} of {} nodes ran at once",
                *arrived, self.1
            )));
        }
        Ok(Value::Json(json!(*arrived)))
    }
    fn caching(&self) -> flow_core::Caching {
        flow_core::Caching::Never
    }
}

/// `big`: a raster of `mb` megabytes filled from `seed`.
struct BigKind;
struct BigNode(usize, u64);
impl NodeKind for BigKind {
    fn name(&self) -> &str {
        "big"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "a large raster"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Raster,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("mb", ParamType::Integer, "size"),
            ParamSpec::required("seed", ParamType::Integer, "seed"),
        ]
    }
    fn build(&self, p: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(BigNode(
            p["mb"].as_integer().unwrap_or(1) as usize,
            p["seed"].as_integer().unwrap_or(0) as u64,
        )))
    }
}
impl Node for BigNode {
    fn run(&self, _: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
        Ok(big_raster(self.0, self.1))
    }
}

fn big_raster(mb: usize, seed: u64) -> Value {
    let side = ((mb * 1024 * 1024 / 4) as f64).sqrt() as usize;
    Value::Raster(Raster {
        data: Array4::from_shape_fn((1, 1, side, side), |(_, _, y, x)| {
            ((y * 31 + x * 17) as u64 ^ seed) as f32
        }),
        grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, side, side),
        bands: vec![Default::default()],
        times: vec!["2021-08-03T00:00:00Z".into()],
    })
}

fn registry() -> Registry {
    static RENDEZVOUS: std::sync::OnceLock<Arc<(Mutex<usize>, Condvar)>> =
        std::sync::OnceLock::new();
    let mut r = Registry::new();
    r.register(Arc::new(NumberKind)).unwrap();
    r.register(Arc::new(SumKind)).unwrap();
    r.register(Arc::new(BigKind)).unwrap();
    r.register(Arc::new(LiveKind)).unwrap();
    r.register(Arc::new(FileKind)).unwrap();
    r.register(Arc::new(RendezvousKind(
        RENDEZVOUS.get_or_init(Default::default).clone(),
    )))
    .unwrap();
    r
}

const RECIPE: &str = r#"
name = "diamond"
[params]
x = 1
[nodes.a]
kind = "number"
value = "${params.x}"
[nodes.b]
kind = "number"
value = 10
[nodes.left]
kind = "sum"
input = "a"
offset = 100
[nodes.right]
kind = "sum"
inputs = { a = "b" }
[nodes.total]
kind = "sum"
inputs = { a = "left", b = "right" }
"#;

fn plan(text: &str, sets: &[&str]) -> Plan {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Plan::build("test.toml", text, &registry(), &Overrides::new(None, &sets))
        .unwrap_or_else(|d| panic!("{d:?}"))
}

fn options(cache: Option<&Path>, jobs: usize) -> RunOptions {
    RunOptions {
        jobs,
        cache: cache.map(|c| Cache::open(c).unwrap()),
        refresh: false,
        out_dir: std::env::temp_dir(),
        recipe_dir: ".".into(),
        data_dir: std::env::temp_dir().join("flow-engine-tests-data"),
        datasets: Default::default(),
        cancel: Arc::new(AtomicBool::new(false)),
        progress: None,
        registry: None,
        window: None,
        memory_limit: None,
    }
}

fn run(plan: &Plan, options: RunOptions) -> RunReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(flow_engine::run(plan, options, |_| {}))
}

fn statuses(report: &RunReport) -> BTreeMap<String, NodeStatus> {
    report
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.status))
        .collect()
}

fn total(report: &RunReport) -> serde_json::Value {
    serde_json::to_value(report.node("total").and_then(|n| n.output.clone()).unwrap()).unwrap()
        ["value"]
        .clone()
}

#[test]
fn second_run_is_all_cached_and_a_change_recomputes_exactly_its_descendants() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(&plan(RECIPE, &[]), options(Some(dir.path()), 2));
    assert_eq!(first.exit_code.code(), 0, "{first:?}");
    assert_eq!(first.with_status(NodeStatus::Computed).len(), 5);
    assert_eq!(total(&first), json!(111));

    let second = run(&plan(RECIPE, &[]), options(Some(dir.path()), 2));
    assert!(
        second.with_status(NodeStatus::Computed).is_empty(),
        "{:?}",
        statuses(&second)
    );
    assert_eq!(second.with_status(NodeStatus::Cached).len(), 5);
    assert_eq!(total(&second), json!(111));

    // A node param changes: that node and its descendants recompute; `b`/`right` are not even
    // loaded, `a` is not either since only `left`'s param changed.
    let changed = run(
        &plan(RECIPE, &["left.offset=200"]),
        options(Some(dir.path()), 2),
    );
    let mut computed = changed.with_status(NodeStatus::Computed);
    computed.sort();
    assert_eq!(computed, vec!["left", "total"]);
    assert_eq!(total(&changed), json!(211));

    // A recipe param changes: `a` reads it, so a -> left -> total recompute.
    let by_param = run(&plan(RECIPE, &["x=2"]), options(Some(dir.path()), 2));
    let mut computed = by_param.with_status(NodeStatus::Computed);
    computed.sort();
    assert_eq!(computed, vec!["a", "left", "total"]);
    assert_eq!(total(&by_param), json!(112));
}

#[test]
fn corrupt_entry_is_warned_about_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(RECIPE, &[]);
    let first = run(&p, options(Some(dir.path()), 1));
    // Flip a byte in the sink's stored value.
    let key = &first.node("total").unwrap().key;
    let value = dir
        .path()
        .join("objects")
        .join(&key[..2])
        .join(key)
        .join("value.json");
    let mut bytes = std::fs::read(&value).unwrap();
    let last = bytes.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    bytes[last] = if bytes[last] == b'9' {
        b'8'
    } else {
        bytes[last] + 1
    };
    std::fs::write(&value, bytes).unwrap();

    let warnings = Mutex::new(Vec::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let second = rt.block_on(flow_engine::run(&p, options(Some(dir.path()), 1), |e| {
        if let flow_engine::Event::Warning(w) = e {
            warnings.lock().unwrap().push(w);
        }
    }));
    assert_eq!(second.exit_code.code(), 0);
    assert_eq!(second.node("total").unwrap().status, NodeStatus::Computed);
    assert_eq!(total(&second), json!(111), "never a wrong answer");
    let warnings = warnings.into_inner().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("corrupt") && w.contains("checksum")),
        "{warnings:?}"
    );
    assert_eq!(Cache::open(dir.path()).unwrap().verify(false).1, vec![]);
}

#[test]
fn two_independent_nodes_overlap() {
    let text = r#"
[nodes.one]
kind = "rendezvous"
parties = 2
name = "one"
[nodes.two]
kind = "rendezvous"
parties = 2
name = "two"
"#;
    let report = run(&plan(text, &[]), options(None, 2));
    assert_eq!(report.exit_code.code(), 0, "{:?}", report.error);
    // Both saw two arrivals: they were running at the same moment.
    for id in ["one", "two"] {
        assert_eq!(
            serde_json::to_value(report.node(id).unwrap().output.as_ref().unwrap()).unwrap()
                ["value"],
            json!(2)
        );
    }
}

#[test]
fn first_failure_stops_the_run_with_its_exit_code() {
    let text = r#"
[nodes.neg]
kind = "number"
value = -5
[nodes.bad]
kind = "sum"
input = "neg"
[nodes.after]
kind = "sum"
input = "bad"
"#;
    let report = run(&plan(text, &[]), options(None, 1));
    assert_eq!(report.exit_code.code(), 3);
    assert_eq!(report.node("bad").unwrap().status, NodeStatus::Failed);
    assert_eq!(report.node("after").unwrap().status, NodeStatus::Cancelled);
    assert!(report
        .error
        .as_deref()
        .unwrap()
        .starts_with("bad: negative sum"));
}

#[test]
fn concurrent_runs_on_one_cache_agree() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "[nodes.big]\nkind = \"big\"\nmb = 8\nseed = 3\n[nodes.n]\nkind = \"number\"\nvalue = 1\n";
    let p = plan(text, &[]);
    let reports: Vec<RunReport> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| run(&p, options(Some(dir.path()), 2))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &reports {
        assert_eq!(r.exit_code.code(), 0);
        assert_eq!(
            r.node("big").unwrap().output,
            reports[0].node("big").unwrap().output
        );
    }
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.verify(false), (2, vec![]));
}

/// Run by `sigkill_during_cache_writes_leaves_nothing_trusted` in a child process: writes large
/// entries until killed.
#[test]
#[ignore = "helper process for the SIGKILL test"]
fn child_writes_entries_until_killed() {
    let Some(dir) = std::env::var_os("FLOW_TEST_CACHE_DIR") else {
        return;
    };
    let cache = Cache::open(dir).unwrap();
    for seed in 0.. {
        let key = flow_engine::Key(*blake3::hash(&u64::to_le_bytes(seed)).as_bytes());
        cache
            .put(&key, "big", "big", &big_raster(16, seed), &[])
            .unwrap();
    }
}

#[test]
fn sigkill_during_cache_writes_leaves_nothing_trusted() {
    let dir = tempfile::tempdir().unwrap();
    for delay_ms in [150u64, 400, 700] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_writes_entries_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env("FLOW_TEST_CACHE_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
    }
    let cache = Cache::open(dir.path()).unwrap();
    // Every entry that made it into objects/ verifies and holds exactly what a clean write gives.
    let (count, bad) = cache.verify(false);
    assert!(bad.is_empty(), "{bad:?}");
    for seed in 0..200u64 {
        let key = flow_engine::Key(*blake3::hash(&u64::to_le_bytes(seed)).as_bytes());
        if let flow_engine::Lookup::Hit(v, _) = cache.get(&key, None) {
            assert_eq!(*v, big_raster(16, seed));
        }
    }
    assert!(
        count >= 1,
        "the child wrote nothing in time; the test proves nothing"
    );
    // Leftovers of interrupted writes are only in tmp/, and gc removes them.
    cache.gc(None, 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(cache.verify(false).1, vec![]);
}

#[test]
fn nodes_after_a_live_search_follow_what_it_returned() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("live.txt");
    let cache = dir.path().join("cache");
    let recipe = format!(
        "name = \"live\"\n[nodes.search]\nkind = \"live\"\npath = {:?}\n\
         [nodes.total]\nkind = \"sum\"\ninputs = {{ a = \"search\" }}\noffset = 100\n",
        source.display().to_string()
    );
    let with_refresh = |refresh: bool| {
        let mut o = options(Some(&cache), 1);
        o.refresh = refresh;
        o
    };
    std::fs::write(&source, "1").unwrap();
    let first = run(&plan(&recipe, &[]), with_refresh(false));
    assert_eq!(total(&first), json!(101), "{first:?}");

    // Nothing changed: the search is loaded (its output decides the keys after it), the sum is
    // a hit.
    let second = run(&plan(&recipe, &[]), with_refresh(false));
    assert_eq!(second.node("search").unwrap().status, NodeStatus::Cached);
    assert_eq!(second.node("total").unwrap().status, NodeStatus::Cached);

    // The catalog changed. Within the TTL the cached search (and so everything after it)
    // stands; --refresh asks again, and the sum follows the new answer.
    std::fs::write(&source, "2").unwrap();
    let stale = run(&plan(&recipe, &[]), with_refresh(false));
    assert_eq!(total(&stale), json!(101));
    let refreshed = run(&plan(&recipe, &[]), with_refresh(true));
    assert_eq!(
        refreshed.node("search").unwrap().status,
        NodeStatus::Computed
    );
    assert_eq!(
        refreshed.node("total").unwrap().status,
        NodeStatus::Computed
    );
    assert_eq!(total(&refreshed), json!(102));

    // A refresh that finds the same answer re-runs the search only.
    let same = run(&plan(&recipe, &[]), with_refresh(true));
    assert_eq!(same.node("search").unwrap().status, NodeStatus::Computed);
    assert_eq!(same.node("total").unwrap().status, NodeStatus::Cached);
    assert_eq!(total(&same), json!(102));

    // Back to the first answer: its downstream entry is still in the cache.
    std::fs::write(&source, "1").unwrap();
    let back = run(&plan(&recipe, &[]), with_refresh(true));
    assert_eq!(back.node("total").unwrap().status, NodeStatus::Cached);
    assert_eq!(total(&back), json!(101));
}

fn file_recipe(source: &Path, partial: bool) -> String {
    format!(
        "name = \"files\"\n[nodes.read]\nkind = \"file\"\npath = {:?}\npartial = {partial}\n\
         [nodes.total]\nkind = \"sum\"\ninputs = {{ a = \"read\" }}\noffset = 100\n",
        source.display().to_string()
    )
}

#[test]
fn a_changed_input_file_is_a_miss_for_its_reader_and_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("value.txt");
    let cache = dir.path().join("cache");
    let recipe = file_recipe(&source, false);
    std::fs::write(&source, "1").unwrap();
    let first = run(&plan(&recipe, &[]), options(Some(&cache), 1));
    assert_eq!(total(&first), json!(101), "{first:?}");
    let second = run(&plan(&recipe, &[]), options(Some(&cache), 1));
    assert_eq!(second.with_status(NodeStatus::Computed).len(), 0);

    // Same params, same key: only the file's version says that the data changed.
    std::fs::write(&source, "25").unwrap();
    let third = run(&plan(&recipe, &[]), options(Some(&cache), 1));
    assert_eq!(third.node("read").unwrap().status, NodeStatus::Computed);
    assert_eq!(third.node("total").unwrap().status, NodeStatus::Computed);
    assert_eq!(total(&third), json!(125));
    let fourth = run(&plan(&recipe, &[]), options(Some(&cache), 1));
    assert_eq!(fourth.with_status(NodeStatus::Computed).len(), 0);
    assert_eq!(total(&fourth), json!(125));
}

#[test]
fn an_incomplete_output_is_used_but_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("value.txt");
    let cache = dir.path().join("cache");
    std::fs::write(&source, "7").unwrap();
    let recipe = file_recipe(&source, true);
    for expected in [107, 107, 142] {
        if expected == 142 {
            // The data becomes whole (or just different): what follows it must follow.
            std::fs::write(&source, "42").unwrap();
        }
        let report = run(&plan(&recipe, &[]), options(Some(&cache), 1));
        assert_eq!(total(&report), json!(expected));
        let read = report.node("read").unwrap();
        assert_eq!(read.status, NodeStatus::Computed);
        assert!(
            read.warnings
                .iter()
                .any(|w| w.contains("not cached: the output is incomplete")),
            "{read:?}"
        );
    }
}
