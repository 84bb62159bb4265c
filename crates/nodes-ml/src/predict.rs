//! `predict`: the class of every row of a matrix, by a K-Means model (the nearest centroid) or a
//! classifier (`classifier-fit`'s; the class ids its labels used).

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    Classifier, DeclaredParams, Inputs, Matrix, Model, Node, NodeError, NodeKind, ParamError,
    ParamSpec, Params, Port, RunContext, Signature, Value, ValueType,
};
use ndarray::Array2;

use crate::error::MlError;
use rayon::prelude::*;

use crate::classifier;
use crate::common::CHUNK;
use crate::kmeans::assign::Rows;
use crate::kmeans::kernel::{self, Prepared};

flow_core::params! {
    /// `predict` takes no parameters.
    pub struct PredictParams {}
}

/// The `predict` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictKind;

impl NodeKind for PredictKind {
    fn name(&self) -> &str {
        "predict"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Classifies every row of a matrix: with a K-Means model, the nearest centroid (squared \
         Euclidean distance, ties to the lowest class id); with a classifier (classifier-fit), its \
         prediction, one of the class ids it was trained on. A matrix whose features differ from \
         the model's (their number, or their names and order) is refused. Output: a matrix with \
         one feature `class`, same rows, mask and grid."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required(
                    "matrix",
                    ValueType::Matrix,
                    "pixels x features, as the model was fitted on",
                ),
                Port::required(
                    "model",
                    ValueType::Model,
                    "the fitted model (kmeans-fit or classifier-fit)",
                ),
            ],
            output: ValueType::Matrix,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        PredictParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        PredictParams::parse(params)?;
        Ok(Box::new(PredictNode))
    }

    fn pixel_local(&self) -> bool {
        true
    }
}

/// A built `predict` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictNode;

impl PredictNode {
    /// The class of every row.
    ///
    /// # Errors
    /// [`MlError::FeatureMismatch`] when the matrix and model disagree on the features (their
    /// number, or their names when both have names), [`MlError::Shape`] for a model without
    /// centroids or a malformed classifier.
    pub fn apply(&self, matrix: &Matrix, model: &Model) -> Result<Matrix, MlError> {
        if let Some(classifier) = &model.classifier {
            return classify(matrix, model, classifier);
        }
        let (k, f) = model.centroids.dim();
        if k == 0 {
            return Err(MlError::Shape("predict: the model has no centroid".into()));
        }
        check_features(matrix, model, f)?;
        let centroids: Vec<f32> = model.centroids.iter().copied().collect();
        let rows = Rows::new(matrix.data.view());
        let n = rows.n;
        // The fit's kernel (same assignment as the fit's counts), written straight into the
        // output: one pass over the matrix, no intermediate label vector.
        let p = Prepared::new(&centroids, f);
        let isa = kernel::isa();
        let mut classes = vec![0f32; n];
        classes
            .par_chunks_mut(CHUNK)
            .zip(rows.par_chunks())
            .for_each(|(out, (_, chunk))| {
                let mut buf = [0u32; CHUNK];
                kernel::assign_with(isa, chunk, &p, &mut buf[..out.len()]);
                for (o, &c) in out.iter_mut().zip(buf.iter()) {
                    *o = c as f32;
                }
            });
        let data =
            Array2::from_shape_vec((n, 1), classes).map_err(|e| MlError::Shape(e.to_string()))?;
        Ok(Matrix {
            scaling: Default::default(),
            data,
            features: vec!["class".into()],
            valid: matrix.valid.clone(),
            grid: matrix.grid.clone(),
        })
    }
}

/// Refuses a matrix whose `features` columns are not the model's: another number of features,
/// or the same number under other names (another band order, another date), would classify
/// without meaning; the error names both lists.
fn check_features(matrix: &Matrix, model: &Model, features: usize) -> Result<(), MlError> {
    let renamed = !model.features.is_empty()
        && !matrix.features.is_empty()
        && model.features != matrix.features;
    if matrix.data.ncols() != features || renamed {
        return Err(MlError::FeatureMismatch {
            model: model.features.clone(),
            matrix: matrix.features.clone(),
        });
    }
    Ok(())
}

/// `predict` with a classifier: the class id of every row.
fn classify(matrix: &Matrix, model: &Model, classifier: &Classifier) -> Result<Matrix, MlError> {
    check_features(matrix, model, model.centroids.ncols())?;
    let indices = classifier::predict_rows(classifier, &model.centroids, matrix.data.view())?;
    let ids: Vec<f32> = indices
        .iter()
        .map(|&i| {
            classifier
                .classes
                .get(usize::from(i))
                .map_or(f32::NAN, |c| f32::from(c.id))
        })
        .collect();
    let data =
        Array2::from_shape_vec((ids.len(), 1), ids).map_err(|e| MlError::Shape(e.to_string()))?;
    Ok(Matrix {
        data,
        features: vec!["class".into()],
        valid: matrix.valid.clone(),
        grid: matrix.grid.clone(),
        scaling: Vec::new(),
    })
}

impl Node for PredictNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("matrix")?;
        Some(Estimate::of(Shape::Pixels(p.reshaped(
            ValueType::Matrix,
            1,
            1,
        ))))
    }

    fn run(&self, _ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let matrix = inputs.matrix("matrix")?;
        let model = inputs.model("model")?;
        Ok(Value::Matrix(self.apply(matrix, model)?))
    }
}
