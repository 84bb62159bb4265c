//! `kmeans-fit`: K-Means on a feature matrix -> a [`Model`] with canonically ordered classes.
//!
//! Each of `n_init` runs draws initial centroids ([`init`]) from one seeded Xoshiro256+ stream (on
//! at most [`INIT_SAMPLE`] rows) and runs Lloyd's algorithm ([`algorithm::lloyd`]); the runs go
//! side by side, one stream over the rows per iteration for all of them ([`kernel`]); the run with
//! the lowest inertia is kept (the first on ties). Classes are then renumbered by [`algorithm::canonical_order`] (ascending
//! brightness), and counts and inertia are computed by one more assignment pass against the final
//! centroids, in f64. Parallel work uses fixed chunks combined in order, so the same seed gives the
//! same model bit for bit on any number of threads.
//!
//! With `k = "auto"` ([`KChoice::Auto`]) every k of `k_range` is fitted that way on the same
//! prepared rows and scored by the [`criteria`]; `sweep.rs` keeps the best and records them all.

pub mod algorithm;
pub mod assign;
pub mod criteria;
mod hyperparams;
pub mod init;
pub mod kernel;
pub mod sample;
mod sweep;

use flow_core::deferred::Deferred;
use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    DeclaredParams, Inputs, Matrix, Model, Node, NodeError, NodeKind, ParamError, ParamSpec,
    Params, Port, RunContext, Signature, Value, ValueType,
};
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use serde_json::json;

use crate::error::MlError;
use assign::{pass, Rows};
use kernel::Prepared;

pub use criteria::SILHOUETTE_SAMPLE;
pub use hyperparams::{
    Criterion, InitMethod, KChoice, KMeansParams, KMeansValidParams, KParam, Sample, SampleParam,
    DEFAULT_CRITERION, DEFAULT_K_RANGE, DEFAULT_SEED,
};

/// Mixed into the seed for the rows that initialization sees when there are more than
/// [`INIT_SAMPLE`].
const INIT_SAMPLE_STREAM: u64 = 0x494E_4954_5F53_4D50;
/// Initialization (k-means++, random, k-means||) looks at most at this many rows, drawn once
/// per fit, so that it stays a small part of the fit on large matrices (k-means++ costs about
/// `k x (2 + ln k)` distance passes). Smaller matrices are initialized from all their rows.
pub const INIT_SAMPLE: usize = 100_000;

/// The `kmeans-fit` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct KMeansFitKind;

impl NodeKind for KMeansFitKind {
    fn name(&self) -> &str {
        "kmeans-fit"
    }

    /// 2: the sample is chosen by a seeded hash of each pixel's grid position.
    /// 3: the model carries its features' scaling.
    fn version(&self) -> u32 {
        3
    }

    fn doc(&self) -> &str {
        "K-Means (Lloyd, f64 sums; k-means++, random or k-means|| init; n_init runs, lowest inertia \
         kept) on a matrix's rows, optionally on a seeded sample of them (the valid pixels with the \
         smallest seeded hash of their grid position: spread over the scene, and the same whether \
         it is held whole or streamed in windows). Classes are numbered by ascending centroid \
         brightness (sum of features) so colours are stable. With k = \"auto\", one fit per k of \
         `k_range` on the same rows, scored by silhouette, Calinski-Harabasz and Davies-Bouldin; \
         the best by `criterion` is kept and the sweep recorded in the model (info.sweep; `write` \
         draws it as a PNG chart). Same seed, same model, whatever the thread count."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::required(
                "input",
                ValueType::Matrix,
                "pixels x features (from flatten)",
            )],
            output: ValueType::Model,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        KMeansParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let params = KMeansParams::parse(params)?.validate()?;
        Ok(Box::new(KMeansFitNode { params }))
    }
}

/// A built `kmeans-fit` node.
#[derive(Debug, Clone)]
pub struct KMeansFitNode {
    params: KMeansValidParams,
}

impl KMeansFitNode {
    /// A node with these parameters.
    pub fn new(params: KMeansValidParams) -> Self {
        KMeansFitNode { params }
    }

