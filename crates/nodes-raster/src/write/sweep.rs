//! The chart of a `k = "auto"` sweep (`write` of a Model to a `.png`): the criterion (top) and
//! the inertia (bottom) against k, one line and one marker per k tried, the chosen k marked in
//! red across both panels. Drawn on the quicklook's [`Image`] with its bitmap font, as the
//! quicklooks are: no plotting library.
//!
//! The sweep is read from the model's `info.sweep` as `kmeans-fit` records it: `criterion`,
//! `best` (`"highest"` / `"lowest"`), `k` (the chosen one) and `results`, each with `k`,
//! `inertia` and a value per criterion (null where undefined).

use flow_core::{Model, NodeError};
use serde_json::Value as Json;

use super::font;
use super::png::Image;

/// Width of the chart, in pixels.
pub(crate) const WIDTH: usize = 640;
/// Height of the chart, in pixels.
pub(crate) const HEIGHT: usize = 490;
/// Bytes the chart holds in memory (RGB) and GDAL's copy of it.
pub(crate) const CHART_BYTES: u64 = (WIDTH * HEIGHT * 3 * 2) as u64;

const LEFT: usize = 96;
const RIGHT: usize = 24;
const TOP: usize = 48;
const PANEL_H: usize = 170;
const PANEL_GAP: usize = 56;
const BLACK: [u8; 3] = [0, 0, 0];
const GREY: [u8; 3] = [200, 200, 200];
const BLUE: [u8; 3] = [31, 119, 180];
const GREEN: [u8; 3] = [44, 130, 44];
const RED: [u8; 3] = [214, 39, 40];

/// One k of the sweep.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    k: usize,
    inertia: Option<f64>,
    value: Option<f64>,
}

/// The sweep as the chart needs it.
#[derive(Debug, Clone, PartialEq)]
struct Sweep {
    criterion: String,
    highest: bool,
    chosen: usize,
    points: Vec<Point>,
}

/// The finite number at `v`, if any.
fn number(v: &Json) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// Reads `info.sweep` of `model`.
///
/// # Errors
/// [`NodeError::InvalidData`] when the model has no sweep (it was fitted with an integer k) or
/// the sweep is not as `kmeans-fit` writes it.
fn read(model: &Model) -> Result<Sweep, NodeError> {
    let Some(sweep) = model.info.get("sweep").filter(|s| s.is_object()) else {
        return Err(NodeError::InvalidData(
            "write: a Model is drawn as PNG only when it holds the sweep of a kmeans-fit with \
             k = \"auto\" (info.sweep); write it as .json instead"
                .into(),
        ));
    };
    let bad = |what: &str| NodeError::InvalidData(format!("write: the model's sweep {what}"));
    let criterion = sweep["criterion"]
        .as_str()
        .ok_or_else(|| bad("has no criterion"))?
        .to_string();
    let key = criterion.replace('-', "_");
    let highest = sweep["best"].as_str() != Some("lowest");
    let chosen = sweep["k"].as_u64().ok_or_else(|| bad("has no chosen k"))? as usize;
    let points = sweep["results"]
        .as_array()
        .ok_or_else(|| bad("has no results"))?
        .iter()
        .map(|r| {
            Ok(Point {
                k: r["k"]
                    .as_u64()
                    .ok_or_else(|| bad("has a result without k"))? as usize,
                inertia: number(&r["inertia"]),
                value: number(&r[key.as_str()]),
            })
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    if points.is_empty() {
        return Err(bad("is empty"));
    }
    Ok(Sweep {
        criterion,
        highest,
        chosen,
        points,
    })
}

/// A short label for an axis value: 4 significant digits, exponent form for very large or small.
fn label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-2..1e5).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Draws `text` in `colour` at `(x, y)` (upper-left), one font pixel per image pixel.
fn text(img: &mut Image, s: &str, x: usize, y: usize, colour: [u8; 3]) {
    font::draw(s, x, y, 1, |px, py| img.put(px, py, colour));
}

/// Draws `text` twice as large.
fn big_text(img: &mut Image, s: &str, x: usize, y: usize) {
    font::draw(s, x, y, 2, |px, py| img.put(px, py, BLACK));
}

/// A line of width 2 from `a` to `b` (DDA), in `colour`.
fn line(img: &mut Image, a: (f64, f64), b: (f64, f64), colour: [u8; 3]) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
        let (x, y) = (x.round() as usize, y.round() as usize);
        img.rect(x, y, 2, 2, colour);
    }
}

