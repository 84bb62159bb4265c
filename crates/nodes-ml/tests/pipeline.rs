//! The ML nodes end to end, through the registry, as the engine drives them.

use flow_core::{BandInfo, Grid, Matrix, Model, NodeError, Raster, Value};
use flow_nodes_ml::kmeans::{algorithm::lloyd, assign};
use ndarray::{s, Array2, Array4, ArrayView2};

mod common;
use common::{build, ctx, registry, run};

fn raster(data: Array4<f32>) -> Raster {
    let (t, b, h, w) = data.dim();
    Raster {
        grid: Grid::north_up("EPSG:32618", 585080.0, 5032950.0, 10.0, w, h),
        bands: (0..b)
            .map(|i| BandInfo {
                name: format!("B{i:02}"),
                ..Default::default()
            })
            .collect(),
        times: (0..t)
            .map(|i| format!("2021-07-{:02}T00:00:00Z", i + 1))
            .collect(),
        data,
    }
}

/// A deterministic scene with four spectral groups plus texture: `(1, 3, h, w)`.
fn scene(h: usize, w: usize) -> Raster {
    let mut data = Array4::<f32>::zeros((1, 3, h, w));
    for ((_, b, y, x), v) in data.indexed_iter_mut() {
        let group = ((y * 4) / h) as f32 + if x > w / 2 { 0.5 } else { 0.0 };
        let noise = (((y * 31 + x * 17 + b * 7) % 23) as f32 - 11.0) * 0.01;
        *v = group * (1.0 + b as f32 * 0.3) + noise;
    }
    raster(data)
}

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

#[test]
fn registers_all_eleven_kinds_with_their_versions() {
    let reg = registry();
    let names: Vec<&str> = reg.names().collect();
    assert_eq!(
        names,
        [
            "add-index",
            "assess",
            "classifier-fit",
            "composite",
            "flatten",
            "gather",
            "kmeans-fit",
            "normalize",
            "predict",
            "reshape",
            "sample"
        ]
    );
    for kind in reg.kinds() {
        // normalize 2: exact statistics; kmeans-fit 2: the sample chosen by pixel hashes;
        // flatten 2: features of several time steps named by date; 3 for all three: the
        // scaling recorded in the bands, the matrix and the model.
        let version = match kind.name() {
            "normalize" | "kmeans-fit" | "flatten" => 3,
            _ => 1,
        };
        assert_eq!(kind.version(), version, "{}", kind.name());
        assert!(!kind.doc().is_empty());
    }
    let mut again = reg.clone();
    flow_nodes_ml::register(&mut again); // duplicates are skipped, not a panic
    assert_eq!(again.names().count(), 11);
    let e = reg
        .get("kmeans-fit")
        .unwrap()
        .build(&toml::from_str("k = 0").unwrap())
        .err()
        .unwrap();
    assert_eq!(e.param.as_deref(), Some("k"));
}