    /// Fits the model.
    ///
    /// # Errors
    /// [`MlError::NoValidRows`] for an empty matrix, [`MlError::TooFewRows`] when k exceeds the
    /// rows fitted, [`MlError::Shape`] for a non-finite value or no feature,
    /// [`MlError::Cancelled`].
    pub fn fit(
        &self,
        matrix: &Matrix,
        warn: &(dyn Fn(String) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Model, MlError> {
        let p = &self.params;
        let (n, f) = matrix.data.dim();
        if n == 0 {
            return Err(MlError::NoValidRows(
                "the matrix has no rows (every pixel is masked or NaN); nothing to cluster".into(),
            ));
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
        let m = p.sample().map_or(n, |s| s.size(n));
        let sampled: Option<Array2<f32>> = (m < n).then(|| {
            let pixels = sample::valid_pixels(&matrix.valid.view(), 0, 0, matrix.valid.ncols());
            let idx = if pixels.len() == n {
                sample::choose(p.seed(), &pixels, m)
            } else {
                // A matrix whose mask does not describe its rows: number the rows instead.
                sample::choose(p.seed(), &(0..n as u64).collect::<Vec<_>>(), m)
            };
            matrix.data.select(Axis(0), &idx)
        });
        let chosen = sampled.as_ref().map_or(matrix.data.view(), |s| s.view());
        self.fit_rows(chosen, n, &matrix.features, warn, cancelled)
    }

    /// Fits the model on `chosen`, the rows picked (all of them, or the sample) out of `n` valid
    /// pixels: one fit, or with `k = "auto"` one per k of the range (`sweep.rs`).
    ///
    /// # Errors
    /// As [`KMeansFitNode::fit`].
    pub fn fit_rows(
        &self,
        chosen: ndarray::ArrayView2<'_, f32>,
        n: usize,
        features: &[String],
        warn: &(dyn Fn(String) + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Model, MlError> {
        let m = chosen.nrows();
        let context = if m < n {
            format!(" in the sample (of {n} valid pixels)")
        } else {
            String::new()
        };
        match self.params.k() {
            KChoice::Fixed(k) => {
                if k > m {
                    return Err(MlError::TooFewRows {
                        k,
                        rows: m,
                        context,
                    });
                }
                let data = FitRows::new(chosen, n, self.params.seed());
                let (model, warnings) = self.fit_k(&data, k, features, cancelled)?;
                warnings.into_iter().for_each(warn);
                Ok(model)
            }
            KChoice::Auto {
                from,
                to,
                criterion,
            } => {
                // Every criterion needs fewer clusters than rows.
                let top = to.min(m.saturating_sub(1));
                if from > top {
                    return Err(MlError::TooFewRows {
                        k: from,
                        rows: m,
                        context: format!("{context}; k = \"auto\" needs more rows than clusters"),
                    });
                }
                if top < to {
                    warn(format!(
                        "kmeans-fit: k_range ends at {to} but there are {m} rows{context}; \
                         k = {from}..{top} tried"
                    ));
                }
                let data = FitRows::new(chosen, n, self.params.seed());
                let (model, warnings) =
                    sweep::sweep(self, &data, (from, top, to), criterion, features, cancelled)?;
                warnings.into_iter().for_each(warn);
                Ok(model)
            }
        }
    }

    /// One fit with `k` clusters (`k` at most the rows) on prepared rows: `n_init` runs from
    /// the seed's stream, the lowest inertia kept, classes in canonical order. Returns the model
    /// and the warnings to give.
    pub(crate) fn fit_k(
        &self,
        data: &FitRows<'_>,
        k: usize,
        features: &[String],
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<(Model, Vec<String>), MlError> {
        let p = &self.params;
        let rows = &data.rows;
        let (m, f) = (rows.n, rows.f);
        let mut warnings = Vec::new();
        let mut info = json!({
            "algorithm": "lloyd",
            "init": p.init().name(),
            "n_init": p.n_init(),
            "max_iter": p.max_iter(),
            "tol": p.tol(),
            "rows": data.n,
            "sample_size": m,
        });

        let (centroids, iterations, converged) = if data.constant {
            warnings.push(format!(
                "kmeans-fit: all {m} rows are identical; every centroid is that row and class 0 holds them all"
            ));
            let first = rows.row(0);
            let c: Vec<f32> = (0..k).flat_map(|_| first.iter().copied()).collect();
            (c, 0, true)
        } else {
            // scikit-learn's tolerance: relative to the mean per-feature variance.
            let tol_shift = p.tol() * data.var;
            info["tol_shift"] = json!(tol_shift);
            let init_rows = data.init.as_ref().map(|s| Rows::new(s.view()));
            if init_rows.is_some() {
                info["init_sample"] = json!(INIT_SAMPLE);
            }
            let mut rng = Xoshiro256Plus::seed_from_u64(p.seed());
            let inits: Vec<Vec<f32>> = (0..p.n_init())
                .map(|_| {
                    init::initialize(p.init(), init_rows.as_ref().unwrap_or(rows), k, &mut rng)
                })
                .collect();
            drop(init_rows);
            // All runs side by side: one stream over the rows per iteration.
            let runs = algorithm::lloyd_multi(rows, inits, p.max_iter(), tol_shift, cancelled)?;
            let prepared: Vec<Prepared> = runs
                .iter()
                .map(|r| Prepared::new(r.centroids.as_slice().unwrap_or(&[]), f))
                .collect();
            let refs: Vec<&Prepared> = prepared.iter().collect();
            let inertias: Vec<f64> = assign::pass_multi(rows, &refs)
                .iter()
                .map(|s| s.inertia)
                .collect();
            let mut best: Option<(usize, f64)> = None;
            for (run, (r, &inertia)) in runs.iter().zip(&inertias).enumerate() {
                tracing::debug!(k, run, inertia, iterations = r.iterations, "kmeans run");
                if best.is_none_or(|b| inertia < b.1) {
                    best = Some((run, inertia));
                }
            }
            let Some((index, _)) = best else {
                return Err(MlError::Shape("kmeans-fit: no run".into()));
            };
            let run = runs
                .into_iter()
                .nth(index)
                .ok_or_else(|| MlError::Shape("kmeans-fit: no run".into()))?;
            info["best_run"] = json!(index);
            info["relocated_empty_clusters"] = json!(run.relocations);
            (
                run.centroids.iter().copied().collect(),
                run.iterations,
                run.converged,
            )
        };
        let centroids =
            Array2::from_shape_vec((k, f), centroids).map_err(|e| MlError::Shape(e.to_string()))?;
        let order = algorithm::canonical_order(centroids.view());
        let centroids = centroids.select(Axis(0), &order);
        let flat: Vec<f32> = centroids.iter().copied().collect();
        let st = pass(rows, &flat, k);
        let empty = st.counts.iter().filter(|&&c| c == 0).count();
        if empty > 0 && !data.constant {
            warnings.push(format!(
                "kmeans-fit: {empty} of {k} classes have no pixel (fewer distinct rows than k?)"
            ));
        }
        if !converged {
            warnings.push(format!(
                "kmeans-fit: did not converge within max_iter = {}",
                p.max_iter()
            ));
        }
        info["converged"] = json!(converged);
        Ok((
            Model {
                scaling: Default::default(),
                centroids,
                features: features.to_vec(),
                inertia: st.inertia,
                iterations,
                seed: p.seed(),
                counts: st.counts,
                info,
                classifier: None,
            },
            warnings,
        ))
    }
}

/// The rows of a fit, prepared once and shared by every k of a sweep: whether they are all
/// equal, their column means and mean variance, and the rows initialization draws from.
pub(crate) struct FitRows<'a> {
    /// The rows fitted.
    pub(crate) rows: Rows<'a>,
    /// Valid pixels they were chosen from.
    pub(crate) n: usize,
    /// All rows are identical.
    pub(crate) constant: bool,
    /// Column means (empty when `constant`).
    pub(crate) means: Vec<f64>,
    /// Mean per-feature variance (0 when `constant`).
    pub(crate) var: f64,
    /// At most [`INIT_SAMPLE`] rows for initialization, drawn with the seed, when there are
    /// more rows than that.
    pub(crate) init: Option<Array2<f32>>,
}

impl<'a> FitRows<'a> {
    /// Prepares `chosen` (at least one row), chosen out of `n` valid pixels.
    pub(crate) fn new(chosen: ndarray::ArrayView2<'a, f32>, n: usize, seed: u64) -> Self {
        let rows = Rows::new(chosen);
        let f = rows.f;
        let first = rows.row(0);
        let constant = (1..rows.n).all(|i| rows.row(i) == first);
        if constant {
            return FitRows {
                rows,
                n,
                constant,
                means: Vec::new(),
                var: 0.0,
                init: None,
            };
        }
        let (means, var) = assign::mean_variance(&rows);
        // Initialization on a bounded sample, so that it stays a small part of the fit.
        let init = (rows.n > INIT_SAMPLE).then(|| {
            let mut rng = Xoshiro256Plus::seed_from_u64(seed ^ INIT_SAMPLE_STREAM);
            let mut idx = rand::seq::index::sample(&mut rng, rows.n, INIT_SAMPLE).into_vec();
            idx.sort_unstable();
            Array2::from_shape_vec(
                (idx.len(), f),
                idx.iter()
                    .flat_map(|&i| rows.row(i).iter().copied())
                    .collect(),
            )
            .expect("sample shape")
        });
        FitRows {
            rows,
            n,
            constant,
            means,
            var,
            init,
        }
    }
}

impl KMeansFitNode {
    /// Fits on the sample of a deferred matrix, gathered window by window in parallel: memory
    /// holds the sample and one window per thread, never the whole matrix.
    fn fit_deferred(&self, ctx: &RunContext, input: &Deferred) -> Result<Model, NodeError> {
        let Some(sample) = self.params.sample() else {
            return Err(NodeError::Failed(
                "kmeans-fit: a windowed matrix is fitted on a sample; set `sample`".into(),
            ));
        };
        let template = sample::matrix_template(input, "input")?;
        let drawn = sample::draw_windowed(
            ctx,
            input,
            template.features.len(),
            self.params.seed(),
            sample,
            "kmeans-fit",
        )?;
        if drawn.count == 0 {
            return Err(MlError::NoValidRows(
                "the matrix has no rows (every pixel is masked or NaN); nothing to cluster".into(),
            )
            .into());
        }
        Ok(self.fit_rows(
            drawn.rows.view(),
            drawn.count,
            &template.features,
            &|m| ctx.warn(m),
            &|| ctx.is_cancelled(),
        )?)
    }
}

impl Node for KMeansFitNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        let pixels = p.grid.len();
        let rows = self.params.sample().map_or(pixels, |s| s.size(pixels));
        // A row's features, its pixel's index and hash, and its label and distance.
        let row = (p.bands as u64) * 4 + 32;
        let mut fit = rows as u64 * row;
        if let KChoice::Auto { from, to, .. } = self.params.k() {
            // The sweep shares the rows; its k fit side by side (a few centroids each), then
            // the silhouette's sample, its labels for every k, and one row of distances per
            // thread.
            let s = rows.min(SILHOUETTE_SAMPLE) as u64;
            let ks = (to - from + 1) as u64;
            fit += s * (p.bands as u64 * 4 + 4 * ks) + s * 8 * known.threads as u64;
        }
        let est = Estimate::of(Shape::Small);
        Some(match (p.window, self.params.sample()) {
            // Each worker keeps a sample of its own windows, then they are merged.
            (Some(_), Some(s)) => {
                let passes = sample::Sampling::new(self.params.seed(), s, p.bands).passes();
                est.working(fit + known.threads as u64 * rows as u64 * row)
                    .passes(known, passes as u64)
            }
            _ => est.working(fit),
        })
    }

    fn takes_deferred(&self) -> bool {
        self.params.sample().is_some()
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        // The model keeps the scaling of its features, so that other data can be scaled alike.
        let (mut model, scaling) = match inputs.get("input") {
            Some(Value::Deferred(d)) => {
                let scaling = match d.template.as_ref() {
                    Value::Matrix(m) => m.scaling.clone(),
                    _ => Vec::new(),
                };
                (self.fit_deferred(ctx, d)?, scaling)
            }
            _ => {
                let matrix = inputs.matrix("input")?;
                let model = self.fit(matrix, &|m| ctx.warn(m), &|| ctx.is_cancelled())?;
                (model, matrix.scaling.clone())
            }
        };
        model.scaling = scaling;
        Ok(Value::Model(model))
    }
}
