//! `classifier-fit`: a supervised classifier trained on labelled pixels -> a [`Model`] with a
//! [`Classifier`].
//!
//! The labelled pixels are those valid in both the matrix and the labels (a class map on the
//! same grid, such as a ground-truth map). [`sample`] draws the same number of them from every
//! class, seeded, and holds a fraction of each class out of training. The model is a random
//! forest or one decision tree ([`tree`]: CART, Gini impurity), or the classes' training means
//! (nearest centroid). It predicts the held-out rows, and their overall accuracy, per-class
//! recall and confusion counts are recorded in the model (and so in the run report). Everything
//! random is seeded from `seed` (trees from the seed and their index), so the same seed gives
//! the same model bit for bit on any number of threads.

mod hyperparams;
pub mod sample;
pub mod tree;

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    ClassInfo, Classifier, DeclaredParams, Holdout, Inputs, Labels, Matrix, Model, Node, NodeError,
    NodeKind, ParamError, ParamSpec, Params, Port, RunContext, Signature, Value, ValueType,
};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde_json::json;

use crate::common::CHUNK;
use crate::error::MlError;
use crate::kmeans::assign::{self, Rows};
use crate::reshape::class_color;
use sample::Sampler;
use tree::{Data, Growth};

pub use hyperparams::{ClassifierParams, ClassifierValidParams, Method};

/// The `classifier-fit` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClassifierFitKind;

impl NodeKind for ClassifierFitKind {
    fn name(&self) -> &str {
        "classifier-fit"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Supervised classification: trains a random forest (default), one decision tree or a \
         nearest-centroid model on the pixels valid in both the matrix and the labels (a class \
         map on the same grid, such as a ground truth). Draws samples_per_class pixels of each \
         class (seeded, spread over the scene), holds a fraction of them out and records the \
         model's accuracy on those (overall, per-class recall, confusion counts) in the model and \
         the run report. predict then gives every pixel one of the labels' class ids. Same seed, \
         same model, whatever the thread count."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required(
                    "matrix",
                    ValueType::Matrix,
                    "pixels x features (from flatten)",
                ),
                Port::required(
                    "labels",
                    ValueType::Labels,
                    "the class of each pixel to learn from, on the matrix's grid (nodata: unknown)",
                ),
            ],
            output: ValueType::Model,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        ClassifierParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let params = ClassifierParams::parse(params)?.validate()?;
        Ok(Box::new(ClassifierFitNode { params }))
    }
}

/// A built `classifier-fit` node.
#[derive(Debug, Clone)]
pub struct ClassifierFitNode {
    params: ClassifierValidParams,
}

/// The classes present among the labelled pixels, ascending, and each id's index among them.
fn classes_of(labels: &Labels, valid: &ArrayView2<'_, bool>) -> (Vec<u16>, Vec<Option<u16>>) {
    let mut seen = vec![false; usize::from(u16::MAX) + 1];
    for (&id, &ok) in labels.data.iter().zip(valid.iter()) {
        if ok && id != labels.nodata {
            seen[usize::from(id)] = true;
        }
    }
    let ids: Vec<u16> = (0..=u16::MAX).filter(|&id| seen[usize::from(id)]).collect();
    let mut index = vec![None; usize::from(u16::MAX) + 1];
    for (i, &id) in ids.iter().enumerate() {
        index[usize::from(id)] = Some(i as u16);
    }
    (ids, index)
}

/// The rows `rows` of `data` (n x f), row-major.
fn gather(data: &Rows<'_>, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| data.row(r).iter().copied())
        .collect()
}

impl ClassifierFitNode {
    /// A node with these parameters.
    pub fn new(params: ClassifierValidParams) -> Self {
        ClassifierFitNode { params }
    }