/// One panel: `values` (None leaves a gap) against the sweep's k, framed at `top`, its value
/// range on the left, the chosen k marked.
fn panel(
    img: &mut Image,
    top: usize,
    title: &str,
    values: &[Option<f64>],
    sweep: &Sweep,
    colour: [u8; 3],
) {
    let width = WIDTH - LEFT - RIGHT;
    text(img, title, LEFT, top - 14, BLACK);
    // Frame.
    img.rect(LEFT, top, width, 1, BLACK);
    img.rect(LEFT, top + PANEL_H, width + 1, 1, BLACK);
    img.rect(LEFT, top, 1, PANEL_H, BLACK);
    img.rect(LEFT + width, top, 1, PANEL_H, BLACK);
    let finite: Vec<f64> = values.iter().flatten().copied().collect();
    let (lo, hi) = match (
        finite.iter().copied().reduce(f64::min),
        finite.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) if hi > lo => (lo, hi),
        (Some(v), Some(_)) => (v - v.abs().max(1.0) * 0.1, v + v.abs().max(1.0) * 0.1),
        _ => {
            text(img, "no value", LEFT + 8, top + PANEL_H / 2, BLACK);
            return;
        }
    };
    let pad = (hi - lo) * 0.08;
    let (lo_axis, hi_axis) = (lo - pad, hi + pad);
    let inner = PANEL_H as f64;
    let y_of = |v: f64| top as f64 + inner * (hi_axis - v) / (hi_axis - lo_axis);
    let ks: Vec<usize> = sweep.points.iter().map(|p| p.k).collect();
    let (k0, k1) = (
        ks.iter().copied().min().unwrap_or(0) as f64,
        ks.iter().copied().max().unwrap_or(0) as f64,
    );
    let x_of = |k: usize| {
        let span = (k1 - k0).max(1.0);
        LEFT as f64 + 20.0 + (width as f64 - 40.0) * (k as f64 - k0) / span
    };
    // Grid lines and labels at the lowest and highest values and half way.
    for v in [lo, (lo + hi) / 2.0, hi] {
        let y = y_of(v).round() as usize;
        for x in (LEFT + 1..LEFT + width).step_by(4) {
            img.put(x, y, GREY);
        }
        let s = label(v);
        let w = font::text_width(&s, 1);
        text(
            img,
            &s,
            LEFT.saturating_sub(w + 6),
            y.saturating_sub(3),
            BLACK,
        );
    }
    // The chosen k: a dashed vertical line.
    let xc = x_of(sweep.chosen).round() as usize;
    for y in (top + 1..top + PANEL_H).step_by(6) {
        img.rect(xc, y, 1, 3, RED);
    }
    // The series.
    let pts: Vec<Option<(f64, f64)>> = sweep
        .points
        .iter()
        .zip(values)
        .map(|(p, v)| v.map(|v| (x_of(p.k), y_of(v))))
        .collect();
    for w in pts.windows(2) {
        if let (Some(a), Some(b)) = (w[0], w[1]) {
            line(img, a, b, colour);
        }
    }
    for (p, xy) in sweep.points.iter().zip(&pts) {
        let Some((x, y)) = xy else { continue };
        let (x, y) = (x.round() as usize, y.round() as usize);
        let (c, r) = if p.k == sweep.chosen {
            (RED, 4)
        } else {
            (colour, 3)
        };
        img.rect(
            x.saturating_sub(r),
            y.saturating_sub(r),
            2 * r + 1,
            2 * r + 1,
            c,
        );
    }
    // k ticks.
    for &k in &ks {
        let x = x_of(k).round() as usize;
        img.rect(x, top + PANEL_H, 1, 4, BLACK);
        let s = k.to_string();
        let w = font::text_width(&s, 1);
        text(img, &s, x.saturating_sub(w / 2), top + PANEL_H + 7, BLACK);
    }
}

