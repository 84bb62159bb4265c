//! `sample` and `gather`, the two kinds that let one model be fitted over many tiles: each tile
//! sampled on its own, whole or window by window, the samples gathered, one fit.

use std::sync::Arc;

use flow_core::deferred::{Deferred, Expr, Operand};
use flow_core::estimate::{Known, Pixels, Shape};
use flow_core::window::Window;
use flow_core::{
    schema, BandInfo, Grid, Inputs, Matrix, Model, Node, NodeError, NodeKind, Params, Raster,
    RunContext, Scaling, Signature, Value, ValueType,
};
use ndarray::{s, Array2, Array4};

mod common;
use common::{build, ctx, registry, run};

fn matrix(v: Value) -> Matrix {
    match v {
        Value::Matrix(m) => m,
        other => panic!("{other:?}"),
    }
}

fn model(v: Value) -> Model {
    match v {
        Value::Model(m) => m,
        other => panic!("{other:?}"),
    }
}

/// A `(1, 3, h, w)` scene of four spectral groups with texture, NaN in a diagonal pattern and
/// in a block, on a grid whose upper-left corner is `x0`.
fn scene(h: usize, w: usize, x0: f64) -> Raster {
    let mut data = Array4::<f32>::zeros((1, 3, h, w));
    for ((_, b, y, x), v) in data.indexed_iter_mut() {
        let group = ((y * 4) / h) as f32 + if x > w / 2 { 0.5 } else { 0.0 };
        let noise = (((y * 31 + x * 17 + b * 7) % 23) as f32 - 11.0) * 0.01;
        *v = if (y * 7 + x * 3) % 11 == 0 || (y < 5 && x < 9) {
            f32::NAN
        } else {
            group * (1.0 + b as f32 * 0.3) + noise
        };
    }
    Raster {
        grid: Grid::north_up("EPSG:32618", x0, 5032950.0, 10.0, w, h),
        bands: ["B02", "B03", "B04"]
            .iter()
            .map(|b| BandInfo {
                name: b.to_string(),
                ..Default::default()
            })
            .collect(),
        times: vec!["2021-07-01T00:00:00Z".into()],
        data,
    }
}

fn flatten(r: &Raster) -> Matrix {
    matrix(
        run(
            &*build("flatten", ""),
            &ctx(),
            vec![("input", Value::Raster(r.clone()))],
        )
        .unwrap(),
    )
}

/// A source kind that hands out windows of one raster, as `stack` does in a windowed run.
struct WindowsOf(Raster);

impl NodeKind for WindowsOf {
    fn name(&self) -> &str {
        "windows-of"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &str {
        "test source"
    }
    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![],
            output: ValueType::Raster,
        }
    }
    fn params(&self) -> Vec<flow_core::ParamSpec> {
        vec![]
    }
    fn build(&self, _: &Params) -> Result<Box<dyn Node>, flow_core::ParamError> {
        Ok(Box::new(WindowsOfNode(self.0.clone())))
    }
}

struct WindowsOfNode(Raster);

impl Node for WindowsOfNode {
    fn run(&self, ctx: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
        let r = &self.0;
        let w = ctx
            .window()
            .unwrap_or(Window::whole(r.grid.width, r.grid.height));
        Ok(Value::Raster(Raster {
            data: r
                .data
                .slice(s![.., .., w.row..w.row + w.height, w.col..w.col + w.width])
                .to_owned(),
            grid: w.grid_of(&r.grid),
            ..r.clone()
        }))
    }
}

/// `flatten(raster)` computed window by window in windows of `window`, and a context on three
/// threads that computes it.
fn windowed(raster: &Raster, window: usize) -> (Value, RunContext) {
    let mut reg = registry();
    reg.register(Arc::new(WindowsOf(raster.clone()))).unwrap();
    let mut c = ctx().with_registry(Arc::new(reg));
    c.threads = 3;
    let source = Expr {
        node_id: "stack".into(),
        kind: "windows-of".into(),
        params: Params::new(),
        inputs: vec![],
    };
    let expr = Expr {
        node_id: "flatten".into(),
        kind: "flatten".into(),
        params: Params::new(),
        inputs: vec![("input".into(), Operand::Windowed(Arc::new(source)))],
    };
    let template = Value::Matrix(flatten(raster));
    let d = Deferred::new(template, window, Arc::new(expr)).unwrap();
    (Value::Deferred(d), c)
}

