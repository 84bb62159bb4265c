//! The whole ABI round trip (describe, build, run, release, drop) without a shared library: the
//! plugin's descriptor is a static in this test binary, read by the host exactly as it reads a
//! loaded library's `flow_plugin_entry`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_core::{ExitCode, RunContext};
use flow_plugin::abi::{FlowPluginHeader, FlowPluginV2, ABI_VERSION};
use flow_plugin::prelude::*;
use flow_plugin::{host, PluginError};

/// Adds `add` to every class id; warns when asked.
struct Shift;

impl PluginKind for Shift {
    fn name(&self) -> &str {
        "shift"
    }
    fn version(&self) -> u32 {
        2
    }
    fn doc(&self) -> &str {
        "adds `add` to class ids"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required("input", ValueType::Labels, "labels")],
            output: ValueType::Labels,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![ParamSpec::with_default(
            "add",
            ParamType::Integer,
            1,
            "added",
        )]
    }
    fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
        let add = params.get("add").and_then(|v| v.as_integer()).unwrap_or(0);
        if add < 0 {
            return Err(ParamError::new("add", "must be >= 0").with_help("use 0 or more"));
        }
        Ok(Box::new(ShiftNode(add as u16)))
    }
    fn pixel_local(&self) -> bool {
        true
    }
}

struct ShiftNode(u16);

impl PluginNode for ShiftNode {
    fn run(&self, ctx: &PluginContext, inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
        let l = inputs.labels("input")?;
        if self.0 == 0 {
            ctx.warn("nothing to add");
        }
        let mut out = l.to_owned();
        out.data
            .mapv_inplace(|v| if v == l.nodata { v } else { v + self.0 });
        Ok(Value::Labels(out))
    }
    fn caching(&self) -> Caching {
        Caching::Ttl(60)
    }
}

struct Boom;

