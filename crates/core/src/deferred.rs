//! Deferred values: rasters, matrices and class maps described by how to compute them, window by
//! window, instead of by their pixels.
//!
//! A source node (`stack`) whose output would be larger than one window hands out a
//! [`Deferred`] value: a template (the value's type, grid, bands, times or features, with no
//! pixels) and an [`Expr`], the node and params that compute any window of it. A pixel-local node
//! given a deferred input does not run on it: the engine wraps it into a larger expression (the
//! node applied to each window of its inputs). Nodes that need the whole scene read it window by
//! window ([`Deferred::evaluate`]) and gather what they need (statistics, a sample), and sinks
//! write it window by window; a node that knows nothing of windows gets the value materialized
//! ([`Deferred::materialize`]), which needs the memory of the whole.
//!
//! Each node in an expression is rebuilt from its kind and params through the run's
//! [`Registry`], so an expression is plain data: kind names, params and whole values (items, a
//! model) that windows share.

use std::sync::{Arc, Mutex};

use ndarray::{s, Array2, Array4, Axis};

use crate::window::{windows, Window};
use crate::{Inputs, Labels, Matrix, Node, NodeError, Params, Raster, Registry, RunContext, Value};

/// A value computed window by window when it is needed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    /// What the value is besides its pixels: a [`Value`] of the right type whose grid is the whole
    /// grid and whose pixel arrays are empty (a Raster with no rows, a Matrix with no rows and no
    /// mask, Labels with no rows).
    pub template: Box<Value>,
    /// The side of the windows it is computed in.
    pub window: usize,
    /// How to compute one window of it.
    pub expr: Arc<Expr>,
}

/// A node applied to each window of its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// The node's id in the recipe (for messages and progress).
    pub node_id: String,
    /// Its kind.
    pub kind: String,
    /// Its params, as validated for the recipe.
    pub params: Params,
    /// Its inputs by port.
    pub inputs: Vec<(String, Operand)>,
}

/// An input of an [`Expr`].
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A value that every window gets whole (items, a model).
    Whole(Arc<Value>),
    /// A deferred value, of which each window gets the same window.
    Windowed(Arc<Expr>),
}

/// An [`Expr`] with its nodes built, ready to compute windows.
pub struct Prepared {
    node_id: String,
    node: Box<dyn Node>,
    inputs: Vec<(String, PreparedOperand)>,
}