#[test]
fn nan_pixels_never_reach_the_fit_and_come_back_as_nodata() {
    let full = scene(40, 30);
    // Half the pixels (every other column) NaN in one band.
    let mut holed = full.clone();
    for x in (0..30).step_by(2) {
        holed.data.slice_mut(s![.., 1, .., x]).fill(f32::NAN);
    }
    // The valid half alone: the odd columns.
    let half = raster(full.data.slice(s![.., .., .., 1..;2]).to_owned());

    let c = ctx();
    let flat = build("flatten", "");
    let fit = build("kmeans-fit", "k = 4\nseed = 3");
    let m_holed = matrix(run(&*flat, &c, vec![("input", Value::Raster(holed))]).unwrap());
    let m_half = matrix(run(&*flat, &c, vec![("input", Value::Raster(half))]).unwrap());
    assert_eq!(m_holed.data.nrows(), 600);
    assert_eq!(m_holed.data, m_half.data, "same rows in the same order");
    let a = model(run(&*fit, &c, vec![("input", Value::Matrix(m_holed.clone()))]).unwrap());
    let b = model(run(&*fit, &c, vec![("input", Value::Matrix(m_half))]).unwrap());
    assert_eq!(a.centroids, b.centroids);
    assert!(a.centroids.iter().all(|v| v.is_finite()));
    assert_eq!(a.counts.iter().sum::<u64>(), 600);

    let classes = matrix(
        run(
            &*build("predict", ""),
            &c,
            vec![
                ("matrix", Value::Matrix(m_holed.clone())),
                ("model", Value::Model(a.clone())),
            ],
        )
        .unwrap(),
    );
    assert_eq!(classes.features, ["class"]);
    assert_eq!(classes.valid, m_holed.valid);
    let labels = match run(
        &*build("reshape", ""),
        &c,
        vec![
            ("input", Value::Matrix(classes)),
            ("model", Value::Model(a.clone())),
        ],
    )
    .unwrap()
    {
        Value::Labels(l) => l,
        other => panic!("{other:?}"),
    };
    assert_eq!(labels.data.dim(), (40, 30));
    for ((_, x), &v) in labels.data.indexed_iter() {
        assert_eq!(v == 65535, x % 2 == 0, "column {x}");
    }
    assert_eq!(labels.classes.len(), 4);
    assert_eq!(labels.classes[1].name, "class 1");
    assert_eq!(
        labels.class_counts(),
        a.counts,
        "predict on the training rows reproduces the fit"
    );
}

#[test]
fn k_larger_than_the_valid_pixels_is_invalid_data() {
    let mut data = Array4::<f32>::from_elem((1, 2, 3, 3), f32::NAN);
    for i in 0..5 {
        data[[0, 0, i / 3, i % 3]] = i as f32;
        data[[0, 1, i / 3, i % 3]] = 1.0;
    }
    let c = ctx();
    let m = run(
        &*build("flatten", ""),
        &c,
        vec![("input", Value::Raster(raster(data)))],
    )
    .unwrap();
    let e = run(&*build("kmeans-fit", "k = 8"), &c, vec![("input", m)]).unwrap_err();
    assert_eq!(e.exit_code().code(), 3);
    let msg = e.to_string();
    assert!(msg.contains("k = 8 but only 5 valid pixels"), "{msg}");

    let empty = Matrix {
        scaling: Default::default(),
        data: Array2::zeros((0, 2)),
        features: vec!["a".into(), "b".into()],
        valid: Array2::from_elem((2, 2), false),
        grid: Grid::north_up("EPSG:4326", 0.0, 0.0, 1.0, 2, 2),
    };
    let e = run(
        &*build("kmeans-fit", "k = 2"),
        &c,
        vec![("input", Value::Matrix(empty))],
    )
    .unwrap_err();
    assert!(matches!(e, NodeError::InvalidData(_)), "{e}");
}

#[test]
fn constant_input_gives_finite_centroids_and_a_warning() {
    let c = ctx();
    let m = run(
        &*build("flatten", ""),
        &c,
        vec![(
            "input",
            Value::Raster(raster(Array4::from_elem((1, 2, 4, 4), 3.5))),
        )],
    )
    .unwrap();
    let fitted = model(run(&*build("kmeans-fit", "k = 3"), &c, vec![("input", m)]).unwrap());
    assert!(fitted.centroids.iter().all(|&v| v == 3.5));
    assert_eq!(fitted.counts, [16, 0, 0]);
    assert_eq!(fitted.inertia, 0.0);
    let w = c.warnings();
    assert!(w.iter().any(|w| w.contains("identical")), "{w:?}");
}

