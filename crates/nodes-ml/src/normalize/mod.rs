//! `normalize`: rescales a raster's values, NaN-aware, to f32 (never to a wrapping integer type).
//!
//! The notebook this replaces did `((a - min) / (max - min) * 255).astype(np.int8)`, which wraps
//! 128..255 to negative numbers and turns NaN into 0. Here the output stays f32, NaN stays NaN and
//! never enters the statistics, and (with `clip`) no value leaves `range`.

mod hyperparams;
mod recorded;
mod stats;

use flow_core::deferred::{Deferred, Expr, Operand};
use flow_core::estimate::{Estimate, Known, Shape};
use flow_core::{
    BandInfo, DeclaredParams, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params,
    Port, Raster, RunContext, Signature, Value, ValueType,
};
use ndarray::{s, ArrayView4, Axis};
use rayon::prelude::*;

pub use hyperparams::{Method, NormalizeParams, NormalizeValidParams, Number, Scope};

/// The `normalize` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct NormalizeKind;

impl NodeKind for NormalizeKind {
    fn name(&self) -> &str {
        "normalize"
    }

    /// 2: exact, order-independent statistics (z-score means and deviations may differ from
    /// version 1 in the last bit). 3: the output bands record their scaling.
    fn version(&self) -> u32 {
        3
    }

    fn doc(&self) -> &str {
        "Rescales raster values to f32: min-max or percentile-clipped onto `range` (default [0, 255]), \
         or z-scores; statistics over all bands (scope = \"global\") or per band, NaN-aware. \
         Constant data maps to the low end of the range, with a warning. Each output band records \
         its scaling (flatten and kmeans-fit carry it into the matrix and the model); with the \
         `statistics` input connected to such a raster or model, that scaling is applied instead \
         of statistics of the input's own values (one scene's model applied to another)."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required("input", ValueType::Raster, "the raster to rescale"),
                Port::optional(
                    "statistics",
                    ValueType::Any,
                    "a normalized Raster or a Model whose recorded scaling to apply, band by band",
                ),
            ],
            output: ValueType::Raster,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        NormalizeParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let written = params.clone();
        let params = NormalizeParams::parse(params)?.validate()?;
        Ok(Box::new(NormalizeNode { params, written }))
    }

    /// Statistics come from the whole raster, so the output of one window depends on the others.
    fn pixel_local(&self) -> bool {
        false
    }
}

/// `v -> v * scale + offset`, then an optional clamp.
type Affine = (f64, f64, Option<(f64, f64)>);

/// Statistics of a raster being gathered for `normalize`, one set per group of bands (all bands
/// together, or one band each), piece by piece: a whole raster is one piece, a windowed run gives
/// one piece per window. The statistics are exact and do not depend on how the raster was cut or
/// in which order the pieces came, so both give bit-identical results.
#[derive(Debug, Clone)]
pub struct Fitting {
    groups: Vec<Vec<usize>>,
    stats: Vec<stats::GroupStats>,
}

impl Fitting {
    /// How many passes over the pieces the statistics need (1 for minmax, 2 otherwise).
    pub fn passes(&self) -> usize {
        self.stats.first().map_or(1, stats::GroupStats::passes)
    }

    /// An empty accumulator for the current pass, to fill from one piece and merge back.
    pub fn partial(&self) -> Fitting {
        Fitting {
            groups: self.groups.clone(),
            stats: self.stats.iter().map(stats::GroupStats::partial).collect(),
        }
    }

    /// Adds one piece of the raster (`[time, band, row, col]`, every band) to the current pass.
    pub fn add(&mut self, piece: &ArrayView4<'_, f32>) {
        for (g, bands) in self.stats.iter_mut().zip(&self.groups) {
            g.add(piece, bands);
        }
    }

    /// Adds a partial accumulator of the current pass.
    pub fn merge(&mut self, other: &Fitting) {
        for (a, b) in self.stats.iter_mut().zip(&other.stats) {
            a.merge(b);
        }
    }

    /// Ends the current pass.
    pub fn next_pass(&mut self) {
        for g in &mut self.stats {
            g.next_pass();
        }
    }