enum PreparedOperand {
    Whole(Arc<Value>),
    Windowed(Prepared),
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Expr {
    /// Builds every node of the expression from `registry`.
    ///
    /// # Errors
    /// A kind that is not registered or params it refuses (which the recipe already passed, so
    /// this only happens when kinds changed under a cached expression).
    pub fn prepare(&self, registry: &Registry) -> Result<Prepared, NodeError> {
        let kind = registry.get(&self.kind).ok_or_else(|| {
            NodeError::Failed(format!(
                "node `{}`: kind `{}` is not registered",
                self.node_id, self.kind
            ))
        })?;
        let node = kind
            .build(&self.params)
            .map_err(|e| NodeError::Failed(format!("node `{}`: {e}", self.node_id)))?;
        let inputs = self
            .inputs
            .iter()
            .map(|(port, op)| {
                Ok((
                    port.clone(),
                    match op {
                        Operand::Whole(v) => PreparedOperand::Whole(v.clone()),
                        Operand::Windowed(e) => PreparedOperand::Windowed(e.prepare(registry)?),
                    },
                ))
            })
            .collect::<Result<_, NodeError>>()?;
        Ok(Prepared {
            node_id: self.node_id.clone(),
            node,
            inputs,
        })
    }
}

impl Expr {
    /// Builds every node of the expression from the run's registry ([`RunContext::registry`]).
    ///
    /// # Errors
    /// Without a registry, or as [`Expr::prepare`].
    pub fn prepare_in(&self, ctx: &RunContext) -> Result<Prepared, NodeError> {
        let registry = ctx.registry().ok_or_else(|| {
            NodeError::Failed(format!(
                "node `{}`: windowed values need the run's registry to be computed",
                self.node_id
            ))
        })?;
        self.prepare(registry)
    }
}

impl Prepared {
    /// Computes `window` of the value: each windowed input for the same window, then the node.
    ///
    /// # Errors
    /// What a node on the way fails with.
    pub fn window(&self, ctx: &RunContext, window: Window) -> Result<Value, NodeError> {
        ctx.check_cancelled()?;
        let mut values = Vec::with_capacity(self.inputs.len());
        for (port, op) in &self.inputs {
            let v = match op {
                PreparedOperand::Whole(v) => v.clone(),
                PreparedOperand::Windowed(p) => Arc::new(p.window(ctx, window)?),
            };
            values.push((port.clone(), v));
        }
        let mut node_ctx = ctx.for_window(window);
        node_ctx.node_id.clone_from(&self.node_id);
        self.node.run(&node_ctx, &Inputs::new(values))
    }
}

impl Prepared {
    /// Computes every window of `windows` and folds each into an accumulator: `threads` workers
    /// (at least 1) each start from `init()` and take the next window until none is left, so at
    /// most `threads` windows are in memory at once however many there are. Returns the
    /// workers' accumulators; folding must not depend on the order of windows (workers take
    /// them as they come). Progress goes to `ctx` as windows finish.
    ///
    /// Plain threads rather than rayon: a rayon worker that waits for a reader pool steals more
    /// windows meanwhile, and then every window of the scene is in memory at once.
    ///
    /// # Errors
    /// The first error of a window or of `step`; the other workers stop at their next window.
    pub fn fold_windows<A: Send>(
        &self,
        ctx: &RunContext,
        windows: &[Window],
        threads: usize,
        init: impl Fn() -> A + Sync,
        step: impl Fn(&mut A, Window, Value) -> Result<(), NodeError> + Sync,
    ) -> Result<Vec<A>, NodeError> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let workers = threads.max(1).min(windows.len().max(1));
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| -> Result<A, NodeError> {
                        let mut acc = init();
                        loop {
                            if failed.load(Ordering::Relaxed) {
                                return Err(NodeError::Cancelled);
                            }
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&w) = windows.get(i) else {
                                return Ok(acc);
                            };
                            let result = self.window(ctx, w).and_then(|v| step(&mut acc, w, v));
                            ctx.count_window(w.len());
                            if let Err(e) = result {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                            ctx.progress(n as u64, windows.len() as u64);
                        }
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(workers);
            let mut first_error: Option<NodeError> = None;
            for h in handles {
                match h.join() {
                    Ok(Ok(acc)) => out.push(acc),
                    Ok(Err(e)) => {
                        // A worker stopped because another failed reports `Cancelled`; keep the
                        // error that caused it.
                        if first_error.is_none()
                            || matches!(first_error, Some(NodeError::Cancelled))
                        {
                            first_error = Some(e);
                        }
                    }
                    Err(_) => {
                        first_error
                            .get_or_insert(NodeError::Failed("a window worker panicked".into()));
                    }
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
    }
}

impl Deferred {
    /// The value's whole grid.
    pub fn grid(&self) -> &crate::Grid {
        match self.template.as_ref() {
            Value::Raster(r) => &r.grid,
            Value::Matrix(m) => &m.grid,
            Value::Labels(l) => &l.grid,
            // Only rasters, matrices and labels are deferred; a template of another type has no
            // grid of its own, and `Deferred::new` refuses it.
            _ => unreachable_grid(),
        }
    }

    /// A deferred value of `template`'s type and shape computed by `expr` in windows of `window`.
    ///
    /// # Errors
    /// When `template` is not a Raster, Matrix or Labels.
    pub fn new(template: Value, window: usize, expr: Arc<Expr>) -> Result<Self, NodeError> {
        let template = match template {
            Value::Raster(mut r) => {
                let (t, b) = (r.data.len_of(Axis(0)), r.data.len_of(Axis(1)));
                r.data = Array4::zeros((t, b, 0, 0));
                Value::Raster(r)
            }
            Value::Matrix(mut m) => {
                m.data = Array2::zeros((0, m.features.len()));
                m.valid = Array2::from_elem((0, 0), false);
                Value::Matrix(m)
            }
            Value::Labels(mut l) => {
                l.data = Array2::zeros((0, 0));
                Value::Labels(l)
            }
            other => {
                return Err(NodeError::Failed(format!(
                    "a {} cannot be computed window by window",
                    other.value_type()
                )))
            }
        };
        Ok(Deferred {
            template: Box::new(template),
            window: window.max(1),
            expr,
        })
    }

    /// Computes every window and folds it into accumulators, as [`Prepared::fold_windows`] on
    /// the run's threads ([`RunContext::threads`]); returns one accumulator per worker.
    ///
    /// # Errors
    /// As [`Expr::prepare_in`] and [`Prepared::fold_windows`].
    pub fn fold<A: Send>(
        &self,
        ctx: &RunContext,
        init: impl Fn() -> A + Sync,
        step: impl Fn(&mut A, Window, Value) -> Result<(), NodeError> + Sync,
    ) -> Result<Vec<A>, NodeError> {
        let prepared = self.expr.prepare_in(ctx)?;
        prepared.fold_windows(ctx, &self.windows(), ctx.threads.max(1), init, step)
    }

    /// The windows the value is computed in, row by row from the top left.
    pub fn windows(&self) -> Vec<Window> {
        let g = self.grid();
        windows(g.width, g.height, self.window)
    }

    /// The whole value, computed window by window and assembled: needs the memory of the whole
    /// value, for nodes that know nothing of windows.
    ///
    /// # Errors
    /// What a node computing a window fails with, or a window of another shape than the template
    /// says.
    pub fn materialize(&self, ctx: &RunContext) -> Result<Value, NodeError> {
        self.materialize_whole(ctx).map_err(|e| match e {
            NodeError::InvalidData(m) => NodeError::InvalidData(format!(
                "{} (node `{}`, computed window by window): {m}; it stays windowed only for nodes that read it window by window",
                self.describe(),
                self.expr.node_id
            )),
            other => other,
        })
    }

    /// What the value is, with its shape: `the cube of T time(s) x B band(s) x H x W pixels
    /// (f32)`.
    pub fn describe(&self) -> String {
        let g = self.grid();
        match self.template.as_ref() {
            Value::Raster(r) => format!(
                "the cube of {} time(s) x {} band(s) x {} x {} pixels (f32)",
                r.data.len_of(Axis(0)),
                r.data.len_of(Axis(1)),
                g.height,
                g.width
            ),
            Value::Matrix(m) => format!(
                "the matrix of {} feature(s) over {} x {} pixels (f32)",
                m.features.len(),
                g.height,
                g.width
            ),
            _ => format!("the class map of {} x {} pixels (u16)", g.height, g.width),
        }
    }

    fn materialize_whole(&self, ctx: &RunContext) -> Result<Value, NodeError> {
        let grid = self.grid().clone();
        let mismatch = |w: &Window, got: &Value| {
            NodeError::Failed(format!(
                "node `{}` gave a {} for window {}x{}+{}+{} that does not fit its grid",
                self.expr.node_id,
                got.value_type(),
                w.width,
                w.height,
                w.col,
                w.row
            ))
        };
        // Windows are computed on the run's threads and copied into the destination as they
        // finish, one copy at a time: at most `threads` windows besides it are in memory.
        match self.template.as_ref() {
            Value::Raster(t) => {
                let (nt, nb) = (t.data.len_of(Axis(0)), t.data.len_of(Axis(1)));
                let shape = (nt, nb, grid.height, grid.width);
                let data = crate::alloc::array4(shape, f32::NAN).map_err(too_large)?;
                let dest = Mutex::new(data);
                self.fold(
                    ctx,
                    || (),
                    |(), w, v| {
                        let Value::Raster(r) = &v else {
                            return Err(mismatch(&w, &v));
                        };
                        if r.data.dim() != (nt, nb, w.height, w.width) {
                            return Err(mismatch(&w, &v));
                        }
                        lock(&dest)?
                            .slice_mut(s![.., .., w.row..w.row + w.height, w.col..w.col + w.width])
                            .assign(&r.data);
                        Ok(())
                    },
                )?;
                Ok(Value::Raster(Raster {
                    data: into_inner(dest)?,
                    grid,
                    bands: t.bands.clone(),
                    times: t.times.clone(),
                }))
            }
            Value::Labels(t) => {
                let data = Array2::from_shape_vec(
                    (grid.height, grid.width),
                    filled(grid.len(), t.nodata)?,
                )
                .map_err(|e| NodeError::Failed(e.to_string()))?;
                let dest = Mutex::new(data);
                self.fold(
                    ctx,
                    || (),
                    |(), w, v| {
                        let Value::Labels(l) = &v else {
                            return Err(mismatch(&w, &v));
                        };
                        if l.data.dim() != (w.height, w.width) {
                            return Err(mismatch(&w, &v));
                        }
                        lock(&dest)?
                            .slice_mut(s![w.row..w.row + w.height, w.col..w.col + w.width])
                            .assign(&l.data);
                        Ok(())
                    },
                )?;
                Ok(Value::Labels(Labels {
                    data: into_inner(dest)?,
                    nodata: t.nodata,
                    classes: t.classes.clone(),
                    grid,
                }))
            }
            Value::Matrix(t) => {
                // Rows are the valid pixels in row-major order of the whole grid. Each window's
                // rows first go to the row of their pixel in a matrix of one row per pixel; once
                // every window is in, the valid rows are moved up in order over the invalid ones
                // (a row only ever moves up) and the rest is cut off.
                let f = t.features.len();
                // The larger buffer first: a matrix too large is refused naming its size.
                let rows = filled(grid.len().saturating_mul(f), 0f32)?;
                let valid =
                    Array2::from_shape_vec((grid.height, grid.width), filled(grid.len(), false)?)
                        .map_err(|e| NodeError::Failed(e.to_string()))?;
                let dest = Mutex::new((valid, rows));
                let width = grid.width;
                self.fold(
                    ctx,
                    || (),
                    |(), w, v| {
                        let Value::Matrix(m) = &v else {
                            return Err(mismatch(&w, &v));
                        };
                        let n = m.valid.iter().filter(|&&b| b).count();
                        if m.valid.dim() != (w.height, w.width) || m.data.dim() != (n, f) {
                            return Err(mismatch(&w, &v));
                        }
                        let mut guard = lock(&dest)?;
                        let (valid, rows) = &mut *guard;
                        valid
                            .slice_mut(s![w.row..w.row + w.height, w.col..w.col + w.width])
                            .assign(&m.valid);
                        let mut r = 0usize;
                        for ((y, x), &b) in m.valid.indexed_iter() {
                            if b {
                                let p = (w.row + y) * width + w.col + x;
                                for (out, &value) in
                                    rows[p * f..(p + 1) * f].iter_mut().zip(m.data.row(r))
                                {
                                    *out = value;
                                }
                                r += 1;
                            }
                        }
                        Ok(())
                    },
                )?;
                let (valid, mut rows) = into_inner(dest)?;
                let mut n = 0usize;
                for (p, &b) in valid.iter().enumerate() {
                    if b {
                        if n != p {
                            rows.copy_within(p * f..(p + 1) * f, n * f);
                        }
                        n += 1;
                    }
                }
                rows.truncate(n * f);
                rows.shrink_to_fit();
                let data = Array2::from_shape_vec((n, f), rows)
                    .map_err(|e| NodeError::Failed(e.to_string()))?;
                Ok(Value::Matrix(Matrix {
                    scaling: t.scaling.clone(),
                    data,
                    features: t.features.clone(),
                    valid,
                    grid,
                }))
            }
            other => Err(NodeError::Failed(format!(
                "a deferred {} cannot be materialized",
                other.value_type()
            ))),
        }
    }
}

impl Deferred {
    /// The value (a Raster or Labels) on a grid `step` times coarser, computed window by window
    /// from sources that read at that grid ([`RunContext::coarsen`]): a picture-sized version of
    /// a large value. `stack` reads a coarser grid with GDAL, which takes the files' overviews;
    /// a source that picks every `step`-th pixel gives exactly [`thin`] of the whole value.
    /// `step` 1 is [`Deferred::materialize`].
    ///
    /// # Errors
    /// As [`Deferred::materialize`]; a Matrix cannot be thinned out.
    pub fn materialize_every(&self, ctx: &RunContext, step: usize) -> Result<Value, NodeError> {
        let step = step.max(1);
        if step == 1 {
            return self.materialize(ctx);
        }
        let small = self.grid().coarsened(step);
        let template = match self.template.as_ref() {
            Value::Raster(r) => Value::Raster(Raster {
                grid: small,
                ..r.clone()
            }),
            Value::Labels(l) => Value::Labels(Labels {
                grid: small,
                ..l.clone()
            }),
            other => {
                return Err(NodeError::Failed(format!(
                    "a deferred {} cannot be thinned out",
                    other.value_type()
                )))
            }
        };
        let coarse = Deferred {
            template: Box::new(template),
            window: self.window,
            expr: self.expr.clone(),
        };
        coarse.materialize(&ctx.coarser(step))
    }
}

/// The destination a window is copied into, locked; a lock that a panicking worker left is an
/// error rather than a panic.
fn lock<T>(dest: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, NodeError> {
    dest.lock()
        .map_err(|_| NodeError::Failed("a window worker panicked while copying a window".into()))
}

/// The destination once every window is in.
fn into_inner<T>(dest: Mutex<T>) -> Result<T, NodeError> {
    dest.into_inner()
        .map_err(|_| NodeError::Failed("a window worker panicked while copying a window".into()))
}

/// Every `step`-th pixel of every `step`-th row of a Raster or Labels held whole, on a grid whose
/// pixels are `step` times larger: what [`Deferred::materialize_every`] gives from sources that
/// pick pixels (`stack` resamples, with the files' overviews). Other
/// values, and a `step` of 1, are returned as they are.
pub fn thin(value: &Value, step: usize) -> Value {
    if step <= 1 {
        return value.clone();
    }
    match value {
        Value::Raster(r) => Value::Raster(Raster {
            data: r.data.slice(s![.., .., ..;step, ..;step]).to_owned(),
            grid: r.grid.coarsened(step),
            bands: r.bands.clone(),
            times: r.times.clone(),
        }),
        Value::Labels(l) => Value::Labels(Labels {
            data: l.data.slice(s![..;step, ..;step]).to_owned(),
            nodata: l.nodata,
            classes: l.classes.clone(),
            grid: l.grid.coarsened(step),
        }),
        other => other.clone(),
    }
}

/// A vector of `n` copies of `v`, or a clear error naming the bytes and the limit they met.
fn filled<T: Clone>(n: usize, v: T) -> Result<Vec<T>, NodeError> {
    crate::alloc::filled(n, v).map_err(too_large)
}

/// The error of an allocation too large for memory.
fn too_large(e: crate::alloc::AllocError) -> NodeError {
    NodeError::InvalidData(format!("computing it whole {e}"))
}

/// An [`Expr`] as JSON: the cache's form of a deferred value.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ExprRepr {
    node_id: String,
    kind: String,
    params: Params,
    inputs: Vec<(String, OperandRepr)>,
}

/// An [`Operand`] as JSON: whole values that are small and have a JSON form.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum OperandRepr {
    Windowed(ExprRepr),
    Items(serde_json::Value),
    Json(serde_json::Value),
    Model(ModelRepr),
}

/// A [`crate::Model`] as JSON with its centroids, which the model's own JSON form leaves out (the
/// cache stores them as an array of their own).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ModelRepr {
    #[serde(flatten)]
    model: crate::Model,
    /// The centroids, one row per class.
    centroids: Vec<Vec<f32>>,
}

impl ModelRepr {
    fn of(model: &crate::Model) -> ModelRepr {
        ModelRepr {
            model: model.clone(),
            centroids: model.centroids.outer_iter().map(|r| r.to_vec()).collect(),
        }
    }