/// Centroids as bits, so that equality is bit for bit.
fn bits(m: &Model) -> Vec<u32> {
    m.centroids.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn whole_and_windowed_inputs_give_the_identical_sample() {
    let r = scene(37, 53, 585080.0);
    let whole = flatten(&r);
    let sample = build("sample", "size = 100");
    let from_whole = matrix(
        run(
            &*sample,
            &ctx(),
            vec![("input", Value::Matrix(whole.clone()))],
        )
        .unwrap(),
    );
    assert_eq!(from_whole.data.nrows(), 100);
    assert_eq!(from_whole.valid.iter().filter(|&&v| v).count(), 100);
    assert_eq!(from_whole.grid, whole.grid);
    assert_eq!(from_whole.features, whole.features);
    // Every kept pixel was valid, and its row is that pixel's row of the input.
    let index: Vec<(usize, usize)> = whole
        .valid
        .indexed_iter()
        .filter(|(_, &v)| v)
        .map(|(p, _)| p)
        .collect();
    let mut kept = 0;
    for (i, (p, _)) in whole.valid.indexed_iter().filter(|(_, &v)| v).enumerate() {
        if from_whole.valid[p] {
            assert_eq!(from_whole.data.row(kept), whole.data.row(i), "{p:?}");
            kept += 1;
        }
    }
    assert_eq!(kept, 100);
    assert!(
        index.len() > 1000,
        "the scene has {} valid pixels",
        index.len()
    );
    for window in [8, 13, 64] {
        let (input, c) = windowed(&r, window);
        let from_windows = matrix(run(&*sample, &c, vec![("input", input)]).unwrap());
        assert_eq!(from_windows, from_whole, "windows of {window}");
    }
}

#[test]
fn a_fit_on_the_sample_is_kmeans_fit_with_sample_on_the_input() {
    let r = scene(37, 53, 585080.0);
    let mut whole = flatten(&r);
    whole.scaling = vec![
        Some(Scaling {
            method: "minmax".into(),
            scope: "global".into(),
            statistics: [0.0, 3.0],
            range: [0.0, 255.0],
            clip: false,
        });
        3
    ];
    for (params, seed) in [("", ""), ("seed = 7", "seed = 7")] {
        let sample = build("sample", &format!("size = 150\n{params}"));
        let kept = matrix(
            run(
                &*sample,
                &ctx(),
                vec![("input", Value::Matrix(whole.clone()))],
            )
            .unwrap(),
        );
        assert_eq!(kept.scaling, whole.scaling, "the scaling is carried");
        let plain = build("kmeans-fit", &format!("k = 4\n{seed}"));
        let on_sample = model(
            run(
                &*plain,
                &ctx(),
                vec![("input", Value::Matrix(kept.clone()))],
            )
            .unwrap(),
        );
        let sampled = build("kmeans-fit", &format!("k = 4\nsample = 150\n{seed}"));
        let with_sample = model(
            run(
                &*sampled,
                &ctx(),
                vec![("input", Value::Matrix(whole.clone()))],
            )
            .unwrap(),
        );
        assert_eq!(bits(&on_sample), bits(&with_sample), "{seed:?}");
        assert_eq!(on_sample.counts, with_sample.counts);
        assert_eq!(on_sample.counts.iter().sum::<u64>(), 150);
        assert_eq!(on_sample.inertia.to_bits(), with_sample.inertia.to_bits());
        // kmeans-fit's own sample of the windowed input is that too.
        let (input, c) = windowed(&r, 16);
        let windowed_fit = model(run(&*sampled, &c, vec![("input", input)]).unwrap());
        assert_eq!(bits(&windowed_fit), bits(&with_sample), "{seed:?} windowed");
    }
    // Another seed keeps other rows.
    let a = matrix(
        run(
            &*build("sample", "size = 150"),
            &ctx(),
            vec![("input", Value::Matrix(whole.clone()))],
        )
        .unwrap(),
    );
    let b = matrix(
        run(
            &*build("sample", "size = 150\nseed = 7"),
            &ctx(),
            vec![("input", Value::Matrix(whole.clone()))],
        )
        .unwrap(),
    );
    assert_ne!(a.valid, b.valid);
}

#[test]
fn a_size_at_least_the_valid_rows_keeps_every_row() {
    let r = scene(37, 53, 585080.0);
    let whole = flatten(&r);
    let n = whole.data.nrows();
    for size in [n, n + 1, 1_000_000] {
        let sample = build("sample", &format!("size = {size}"));
        let kept = matrix(
            run(
                &*sample,
                &ctx(),
                vec![("input", Value::Matrix(whole.clone()))],
            )
            .unwrap(),
        );
        assert_eq!(kept, whole, "size {size}");
        let (input, c) = windowed(&r, 10);
        let kept = matrix(run(&*sample, &c, vec![("input", input)]).unwrap());
        assert_eq!(kept, whole, "size {size}, windowed");
    }
}

#[test]
fn a_matrix_without_valid_rows_gives_an_empty_sample_and_bad_params_are_refused() {
    let mut r = scene(20, 20, 585080.0);
    r.data.fill(f32::NAN);
    let sample = build("sample", "size = 10");
    let c = ctx();
    let empty = matrix(run(&*sample, &c, vec![("input", Value::Matrix(flatten(&r)))]).unwrap());
    assert_eq!(empty.data.nrows(), 0);
    assert!(!empty.valid.iter().any(|v| *v));
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("the sample is empty")),
        "{:?}",
        c.warnings()
    );
    let (input, c) = windowed(&r, 8);
    let windowed_empty = matrix(run(&*sample, &c, vec![("input", input)]).unwrap());
    assert_eq!(windowed_empty, empty);
    // A fit on nothing at all says so (exit 3).
    let fit = build("kmeans-fit", "k = 2");
    let e = run(&*fit, &ctx(), vec![("input", Value::Matrix(empty))]).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");

    let reg = registry();
    let kind = reg.get("sample").unwrap();
    for (src, param) in [
        ("size = 0", "size"),
        ("size = -4", "size"),
        ("size = 5\nseed = -1", "seed"),
    ] {
        let e = kind.build(&toml::from_str(src).unwrap()).err().unwrap();
        assert_eq!(e.param.as_deref(), Some(param), "{src}");
    }
    // `size` is required.
    let problems = schema::check(&kind.params(), &Params::new());
    assert!(
        problems.iter().any(|p| format!("{p:?}").contains("size")),
        "{problems:?}"
    );
}

