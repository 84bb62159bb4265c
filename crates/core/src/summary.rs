//! One-line-ish summaries of values for the run report: shapes, grids, value ranges, counts.

use serde_json::json;

use crate::value::Value;

/// Minimum, maximum and count of the finite values, plus the fraction that are NaN.
fn finite_stats<'a>(values: impl Iterator<Item = &'a f32>) -> serde_json::Value {
    let (mut min, mut max, mut finite, mut total) =
        (f32::INFINITY, f32::NEG_INFINITY, 0usize, 0usize);
    for &v in values {
        total += 1;
        if v.is_finite() {
            finite += 1;
            min = min.min(v);
            max = max.max(v);
        }
    }
    if finite == 0 {
        return json!({"min": null, "max": null, "nodata_fraction": if total == 0 { 0.0 } else { 1.0 }});
    }
    let nodata = (total - finite) as f64 / total as f64;
    json!({"min": round(min as f64), "max": round(max as f64), "nodata_fraction": round(nodata)})
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

/// A short JSON description of a value, as shown in the run report.
pub fn summarize(value: &Value) -> serde_json::Value {
    match value {
        Value::Items(items) => {
            let ids: Vec<&str> = items
                .features()
                .iter()
                .filter_map(|f| f.get("id").and_then(|i| i.as_str()))
                .collect();
            json!({"type": "Items", "count": ids.len(), "ids": ids})
        }
        Value::Raster(r) => json!({
            "type": "Raster",
            "shape": r.data.shape(),
            "crs": r.grid.crs,
            "transform": r.grid.transform,
            "bands": r.bands.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
            "times": r.times,
            "values": finite_stats(r.data.iter()),
        }),
        Value::Matrix(m) => json!({
            "type": "Matrix",
            "shape": m.data.shape(),
            "features": m.features,
            "grid_shape": [m.grid.height, m.grid.width],
            "values": finite_stats(m.data.iter()),
        }),
        Value::Model(m) => json!({
            "type": "Model",
            "k": m.centroids.nrows(),
            "features": m.centroids.ncols(),
            "inertia": round(m.inertia),
            "iterations": m.iterations,
            "seed": m.seed,
            "counts": m.counts,
        }),
        Value::Labels(l) => json!({
            "type": "Labels",
            "shape": l.data.shape(),
            "crs": l.grid.crs,
            "transform": l.grid.transform,
            "classes": l.classes.len(),
            "class_pixels": l.class_counts(),
            "nodata_pixels": l.data.iter().filter(|&&v| v == l.nodata).count(),
        }),
        Value::Json(v) => json!({"type": "Json", "value": v}),
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
            finite_stats(v.iter()),
            json!({"min": 1.0, "max": 3.0, "nodata_fraction": 0.5})
        );
    }
}