    /// Fits the model.
    ///
    /// # Errors
    /// [`MlError::Shape`] when the labels are not on the matrix's grid, the mask does not match
    /// the rows, a value is not finite or there is no feature; [`MlError::NoValidRows`] when no
    /// pixel is valid in both; [`MlError::Cancelled`].
    pub fn fit(
        &self,
        matrix: &Matrix,
        labels: &Labels,
        warn: &dyn Fn(String),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Model, MlError> {
        let p = &self.params;
        let (n, f) = matrix.data.dim();
        if labels.grid != matrix.grid {
            return Err(MlError::Shape(format!(
                "the labels' grid ({} x {} in {}, transform {:?}) is not the matrix's ({} x {} in \
                 {}, transform {:?}); read or warp the labels onto the matrix's grid",
                labels.grid.width,
                labels.grid.height,
                labels.grid.crs,
                labels.grid.transform,
                matrix.grid.width,
                matrix.grid.height,
                matrix.grid.crs,
                matrix.grid.transform
            )));
        }
        let (h, w) = (matrix.grid.height, matrix.grid.width);
        if matrix.valid.dim() != (h, w) || labels.data.dim() != (h, w) {
            return Err(MlError::Shape(format!(
                "the matrix's mask is {:?} and the labels are {:?} but the grid is {h} x {w}",
                matrix.valid.dim(),
                labels.data.dim()
            )));
        }
        let valid = matrix.valid.iter().filter(|&&v| v).count();
        if valid != n {
            return Err(MlError::Shape(format!(
                "the mask has {valid} valid pixels but the matrix has {n} rows"
            )));
        }
        if f == 0 {
            return Err(MlError::Shape("the matrix has no features".into()));
        }
        if let Some(i) = matrix.data.iter().position(|v| !v.is_finite()) {
            return Err(MlError::Shape(format!(
                "row {} of the matrix has a non-finite value; flatten keeps only finite pixels",
                i / f
            )));
        }

        let (ids, index) = classes_of(labels, &matrix.valid.view());
        if ids.is_empty() {
            return Err(MlError::NoValidRows(
                "no pixel is valid in both the matrix and the labels; nothing to learn from \
                 (are the labels on the same area?)"
                    .into(),
            ));
        }
        let k = ids.len();
        let mut sampler = Sampler::new(p.seed(), k, p.samples_per_class());
        let mut row = 0usize;
        for (pixel, (&ok, &id)) in matrix.valid.iter().zip(labels.data.iter()).enumerate() {
            if !ok {
                continue;
            }
            if let Some(class) = index[usize::from(id)].filter(|_| id != labels.nodata) {
                sampler.offer(pixel as u64, row, class);
            }
            row += 1;
        }
        let labelled = sampler.offered().to_vec();
        let split = sampler.split(p.holdout());
        let classes: Vec<ClassInfo> = ids
            .iter()
            .map(|&id| {
                labels
                    .classes
                    .iter()
                    .find(|c| c.id == id)
                    .cloned()
                    .unwrap_or_else(|| ClassInfo {
                        id,
                        name: format!("class {id}"),
                        color: class_color(id),
                    })
            })
            .collect();
        let missing: Vec<&str> = labels
            .classes
            .iter()
            .filter(|c| !ids.contains(&c.id))
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            warn(format!(
                "classifier-fit: no valid pixel of class(es) {}; the model cannot predict them",
                missing.join(", ")
            ));
        }
        if k == 1 {
            warn(format!(
                "classifier-fit: the labels hold one class ({}); every pixel will be predicted as it",
                classes[0].name
            ));
        }

        let rows = Rows::new(matrix.data.view());
        let x_train = gather(&rows, &split.train);
        let x_held = gather(&rows, &split.holdout);
        let (centroids, inertia, counts) = class_means(&x_train, &split.train_class, k, f)?;
        let features_per_split = p.features_per_split(f);
        let growth = Growth {
            max_depth: p.max_depth(),
            min_samples_leaf: p.min_samples_leaf(),
            features_per_split,
        };
        let data = Data {
            x: &x_train,
            features: f,
            y: &split.train_class,
            classes: k,
        };
        let trees = match p.method() {
            Method::RandomForest => {
                tree::forest(&data, &growth, p.seed(), p.trees(), true, cancelled)?
            }
            Method::DecisionTree => tree::forest(&data, &growth, p.seed(), 1, false, cancelled)?,
            Method::NearestCentroid => Vec::new(),
        };
        let mut classifier = Classifier {
            method: p.method().name().into(),
            classes,
            trees,
            holdout: Holdout::default(),
        };
        let held = ndarray::ArrayView2::from_shape((split.holdout.len(), f), &x_held)
            .map_err(|e| MlError::Shape(e.to_string()))?;
        let predicted = predict_rows(&classifier, &centroids, held)?;
        classifier.holdout = Holdout::of(&split.holdout_class, &predicted, k);

        let mut info = json!({
            "method": p.method().name(),
            "samples_per_class": p.samples_per_class(),
            "holdout": p.holdout(),
            "labelled_pixels": labelled,
            "train_rows": split.train.len(),
            "holdout_rows": split.holdout.len(),
        });
        if p.method() != Method::NearestCentroid {
            info["features_per_split"] = json!(features_per_split);
            info["max_depth"] = json!(p.max_depth());
            info["min_samples_leaf"] = json!(p.min_samples_leaf());
            info["trees"] = json!(classifier.trees.len());
            info["nodes"] = json!(classifier.trees.iter().map(|t| t.len()).sum::<usize>());
            info["deepest_leaf"] = json!(classifier.trees.iter().map(|t| t.depth()).max());
        }
        if let Some(oa) = classifier.holdout.overall_accuracy {
            tracing::info!(
                method = p.method().name(),
                holdout_rows = classifier.holdout.rows,
                overall_accuracy = oa,
                "classifier held-out accuracy"
            );
        } else {
            warn(
                "classifier-fit: no pixel held out (holdout = 0 or one pixel per class); the \
                 model's accuracy is not measured"
                    .into(),
            );
        }
        Ok(Model {
            centroids,
            features: matrix.features.clone(),
            inertia,
            iterations: 0,
            seed: p.seed(),
            counts,
            info,
            // The features' scaling, so that normalize can scale other data alike.
            scaling: matrix.scaling.clone(),
            classifier: Some(Box::new(classifier)),
        })
    }
}