#[test]
fn the_sample_estimates_its_rows_not_its_grid() {
    let grid = Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 1000, 1000);
    let mut input = Pixels::whole(ValueType::Matrix, 1, 6, grid);
    let sample = build("sample", "size = 5000");
    let known = Known {
        shapes: vec![("input".into(), Shape::Pixels(input.clone()))],
        threads: 2,
        ..Default::default()
    };
    let est = sample.estimate(&known).unwrap();
    let out = est.output.pixels().unwrap();
    assert_eq!((out.grid.width, out.grid.height, out.bands), (5000, 1, 6));
    // The mask over the whole grid is counted while it is built.
    assert!(est.working_bytes >= 1_000_000, "{est:?}");
    input.window = Some(256);
    let known = Known {
        shapes: vec![("input".into(), Shape::Pixels(input))],
        threads: 2,
        ..Default::default()
    };
    let est = sample.estimate(&known).unwrap();
    assert_eq!(est.windows, 16, "one pass over the windows");
}

/// A small matrix of `rows` rows: row i is `[base + i, 10 base + i]`, on a grid of its own.
fn small(rows: usize, base: f32, features: &[&str]) -> Matrix {
    let f = features.len();
    Matrix {
        data: Array2::from_shape_fn((rows, f), |(i, j)| base * 10f32.powi(j as i32) + i as f32),
        features: features.iter().map(|s| s.to_string()).collect(),
        valid: Array2::from_elem((1, rows), true),
        grid: Grid::north_up("EPSG:32618", base as f64 * 1000.0, 0.0, 20.0, rows, 1),
        scaling: Vec::new(),
    }
}