    /// Runs every pass over a raster held whole, in parallel over blocks of rows.
    fn over(mut self, data: &ArrayView4<'_, f32>, threads: usize) -> Fitting {
        let rows = data.len_of(Axis(2));
        let block = rows.div_ceil(threads.max(1) * 4).max(64);
        for _ in 0..self.passes() {
            let starts: Vec<usize> = (0..rows).step_by(block).collect();
            let partials: Vec<Fitting> = starts
                .par_iter()
                .map(|&r0| {
                    let mut p = self.partial();
                    p.add(&data.slice(s![.., .., r0..(r0 + block).min(rows), ..]));
                    p
                })
                .collect();
            for p in &partials {
                self.merge(p);
            }
            self.next_pass();
        }
        self
    }
}

/// The affine map `normalize` applies to each group of bands, once its statistics are known.
#[derive(Debug, Clone)]
pub struct Mapping {
    groups: Vec<(Vec<usize>, Option<Affine>)>,
    /// The statistics each group's map came from.
    statistics: Vec<Option<(f64, f64)>>,
}

/// A built `normalize` node.
#[derive(Debug, Clone)]
pub struct NormalizeNode {
    params: NormalizeValidParams,
    /// The params as the recipe gave them, which a windowed run's expression repeats.
    written: Params,
}

impl NormalizeNode {
    /// A node with these parameters.
    pub fn new(params: NormalizeValidParams) -> Self {
        NormalizeNode {
            params,
            written: Params::new(),
        }
    }

    /// An empty [`Fitting`] for a raster of `nbands` bands.
    pub fn fitting(&self, nbands: usize) -> Fitting {
        let p = &self.params;
        let groups = self.groups(nbands);
        let wanted = match p.method() {
            Method::Minmax => stats::Wanted::MinMax,
            Method::Zscore => stats::Wanted::MeanStd,
            Method::Percentile => {
                let (lo, hi) = p.percentiles();
                stats::Wanted::Percentiles(lo, hi)
            }
        };
        Fitting {
            stats: groups
                .iter()
                .map(|_| stats::GroupStats::new(wanted))
                .collect(),
            groups,
        }
    }

    /// The groups of bands that share statistics, for a raster of `nbands` bands.
    fn groups(&self, nbands: usize) -> Vec<Vec<usize>> {
        match self.params.scope() {
            Scope::Global => vec![(0..nbands).collect()],
            Scope::Band => (0..nbands).map(|b| vec![b]).collect(),
        }
    }

    /// The statistics gathered, one `(a, b)` pair per group as the `statistics` param writes
    /// them; `None` for a group without a finite value.
    pub fn statistics_of(&self, fitting: &Fitting) -> Vec<Option<(f64, f64)>> {
        fitting
            .stats
            .iter()
            .map(|g| match self.params.method() {
                Method::Minmax => g.min_max(),
                Method::Percentile => g.percentiles(),
                Method::Zscore => g.mean_std(),
            })
            .collect()
    }

    /// The maps that the gathered statistics give; warnings (constant data, no finite value) go
    /// to `warn`.
    pub fn mapping(&self, fitting: &Fitting, bands: &[BandInfo], warn: &dyn Fn(String)) -> Mapping {
        self.mapping_from(&self.statistics_of(fitting), bands, warn)
    }

    /// The maps that statistics (one pair per group) give.
    fn mapping_from(
        &self,
        statistics: &[Option<(f64, f64)>],
        bands: &[BandInfo],
        warn: &dyn Fn(String),
    ) -> Mapping {
        let p = &self.params;
        let (lo, hi) = p.range();
        let mut groups = Vec::new();
        for (group, bounds) in self.groups(bands.len()).into_iter().zip(statistics) {
            let what = match p.scope() {
                Scope::Global => "the raster".to_string(),
                Scope::Band => format!(
                    "band {}",
                    bands.get(group[0]).map_or("?", |b| b.name.as_str())
                ),
            };
            let map: Option<Affine> = match (p.method(), *bounds) {
                (_, None) => None,
                (Method::Minmax | Method::Percentile, Some((a, b))) => {
                    if b > a && (b - a).is_finite() {
                        let scale = (hi - lo) / (b - a);
                        Some((scale, lo - a * scale, p.clip().then_some((lo, hi))))
                    } else {
                        warn(format!("normalize: {what} is constant; mapped to {lo}"));
                        Some((0.0, lo, None))
                    }
                }
                (Method::Zscore, Some((mean, std))) => {
                    if std > 0.0 && std.is_finite() {
                        Some((1.0 / std, -mean / std, None))
                    } else {
                        warn(format!("normalize: {what} is constant; z-scores set to 0"));
                        Some((0.0, 0.0, None))
                    }
                }
            };
            if map.is_none() {
                warn(format!(
                    "normalize: {what} has no finite value; left as NaN"
                ));
            }
            groups.push((group, map));
        }
        Mapping {
            groups,
            statistics: statistics.to_vec(),
        }
    }

