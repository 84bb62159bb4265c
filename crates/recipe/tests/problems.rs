//! Every kind of recipe error, rendered as the CLI renders it: the wording, the location (recipe
//! or command line), the caret and the help are all pinned by the snapshots next to this file.

use std::sync::Arc;

use flow_core::{
    Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, ParamType, Params, Port, Registry,
    RunContext, Signature, Value, ValueType,
};
use flow_recipe::{Diagnostics, Overrides, Plan};

/// A node that is never run: only plan building is under test.
struct Idle;

impl Node for Idle {
    fn run(&self, _ctx: &RunContext, _inputs: &Inputs) -> Result<Value, NodeError> {
        Err(NodeError::InvalidData("not run in these tests".into()))
    }
}

/// A test kind: name, ports, output type and params; `build` refuses a few values of `n`.
struct Kind {
    name: &'static str,
    inputs: Vec<Port>,
    output: ValueType,
    params: Vec<ParamSpec>,
}

impl NodeKind for Kind {
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "a kind for tests"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: self.inputs.clone(),
            output: self.output,
        }
    }
    fn params(&self) -> Vec<ParamSpec> {
        self.params.clone()
    }
    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        match params.get("n").and_then(|v| v.as_integer()) {
            Some(n) if n < 0 => {
                Err(ParamError::new("n", "must be 0 or more").with_help("use a count, like 3"))
            }
            Some(13) => Err(ParamError::general("thirteen is refused")),
            Some(7) => Err(ParamError::new("limit", "limit must be given with n = 7")),
            Some(666) => Err(ParamError::plugin_fault("the plugin panicked: boom")),
            _ => Ok(Box::new(Idle)),
        }
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    let kinds = [
        Kind {
            name: "source",
            inputs: vec![],
            output: ValueType::Raster,
            params: vec![
                ParamSpec::required("n", ParamType::Integer, "a count"),
                ParamSpec::optional("mode", ParamType::one_of(&["fast", "slow"]), "how"),
                ParamSpec::optional("limit", ParamType::Integer, "an upper bound"),
                ParamSpec::optional("bands", ParamType::array(ParamType::String), "bands"),
                ParamSpec::optional("options", ParamType::Table, "free options"),
                ParamSpec::with_default("label", ParamType::String, "none", "a label"),
            ],
        },
        Kind {
            name: "fit",
            inputs: vec![
                Port::required("data", ValueType::Raster, "pixels"),
                Port::optional("mask", ValueType::Raster, "a mask"),
                Port::required("weights", ValueType::Raster, "weights"),
            ],
            output: ValueType::Model,
            params: vec![ParamSpec::with_default(
                "k",
                ParamType::Integer,
                2i64,
                "clusters",
            )],
        },
        Kind {
            name: "apply",
            inputs: vec![
                Port::required("model", ValueType::Model, "a model"),
                Port::required("data", ValueType::Raster, "pixels"),
            ],
            output: ValueType::Labels,
            params: vec![],
        },
        Kind {
            name: "sink",
            inputs: vec![Port::required("value", ValueType::Any, "anything")],
            output: ValueType::Json,
            params: vec![ParamSpec::optional(
                "threshold",
                ParamType::Float,
                "a number",
            )],
        },
    ];
    for kind in kinds {
        registry.register(Arc::new(kind)).unwrap();
    }
    registry
}

fn render(diags: &Diagnostics) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false);
    let mut out = String::new();
    handler.render_report(&mut out, diags).unwrap();
    out
}

/// Builds `text` with `--profile` / `--set`; the rendered diagnostics and whether they are a
/// plugin's fault.
fn problems(text: &str, profile: Option<&str>, sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let overrides = Overrides::new(profile.map(String::from), &sets);
    match Plan::build("r.toml", text, &registry(), &overrides) {
        Ok(plan) => panic!("expected errors, got a plan of {} nodes", plan.nodes.len()),
        Err(diags) => format!(
            "plugin_fault: {}\n\n{}",
            diags.plugin_fault(),
            render(&diags)
        ),
    }
}

