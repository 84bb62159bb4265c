//! Short summaries of values for the run report: shapes, grids, value ranges, counts.
//!
//! A [`Summary`] is typed; its JSON form (in `run.json`) carries the same `type` tag as
//! [`crate::meta::ValueMeta`].

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// Minimum and maximum of the finite values, and the fraction that are NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiniteStats {
    /// The smallest finite value (6 significant digits), `null` when there is none.
    pub min: Option<f64>,
    /// The largest finite value (6 significant digits), `null` when there is none.
    pub max: Option<f64>,
    /// The fraction of values that are not finite.
    pub nodata_fraction: f64,
}

/// What the run report says of a supervised classifier ([`crate::classifier::Classifier`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierSummary {
    /// `random-forest`, `decision-tree` or `nearest-centroid`.
    pub method: String,
    /// The class ids it predicts, in the order of `counts` and `recall`.
    pub classes: Vec<u16>,
    /// Number of trees (0 for nearest centroid).
    pub trees: usize,
    /// Held-out rows.
    pub holdout_rows: u64,
    /// Held-out overall accuracy (6 significant digits), `null` without held-out rows.
    pub holdout_accuracy: Option<f64>,
    /// Held-out recall per class (6 significant digits), `null` for a class without held-out
    /// rows.
    pub recall: Vec<Option<f64>>,
}

/// A short description of a value, as shown in the run report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Summary {
    /// An ItemCollection: how many items, and their ids.
    Items {
        /// Number of items.
        count: usize,
        /// Their ids, in order.
        ids: Vec<String>,
    },
    /// A raster cube.
    Raster {
        /// `(times, bands, height, width)`.
        shape: Vec<usize>,
        /// The grid's CRS.
        crs: String,
        /// The grid's GDAL geotransform.
        transform: [f64; 6],
        /// Band names.
        bands: Vec<String>,
        /// Time steps.
        times: Vec<String>,
        /// Value range.
        values: FiniteStats,
    },
    /// A feature matrix.
    Matrix {
        /// `(rows, features)`.
        shape: Vec<usize>,
        /// Feature names.
        features: Vec<String>,
        /// `(height, width)` of the grid the rows came from.
        grid_shape: [usize; 2],
        /// Value range.
        values: FiniteStats,
    },
    /// A fitted model.
    Model {
        /// Number of clusters.
        k: usize,
        /// Number of features.
        features: usize,
        /// Inertia (6 significant digits).
        inertia: f64,
        /// Lloyd iterations.
        iterations: usize,
        /// Seed.
        seed: u64,
        /// Training rows per class.
        counts: Vec<u64>,
        /// A supervised classifier's method, classes and held-out evaluation; absent for
        /// K-Means.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        classifier: Option<ClassifierSummary>,
    },
    /// A class map.
    Labels {
        /// `(height, width)`.
        shape: Vec<usize>,
        /// The grid's CRS.
        crs: String,
        /// The grid's GDAL geotransform.
        transform: [f64; 6],
        /// Number of classes.
        classes: usize,
        /// Pixels per class id.
        class_pixels: Vec<u64>,
        /// True ground area per class id in hectares (6 significant digits), when the grid's
        /// CRS is one flow measures (see [`crate::area`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class_hectares: Option<Vec<f64>>,
        /// Pixels without a class.
        nodata_pixels: usize,
    },
    /// Small structured data, whole.
    Json {
        /// The data.
        value: serde_json::Value,
    },
    /// A value computed window by window when needed (its pixels are not held).
    Deferred {
        /// The type of the value.
        of: String,
        /// Its shape, as the value itself would have it (rows unknown for a matrix: 0).
        shape: Vec<usize>,
        /// How many windows it is computed in.
        windows: usize,
    },
}

impl Summary {
    /// One short phrase for progress lines (`3 items`, `Raster [1, 12, 207, 228]`).
    pub fn short(&self) -> String {
        let shape = |s: &[usize]| format!("{s:?}").replace(' ', "");
        match self {
            Summary::Items { count: 1, .. } => "1 item".into(),
            Summary::Items { count, .. } => format!("{count} items"),
            Summary::Raster { shape: s, .. } => format!("Raster {}", shape(s)),
            Summary::Matrix { shape: s, .. } => format!("Matrix {}", shape(s)),
            Summary::Labels { shape: s, .. } => format!("Labels {}", shape(s)),
            Summary::Model {
                classifier: Some(c),
                ..
            } => match c.holdout_accuracy {
                Some(oa) => format!(
                    "Model {} {} classes held-out accuracy {oa}",
                    c.method,
                    c.classes.len()
                ),
                None => format!("Model {} {} classes", c.method, c.classes.len()),
            },
            Summary::Model { k, inertia, .. } => format!("Model k={k} inertia={inertia:?}"),
            Summary::Json { .. } => "Json".into(),
            Summary::Deferred {
                of,
                shape: s,
                windows,
                ..
            } => format!("{of} {} in {windows} windows", shape(s)),
        }
    }
}

