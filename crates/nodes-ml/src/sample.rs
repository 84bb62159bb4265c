//! `sample`: a seeded sample of a matrix's rows, as a matrix of its own on the same grid.
//!
//! The rows kept are the ones `kmeans-fit` with `sample = size` fits on ([`crate::kmeans::sample`]:
//! the valid pixels with the smallest seeded hash of their grid position), chosen by the same
//! code, so that `kmeans-fit` without `sample` on this node's output fits the very same rows.
//! A matrix held whole and one computed window by window give the same sample; a windowed one
//! is read window by window and never held whole. Sampling each tile in a task of its own, then
//! [`gather`](crate::gather)ing the samples, lets one fit see many tiles.

use flow_core::deferred::Deferred;
use flow_core::estimate::{Estimate, Known, Pixels, Shape};
use flow_core::{
    alloc, DeclaredParams, Inputs, Matrix, Node, NodeError, NodeKind, ParamError, ParamSpec,
    Params, Port, RunContext, Signature, Value, ValueType,
};
use ndarray::{Array2, Axis};

use crate::error::MlError;
use crate::gather::line_grid;
use crate::kmeans::sample::{choose, draw_windowed, matrix_template, valid_pixels};
use crate::kmeans::{Sample, DEFAULT_SEED};

flow_core::params! {
    /// `sample` parameters as written in the recipe.
    pub struct SampleParams {
        /// rows to keep, an integer >= 1 (every row when the matrix has no more)
        pub size: i64,
        /// seed of the choice; the default is kmeans-fit's, so that its `sample = size` fits
        /// these very rows
        pub seed: i64 = DEFAULT_SEED,
    }
}

/// The `sample` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct SampleKind;

impl NodeKind for SampleKind {
    fn name(&self) -> &str {
        "sample"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Keeps a seeded sample of a matrix's rows: the `size` valid pixels with the smallest \
         seeded hash of their grid position, the very rows kmeans-fit with `sample = size` and \
         the same `seed` fits on (kmeans-fit without `sample` on this output gives the same \
         centroids). A matrix held whole and one computed window by window (read window by \
         window: the sample and one window per thread in memory) give the same sample. Output: a \
         matrix on the same grid with the same features and scaling, whose rows are the chosen \
         pixels in grid order and whose mask is true exactly there. A matrix without valid rows \
         (a tile all cloud, or outside the area) gives an empty sample, with a warning: a \
         gathered fit then says when no tile gave anything. Sample each tile, then `gather` the samples to fit one model on all of them."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Matrix,
                "pixels x features (from flatten), whole or window by window",
            )],
            output: ValueType::Matrix,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        SampleParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let p = SampleParams::parse(params)?;
        let size = usize::try_from(p.size)
            .ok()
            .filter(|&s| s >= 1)
            .ok_or_else(|| {
                ParamError::new("size", format!("`size` must be >= 1, got {}", p.size))
            })?;
        let seed = u64::try_from(p.seed)
            .map_err(|_| ParamError::new("seed", format!("`seed` must be >= 0, got {}", p.seed)))?;
        Ok(Box::new(SampleNode::new(size, seed)))
    }
}

/// A built `sample` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleNode {
    size: usize,
    seed: u64,
}

impl SampleNode {
    /// A node keeping at most `size` rows (at least 1) chosen under `seed`.
    pub fn new(size: usize, seed: u64) -> Self {
        SampleNode {
            size: size.max(1),
            seed,
        }
    }