/// The chart of the sweep recorded in `model`.
///
/// # Errors
/// As [`read`].
pub(crate) fn chart(model: &Model) -> Result<Image, NodeError> {
    let sweep = read(model)?;
    let mut img = Image::new(WIDTH, HEIGHT);
    big_text(
        &mut img,
        &format!("k sweep: {} chose k {}", sweep.criterion, sweep.chosen),
        LEFT,
        12,
    );
    let best = if sweep.highest { "highest" } else { "lowest" };
    let values: Vec<Option<f64>> = sweep.points.iter().map(|p| p.value).collect();
    panel(
        &mut img,
        TOP,
        &format!("{} ({best} is best)", sweep.criterion),
        &values,
        &sweep,
        BLUE,
    );
    let inertia: Vec<Option<f64>> = sweep.points.iter().map(|p| p.inertia).collect();
    let second = TOP + PANEL_H + PANEL_GAP;
    panel(&mut img, second, "inertia", &inertia, &sweep, GREEN);
    let axis = "k";
    text(
        &mut img,
        axis,
        LEFT + (WIDTH - LEFT - RIGHT) / 2,
        second + PANEL_H + 22,
        BLACK,
    );
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model(info: Json) -> Model {
        Model {
            scaling: Default::default(),
            centroids: ndarray::Array2::zeros((3, 1)),
            features: vec!["a".into()],
            inertia: 1.0,
            iterations: 1,
            seed: 0,
            counts: vec![1, 1, 1],
            info,
            classifier: None,
        }
    }

    fn swept() -> Model {
        model(json!({"sweep": {
            "criterion": "silhouette",
            "best": "highest",
            "k": 3,
            "results": [
                {"k": 2, "inertia": 100.0, "silhouette": 0.5, "chosen": false},
                {"k": 3, "inertia": 40.0, "silhouette": 0.8, "chosen": true},
                {"k": 4, "inertia": 30.0, "silhouette": null, "chosen": false},
                {"k": 5, "inertia": 25.0, "silhouette": 0.6, "chosen": false},
            ]
        }}))
    }

    #[test]
    fn the_sweep_is_read_from_the_model() {
        let s = read(&swept()).unwrap();
        assert_eq!(
            (s.criterion.as_str(), s.highest, s.chosen),
            ("silhouette", true, 3)
        );
        assert_eq!(
            s.points.iter().map(|p| p.value).collect::<Vec<_>>(),
            [Some(0.5), Some(0.8), None, Some(0.6)]
        );
        let e = read(&model(json!({"converged": true})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("k = \"auto\""), "{e}");
        let e = read(&model(json!({"sweep": {"criterion": "silhouette"}})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("chosen k"), "{e}");
    }

    #[test]
    fn the_chart_marks_the_chosen_k_in_both_panels() {
        let img = chart(&swept()).unwrap();
        assert_eq!((img.width, img.height), (WIDTH, HEIGHT));
        // The chosen k's marker is red in both panels, at the top of the criterion's (its
        // highest value) and low in the inertia's; the other markers are not red.
        let red_in = |y0: usize, y1: usize| {
            (y0..y1)
                .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
                .filter(|&(x, y)| img.pixels[y * WIDTH + x] == RED)
                .count()
        };
        assert!(
            red_in(TOP, TOP + PANEL_H) > 81,
            "marker and dashed line in the top panel"
        );
        let second = TOP + PANEL_H + PANEL_GAP;
        assert!(red_in(second, second + PANEL_H) > 81);
        let blue = img.pixels.iter().filter(|&&p| p == BLUE).count();
        let green = img.pixels.iter().filter(|&&p| p == GREEN).count();
        assert!(blue > 100 && green > 100, "{blue} {green}");
        // A sweep drawn twice is the same picture.
        assert_eq!(chart(&swept()).unwrap(), img);
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(label(0.80324), "0.803");
        assert_eq!(label(214146.1), "2.141e5");
        assert_eq!(label(43.126), "43.13");
        assert_eq!(label(1234.4), "1234");
        assert_eq!(label(0.0), "0");
    }
}