#[test]
fn same_seed_same_model_whatever_the_thread_count() {
    let c = ctx();
    let m = run(
        &*build("flatten", ""),
        &c,
        vec![("input", Value::Raster(scene(150, 130)))],
    )
    .unwrap();
    assert!(
        matches!(&m, Value::Matrix(x) if x.data.nrows() > 2 * 8192),
        "several chunks"
    );
    for init in ["k-means++", "random", "k-means||"] {
        let fit = build(
            "kmeans-fit",
            &format!("k = 5\nn_init = 3\nseed = 11\ninit = \"{init}\"\nsample = 0.8"),
        );
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let a = model(
            one.install(|| run(&*fit, &c, vec![("input", m.clone())]))
                .unwrap(),
        );
        let b = model(
            two.install(|| run(&*fit, &c, vec![("input", m.clone())]))
                .unwrap(),
        );
        let again = model(run(&*fit, &c, vec![("input", m.clone())]).unwrap());
        let bits = |m: &Model| m.centroids.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "{init}: 1 vs 2 threads");
        assert_eq!(bits(&a), bits(&again), "{init}: run twice");
        assert_eq!(a.inertia.to_bits(), b.inertia.to_bits());
        assert_eq!(
            (a.counts.clone(), a.iterations, a.seed),
            (b.counts.clone(), b.iterations, 11)
        );
        assert_eq!(
            a.info["sample_size"],
            serde_json::json!(((m_rows(&m) as f64) * 0.8).round() as u64)
        );
        // canonical order: ascending brightness
        let sums: Vec<f32> = a.centroids.rows().into_iter().map(|r| r.sum()).collect();
        assert!(sums.windows(2).all(|w| w[0] <= w[1]), "{sums:?}");
        let p = build("predict", "");
        let pa = one
            .install(|| {
                run(
                    &*p,
                    &c,
                    vec![("matrix", m.clone()), ("model", Value::Model(a.clone()))],
                )
            })
            .unwrap();
        let pb = two
            .install(|| {
                run(
                    &*p,
                    &c,
                    vec![("matrix", m.clone()), ("model", Value::Model(a.clone()))],
                )
            })
            .unwrap();
        assert_eq!(pa, pb);
    }
}

fn m_rows(v: &Value) -> usize {
    match v {
        Value::Matrix(m) => m.data.nrows(),
        _ => 0,
    }
}

/// A plain Lloyd in f64, written independently of the crate.
fn reference_lloyd(
    data: ArrayView2<'_, f32>,
    init: &Array2<f64>,
    iterations: usize,
) -> (Array2<f64>, f64) {
    let (n, f) = data.dim();
    let k = init.nrows();
    let mut c = init.clone();
    let assign = |c: &Array2<f64>| -> (Vec<usize>, f64) {
        let mut labels = vec![0; n];
        let mut inertia = 0.0;
        for i in 0..n {
            let mut best = (0, f64::INFINITY);
            for j in 0..k {
                let d: f64 = (0..f)
                    .map(|q| (data[[i, q]] as f64 - c[[j, q]]).powi(2))
                    .sum();
                if d < best.1 {
                    best = (j, d);
                }
            }
            labels[i] = best.0;
            inertia += best.1;
        }
        (labels, inertia)
    };
    for _ in 0..iterations {
        let (labels, _) = assign(&c);
        let mut sums = Array2::<f64>::zeros((k, f));
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[labels[i]] += 1;
            for q in 0..f {
                sums[[labels[i], q]] += data[[i, q]] as f64;
            }
        }
        for j in 0..k {
            assert!(
                counts[j] > 0,
                "the reference does not handle empty clusters"
            );
            for q in 0..f {
                c[[j, q]] = sums[[j, q]] / counts[j] as f64;
            }
        }
    }
    let (_, inertia) = assign(&c);
    (c, inertia)
}

#[test]
fn lloyd_matches_a_plain_reference_from_the_same_initial_centroids() {
    let m = matrix(
        run(
            &*build("flatten", ""),
            &ctx(),
            vec![("input", Value::Raster(scene(60, 50)))],
        )
        .unwrap(),
    );
    let init_rows = [0usize, 700, 1500, 2900];
    let init = m.data.select(ndarray::Axis(0), &init_rows);
    for iterations in [1, 3, 10] {
        let ours = lloyd(m.data.view(), init.view(), iterations, -1.0).unwrap();
        assert_eq!(ours.iterations, iterations);
        let (reference, ref_inertia) =
            reference_lloyd(m.data.view(), &init.mapv(|v| v as f64), iterations);
        for (a, b) in ours.centroids.iter().zip(reference.iter()) {
            assert!(
                (*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0),
                "{iterations} iterations: {a} vs {b}"
            );
        }
        let flat: Vec<f32> = ours.centroids.iter().copied().collect();
        let inertia = assign::pass(&assign::Rows::new(m.data.view()), &flat, 4).inertia;
        assert!(
            (inertia - ref_inertia).abs() <= 1e-6 * ref_inertia,
            "{inertia} vs {ref_inertia}"
        );
    }
}

