//! `reshape`: class ids per row back onto the grid, as [`Labels`].

use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    ClassInfo, DeclaredParams, Inputs, Labels, Matrix, Model, Node, NodeError, NodeKind,
    ParamError, ParamSpec, Params, Port, RunContext, Signature, Value, ValueType,
};
use ndarray::Array2;

use crate::error::MlError;

/// The value of pixels without a class.
pub const NODATA: u16 = u16::MAX;

/// Tableau 10, the qualitative palette that class `id` takes colour `id % 10` from.
pub const PALETTE: [[u8; 3]; 10] = [
    [78, 121, 167],
    [242, 142, 43],
    [225, 87, 89],
    [118, 183, 178],
    [89, 161, 79],
    [237, 201, 72],
    [176, 122, 161],
    [255, 157, 167],
    [156, 117, 95],
    [186, 176, 172],
];

/// The colour of class `id`.
pub fn class_color(id: u16) -> [u8; 3] {
    PALETTE[id as usize % PALETTE.len()]
}

flow_core::params! {
    /// `reshape` takes no parameters.
    pub struct ReshapeParams {}
}

/// The `reshape` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReshapeKind;

impl NodeKind for ReshapeKind {
    fn name(&self) -> &str {
        "reshape"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Puts class ids (predict's output) back on the grid as a u16 class map; pixels without a row \
         are nodata (65535). Classes: a classifier's own (the ids, names and colours of the labels it \
         learnt from) when its model is connected; k of a K-Means model; else the largest id + 1; \
         named \"class N\", coloured from Tableau 10 by id."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required(
                    "input",
                    ValueType::Matrix,
                    "one `class` column per valid pixel (from predict)",
                ),
                Port::optional("model", ValueType::Model, "the model, for its classes"),
            ],
            output: ValueType::Labels,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        ReshapeParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        ReshapeParams::parse(params)?;
        Ok(Box::new(ReshapeNode))
    }

    fn pixel_local(&self) -> bool {
        true
    }
}

/// A built `reshape` node.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReshapeNode;

impl ReshapeNode {
    /// The class map.
    ///
    /// # Errors
    /// [`MlError::Shape`] when the matrix is not one column, its mask does not match its rows or
    /// grid, or a value is not a class id (below the model's k, or one of a classifier's).
    pub fn apply(&self, matrix: &Matrix, model: Option<&Model>) -> Result<Labels, MlError> {
        let (h, w) = (matrix.grid.height, matrix.grid.width);
        if matrix.data.ncols() != 1 {
            return Err(MlError::Shape(format!(
                "reshape expects one `class` column (predict's output), got {} features",
                matrix.data.ncols()
            )));
        }
        if matrix.valid.dim() != (h, w) {
            return Err(MlError::Shape(format!(
                "the validity mask is {:?} but the grid is {h} x {w}",
                matrix.valid.dim()
            )));
        }
        let valid = matrix.valid.iter().filter(|&&v| v).count();
        if valid != matrix.data.nrows() {
            return Err(MlError::Shape(format!(
                "the mask has {valid} valid pixels but the matrix has {} rows",
                matrix.data.nrows()
            )));
        }
        // A classifier names its classes (the ids of the labels it learnt from).
        let known = model
            .and_then(|m| m.classifier.as_ref())
            .map(|c| c.classes.as_slice());
        let limit = match (model, known) {
            (_, Some(c)) => c.iter().map(|c| u32::from(c.id) + 1).max().unwrap_or(0),
            (Some(m), None) => m.centroids.nrows() as u32,
            (None, None) => u32::from(NODATA),
        };
        let allowed: Option<Vec<bool>> = known.map(|c| {
            let mut a = vec![false; limit as usize];
            for class in c {
                a[usize::from(class.id)] = true;
            }
            a
        });
        let mut ids = Vec::with_capacity(valid);
        for (row, &v) in matrix.data.iter().enumerate() {
            if !(v >= 0.0 && v.fract() == 0.0 && (v as u32) < limit) {
                return Err(MlError::Shape(format!(
                    "row {row} has class {v}, not a class id below {limit}"
                )));
            }
            if let (Some(a), Some(c)) = (&allowed, known) {
                if !a[v as usize] {
                    let ids: Vec<String> = c.iter().map(|c| c.id.to_string()).collect();
                    return Err(MlError::Shape(format!(
                        "row {row} has class {v}, not one of the classifier's classes ({})",
                        ids.join(", ")
                    )));
                }
            }
            ids.push(v as u16);
        }
        let classes = match model {
            Some(m) => m.centroids.nrows(),
            None => ids.iter().max().map_or(0, |&m| m as usize + 1),
        };
        let mut data = Array2::from_elem((h, w), NODATA);
        let mut it = ids.into_iter();
        for (out, &ok) in data.iter_mut().zip(matrix.valid.iter()) {
            if ok {
                *out = it.next().unwrap_or(NODATA);
            }
        }
        let classes = match known {
            Some(c) => c.to_vec(),
            None => (0..classes as u16)
                .map(|id| ClassInfo {
                    id,
                    name: format!("class {id}"),
                    color: class_color(id),
                })
                .collect(),
        };
        Ok(Labels {
            data,
            nodata: NODATA,
            classes,
            grid: matrix.grid.clone(),
        })
    }
}

impl Node for ReshapeNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        Some(Estimate::of(Shape::Pixels(p.reshaped(
            ValueType::Labels,
            1,
            1,
        ))))
    }

    fn run(&self, _ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let matrix = inputs.matrix("input")?;
        let model = inputs.model_opt("model")?;
        Ok(Value::Labels(self.apply(matrix, model)?))
    }
}