    /// The sample of a matrix held whole.
    ///
    /// # Errors
    /// [`MlError::Shape`] for a mask that does not describe the rows or a non-finite value. A
    /// matrix without rows gives an empty sample: a tile that is all cloud or outside the area
    /// gives nothing to a gathered fit rather than failing it (the fit says when no tile gave
    /// anything).
    pub fn apply(&self, matrix: &Matrix) -> Result<Matrix, MlError> {
        let (n, f) = matrix.data.dim();
        let (h, w) = (matrix.grid.height, matrix.grid.width);
        if matrix.valid.dim() != (h, w) {
            return Err(MlError::Shape(format!(
                "the validity mask is {:?} but the grid is {h} x {w}",
                matrix.valid.dim()
            )));
        }
        let pixels = valid_pixels(&matrix.valid.view(), 0, 0, w);
        if pixels.len() != n {
            return Err(MlError::Shape(format!(
                "the mask has {} valid pixels but the matrix has {n} rows",
                pixels.len()
            )));
        }
        if let Some(i) = matrix.data.iter().position(|v| !v.is_finite()) {
            return Err(MlError::Shape(format!(
                "pixel {} of the matrix has a non-finite value; flatten keeps only finite pixels",
                pixels[i / f.max(1)]
            )));
        }
        let chosen = choose(self.seed, &pixels, self.size);
        let rows = matrix.data.select(Axis(0), &chosen);
        let kept: Vec<u64> = chosen.iter().map(|&i| pixels[i]).collect();
        tracing::debug!(rows = kept.len(), of = n, "sample");
        sampled(matrix, &kept, rows)
    }

    /// The sample of a matrix computed window by window, read window by window.
    ///
    /// # Errors
    /// As [`SampleNode::apply`], and what computing a window fails with.
    pub fn apply_windowed(&self, ctx: &RunContext, input: &Deferred) -> Result<Matrix, NodeError> {
        let template = matrix_template(input, "input")?;
        let drawn = draw_windowed(
            ctx,
            input,
            template.features.len(),
            self.seed,
            Sample::Count(self.size),
            "sample",
        )?;
        tracing::debug!(rows = drawn.pixels.len(), of = drawn.count, "sample");
        Ok(sampled(template, &drawn.pixels, drawn.rows)?)
    }
}

/// The matrix of `rows`, the rows of the pixels `pixels` (grid indices, ascending), with the
/// features, scaling and grid of `like`: its mask is true exactly at those pixels.
fn sampled(like: &Matrix, pixels: &[u64], rows: Array2<f32>) -> Result<Matrix, MlError> {
    let grid = like.grid.clone();
    let (h, w) = (grid.height, grid.width);
    let mut valid = alloc::array2((h, w), false)
        .map_err(|e| MlError::Shape(format!("the sample's mask over {h} x {w} pixels {e}")))?;
    for &p in pixels {
        let cell = usize::try_from(p)
            .ok()
            .and_then(|p| valid.get_mut((p / w.max(1), p % w.max(1))));
        match cell {
            Some(v) => *v = true,
            None => {
                return Err(MlError::Shape(format!(
                    "pixel {p} is outside the {h} x {w} grid"
                )))
            }
        }
    }
    Ok(Matrix {
        data: rows,
        features: like.features.clone(),
        valid,
        grid,
        scaling: like.scaling.clone(),
    })
}

impl Node for SampleNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        let pixels = p.grid.len();
        let rows = self.size.min(pixels);
        // The output is described by its rows, as one line of pixels (a gathered matrix's
        // shape), not by the grid it lies on: a few rows of a tile are not a tile's matrix.
        // Its mask (a byte per pixel of the grid) is counted while it is built.
        let out = Pixels::whole(ValueType::Matrix, 1, p.bands, line_grid(&p.grid, rows));
        let est = Estimate::of(Shape::Pixels(out));
        let mask = pixels as u64;
        // A candidate row: its features, its key, pixel and slot.
        let row = p.bands as u64 * 4 + 24;
        Some(match p.window {
            // Each worker keeps up to twice the sample of its own windows, then they are merged.
            Some(_) => {
                let kept = 2 * rows as u64 * row;
                est.working(kept.saturating_mul(known.threads as u64 + 1) + mask)
                    .one_pass(known)
            }
            // Every row's pixel, and its key while the smallest are selected.
            None => est.working(pixels as u64 * 32 + mask),
        })
    }

    fn takes_deferred(&self) -> bool {
        true
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let matrix = match inputs.get("input") {
            Some(Value::Deferred(d)) => self.apply_windowed(ctx, d)?,
            _ => self.apply(inputs.matrix("input")?)?,
        };
        if matrix.data.nrows() == 0 {
            ctx.warn(
                "the matrix has no rows (every pixel is masked or NaN): the sample is empty"
                    .to_string(),
            );
        }
        Ok(Value::Matrix(matrix))
    }
}