#[test]
fn the_fitted_model_is_a_lloyd_fixed_point_with_consistent_inertia() {
    let c = ctx();
    let m = matrix(
        run(
            &*build("flatten", ""),
            &c,
            vec![("input", Value::Raster(scene(60, 50)))],
        )
        .unwrap(),
    );
    let fitted = model(
        run(
            &*build("kmeans-fit", "k = 4\ntol = 0.0\nn_init = 2"),
            &c,
            vec![("input", Value::Matrix(m.clone()))],
        )
        .unwrap(),
    );
    assert!(fitted.info["converged"].as_bool().unwrap());
    assert!(fitted.iterations >= 1);
    let start = fitted.centroids.mapv(|v| v as f64);
    let (after, inertia) = reference_lloyd(m.data.view(), &start, 1);
    for (a, b) in start.iter().zip(after.iter()) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    let (_, inertia0) = reference_lloyd(m.data.view(), &start, 0);
    assert!(
        (fitted.inertia - inertia0).abs() <= 1e-6 * inertia0,
        "{} vs {inertia0}",
        fitted.inertia
    );
    assert!((inertia - inertia0).abs() <= 1e-6 * inertia0);
    assert_eq!(fitted.counts.iter().sum::<u64>(), m.data.nrows() as u64);
    assert_eq!(fitted.features, ["B00", "B01", "B02"]);
    for key in ["init", "n_init", "max_iter", "tol", "sample_size"] {
        assert!(fitted.info.get(key).is_some(), "info.{key}");
    }
}

#[test]
fn predict_rejects_a_feature_mismatch() {
    let c = ctx();
    let m = run(
        &*build("flatten", ""),
        &c,
        vec![("input", Value::Raster(scene(8, 8)))],
    )
    .unwrap();
    let mut fitted = model(
        run(
            &*build("kmeans-fit", "k = 2\nn_init = 1"),
            &c,
            vec![("input", m.clone())],
        )
        .unwrap(),
    );
    let renamed = fitted.clone();
    fitted.centroids = Array2::zeros((2, 5));
    fitted.features = (1..=5).map(|i| format!("b{i}")).collect();
    let e = run(
        &*build("predict", ""),
        &c,
        vec![("matrix", m.clone()), ("model", Value::Model(fitted))],
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("5 features [b1, b2, b3, b4, b5]") && msg.contains("has 3 ["),
        "{msg}"
    );
    // As many features under other names: refused too, naming both lists.
    let mut renamed = renamed;
    renamed.features.reverse();
    let e = run(
        &*build("predict", ""),
        &c,
        vec![("matrix", m), ("model", Value::Model(renamed))],
    )
    .unwrap_err();
    assert!(matches!(e, NodeError::InvalidData(_)), "exit 3: {e:?}");
}

/// The class of `scene`'s pixel `(y, x)` as a truth map would number it: its spectral group.
fn truth(h: usize, w: usize) -> flow_core::Labels {
    let grid = scene(h, w).grid;
    flow_core::Labels {
        data: Array2::from_shape_fn((h, w), |(y, x)| {
            (10 + 2 * ((y * 4) / h) + usize::from(x > w / 2)) as u16
        }),
        nodata: 255,
        classes: vec![flow_core::ClassInfo {
            id: 12,
            name: "water".into(),
            color: [0, 0, 200],
        }],
        grid,
    }
}