    fn model(self) -> Result<crate::Model, String> {
        let cols = self
            .centroids
            .first()
            .map_or(self.model.features.len(), Vec::len);
        let rows = self.centroids.len();
        let flat: Vec<f32> = self.centroids.into_iter().flatten().collect();
        let centroids = Array2::from_shape_vec((rows, cols), flat)
            .map_err(|_| format!("the model's centroids are not {rows} rows of {cols} values"))?;
        Ok(crate::Model {
            centroids,
            ..self.model
        })
    }
}

impl ExprRepr {
    fn of(expr: &Expr) -> Option<ExprRepr> {
        let inputs = expr
            .inputs
            .iter()
            .map(|(port, op)| {
                let repr = match op {
                    Operand::Windowed(e) => OperandRepr::Windowed(ExprRepr::of(e)?),
                    Operand::Whole(v) => match v.as_ref() {
                        Value::Items(i) => OperandRepr::Items(i.collection.clone()),
                        Value::Json(j) => OperandRepr::Json(j.clone()),
                        Value::Model(m) => OperandRepr::Model(ModelRepr::of(m)),
                        _ => return None,
                    },
                };
                Some((port.clone(), repr))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ExprRepr {
            node_id: expr.node_id.clone(),
            kind: expr.kind.clone(),
            params: expr.params.clone(),
            inputs,
        })
    }

    fn expr(self) -> Result<Expr, String> {
        Ok(Expr {
            node_id: self.node_id,
            kind: self.kind,
            params: self.params,
            inputs: self
                .inputs
                .into_iter()
                .map(|(port, op)| {
                    let op = match op {
                        OperandRepr::Windowed(e) => Operand::Windowed(Arc::new(e.expr()?)),
                        OperandRepr::Items(c) => {
                            Operand::Whole(Arc::new(Value::Items(crate::Items { collection: c })))
                        }
                        OperandRepr::Json(j) => Operand::Whole(Arc::new(Value::Json(j))),
                        OperandRepr::Model(m) => Operand::Whole(Arc::new(Value::Model(m.model()?))),
                    };
                    Ok((port, op))
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

impl Deferred {
    /// The expression as JSON, for the cache; `None` when it holds a whole raster, matrix or
    /// class map, which have no JSON form (such a value is not stored).
    pub fn expr_json(&self) -> Option<serde_json::Value> {
        serde_json::to_value(ExprRepr::of(&self.expr)?).ok()
    }

    /// Whether the value can be stored ([`Deferred::expr_json`]).
    pub fn storable(&self) -> bool {
        ExprRepr::of(&self.expr).is_some()
    }

    /// Rebuilds a deferred value from the metadata of its template, its window and its
    /// expression as JSON.
    ///
    /// # Errors
    /// When the template is not a Raster, Matrix or Labels, or the expression does not parse.
    pub fn from_parts(
        template: crate::ValueMeta,
        window: usize,
        expr: &serde_json::Value,
    ) -> Result<Deferred, String> {
        let template = match template {
            crate::ValueMeta::Raster { grid, bands, times } => Value::Raster(Raster {
                data: Array4::zeros((times.len(), bands.len(), 0, 0)),
                grid,
                bands,
                times,
            }),
            crate::ValueMeta::Matrix {
                grid,
                features,
                scaling,
            } => Value::Matrix(Matrix {
                scaling,
                data: Array2::zeros((0, features.len())),
                features,
                valid: Array2::from_elem((0, 0), false),
                grid,
            }),
            crate::ValueMeta::Labels {
                grid,
                nodata,
                classes,
            } => Value::Labels(Labels {
                data: Array2::zeros((0, 0)),
                nodata,
                classes,
                grid,
            }),
            other => {
                return Err(format!(
                    "a deferred {} cannot be computed window by window",
                    other.value_type()
                ))
            }
        };
        let repr: ExprRepr = serde_json::from_value(expr.clone())
            .map_err(|e| format!("the deferred value's expression does not parse: {e}"))?;
        let expr = repr
            .expr()
            .map_err(|e| format!("the deferred value's expression does not parse: {e}"))?;
        Deferred::new(template, window, Arc::new(expr)).map_err(|e| e.to_string())
    }
}

/// The grid of a template that has none: never reached, since [`Deferred::new`] only accepts
/// rasters, matrices and labels; answers with an empty grid rather than panicking.
fn unreachable_grid() -> &'static crate::Grid {
    static EMPTY: std::sync::OnceLock<crate::Grid> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| crate::Grid::north_up("", 0.0, 0.0, 1.0, 0, 0))
}

/// The template of a value that comes out of `node` applied to deferred inputs: the node is run
/// on the top-left pixel of every windowed input, and its output is given the whole grid.
///
/// # Errors
/// What the node fails with on that pixel.
pub fn probe(
    prepared: &Prepared,
    ctx: &RunContext,
    grid: &crate::Grid,
) -> Result<Value, NodeError> {
    let pixel = Window {
        col: 0,
        row: 0,
        width: 1.min(grid.width),
        height: 1.min(grid.height),
    };
    let mut v = prepared.window(ctx, pixel)?;
    match &mut v {
        Value::Raster(r) => r.grid = grid.clone(),
        Value::Matrix(m) => m.grid = grid.clone(),
        Value::Labels(l) => l.grid = grid.clone(),
        _ => {}
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeKind, ParamError, ParamSpec, Port, Signature, ValueType};

    /// A source whose pixel value is its index on a 7 x 5 grid (two bands: the index and its
    /// negative), reading only the window it is asked for.
    struct Ramp;
    struct RampNode;
    /// Doubles every value (pixel-local).
    struct Double;
    struct DoubleNode;

    fn grid() -> crate::Grid {
        crate::Grid::north_up("EPSG:32618", 0.0, 50.0, 10.0, 7, 5)
    }

    impl NodeKind for Ramp {
        fn name(&self) -> &str {
            "ramp"
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
        fn params(&self) -> Vec<ParamSpec> {
            vec![]
        }
        fn build(&self, _: &Params) -> Result<Box<dyn Node>, ParamError> {
            Ok(Box::new(RampNode))
        }
    }

    impl Node for RampNode {
        fn run(&self, ctx: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
            // Read coarser, it picks every n-th pixel of every n-th row.
            let step = ctx.coarsen();
            let fine = grid();
            let g = fine.coarsened(step);
            let w = ctx.window().unwrap_or(Window::whole(g.width, g.height));
            let data = Array4::from_shape_fn((1, 2, w.height, w.width), |(_, b, y, x)| {
                let (fy, fx) = ((w.row + y) * step, (w.col + x) * step);
                let i = (fy * fine.width + fx) as f32;
                if b == 0 {
                    i
                } else {
                    -i
                }
            });
            Ok(Value::Raster(Raster {
                data,
                grid: w.grid_of(&g),
                bands: vec![Default::default(); 2],
                times: vec!["t".into()],
            }))
        }
    }

    impl NodeKind for Double {
        fn name(&self) -> &str {
            "double"
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &str {
            "test map"
        }
        fn signature(&self) -> Signature {
            Signature {
                inputs: vec![Port::required("input", ValueType::Raster, "in")],
                output: ValueType::Raster,
            }
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![]
        }
        fn build(&self, _: &Params) -> Result<Box<dyn Node>, ParamError> {
            Ok(Box::new(DoubleNode))
        }
    }

    impl Node for DoubleNode {
        fn run(&self, _: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
            let mut r = inputs.raster("input")?.clone();
            r.data.mapv_inplace(|v| v * 2.0);
            Ok(Value::Raster(r))
        }
    }

    /// A matrix source on the same grid: a row `[i, -i]` for each pixel whose index `i` is not
    /// a multiple of 3.
    struct Sparse;
    struct SparseNode;

    impl NodeKind for Sparse {
        fn name(&self) -> &str {
            "sparse"
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &str {
            "test matrix source"
        }
        fn signature(&self) -> Signature {
            Signature {
                inputs: vec![],
                output: ValueType::Matrix,
            }
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![]
        }
        fn build(&self, _: &Params) -> Result<Box<dyn Node>, ParamError> {
            Ok(Box::new(SparseNode))
        }
    }

    impl Node for SparseNode {
        fn run(&self, ctx: &RunContext, _: &Inputs) -> Result<Value, NodeError> {
            let g = grid();
            let w = ctx.window().unwrap_or(Window::whole(g.width, g.height));
            let valid = Array2::from_shape_fn((w.height, w.width), |(y, x)| {
                !w.pixel_index(y, x, g.width).is_multiple_of(3)
            });
            let mut rows = Vec::new();
            for ((y, x), &b) in valid.indexed_iter() {
                if b {
                    let i = w.pixel_index(y, x, g.width) as f32;
                    rows.extend([i, -i]);
                }
            }
            Ok(Value::Matrix(Matrix {
                scaling: Default::default(),
                data: Array2::from_shape_vec((rows.len() / 2, 2), rows).unwrap(),
                features: vec!["i".into(), "-i".into()],
                valid,
                grid: w.grid_of(&g),
            }))
        }
    }

    fn context() -> RunContext {
        let mut registry = Registry::new();
        registry.register(Arc::new(Ramp)).unwrap();
        registry.register(Arc::new(Double)).unwrap();
        registry.register(Arc::new(Sparse)).unwrap();
        RunContext::new("t", ".".into(), ".".into(), ".".into()).with_registry(Arc::new(registry))
    }

    /// The run's context with `threads` worker threads.
    fn context_with(threads: usize) -> RunContext {
        let mut ctx = context();
        ctx.threads = threads;
        ctx
    }

    fn doubled_ramp(window: usize) -> Deferred {
        let ramp = Arc::new(Expr {
            node_id: "ramp".into(),
            kind: "ramp".into(),
            params: Params::new(),
            inputs: vec![],
        });
        let expr = Arc::new(Expr {
            node_id: "double".into(),
            kind: "double".into(),
            params: Params::new(),
            inputs: vec![("input".into(), Operand::Windowed(ramp))],
        });
        let template = Value::Raster(Raster {
            data: Array4::zeros((1, 2, 5, 7)),
            grid: grid(),
            bands: vec![Default::default(); 2],
            times: vec!["t".into()],
        });
        Deferred::new(template, window, expr).unwrap()
    }

    #[test]
    fn a_deferred_value_materializes_as_the_whole_computation_would() {
        let ctx = context();
        let whole = RampNode.run(&ctx, &Inputs::default()).unwrap();
        let Value::Raster(mut want) = whole else {
            unreachable!()
        };
        want.data.mapv_inplace(|v| v * 2.0);
        for window in [1, 2, 3, 7, 100] {
            let d = doubled_ramp(window);
            assert_eq!(
                d.windows().len(),
                5usize.div_ceil(window) * 7usize.div_ceil(window)
            );
            assert_eq!(d.materialize(&ctx).unwrap(), Value::Raster(want.clone()));
        }
    }

    #[test]
    fn windows_computed_on_several_threads_land_where_one_thread_puts_them() {
        let one = doubled_ramp(100).materialize(&context()).unwrap();
        for threads in [2, 3, 8] {
            let ctx = context_with(threads);
            for window in [1, 2, 3] {
                let d = doubled_ramp(window);
                assert_eq!(d.materialize(&ctx).unwrap(), one, "{threads} {window}");
                for step in [2, 3] {
                    assert_eq!(
                        d.materialize_every(&ctx, step).unwrap(),
                        thin(&one, step),
                        "{threads} {window} {step}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_deferred_matrix_keeps_the_row_order_of_the_whole_grid() {
        let whole = SparseNode.run(&context(), &Inputs::default()).unwrap();
        let expr = Arc::new(Expr {
            node_id: "sparse".into(),
            kind: "sparse".into(),
            params: Params::new(),
            inputs: vec![],
        });
        for threads in [1, 3] {
            let ctx = context_with(threads);
            for window in [1, 2, 3, 4, 100] {
                let d = Deferred::new(whole.clone(), window, expr.clone()).unwrap();
                assert_eq!(d.materialize(&ctx).unwrap(), whole, "{threads} {window}");
            }
        }
    }

    #[test]
    fn every_nth_pixel_lands_on_a_coarser_grid() {
        let ctx = context();
        let Value::Raster(small) = doubled_ramp(2).materialize_every(&ctx, 3).unwrap() else {
            unreachable!()
        };
        assert_eq!(small.data.dim(), (1, 2, 2, 3));
        // Pixel (row 1, col 2) of the small grid is pixel (3, 6) of the 7-wide grid: index 27.
        assert_eq!(small.data[[0, 0, 1, 2]], 54.0);
        assert_eq!(small.data[[0, 1, 1, 2]], -54.0);
        assert_eq!(small.grid.transform[1], 30.0);
        assert_eq!((small.grid.width, small.grid.height), (3, 2));
    }

    #[test]
    fn thinning_a_whole_value_picks_the_pixels_thinning_its_windows_picks() {
        let ctx = context();
        let d = doubled_ramp(2);
        let whole = d.materialize(&ctx).unwrap();
        for step in [2, 3, 4] {
            assert_eq!(thin(&whole, step), d.materialize_every(&ctx, step).unwrap());
        }
    }

    #[test]
    fn a_model_in_a_deferred_value_keeps_its_centroids_in_the_json_form() {
        let model = crate::Model {
            scaling: Default::default(),
            centroids: Array2::from_shape_vec((3, 2), vec![0.5, 1.0, 2.25, -3.0, 1e-7, 7.0])
                .unwrap(),
            features: vec!["a".into(), "b".into()],
            inertia: 1.5,
            iterations: 4,
            seed: 7,
            counts: vec![1, 2, 3],
            info: serde_json::json!({"init": "k-means++"}),
            classifier: None,
        };
        let ramp = doubled_ramp(3);
        let expr = Expr {
            inputs: vec![
                ramp.expr.inputs[0].clone(),
                (
                    "model".into(),
                    Operand::Whole(Arc::new(Value::Model(model.clone()))),
                ),
            ],
            ..(*ramp.expr).clone()
        };
        let d = Deferred::new(*ramp.template.clone(), 3, Arc::new(expr)).unwrap();
        let (meta, _) = Value::Deferred(d.clone()).split();
        let text = serde_json::to_string(&meta).unwrap();
        let back: crate::ValueMeta = serde_json::from_str(&text).unwrap();
        let v = Value::assemble(back, &mut crate::meta::OwnedArrays::default()).unwrap();
        assert_eq!(v, Value::Deferred(d));
        // A stored expression whose model has no centroids (as they were stored before) does
        // not load: the cache entry is a miss, not a model without classes.
        let mut without: serde_json::Value = serde_json::from_str(&text).unwrap();
        let stored = &mut without["expr"]["inputs"][1][1]["model"];
        assert!(stored["centroids"].is_array(), "{text}");
        stored.as_object_mut().unwrap().remove("centroids");
        let back: crate::ValueMeta = serde_json::from_value(without).unwrap();
        assert!(Value::assemble(back, &mut crate::meta::OwnedArrays::default()).is_err());
    }

    #[test]
    fn a_deferred_value_survives_its_json_form() {
        let d = doubled_ramp(3);
        let value = Value::Deferred(d.clone());
        let (meta, arrays) = value.split();
        assert!(arrays.is_empty());
        let text = serde_json::to_string(&meta).unwrap();
        let back: crate::ValueMeta = serde_json::from_str(&text).unwrap();
        let v = Value::assemble(back, &mut crate::meta::OwnedArrays::default()).unwrap();
        assert_eq!(v, Value::Deferred(d));
    }
}