#[test]
fn syntax_errors() {
    insta::assert_snapshot!(problems("name = \"x\"\nnodes = [1,\n", None, &[]));
}

#[test]
fn top_level_keys_and_fields() {
    let text = r#"
descripton = "typo"
zzz = 1
name = 3
description = ["a"]
plugins = [1, "x"]
params = 4
profiles = "none"
nodes = "none"
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn profiles_are_checked_against_params() {
    let text = r#"
[params]
count = 3
ratio = 0.5
label = "a"

[profiles]
broken = 1

[profiles.big]
cont = 4
zzzzzz = 1
ratio = 2
label = 5
count = "many"

[nodes.s]
kind = "source"
n = "${params.count}"
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn unknown_profiles() {
    let with = "[params]\nk = 1\n[profiles.fast]\nk = 2\n[profiles.slow]\nk = 3\n";
    let without = "[params]\nk = 1\n";
    let cases = [
        problems(with, Some("fsat"), &[]),
        problems(with, Some("medium"), &[]),
        problems(without, Some("fast"), &[]),
    ];
    insta::assert_snapshot!(cases.join("\n---\n"));
}

#[test]
fn set_overrides() {
    let text = r#"
[params]
count = 3
ratio = 0.5

[nodes.src]
kind = "source"
n = 1
"#;
    let sets = [
        "count",
        "=4",
        "count=[1,",
        "srx.n=2",
        "qqqqqq.n=2",
        "cont=4",
        "zzzzzz=4",
        "count=\"many\"",
        "ratio=true",
        "ratio=2",
    ];
    insta::assert_snapshot!(problems(text, None, &sets));
}

#[test]
fn unknown_references() {
    let text = r#"
[params]
count = 3

[nodes.src]
kind = "source"
n = "${params.cont}"
label = "x${params.zzzzzz}y${params.count}${k}"
bands = ["a", "${params.band}"]
options = { deep = { x = "${params.counts}" } }
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn node_kinds() {
    let text = r#"
[nodes]
loose = 1

[nodes.a]
kind = "sourc"
n = 1

[nodes.b]
kind = "zzzzzzzz"

[nodes.c]
kind = 5

[nodes.d]
n = 1
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn params_against_the_schema() {
    let text = r#"
[nodes.a]
kind = "source"
nn = 1
zzzzzz = 2
mode = "quick"
bands = [1]

[nodes.b]
kind = "source"
n = "three"

[nodes.c]
kind = "apply"
k = 1
"#;
    let sets = ["a.limt=4", "b.limit=\"x\""];
    insta::assert_snapshot!(problems(text, None, &sets));
}

#[test]
fn nodes_that_refuse_their_params() {
    let text = r#"
[nodes.neg]
kind = "source"
n = -1

[nodes.general]
kind = "source"
n = 13

[nodes.absent]
kind = "source"
n = 7
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn a_plugin_fault_is_located_at_the_node() {
    let text = "[nodes.p]\nkind = \"source\"\nn = 666\n";
    let out = problems(text, None, &[]);
    assert!(out.starts_with("plugin_fault: true"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn inputs_and_ports() {
    let text = r#"
[nodes.src]
kind = "source"
n = 1
input = "other"

[nodes.f1]
kind = "fit"
input = 3
inputs = { mask = 4, wieghts = "src", zzzzzz = "src" }

[nodes.f2]
kind = "fit"
input = "src"
inputs = { data = "src", weights = "srcc", mask = "qqqqqqq" }

[nodes.f3]
kind = "fit"
inputs = "src"

[nodes.f4]
kind = "fit"
inputs = { mask = "src" }

[nodes.orphan]
kind = "nope"
input = "ghost"
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn edge_types() {
    let text = r#"
[nodes.src]
kind = "source"
n = 1

[nodes.fit]
kind = "fit"
input = "src"
inputs = { weights = "src" }

[nodes.apply]
kind = "apply"
input = "src"
inputs = { data = "fit" }

[nodes.sink]
kind = "sink"
input = "apply"
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn cycles() {
    let text = r#"
[nodes.a]
kind = "apply"
input = "c"
inputs = { data = "src" }

[nodes.src]
kind = "source"
n = 1

[nodes.b]
kind = "fit"
input = "src"
inputs = { weights = "src" }

[nodes.c]
kind = "fit"
input = "d"
inputs = { weights = "src" }

[nodes.d]
kind = "sink"
input = "a"

[nodes.self]
kind = "sink"
input = "self"
"#;
    insta::assert_snapshot!(problems(text, None, &[]));
}

#[test]
fn a_valid_plan_is_ordered_and_filled_in() {
    let text = r#"
name = "ok"

[params]
count = 3
ratio = 0.5

[profiles.big]
count = 9

[nodes.sink]
kind = "sink"
input = "apply"
threshold = "${params.ratio}"

[nodes.apply]
kind = "apply"
input = "fit"
inputs = { data = "src" }

[nodes.fit]
kind = "fit"
input = "src"
inputs = { weights = "src" }

[nodes.src]
kind = "source"
n = "${params.count}"
label = "n${params.count}"
"#;
    let sets = ["ratio=1".to_string(), "fit.k=5".to_string()];
    let overrides = Overrides::new(Some("big".into()), &sets);
    let plan = Plan::build("r.toml", text, &registry(), &overrides).unwrap();
    let order: Vec<&str> = plan.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(order, ["src", "fit", "apply", "sink"]);
    assert_eq!(plan.downstream("src"), ["fit", "apply"]);
    insta::assert_json_snapshot!(plan.to_json());
}

#[test]
fn a_number_param_takes_any_number_and_the_node_decides() {
    let text = r#"
name = "numbers"

[params]
threshold = 10
count = 3

[nodes.src]
kind = "source"
n = "${params.count}"

[nodes.sink]
kind = "sink"
input = "src"
threshold = "${params.threshold}"
"#;
    // Declared as `10`, meant as a number: 0.5 is taken.
    let sets = ["threshold=0.5".to_string()];
    let plan = Plan::build("r.toml", text, &registry(), &Overrides::new(None, &sets)).unwrap();
    let sink = plan.nodes.iter().find(|n| n.id == "sink").unwrap();
    assert_eq!(sink.params["threshold"], toml::Value::Float(0.5));
    // Where an integer is needed, the node's param says so, at the place it is used.
    let rendered = problems(text, None, &["count=2.5"]);
    assert!(
        rendered.contains("param `n` of node `src` (source) must be integer, found float"),
        "{rendered}"
    );
}

#[test]
fn auto_and_a_number_replace_each_other() {
    let text = r#"
name = "auto"

[params]
k = "auto"
count = 3

[profiles.fixed]
k = 4

[nodes.src]
kind = "source"
n = "${params.count}"

[nodes.sink]
kind = "sink"
input = "src"
threshold = "${params.k}"
"#;
    let param = |profile: Option<&str>, sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let overrides = Overrides::new(profile.map(String::from), &sets);
        let plan = Plan::build("r.toml", text, &registry(), &overrides);
        plan.map(|p| {
            let sink = p.nodes.iter().find(|n| n.id == "sink").unwrap();
            sink.params["threshold"].clone()
        })
    };
    // A param declared "auto" takes a number from --set or a profile ...
    assert_eq!(param(None, &["k=6"]).unwrap(), toml::Value::Integer(6));
    assert_eq!(param(Some("fixed"), &[]).unwrap(), toml::Value::Integer(4));
    // ... and a number param takes "auto", quoted or bare (the node decides whether it may).
    let rendered = problems(text, None, &["count=auto"]);
    assert!(
        rendered.contains("param `n` of node `src` (source) must be integer, found string"),
        "{rendered}"
    );
    assert!(!rendered.contains("--set count"), "{rendered}");
    // Any other word still keeps a number a number, and a number cannot become a list.
    let rendered = problems(text, None, &["count=many", "k=[4]"]);
    assert!(
        rendered.contains("`--set count`: `count` is an integer in [params], got a string"),
        "{rendered}"
    );
    assert!(
        rendered.contains("`--set k`: `k` is a string in [params], got an array"),
        "{rendered}"
    );
}
