//! `predict`: the nearest centroid of every row of a matrix.

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    DeclaredParams, Inputs, Matrix, Model, Node, NodeError, NodeKind, ParamError, ParamSpec,
    Params, Port, RunContext, Signature, Value, ValueType,
};
use ndarray::Array2;

use crate::error::MlError;
use rayon::prelude::*;

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
        "Assigns every row of a matrix to the nearest centroid of a K-Means model (squared Euclidean \
         distance, ties to the lowest class id). Output: a matrix with one feature `class`, same rows, \
         mask and grid."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required(
                    "matrix",
                    ValueType::Matrix,
                    "pixels x features, as the model was fitted on",
                ),
                Port::required("model", ValueType::Model, "the fitted model"),
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
    /// number, or their names when both have names),
    /// [`MlError::Shape`] for a model without centroids.
    pub fn apply(&self, matrix: &Matrix, model: &Model) -> Result<Matrix, MlError> {
        let (k, f) = model.centroids.dim();
        if k == 0 {
            return Err(MlError::Shape("predict: the model has no centroid".into()));
        }
        // Another number of features, or the same number under other names (another band
        // order, another date), would classify without meaning: refused, naming both lists.
        let renamed = !model.features.is_empty()
            && !matrix.features.is_empty()
            && model.features != matrix.features;
        if matrix.data.ncols() != f || renamed {
            return Err(MlError::FeatureMismatch {
                model: model.features.clone(),
                matrix: matrix.features.clone(),
            });
        }
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