impl PluginKind for Boom {
    fn name(&self) -> &str {
        "boom"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "panics"
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
    fn build(&self, _params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
        Ok(Box::new(BoomNode))
    }
}

struct BoomNode;

impl PluginNode for BoomNode {
    fn run(&self, _ctx: &PluginContext, _inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
        let v: Vec<u8> = Vec::new();
        panic!("index {} out of range", v.len() + 3)
    }
}

/// Runs until cancelled, polling every millisecond; gives up by itself after 10 s.
struct Spin;

impl PluginKind for Spin {
    fn name(&self) -> &str {
        "spin"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "runs until cancelled"
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
    fn build(&self, _params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
        Ok(Box::new(SpinNode))
    }
}

struct SpinNode;

impl PluginNode for SpinNode {
    fn run(&self, ctx: &PluginContext, _inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
        let t0 = Instant::now();
        let mut polls = 0u64;
        // Poll from a worker thread too: the context is shared across the call's threads.
        std::thread::scope(|s| {
            s.spawn(|| {
                while !ctx.is_cancelled() && t0.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                ctx.warn("the worker saw the cancellation");
            });
            while t0.elapsed() < Duration::from_secs(10) {
                polls += 1;
                if let Err(e) = ctx.check_cancelled() {
                    ctx.warn(format!("cancelled after {polls} polls"));
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(NodeError::Failed("never cancelled".into()))
        })
    }
}

/// Key material, freshness and an unkeyed param.
struct Keyed;

impl PluginKind for Keyed {
    fn name(&self) -> &str {
        "keyed"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "key material from a param"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Json,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::with_default("material", ParamType::String, "", "key material"),
            ParamSpec::optional("note", ParamType::String, "not in the key"),
        ]
    }
    fn unkeyed_params(&self) -> &[&str] {
        &["note"]
    }
    fn build(&self, params: &Params) -> Result<Box<dyn PluginNode>, ParamError> {
        let material = params
            .get("material")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        Ok(Box::new(KeyedNode(material.to_string())))
    }
}

struct KeyedNode(String);

impl PluginNode for KeyedNode {
    fn run(&self, _ctx: &PluginContext, _inputs: &PluginInputs<'_>) -> Result<Value, NodeError> {
        Ok(Value::Json(serde_json::json!({ "material": self.0 })))
    }
    fn key_material(&self, ctx: &PluginContext) -> Result<Option<Vec<u8>>, NodeError> {
        match self.0.as_str() {
            "" => Ok(None),
            "fail" => Err(NodeError::io(
                ctx.resolve("material.bin"),
                std::io::Error::other("unreadable"),
            )),
            m => Ok(Some(m.as_bytes().to_vec())),
        }
    }
    fn is_fresh(&self, _ctx: &PluginContext, cached: &ValueView<'_>) -> bool {
        match cached {
            ValueView::Json(j) => j["material"] == self.0.as_str(),
            ValueView::Labels(l) => l.data.iter().all(|&v| v != l.nodata),
            _ => false,
        }
    }
}

flow_plugin::export_plugin! {
    @static PLUGIN,
    name: "in-process",
    version: "1.2.3",
    kinds: [Shift, Boom, Spin, Keyed],
}

fn load() -> Arc<flow_plugin::PluginLibrary> {
    let entry = (&PLUGIN as *const FlowPluginV2).cast::<FlowPluginHeader>();
    // SAFETY: PLUGIN is a static FlowPluginV2 made by export_plugin! in this binary.
    Arc::new(unsafe { host::from_descriptor(entry, PathBuf::from("/in/process.so")) }.unwrap())
}

fn registry() -> flow_core::Registry {
    let mut r = flow_core::Registry::new();
    host::register(&mut r, &load()).unwrap();
    r
}

fn labels(h: usize, w: usize) -> Labels {
    Labels {
        data: ndarray::Array2::from_shape_fn((h, w), |(y, x)| {
            if x == 0 {
                65535
            } else {
                ((x + y) % 4) as u16
            }
        }),
        nodata: 65535,
        classes: vec![],
        grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, w, h),
    }
}

fn ctx() -> RunContext {
    RunContext::new("n", "/tmp".into(), "/tmp".into(), "/tmp".into())
}

fn params(text: &str) -> Params {
    toml::from_str(text).unwrap()
}

fn inputs(l: &Labels) -> flow_core::Inputs {
    flow_core::Inputs::new([("input".to_string(), Arc::new(Value::Labels(l.clone())))])
}

#[test]
fn kinds_cross_with_signature_params_and_origin() {
    let r = registry();
    let k = r.get("shift").unwrap();
    assert_eq!(k.version(), 2);
    assert_eq!(k.signature().output, ValueType::Labels);
    assert_eq!(k.params()[0].default, Some(toml::Value::Integer(1)));
    match k.origin() {
        flow_core::Origin::Plugin {
            name,
            version,
            abi,
            path,
        } => {
            assert_eq!(
                (name.as_str(), version.as_str(), abi),
                ("in-process", "1.2.3", ABI_VERSION)
            );
            assert_eq!(path, PathBuf::from("/in/process.so"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_node_runs_across_the_abi() {
    let r = registry();
    let node = r.get("shift").unwrap().build(&params("add = 2")).unwrap();
    assert_eq!(node.caching(), Caching::Ttl(60));
    let l = labels(5, 4);
    let out = node.run(&ctx(), &inputs(&l)).unwrap();
    let Value::Labels(out) = out else { panic!() };
    for (a, b) in out.data.iter().zip(l.data.iter()) {
        assert_eq!(*a, if *b == 65535 { 65535 } else { b + 2 });
    }
    assert_eq!(out.grid, l.grid);

    let c = ctx();
    let node = r.get("shift").unwrap().build(&params("add = 0")).unwrap();
    node.run(&c, &inputs(&l)).unwrap();
    assert_eq!(c.warnings(), vec!["nothing to add".to_string()]);
}

#[test]
fn param_errors_keep_the_param_name() {
    let r = registry();
    let e = r
        .get("shift")
        .unwrap()
        .build(&params("add = -1"))
        .err()
        .unwrap();
    assert_eq!(e.param.as_deref(), Some("add"));
    assert_eq!(e.help.as_deref(), Some("use 0 or more"));
}

#[test]
fn a_panic_is_an_error_with_its_message_not_an_abort() {
    let r = registry();
    let node = r.get("boom").unwrap().build(&Params::new()).unwrap();
    let e = node.run(&ctx(), &flow_core::Inputs::default()).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Plugin);
    assert_eq!(
        e.to_string(),
        "plugin `in-process` panicked: index 3 out of range"
    );
    // The plugin still works afterwards.
    assert!(node.run(&ctx(), &flow_core::Inputs::default()).is_err());
    let shift = r.get("shift").unwrap().build(&Params::new()).unwrap();
    assert!(shift.run(&ctx(), &inputs(&labels(2, 2))).is_ok());
}

#[test]
fn a_wrong_abi_version_is_refused_before_anything_else_is_read() {
    // The previous version, a future one, and zero.
    for found in [ABI_VERSION - 1, 999, 0] {
        // Only the header exists: reading past it would read another static, or fault.
        let header: &'static FlowPluginHeader =
            Box::leak(Box::new(FlowPluginHeader { abi_version: found }));
        // SAFETY: `header` is a valid header; nothing past it may be read, and nothing is.
        let e =
            unsafe { host::from_descriptor(header, PathBuf::from("/x/libold.so")) }.unwrap_err();
        assert!(
            matches!(e, PluginError::AbiMismatch { expected: ABI_VERSION, found: f, .. } if f == found),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("/x/libold.so")
                && text.contains(&format!("ABI version {found},"))
                && text.contains(&format!("expects ABI version {ABI_VERSION}")),
            "{text}"
        );
        assert_eq!(e.exit_code(), ExitCode::Plugin);
    }
}

#[test]
fn files_that_are_not_plugins_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.so");
    std::fs::write(&text, "not a library").unwrap();
    let e = flow_plugin::load(&text).unwrap_err();
    assert!(matches!(e, PluginError::Load { .. }), "{e}");
    assert!(e.to_string().contains("notes.so"), "{e}");
    let e = flow_plugin::load(&dir.path().join("missing.so")).unwrap_err();
    assert!(matches!(e, PluginError::Load { .. }), "{e}");
    let e = flow_plugin::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("not a file"), "{e}");
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn repeated_runs_do_not_grow_memory() {
    let r = registry();
    let kind = r.get("shift").unwrap();
    let l = labels(256, 256); // 128 KiB in, 128 KiB out per run
    let inputs = inputs(&l);
    let run = |n: usize| {
        for _ in 0..n {
            let node = kind.build(&params("add = 1")).unwrap();
            let out = node.run(&ctx(), &inputs).unwrap();
            assert!(matches!(out, Value::Labels(_)));
        }
    };
    // The allocator takes a while to settle (and other tests run beside this one), so look at
    // the last checkpoints: a leak of one array per run would add 125 MiB per 1000 runs.
    let mut rss = Vec::new();
    for _ in 0..6 {
        run(1000);
        match rss_kib() {
            Some(kib) => rss.push(kib),
            None => return,
        }
    }
    println!("VmRSS every 1000 runs (KiB): {rss:?}");
    let tail = &rss[3..];
    let (lo, hi) = (tail.iter().min().unwrap(), tail.iter().max().unwrap());
    assert!(hi - lo < 4 * 1024, "RSS keeps growing: {rss:?}");
}

#[test]
fn kind_properties_cross() {
    let r = registry();
    assert!(r.get("shift").unwrap().pixel_local());
    assert!(!r.get("boom").unwrap().pixel_local());
    assert_eq!(r.get("keyed").unwrap().unkeyed_params(), &["note"]);
    assert!(r.get("shift").unwrap().unkeyed_params().is_empty());
    // The schema crossed as flow-core's own ParamSpec.
    assert_eq!(r.get("keyed").unwrap().params(), Keyed.params());
    assert_eq!(r.get("shift").unwrap().signature(), Shift.signature());
}

#[test]
fn cancellation_reaches_a_running_plugin_node() {
    let r = registry();
    let node = r.get("spin").unwrap().build(&Params::new()).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let c = ctx().with_cancel_flag(flag.clone());
    let (result, stopped_after) = std::thread::scope(|s| {
        let running = s.spawn(|| node.run(&c, &flow_core::Inputs::default()));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!running.is_finished(), "the node runs until cancelled");
        let t = Instant::now();
        flag.store(true, Ordering::SeqCst);
        let result = running.join().unwrap();
        (result, t.elapsed())
    });
    println!("the plugin node stopped {stopped_after:?} after the flag was set");
    assert!(matches!(result, Err(NodeError::Cancelled)), "{result:?}");
    assert!(stopped_after < Duration::from_secs(5), "{stopped_after:?}");
    let warnings = c.warnings();
    assert!(
        warnings.iter().any(|w| w.starts_with("cancelled after ")),
        "warnings of a failed call still arrive: {warnings:?}"
    );
    assert!(warnings.contains(&"the worker saw the cancellation".to_string()));
    // Already cancelled: the host does not even call in.
    assert!(matches!(
        node.run(&c, &flow_core::Inputs::default()),
        Err(NodeError::Cancelled)
    ));
}

#[test]
fn key_material_and_freshness_cross() {
    let r = registry();
    let kind = r.get("keyed").unwrap();
    let node = |m: &str| kind.build(&params(&format!("material = \"{m}\""))).unwrap();
    assert_eq!(
        node("abc").key_material(&ctx()).unwrap(),
        Some(b"abc".to_vec())
    );
    assert_eq!(node("").key_material(&ctx()).unwrap(), None);
    let e = node("fail").key_material(&ctx()).unwrap_err();
    assert_eq!(e.exit_code(), ExitCode::Io, "{e}");
    assert!(e.to_string().contains("/tmp/material.bin"), "{e}");

    let n = node("abc");
    let out = n.run(&ctx(), &flow_core::Inputs::default()).unwrap();
    assert!(n.is_fresh(&ctx(), &out));
    assert!(!node("xyz").is_fresh(&ctx(), &out));
    // A cached value with arrays is lent as views.
    let mut l = labels(3, 3);
    assert!(
        !n.is_fresh(&ctx(), &Value::Labels(l.clone())),
        "x = 0 is nodata"
    );
    l.data.fill(1);
    assert!(n.is_fresh(&ctx(), &Value::Labels(l)));
}

/// What the hand-written `run` below returns.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Dtype,
    Rank,
    Size,
    Meta,
}

thread_local! {
    static FAULT: std::cell::Cell<Fault> = const { std::cell::Cell::new(Fault::Dtype) };
}

static RELEASED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What a raw value owns.
struct RawValue {
    _meta: String,
    _table: Vec<flow_plugin::abi::FlowArray>,
    _f32: Vec<f32>,
    _u16: Vec<u16>,
}

unsafe extern "C" fn release_raw(v: *mut flow_plugin::abi::FlowValue) {
    // SAFETY: `v` is the value made by `raw_run`, released once.
    unsafe {
        drop(Box::from_raw((*v).private_data.cast::<RawValue>()));
        *v = flow_plugin::abi::FlowValue::empty();
    }
    RELEASED.fetch_add(1, Ordering::SeqCst);
}

/// A `run` written against the ABI directly, returning a class map on a 3 x 3 grid whose one
/// array does not fit it (what the SDK's types cannot even express).
unsafe extern "C" fn raw_run(
    _node: *const std::ffi::c_void,
    _ctx: *const flow_plugin::abi::FlowRunContext,
    _inputs: *const flow_plugin::abi::FlowInput,
    _n_inputs: usize,
    out: *mut flow_plugin::abi::FlowValue,
    _msg: *mut flow_plugin::abi::FlowBuf,
) -> i32 {
    use flow_plugin::abi::{FlowArray, FlowStr, FlowValue, DTYPE_F32, DTYPE_U16};
    let fault = FAULT.with(|f| f.get());
    let grid = Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 3, 3);
    let meta = match fault {
        Fault::Meta => "{\"type\": \"Labels\", \"grid\": 3}".to_string(),
        _ => serde_json::to_string(&flow_core::ValueMeta::Labels {
            grid,
            nodata: 0,
            classes: vec![],
        })
        .unwrap(),
    };
    let mut raw = Box::new(RawValue {
        _meta: meta,
        _table: vec![],
        _f32: vec![0.0; 9],
        _u16: vec![0; 9],
    });
    let (dtype, ndim, shape, data) = match fault {
        Fault::Dtype => (DTYPE_F32, 2, [3, 3, 0, 0], raw._f32.as_ptr().cast()),
        Fault::Rank => (DTYPE_U16, 3, [1, 3, 3, 0], raw._u16.as_ptr().cast()),
        Fault::Size | Fault::Meta => (DTYPE_U16, 2, [2, 2, 0, 0], raw._u16.as_ptr().cast()),
    };
    raw._table.push(FlowArray {
        name: FlowStr::from_static("data"),
        dtype,
        ndim,
        shape,
        data,
    });
    let value = FlowValue {
        meta_json: FlowStr::borrow(&raw._meta),
        arrays: raw._table.as_ptr(),
        n_arrays: 1,
        private_data: std::ptr::null_mut(),
        release: Some(release_raw),
    };
    // SAFETY: `out` is writable by the ABI's contract.
    unsafe {
        out.write(FlowValue {
            private_data: Box::into_raw(raw).cast(),
            ..value
        })
    };
    flow_plugin::abi::STATUS_OK
}

struct RawPlugin;

impl flow_plugin::sdk::Plugin for RawPlugin {
    const NAME: &'static str = "raw";
    const VERSION: &'static str = "0.0.1";
    fn kinds() -> Vec<Box<dyn PluginKind>> {
        vec![Box::new(Shift)]
    }
}

static RAW: FlowPluginV2 = FlowPluginV2 {
    run: raw_run,
    ..flow_plugin::sdk::descriptor::<RawPlugin>(ABI_VERSION)
};

#[test]
fn an_output_that_does_not_fit_its_meta_is_a_plugin_error_and_is_released_once() {
    let entry = (&RAW as *const FlowPluginV2).cast::<FlowPluginHeader>();
    // SAFETY: RAW is a static FlowPluginV2 in this binary.
    let lib = Arc::new(unsafe { host::from_descriptor(entry, PathBuf::from("/raw.so")) }.unwrap());
    let mut r = flow_core::Registry::new();
    host::register(&mut r, &lib).unwrap();
    let node = r.get("shift").unwrap().build(&Params::new()).unwrap();
    for (fault, message) in [
        (Fault::Dtype, "array `data`: has dtype f32, expected u16"),
        (Fault::Rank, "array `data` has 3 dimensions, expected 2"),
        (
            Fault::Size,
            "array `data` is 2 x 2 pixels but its grid is 3 x 3",
        ),
        (Fault::Meta, "the value's meta is not a ValueMeta"),
    ] {
        FAULT.with(|f| f.set(fault));
        let before = RELEASED.load(Ordering::SeqCst);
        let e = node
            .run(&ctx(), &inputs(&labels(3, 3)))
            .expect_err("a malformed output is refused");
        assert_eq!(e.exit_code(), ExitCode::Plugin, "{fault:?}: {e}");
        let text = e.to_string();
        assert!(
            text.starts_with("plugin `raw`: returned a malformed value: ")
                && text.contains(message),
            "{fault:?}: {text}"
        );
        assert_eq!(RELEASED.load(Ordering::SeqCst), before + 1, "{fault:?}");
    }
}
