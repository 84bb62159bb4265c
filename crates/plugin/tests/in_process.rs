//! The whole ABI round trip (describe, build, run, release, drop) without a shared library: the
//! plugin's descriptor is a static in this test binary, read by the host exactly as it reads a
//! loaded library's `flow_plugin_entry`.

use std::path::PathBuf;
use std::sync::Arc;

use flow_plugin::abi::{FlowPluginHeader, FlowPluginV1, ABI_VERSION};
use flow_plugin::prelude::*;
use flow_plugin::{host, PluginError};

/// Adds `add` to every class id; warns when asked.
struct Shift;

impl NodeKind for Shift {
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
    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let add = params.get("add").and_then(|v| v.as_integer()).unwrap_or(0);
        if add < 0 {
            return Err(ParamError::new("add", "must be >= 0").with_help("use 0 or more"));
        }
        Ok(Box::new(ShiftNode(add as u16)))
    }
}

struct ShiftNode(u16);

impl Node for ShiftNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs<'_>) -> Result<Value, NodeError> {
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

impl NodeKind for Boom {
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
    fn build(&self, _params: &Params) -> Result<Box<dyn Node>, ParamError> {
        Ok(Box::new(BoomNode))
    }
}

struct BoomNode;

impl Node for BoomNode {
    fn run(&self, _ctx: &RunContext, _inputs: &Inputs<'_>) -> Result<Value, NodeError> {
        let v: Vec<u8> = Vec::new();
        panic!("index {} out of range", v.len() + 3)
    }
}

flow_plugin::export_plugin! {
    @static PLUGIN,
    name: "in-process",
    version: "1.2.3",
    kinds: [Shift, Boom],
}

static WRONG: FlowPluginHeader = FlowPluginHeader { abi_version: 999 };

fn load() -> Arc<flow_plugin::PluginLibrary> {
    let entry = (&PLUGIN as *const FlowPluginV1).cast::<FlowPluginHeader>();
    // SAFETY: PLUGIN is a static FlowPluginV1 made by export_plugin! in this binary.
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
    assert_eq!(e.exit_code().code(), 6);
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
    // SAFETY: WRONG is a valid header; nothing past it may be read, and nothing is.
    let e = unsafe { host::from_descriptor(&WRONG, PathBuf::from("/x/libold.so")) }.unwrap_err();
    assert!(matches!(
        e,
        PluginError::AbiMismatch {
            expected: 1,
            found: 999,
            ..
        }
    ));
    let text = e.to_string();
    assert!(
        text.contains("/x/libold.so") && text.contains("999") && text.contains("version 1"),
        "{text}"
    );
    assert_eq!(e.exit_code(), 6);
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