fn gather(inputs: Vec<(&str, Matrix)>) -> Result<Matrix, NodeError> {
    let node = build("gather", "");
    let inputs = inputs
        .into_iter()
        .map(|(p, m)| (p, Value::Matrix(m)))
        .collect();
    run(&*node, &ctx(), inputs).map(matrix)
}

#[test]
fn gather_concatenates_rows_in_port_name_order() {
    let (a, b, c) = (
        small(3, 1.0, &["x", "y"]),
        small(2, 2.0, &["x", "y"]),
        small(4, 3.0, &["x", "y"]),
    );
    let two = gather(vec![("b", b.clone()), ("a", a.clone())]).unwrap();
    assert_eq!(two.data.nrows(), 5);
    assert_eq!(two.data.slice(s![..3, ..]), a.data);
    assert_eq!(two.data.slice(s![3.., ..]), b.data);
    assert_eq!(two.features, ["x", "y"]);
    // One line of pixels, every one valid, with the first input's CRS and transform.
    assert_eq!((two.grid.width, two.grid.height), (5, 1));
    assert_eq!(two.grid.transform, a.grid.transform);
    assert_eq!(two.grid.crs, a.grid.crs);
    assert_eq!(two.valid, Array2::from_elem((1, 5), true));

    // Byte order of the names: u0002 before u0010, whatever the order given.
    let three = gather(vec![
        ("u0010", a.clone()),
        ("u0002", c.clone()),
        ("u0000", b.clone()),
    ])
    .unwrap();
    assert_eq!(three.data.nrows(), 9);
    assert_eq!(three.data.slice(s![..2, ..]), b.data);
    assert_eq!(three.data.slice(s![2..6, ..]), c.data);
    assert_eq!(three.data.slice(s![6.., ..]), a.data);
    assert_eq!(three.grid.transform, b.grid.transform);

    // The scaling is carried.
    let scaling = vec![
        Some(Scaling {
            method: "zscore".into(),
            scope: "band".into(),
            statistics: [1.0, 2.0],
            range: [0.0, 1.0],
            clip: false,
        }),
        None,
    ];
    let (mut sa, mut sb) = (a.clone(), b.clone());
    sa.scaling = scaling.clone();
    sb.scaling = scaling.clone();
    assert_eq!(gather(vec![("a", sa), ("b", sb)]).unwrap().scaling, scaling);
}

#[test]
fn gather_refuses_other_features_or_scaling_naming_the_input() {
    let a = small(3, 1.0, &["B02", "B03"]);
    let e = gather(vec![
        ("a", a.clone()),
        ("b", small(2, 2.0, &["B03", "B02"])),
    ])
    .unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("input `b`") && msg.contains("[B03, B02]") && msg.contains("[B02, B03]"),
        "{msg}"
    );
    let e = gather(vec![("a", a.clone()), ("b", small(2, 2.0, &["B02"]))]).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");

    let mut b = small(2, 2.0, &["B02", "B03"]);
    b.scaling = vec![
        None,
        Some(Scaling {
            method: "minmax".into(),
            scope: "band".into(),
            statistics: [0.0, 3000.0],
            range: [0.0, 255.0],
            clip: true,
        }),
    ];
    let e = gather(vec![("a", a.clone()), ("b", b)]).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("input `b`") && msg.contains("`B03`") && msg.contains("minmax"),
        "{msg}"
    );

    // No input at all.
    let e = gather(vec![]).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    // Not a matrix.
    let node = build("gather", "");
    let e = run(
        &*node,
        &ctx(),
        vec![("a", Value::Json(serde_json::json!({})))],
    )
    .unwrap_err();
    assert!(e.to_string().contains("input `a`"), "{e}");
}

#[test]
fn gather_refuses_a_windowed_input_asking_for_a_sample() {
    let r = scene(30, 30, 585080.0);
    let (input, c) = windowed(&r, 8);
    let node = build("gather", "");
    let e = run(
        &*node,
        &c,
        vec![("a", Value::Matrix(flatten(&r))), ("b", input)],
    )
    .unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("input `b`") && msg.contains("window by window") && msg.contains("\"sample\""),
        "{msg}"
    );
}