    /// `bands` with the scaling each group's `statistics` record.
    fn scaled_bands(&self, bands: &[BandInfo], statistics: &[Option<(f64, f64)>]) -> Vec<BandInfo> {
        let mut out = bands.to_vec();
        for (group, s) in self.groups(bands.len()).iter().zip(statistics) {
            for &b in group {
                out[b].scaling = recorded::scaling(&self.params, *s);
            }
        }
        out
    }

    /// The statistics to apply instead of computing them: from the `statistics` input (a
    /// normalized raster or a model), else from the `statistics` param.
    ///
    /// # Errors
    /// When both are given, or the input's record does not fit `bands`.
    fn given(
        &self,
        inputs: &Inputs,
        bands: &[BandInfo],
    ) -> Result<Option<Vec<(f64, f64)>>, NodeError> {
        match (inputs.get("statistics"), self.params.statistics()) {
            (Some(_), Some(_)) => Err(NodeError::Input {
                port: "statistics".into(),
                message: "give the statistics either as the `statistics` param or as this \
                          input, not both"
                    .into(),
            }),
            (Some(v), None) => recorded::statistics(&self.params, v, bands).map(Some),
            (None, given) => Ok(given.map(<[_]>::to_vec)),
        }
    }

    /// The given `statistics` as a mapping for a raster of these bands.
    ///
    /// # Errors
    /// When the number of pairs is not the number of groups.
    fn given_mapping(
        &self,
        given: &[(f64, f64)],
        bands: &[BandInfo],
        warn: &dyn Fn(String),
    ) -> Result<Mapping, NodeError> {
        let groups = self.groups(bands.len()).len();
        if given.len() != groups {
            return Err(NodeError::InvalidData(format!(
                "normalize: `statistics` has {} pair(s) but this raster needs {groups} (scope = \"{}\", {} band(s))",
                given.len(),
                match self.params.scope() {
                    Scope::Global => "global",
                    Scope::Band => "band",
                },
                bands.len()
            )));
        }
        let bounds: Vec<Option<(f64, f64)>> = given.iter().copied().map(Some).collect();
        Ok(self.mapping_from(&bounds, bands, warn))
    }

    /// Gathers the statistics of a deferred raster window by window (in parallel, one pass per
    /// statistic's need) and returns the deferred raster rescaled by them: the same expression
    /// plus this node with the statistics as its `statistics` param.
    fn run_deferred(
        &self,
        ctx: &RunContext,
        params: &Params,
        input: &Deferred,
        inputs: &Inputs,
    ) -> Result<Value, NodeError> {
        let Value::Raster(template) = input.template.as_ref() else {
            return Err(NodeError::Input {
                port: "input".into(),
                message: "expected a Raster".into(),
            });
        };
        let bands = template.bands.clone();
        let statistics: Vec<Option<(f64, f64)>> = match self.given(inputs, &bands)? {
            Some(given) => {
                self.given_mapping(&given, &bands, &|m| ctx.warn(m))?;
                given.iter().copied().map(Some).collect()
            }
            None => {
                let mut fitting = self.fitting(bands.len());
                let passes = fitting.passes();
                for _ in 0..passes {
                    let partials = input.fold(
                        ctx,
                        || fitting.partial(),
                        |acc, _, v| {
                            let Value::Raster(r) = v else {
                                return Err(NodeError::Failed(
                                    "normalize: a window of the input is not a Raster".into(),
                                ));
                            };
                            acc.add(&r.data.view());
                            Ok(())
                        },
                    )?;
                    for p in &partials {
                        fitting.merge(p);
                    }
                    fitting.next_pass();
                }
                // Warnings once, here, rather than once per window later.
                self.mapping(&fitting, &bands, &|m| ctx.warn(m));
                self.statistics_of(&fitting)
            }
        };
        // A group without a finite value has only NaN to map; any pair maps NaN to NaN.
        let pairs: Vec<toml::Value> = statistics
            .iter()
            .map(|s| {
                let (a, b) = s.unwrap_or((0.0, 0.0));
                toml::Value::Array(vec![toml::Value::Float(a), toml::Value::Float(b)])
            })
            .collect();
        // Each window is rescaled by the statistics as a param: the windows' expression does
        // not repeat the `statistics` input.
        let mut step_params = params.clone();
        step_params.insert("statistics".into(), toml::Value::Array(pairs));
        let expr = Expr {
            node_id: ctx.node_id.clone(),
            kind: "normalize".into(),
            params: step_params,
            inputs: vec![("input".into(), Operand::Windowed(input.expr.clone()))],
        };
        let mut out_template = template.clone();
        out_template.grid = input.grid().clone();
        out_template.bands = self.scaled_bands(&bands, &statistics);
        Ok(Value::Deferred(Deferred::new(
            Value::Raster(out_template),
            input.window,
            std::sync::Arc::new(expr),
        )?))
    }