#[test]
fn a_classifier_predicts_the_labels_class_ids_and_reshape_names_them() {
    let c = ctx();
    let (h, w) = (24, 20);
    let mut full = scene(h, w);
    full.data[[0, 1, 3, 4]] = f32::NAN; // one pixel without a row
    let m = run(
        &*build("flatten", ""),
        &c,
        vec![("input", Value::Raster(full))],
    )
    .unwrap();
    let labels = truth(h, w);
    for method in ["random-forest", "decision-tree", "nearest-centroid"] {
        let fitted = run(
            &*build(
                "classifier-fit",
                &format!("method = \"{method}\"\nsamples_per_class = 40\ntrees = 5"),
            ),
            &c,
            vec![
                ("matrix", m.clone()),
                ("labels", Value::Labels(labels.clone())),
            ],
        )
        .unwrap();
        let classifier = model(fitted.clone()).classifier.unwrap();
        assert_eq!(classifier.holdout.overall_accuracy, Some(1.0), "{method}");
        let predicted = run(
            &*build("predict", ""),
            &c,
            vec![("matrix", m.clone()), ("model", fitted.clone())],
        )
        .unwrap();
        let map = match run(
            &*build("reshape", ""),
            &c,
            vec![("input", predicted), ("model", fitted)],
        )
        .unwrap()
        {
            Value::Labels(l) => l,
            other => panic!("{other:?}"),
        };
        let mut expected = labels.data.clone();
        expected[[3, 4]] = 65535;
        assert_eq!(
            map.data, expected,
            "{method}: every pixel, by the truth's ids"
        );
        let ids: Vec<u16> = map.classes.iter().map(|c| c.id).collect();
        assert_eq!(ids, [10, 11, 12, 13, 14, 15, 16, 17]);
        assert_eq!(map.classes[2].name, "water");
        assert_eq!(map.classes[0].name, "class 10");
    }
}

#[test]
fn a_classifier_refuses_a_matrix_with_other_features_naming_both() {
    let c = ctx();
    let m = matrix(
        run(
            &*build("flatten", ""),
            &c,
            vec![("input", Value::Raster(scene(8, 8)))],
        )
        .unwrap(),
    );
    let fitted = run(
        &*build("classifier-fit", "trees = 3"),
        &c,
        vec![
            ("matrix", Value::Matrix(m.clone())),
            ("labels", Value::Labels(truth(8, 8))),
        ],
    )
    .unwrap();
    let mut other = m.clone();
    other.features.swap(0, 2);
    let e = run(
        &*build("predict", ""),
        &c,
        vec![("matrix", Value::Matrix(other)), ("model", fitted)],
    )
    .unwrap_err();
    assert_eq!(e.exit_code().code(), 3);
    let msg = e.to_string();
    assert!(
        msg.contains("[B00, B01, B02]") && msg.contains("[B02, B01, B00]"),
        "{msg}"
    );
}

#[test]
fn normalize_then_index_then_cluster() {
    let c = ctx();
    let mut r = scene(20, 20);
    r.bands[0].common_name = Some("red".into());
    r.bands[1].common_name = Some("nir".into());
    let r = run(
        &*build(
            "add-index",
            "indices = [\"ndvi\"]\nexpr = { DIFF = \"nir - red\" }",
        ),
        &c,
        vec![("input", Value::Raster(r))],
    )
    .unwrap();
    let r = run(
        &*build("normalize", "scope = \"band\""),
        &c,
        vec![("input", r)],
    )
    .unwrap();
    let Value::Raster(norm) = &r else { panic!() };
    assert_eq!(norm.bands.len(), 5);
    assert!(norm
        .data
        .iter()
        .filter(|v| v.is_finite())
        .all(|&v| (0.0..=255.0).contains(&v)));
    let m = run(&*build("flatten", "time = 0"), &c, vec![("input", r)]).unwrap();
    let fitted = model(
        run(
            &*build("kmeans-fit", "k = 4\ninit = \"k-means||\""),
            &c,
            vec![("input", m)],
        )
        .unwrap(),
    );
    assert_eq!(fitted.features, ["B00", "B01", "B02", "NDVI", "DIFF"]);
}