/// The training means of each class (`k x f`), the training rows' squared distance to their
/// class's mean summed (the within-class inertia), and the rows per class; sums in f64 in row
/// order.
fn class_means(
    x: &[f32],
    y: &[u16],
    k: usize,
    f: usize,
) -> Result<(Array2<f32>, f64, Vec<u64>), MlError> {
    let mut sums = vec![0f64; k * f];
    let mut counts = vec![0u64; k];
    for (row, &c) in x.chunks_exact(f).zip(y) {
        let c = usize::from(c);
        counts[c] += 1;
        for (s, &v) in sums[c * f..(c + 1) * f].iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    let means: Vec<f64> = sums
        .iter()
        .enumerate()
        .map(|(i, &s)| s / counts[i / f].max(1) as f64)
        .collect();
    let mut inertia = 0f64;
    for (row, &c) in x.chunks_exact(f).zip(y) {
        let mean = &means[usize::from(c) * f..(usize::from(c) + 1) * f];
        inertia += row
            .iter()
            .zip(mean)
            .map(|(&v, &m)| (f64::from(v) - m).powi(2))
            .sum::<f64>();
    }
    let centroids = Array2::from_shape_vec((k, f), means.iter().map(|&m| m as f32).collect())
        .map_err(|e| MlError::Shape(e.to_string()))?;
    Ok((centroids, inertia, counts))
}

/// Checks that `classifier` can be applied to rows of `features` values with these centroids.
///
/// # Errors
/// [`MlError::Shape`] naming what is wrong with the model.
pub fn check(
    classifier: &Classifier,
    centroids: &Array2<f32>,
    features: usize,
) -> Result<(), MlError> {
    let k = classifier.classes.len();
    if k == 0 {
        return Err(MlError::Shape("the classifier has no class".into()));
    }
    if centroids.dim() != (k, features) {
        return Err(MlError::Shape(format!(
            "the classifier has {k} classes and {features} features but its centroids are {:?}",
            centroids.dim()
        )));
    }
    let nearest = classifier.method == Method::NearestCentroid.name();
    if !nearest && classifier.trees.is_empty() {
        return Err(MlError::Shape(format!(
            "the {} classifier has no tree",
            classifier.method
        )));
    }
    for t in &classifier.trees {
        t.check(features, k)
            .map_err(|e| MlError::Shape(format!("the classifier is malformed: {e}")))?;
    }
    Ok(())
}

/// The class of every row of `data` (an index into the classifier's classes), in parallel over
/// fixed chunks of rows: the same answer on any number of threads.
///
/// # Errors
/// [`MlError::Shape`] for a model that fails [`check`].
pub fn predict_rows(
    classifier: &Classifier,
    centroids: &Array2<f32>,
    data: ArrayView2<'_, f32>,
) -> Result<Vec<u16>, MlError> {
    let f = data.ncols();
    check(classifier, centroids, f)?;
    let rows = Rows::new(data);
    if classifier.trees.is_empty() {
        let flat: Vec<f32> = centroids.iter().copied().collect();
        return Ok(assign::labels(&rows, &flat)
            .into_iter()
            .map(|c| c as u16)
            .collect());
    }
    let k = classifier.classes.len();
    let mut out = vec![0u16; rows.n];
    out.par_chunks_mut(CHUNK)
        .zip(rows.par_chunks())
        .for_each(|(out, (_, chunk))| {
            let mut votes = vec![0u32; k];
            for (o, row) in out.iter_mut().zip(chunk.chunks_exact(f.max(1))) {
                *o = tree::vote(&classifier.trees, row, &mut votes);
            }
        });
    Ok(out)
}

impl Node for ClassifierFitNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("matrix")?;
        let pixels = p.grid.len() as u64;
        let f = p.bands as u64;
        // The sample (a heap entry and a row's features per pixel drawn), for up to 64 classes,
        // the class index of the grid, and the trees (at most two nodes per training row).
        let drawn = pixels.min(64 * self.params.samples_per_class() as u64);
        let sample = drawn * (24 + 4 * f);
        let trees = self.params.trees() as u64 * 2 * drawn * 18;
        let scratch = known.threads as u64 * drawn * 12;
        Some(Estimate::of(Shape::Small).working(sample + trees + scratch + (1 << 18)))
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let matrix = inputs.matrix("matrix")?;
        let labels = inputs.labels("labels")?;
        Ok(Value::Model(self.fit(
            matrix,
            labels,
            &|m| ctx.warn(m),
            &|| ctx.is_cancelled(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::Grid;

    /// A 40 x 50 scene with three classes in vertical stripes, two noisy features that separate
    /// them, a masked corner and unlabelled pixels.
    fn scene() -> (Matrix, Labels) {
        let (h, w) = (40, 50);
        let grid = Grid::north_up("EPSG:32618", 0.0, 400.0, 10.0, w, h);
        let valid = Array2::from_shape_fn((h, w), |(y, x)| !(y < 5 && x < 5));
        let class = |x: usize| (x * 3 / w) as u16;
        let mut rows = Vec::new();
        for ((y, x), &ok) in valid.indexed_iter() {
            if ok {
                let wobble = ((y * 7 + x * 13) % 10) as f32 / 100.0;
                let c = class(x) as f32;
                rows.extend([c + wobble, 1.0 - c * 0.5 + wobble]);
            }
        }
        let n = rows.len() / 2;
        let matrix = Matrix {
            data: Array2::from_shape_vec((n, 2), rows).unwrap(),
            features: vec!["B04".into(), "B08".into()],
            valid,
            grid: grid.clone(),
            scaling: Vec::new(),
        };
        let labels = Labels {
            data: Array2::from_shape_fn((h, w), |(y, x)| {
                if y == 20 {
                    255
                } else {
                    [3, 7, 9][class(x) as usize]
                }
            }),
            nodata: 255,
            classes: vec![ClassInfo {
                id: 7,
                name: "forest".into(),
                color: [0, 100, 0],
            }],
            grid,
        };
        (matrix, labels)
    }

    fn node(src: &str) -> ClassifierFitNode {
        ClassifierFitNode::new(
            ClassifierParams::parse(&toml::from_str(src).unwrap())
                .unwrap()
                .validate()
                .unwrap(),
        )
    }

    #[test]
    fn every_method_learns_separable_classes_and_records_its_accuracy() {
        let (matrix, labels) = scene();
        for (method, trees) in [
            ("random-forest", 10),
            ("decision-tree", 1),
            ("nearest-centroid", 0),
        ] {
            let fit = node(&format!(
                "method = \"{method}\"\nsamples_per_class = 100\ntrees = 10"
            ));
            let model = fit.fit(&matrix, &labels, &|_| {}, &|| false).unwrap();
            let c = model.classifier.as_ref().unwrap();
            assert_eq!(c.method, method);
            let ids: Vec<u16> = c.classes.iter().map(|c| c.id).collect();
            assert_eq!(ids, [3, 7, 9]);
            assert_eq!(c.classes[1].name, "forest", "named from the labels");
            assert_eq!(c.classes[0].name, "class 3");
            assert_eq!(model.counts, [70, 70, 70]);
            assert_eq!(c.holdout.rows, 90);
            assert_eq!(c.holdout.overall_accuracy, Some(1.0), "{method}");
            assert_eq!(c.holdout.recall, [Some(1.0); 3]);
            assert_eq!(model.centroids.dim(), (3, 2));
            assert!((model.centroids[[1, 0]] - 1.045).abs() < 0.02);
            let predicted = predict_rows(c, &model.centroids, matrix.data.view()).unwrap();
            let expected: Vec<u16> = matrix
                .valid
                .indexed_iter()
                .filter(|(_, &ok)| ok)
                .map(|((_, x), _)| (x * 3 / 50) as u16)
                .collect();
            assert_eq!(predicted, expected, "{method}: every row");
            assert_eq!(c.trees.len(), trees);
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_model_on_any_thread_count() {
        let (matrix, labels) = scene();
        let fit = node("samples_per_class = 200\ntrees = 20\nfeatures_per_split = 1");
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| fit.fit(&matrix, &labels, &|_| {}, &|| false).unwrap())
        };
        let one = on(1);
        assert_eq!(one, on(4));
        let other = node("samples_per_class = 200\ntrees = 20\nfeatures_per_split = 1\nseed = 1")
            .fit(&matrix, &labels, &|_| {}, &|| false)
            .unwrap();
        assert_ne!(other.classifier, one.classifier);
    }

    #[test]
    fn labels_on_another_grid_or_without_a_class_are_bad_data() {
        let (matrix, mut labels) = scene();
        let fit = node("");
        labels.grid.transform[0] += 10.0;
        let e = fit.fit(&matrix, &labels, &|_| {}, &|| false).unwrap_err();
        assert!(e.to_string().contains("grid"), "{e}");
        assert_eq!(NodeError::from(e).exit_code().code(), 3);
        labels.grid = matrix.grid.clone();
        labels.data.fill(255);
        let e = fit.fit(&matrix, &labels, &|_| {}, &|| false).unwrap_err();
        assert!(matches!(e, MlError::NoValidRows(_)), "{e}");
    }

    #[test]
    fn a_malformed_classifier_is_refused_not_followed() {
        let (matrix, labels) = scene();
        let model = node("method = \"decision-tree\"")
            .fit(&matrix, &labels, &|_| {}, &|| false)
            .unwrap();
        let mut c = model.classifier.clone().unwrap();
        c.trees[0].left[0] = 0;
        let e = predict_rows(&c, &model.centroids, matrix.data.view()).unwrap_err();
        assert!(e.to_string().contains("malformed"), "{e}");
        let e = predict_rows(
            model.classifier.as_ref().unwrap(),
            &model.centroids,
            matrix.data.slice(ndarray::s![.., ..1]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("centroids"), "{e}");
    }
}