    /// Applies `mapping` to `raster` (the whole raster or one window of it).
    pub fn apply_mapping(&self, raster: &Raster, mapping: &Mapping) -> Raster {
        let mut out = raster.data.as_standard_layout().into_owned();
        for (group, map) in &mapping.groups {
            let Some((scale, offset, clamp)) = *map else {
                // No finite value in the group: nothing but NaN to give.
                for &b in group {
                    out.slice_mut(s![.., b, .., ..]).fill(f32::NAN);
                }
                continue;
            };
            for &b in group {
                let mut band = out.slice_mut(s![.., b, .., ..]);
                band.par_mapv_inplace(|v| {
                    if !v.is_finite() {
                        return f32::NAN;
                    }
                    let y = (v as f64 * scale + offset) as f32;
                    match clamp {
                        Some((l, h)) => y.clamp(l as f32, h as f32),
                        None => y,
                    }
                });
            }
        }
        Raster {
            data: out,
            grid: raster.grid.clone(),
            bands: self.scaled_bands(&raster.bands, &mapping.statistics),
            times: raster.times.clone(),
        }
    }

    /// Rescales `raster` by statistics of its own values (or the given ones); warnings go to
    /// `warn`.
    ///
    /// # Errors
    /// When given statistics do not fit the raster's bands.
    pub fn rescale(&self, raster: &Raster, warn: &dyn Fn(String)) -> Result<Raster, NodeError> {
        self.rescale_with(raster, self.params.statistics(), warn)
    }

    /// Rescales `raster` by `given` statistics, or by statistics of its own values.
    fn rescale_with(
        &self,
        raster: &Raster,
        given: Option<&[(f64, f64)]>,
        warn: &dyn Fn(String),
    ) -> Result<Raster, NodeError> {
        match given {
            Some(given) => {
                let mapping = self.given_mapping(given, &raster.bands, warn)?;
                Ok(self.apply_mapping(raster, &mapping))
            }
            None => Ok(self.apply(raster, warn)),
        }
    }

    /// Rescales `raster` by statistics of its own values; warnings go to `warn`.
    pub fn apply(&self, raster: &Raster, warn: &dyn Fn(String)) -> Raster {
        let threads = rayon::current_num_threads();
        let fitting = self
            .fitting(raster.data.len_of(Axis(1)))
            .over(&raster.data.view(), threads);
        let mapping = self.mapping(&fitting, &raster.bands, warn);
        self.apply_mapping(raster, &mapping)
    }
}