#[test]
fn gather_takes_plain_names_as_matrix_ports() {
    let reg = registry();
    let kind = reg.get("gather").unwrap();
    for ok in ["a", "u0000", "tile_32TQM", "_x"] {
        assert_eq!(kind.open_port(ok), Some(Ok(ValueType::Matrix)), "{ok}");
    }
    for bad in ["", "0a", "a-b", "a b", "é"] {
        assert!(matches!(kind.open_port(bad), Some(Err(_))), "{bad:?}");
    }
    // Its estimate: the inputs' rows on one line.
    let grid = |w, h| Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, w, h);
    let known = Known {
        shapes: vec![
            (
                "b".into(),
                Shape::Pixels(Pixels::whole(ValueType::Matrix, 1, 4, grid(300, 1))),
            ),
            (
                "a".into(),
                Shape::Pixels(Pixels::whole(ValueType::Matrix, 1, 4, grid(20, 10))),
            ),
        ],
        threads: 1,
        ..Default::default()
    };
    let est = build("gather", "").estimate(&known).unwrap();
    let out = est.output.pixels().unwrap();
    assert_eq!((out.grid.width, out.grid.height, out.bands), (500, 1, 4));
}

#[test]
fn one_model_over_the_samples_of_two_tiles() {
    // Two tiles side by side, one of them windowed, each sampled; one fit on both samples.
    let (ra, rb) = (scene(37, 53, 585080.0), scene(29, 41, 585610.0));
    let sample = build("sample", "size = 200");
    let sa = matrix(
        run(
            &*sample,
            &ctx(),
            vec![("input", Value::Matrix(flatten(&ra)))],
        )
        .unwrap(),
    );
    let (input, c) = windowed(&rb, 16);
    let sb = matrix(run(&*sample, &c, vec![("input", input)]).unwrap());
    let all = gather(vec![("a", sa.clone()), ("b", sb.clone())]).unwrap();
    assert_eq!(all.data.nrows(), 400);

    let fit = build("kmeans-fit", "k = 4");
    let m = model(run(&*fit, &ctx(), vec![("input", Value::Matrix(all.clone()))]).unwrap());
    assert_eq!(m.counts.iter().sum::<u64>(), 400);
    assert_eq!(m.features, sa.features);
    // With its own sample too: the rows keyed by their place in the line.
    let fit = build("kmeans-fit", "k = 4\nsample = 100");
    let m2 = model(run(&*fit, &ctx(), vec![("input", Value::Matrix(all.clone()))]).unwrap());
    assert_eq!(m2.counts.iter().sum::<u64>(), 100);
    let again = model(run(&*fit, &ctx(), vec![("input", Value::Matrix(all.clone()))]).unwrap());
    assert_eq!(bits(&again), bits(&m2));

    // predict and reshape on the gathered rows, then on each tile whole.
    let predict = build("predict", "");
    let classes = matrix(
        run(
            &*predict,
            &ctx(),
            vec![
                ("matrix", Value::Matrix(all.clone())),
                ("model", Value::Model(m.clone())),
            ],
        )
        .unwrap(),
    );
    let reshape = build("reshape", "");
    let labels = match run(
        &*reshape,
        &ctx(),
        vec![
            ("input", Value::Matrix(classes)),
            ("model", Value::Model(m.clone())),
        ],
    )
    .unwrap()
    {
        Value::Labels(l) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(labels.data.dim(), (1, 400));
    let mut counts = vec![0u64; 4];
    for &id in &labels.data {
        counts[usize::from(id)] += 1;
    }
    assert_eq!(
        counts, m.counts,
        "predict assigns the fitted rows as the fit counted them"
    );
    let tile = matrix(
        run(
            &*predict,
            &ctx(),
            vec![
                ("matrix", Value::Matrix(flatten(&rb))),
                ("model", Value::Model(m.clone())),
            ],
        )
        .unwrap(),
    );
    assert_eq!(tile.grid, rb.grid);

    // classifier-fit learns from labels on the gathered line.
    let cf = build("classifier-fit", "method = \"nearest-centroid\"");
    let trained = model(
        run(
            &*cf,
            &ctx(),
            vec![
                ("matrix", Value::Matrix(all)),
                ("labels", Value::Labels(labels)),
            ],
        )
        .unwrap(),
    );
    assert!(trained.classifier.is_some());
}