/// Minimum, maximum and fraction of non-finite values of an array, lane by lane over its memory
/// when it is contiguous (a loop the compiler vectorizes: a cube of a whole tile is summarized in
/// a fraction of a second).
fn array_stats<D: ndarray::Dimension>(data: &ndarray::Array<f32, D>) -> FiniteStats {
    const LANES: usize = 16;
    let Some(values) = data.as_slice_memory_order() else {
        let (min, max, finite) = finite_parts(data.iter());
        return finish_stats(min, max, finite, data.len());
    };
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut finite = [0usize; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for i in 0..LANES {
            let v = chunk[i];
            let ok = v.is_finite();
            finite[i] += usize::from(ok);
            let (lo, hi) = if ok {
                (v, v)
            } else {
                (f32::INFINITY, f32::NEG_INFINITY)
            };
            min[i] = if lo < min[i] { lo } else { min[i] };
            max[i] = if hi > max[i] { hi } else { max[i] };
        }
    }
    let tail = finite_parts(rest.iter());
    let min = min.iter().copied().fold(tail.0, f32::min);
    let max = max.iter().copied().fold(tail.1, f32::max);
    let finite = finite.iter().sum::<usize>() + tail.2;
    finish_stats(min, max, finite, values.len())
}

/// Minimum, maximum and count of the finite values (one at a time: for short or strided runs).
fn finite_parts<'a>(values: impl Iterator<Item = &'a f32>) -> (f32, f32, usize) {
    values
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY, 0), |(lo, hi, n), &v| {
            (lo.min(v), hi.max(v), n + 1)
        })
}

/// The summary of `finite` finite values out of `total`, between `min` and `max`.
fn finish_stats(min: f32, max: f32, finite: usize, total: usize) -> FiniteStats {
    if finite == 0 {
        return FiniteStats {
            min: None,
            max: None,
            nodata_fraction: if total == 0 { 0.0 } else { 1.0 },
        };
    }
    let nodata = (total - finite) as f64 / total as f64;
    FiniteStats {
        min: Some(round(min as f64)),
        max: Some(round(max as f64)),
        nodata_fraction: round(nodata),
    }
}

/// Rounds to 6 significant digits so that summaries are stable text.
fn round(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 6 - v.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// A short description of a value, as shown in the run report.
pub fn summarize(value: &Value) -> Summary {
    match value {
        Value::Items(items) => {
            let ids: Vec<String> = items
                .features()
                .iter()
                .filter_map(|f| f.get("id").and_then(|i| i.as_str()))
                .map(String::from)
                .collect();
            Summary::Items {
                count: ids.len(),
                ids,
            }
        }
        Value::Raster(r) => Summary::Raster {
            shape: r.data.shape().to_vec(),
            crs: r.grid.crs.clone(),
            transform: r.grid.transform,
            bands: r.bands.iter().map(|b| b.name.clone()).collect(),
            times: r.times.clone(),
            values: array_stats(&r.data),
        },
        Value::Matrix(m) => Summary::Matrix {
            shape: m.data.shape().to_vec(),
            features: m.features.clone(),
            grid_shape: [m.grid.height, m.grid.width],
            values: array_stats(&m.data),
        },
        Value::Model(m) => Summary::Model {
            k: m.centroids.nrows(),
            features: m.centroids.ncols(),
            inertia: round(m.inertia),
            iterations: m.iterations,
            seed: m.seed,
            counts: m.counts.clone(),
            classifier: m.classifier.as_ref().map(|c| ClassifierSummary {
                method: c.method.clone(),
                classes: c.classes.iter().map(|k| k.id).collect(),
                trees: c.trees.len(),
                holdout_rows: c.holdout.rows,
                holdout_accuracy: c.holdout.overall_accuracy.map(round),
                recall: c.holdout.recall.iter().map(|r| r.map(round)).collect(),
            }),
        },
        Value::Labels(l) => Summary::Labels {
            shape: l.data.shape().to_vec(),
            crs: l.grid.crs.clone(),
            transform: l.grid.transform,
            classes: l.classes.len(),
            class_pixels: l.class_counts(),
            class_hectares: l
                .class_areas_m2()
                .map(|a| a.iter().map(|m2| round(m2 / 1e4)).collect()),
            nodata_pixels: l.data.iter().filter(|&&v| v == l.nodata).count(),
        },
        Value::Json(v) => Summary::Json { value: v.clone() },
        Value::Deferred(d) => {
            let g = d.grid();
            let shape = match d.template.as_ref() {
                Value::Raster(r) => vec![
                    r.data.len_of(ndarray::Axis(0)),
                    r.data.len_of(ndarray::Axis(1)),
                    g.height,
                    g.width,
                ],
                Value::Matrix(m) => vec![0, m.features.len()],
                _ => vec![g.height, g.width],
            };
            Summary::Deferred {
                of: d.template.value_type().to_string(),
                shape,
                windows: d.windows().len(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_six_significant_digits() {
        assert_eq!(round(123.456789), 123.457);
        assert_eq!(round(0.000123456789), 0.000123457);
        assert_eq!(round(0.0), 0.0);
    }

    #[test]
    fn stats_ignore_nan() {
        let v = [1.0f32, f32::NAN, 3.0, f32::NAN];
        assert_eq!(
            array_stats(&ndarray::arr1(&v)),
            FiniteStats {
                min: Some(1.0),
                max: Some(3.0),
                nodata_fraction: 0.5
            }
        );
    }
}