impl Node for NormalizeNode {
    fn estimate(&self, known: &Known) -> Option<Estimate> {
        let p = known.pixels("input")?;
        // The statistics are gathered in one pass over a windowed input, whose windows are
        // then rescaled as they are read; a whole input is rescaled into a new array.
        let est = Estimate::of(Shape::Pixels(p.clone()));
        Some(match p.window {
            Some(_) => est.one_pass(known),
            None => est,
        })
    }

    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        if let Some(Value::Deferred(d)) = inputs.get("input") {
            return self.run_deferred(ctx, &self.written, d, inputs);
        }
        let raster = inputs.raster("input")?;
        let given = self.given(inputs, &raster.bands)?;
        // A window of a windowed run: its warnings were given when the statistics were gathered.
        let quiet = ctx.window().is_some();
        let warn = |m: String| {
            if !quiet {
                ctx.warn(m)
            }
        };
        Ok(Value::Raster(self.rescale_with(
            raster,
            given.as_deref(),
            &warn,
        )?))
    }

    fn takes_deferred(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::raster;
    use ndarray::Array4;
    use std::cell::RefCell;

    fn node(toml_src: &str) -> NormalizeNode {
        let params: Params = toml::from_str(toml_src).unwrap();
        NormalizeNode::new(NormalizeParams::parse(&params).unwrap().validate().unwrap())
    }

    fn run(n: &NormalizeNode, r: &Raster) -> (Vec<f32>, Vec<String>) {
        let warnings = RefCell::new(Vec::new());
        let out = n.apply(r, &|m| warnings.borrow_mut().push(m));
        (out.data.iter().copied().collect(), warnings.into_inner())
    }

    fn sample() -> Raster {
        // 1 time, 2 bands, 2 x 3 pixels, one NaN.
        let v = vec![
            0.0,
            100.0,
            200.0,
            300.0,
            f32::NAN,
            1000.0,
            50.0,
            150.0,
            250.0,
            350.0,
            450.0,
            550.0,
        ];
        raster(
            Array4::from_shape_vec((1, 2, 2, 3), v).unwrap(),
            &["B04", "B08"],
        )
    }

    #[test]
    fn minmax_global_snapshot_and_range() {
        let (out, warnings) = run(&node(""), &sample());
        assert!(warnings.is_empty());
        assert!(out[4].is_nan(), "NaN stays NaN");
        assert!(out
            .iter()
            .filter(|v| !v.is_nan())
            .all(|&v| (0.0..=255.0).contains(&v)));
        assert_eq!(out[0], 0.0);
        assert_eq!(out[5], 255.0);
        insta::assert_debug_snapshot!("normalize_minmax_global", out);
    }

    #[test]
    fn minmax_per_band_and_custom_range() {
        let (out, _) = run(&node("scope = \"band\"\nrange = [-1, 1]"), &sample());
        assert_eq!(&out[..4], &[-1.0, -0.8, -0.6, -0.4]);
        assert_eq!(out[5], 1.0);
        assert_eq!(out[6], -1.0);
        assert_eq!(out[11], 1.0);
        insta::assert_debug_snapshot!("normalize_minmax_band", out);
    }

    #[test]
    fn percentile_clips_to_the_range() {
        let v: Vec<f32> = (0..100).map(|i| i as f32).chain([1e6]).collect();
        let r = raster(Array4::from_shape_vec((1, 1, 1, 101), v).unwrap(), &["B04"]);
        let (out, _) = run(&node("method = \"percentile\"\npercentiles = [10, 90]"), &r);
        assert!(out.iter().all(|&v| (0.0..=255.0).contains(&v)));
        assert_eq!(out[0], 0.0);
        assert_eq!(out[100], 255.0, "the outlier is clipped");
        // clip = false extends the map linearly beyond the range
        let (out, _) = run(
            &node("method = \"percentile\"\npercentiles = [10, 90]\nclip = false"),
            &r,
        );
        assert!(out[0] < 0.0 && out[100] > 255.0);
    }

    #[test]
    fn zscore_has_zero_mean_unit_std() {
        let (out, _) = run(&node("method = \"zscore\""), &sample());
        let f: Vec<f64> = out
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| v as f64)
            .collect();
        let mean = f.iter().sum::<f64>() / f.len() as f64;
        let var = f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / f.len() as f64;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "{mean} {var}"
        );
    }

    #[test]
    fn constant_data_maps_to_lo_with_a_warning() {
        let mut r = raster(Array4::from_elem((1, 1, 2, 2), 7.0), &["B04"]);
        r.data[[0, 0, 0, 0]] = f32::NAN;
        for method in ["minmax", "percentile", "zscore"] {
            let (out, warnings) = run(
                &node(&format!("method = \"{method}\"\nrange = [10, 20]")),
                &r,
            );
            assert_eq!(warnings.len(), 1, "{method}: {warnings:?}");
            let expect = if method == "zscore" { 0.0 } else { 10.0 };
            assert!(out[0].is_nan());
            assert!(out[1..].iter().all(|&v| v == expect), "{method}: {out:?}");
        }
    }

    #[test]
    fn no_wrap_around_on_large_values() {
        let v: Vec<f32> = (0..=255).map(|i| i as f32 * 1000.0).collect();
        let r = raster(Array4::from_shape_vec((1, 1, 1, 256), v).unwrap(), &["B04"]);
        let (out, _) = run(&node(""), &r);
        for (i, &v) in out.iter().enumerate() {
            assert!((v - i as f32).abs() < 1e-3, "{i}: {v}");
        }
    }

    /// A raster fed window by window (in reverse order) to the same fitting and mapping gives
    /// exactly what the whole raster gives, for every method and scope.
    #[test]
    fn windows_give_bit_identical_results_to_the_whole_raster() {
        let (t, b, h, w) = (2, 3, 150, 130);
        let data = Array4::from_shape_fn((t, b, h, w), |(ti, bi, y, x)| {
            let i = ((ti * 7 + bi * 13 + y * 31 + x * 17) % 97) as f32;
            if (y * w + x) % 23 == 0 {
                f32::NAN
            } else {
                (i * 0.37 + bi as f32).sin() * 1000.0 + y as f32
            }
        });
        let r = raster(data, &["B02", "B03", "B04"]);
        for params in [
            "",
            "scope = \"band\"",
            "method = \"zscore\"",
            "method = \"zscore\"\nscope = \"band\"",
            "method = \"percentile\"",
            "method = \"percentile\"\nscope = \"band\"\npercentiles = [5, 95]",
        ] {
            let n = node(params);
            let whole = n.apply(&r, &|_| {});
            for size in [64, 37] {
                let mut fitting = n.fitting(b);
                let windows: Vec<(usize, usize)> = (0..h)
                    .step_by(size)
                    .flat_map(|y| (0..w).step_by(size).map(move |x| (y, x)))
                    .collect();
                for _ in 0..fitting.passes() {
                    for &(y, x) in windows.iter().rev() {
                        let piece =
                            r.data
                                .slice(s![.., .., y..(y + size).min(h), x..(x + size).min(w)]);
                        let mut p = fitting.partial();
                        p.add(&piece);
                        fitting.merge(&p);
                    }
                    fitting.next_pass();
                }
                let mapping = n.mapping(&fitting, &r.bands, &|_| {});
                for &(y, x) in &windows {
                    let (y1, x1) = ((y + size).min(h), (x + size).min(w));
                    let piece = Raster {
                        data: r.data.slice(s![.., .., y..y1, x..x1]).to_owned(),
                        grid: r.grid.window(x, y, x1 - x, y1 - y),
                        bands: r.bands.clone(),
                        times: r.times.clone(),
                    };
                    let out = n.apply_mapping(&piece, &mapping);
                    let want = whole.data.slice(s![.., .., y..y1, x..x1]);
                    assert!(
                        out.data
                            .iter()
                            .zip(want.iter())
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{params:?}, windows of {size}, at ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn given_statistics_rescale_as_the_gathered_ones() {
        let r = sample();
        for (params, given) in [
            ("", "statistics = [[0, 1000]]"),
            (
                "scope = \"band\"",
                "scope = \"band\"\nstatistics = [[0, 1000], [50, 550]]",
            ),
            (
                "method = \"zscore\"",
                "method = \"zscore\"\nstatistics = [[2, 0.5]]",
            ),
        ] {
            let computed = node(params);
            let fitting = computed.fitting(2).over(&r.data.view(), 1);
            let stats: Vec<(f64, f64)> = computed
                .statistics_of(&fitting)
                .into_iter()
                .map(Option::unwrap)
                .collect();
            let from_stats = node(given).rescale(&r, &|_| {}).unwrap();
            let (want, _) = run(&computed, &r);
            if params.contains("zscore") {
                // Different statistics: check the map itself.
                let v = from_stats.data[[0, 0, 0, 1]];
                assert_eq!(v, ((100.0 - 2.0) / 0.5) as f32);
            } else {
                assert_eq!(stats.len(), if params.is_empty() { 1 } else { 2 });
                let got: Vec<f32> = from_stats.data.iter().copied().collect();
                assert_eq!(format!("{got:?}"), format!("{want:?}"), "{params}");
            }
        }
        let e = node("scope = \"band\"\nstatistics = [[0, 1]]")
            .rescale(&r, &|_| {})
            .unwrap_err();
        assert!(e.to_string().contains("needs 2"), "{e}");
        let params: Params = toml::from_str("statistics = [[0, 1, 2]]").unwrap();
        assert_eq!(
            NormalizeKind.build(&params).err().unwrap().param.as_deref(),
            Some("statistics")
        );
    }

    #[test]
    fn rejects_bad_ranges() {
        let params: Params = toml::from_str("range = [255, 0]").unwrap();
        let e = NormalizeKind.build(&params).err().unwrap();
        assert_eq!(e.param.as_deref(), Some("range"));
        let params: Params = toml::from_str("percentiles = [2, 120]").unwrap();
        assert_eq!(
            NormalizeKind.build(&params).err().unwrap().param.as_deref(),
            Some("percentiles")
        );
    }
}
