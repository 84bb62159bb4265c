//! The picture of an assessment (`assess`'s JSON): its confusion matrix as a grid of cells
//! shaded by pixel count, each with its count, reference classes as rows and map classes as
//! columns, both labelled, under a title with the headline figures. A clustering's columns are
//! put in the order of the reference classes they are matched with, so that the matched pairs
//! lie on the diagonal (outlined); unmatched clusters come last.

use flow_core::NodeError;
use serde_json::Value as Json;

use super::font;
use super::png::Image;

const MARGIN: usize = 12;
const SCALE: usize = 2;
const LINE: usize = font::GLYPH_H * SCALE + 8;
const PAD: usize = 8;
const BLACK: [u8; 3] = [0, 0, 0];
const WHITE: [u8; 3] = [255, 255, 255];
/// The colour of the fullest cell; empty cells are white.
const FULL: [u8; 3] = [8, 48, 107];

/// True when `doc` is an assessment that [`figure`] draws.
pub(crate) fn is_assessment(doc: &Json) -> bool {
    doc.get("assessment").and_then(Json::as_str) == Some("confusion")
        && doc.get("confusion_matrix").is_some_and(Json::is_array)
}

/// What the picture shows, read from the assessment's JSON.
#[derive(Debug, Clone, PartialEq)]
struct Matrix {
    rows: Vec<String>,
    cols: Vec<String>,
    /// `counts[r][c]`, columns in drawing order.
    counts: Vec<Vec<u64>>,
    /// `(row, column)` cells on the diagonal: a matched pair, or the same id.
    diagonal: Vec<(usize, usize)>,
    title: String,
}

fn bad(what: &str) -> NodeError {
    NodeError::InvalidData(format!(
        "write: the assessment's JSON has no valid {what}; it is drawn from what `assess` outputs"
    ))
}

/// `(id, name)` of each class of the list under `key`.
fn classes(doc: &Json, key: &str) -> Result<Vec<(u64, String)>, NodeError> {
    doc.get(key)
        .and_then(Json::as_array)
        .ok_or_else(|| bad(key))?
        .iter()
        .map(|c| {
            let id = c.get("id").and_then(Json::as_u64).ok_or_else(|| bad(key))?;
            let name = c
                .get("name")
                .and_then(Json::as_str)
                .map_or_else(|| format!("class {id}"), String::from);
            Ok((id, name))
        })
        .collect()
}

/// A figure with three decimals, or `-`.
fn three(doc: &Json, key: &str) -> String {
    doc.get(key)
        .and_then(Json::as_f64)
        .map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn matrix(doc: &Json) -> Result<Matrix, NodeError> {
    let rows = classes(doc, "reference_classes")?;
    let cols = classes(doc, "map_classes")?;
    let counts: Vec<Vec<u64>> = doc
        .get("confusion_matrix")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("confusion_matrix"))?
        .iter()
        .map(|r| {
            r.as_array()
                .filter(|r| r.len() == cols.len())
                .ok_or_else(|| bad("confusion_matrix"))?
                .iter()
                .map(|v| v.as_u64().ok_or_else(|| bad("confusion_matrix")))
                .collect()
        })
        .collect::<Result<_, _>>()?;
    if counts.len() != rows.len() {
        return Err(bad("confusion_matrix"));
    }
    let clusters = doc.get("map_ids").and_then(Json::as_str) == Some("clusters");
    // Columns in drawing order, and the row each one is on the diagonal with.
    let mut order: Vec<(usize, Option<usize>)> = Vec::new();
    if clusters {
        let pairs = doc
            .pointer("/matched/pairs")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("matched pairs"))?;
        let partner = |r: u64| {
            pairs.iter().find_map(|p| {
                (p.get("reference").and_then(Json::as_u64) == Some(r))
                    .then(|| p.get("map").and_then(Json::as_u64))
                    .flatten()
            })
        };
        for (ri, (rid, _)) in rows.iter().enumerate() {
            if let Some(c) = partner(*rid).and_then(|m| cols.iter().position(|(id, _)| *id == m)) {
                order.push((c, Some(ri)));
            }
        }
        for c in 0..cols.len() {
            if !order.iter().any(|(o, _)| *o == c) {
                order.push((c, None));
            }
        }
    } else {
        order = (0..cols.len())
            .map(|c| (c, rows.iter().position(|(id, _)| *id == cols[c].0)))
            .collect();
    }
    let diagonal = order
        .iter()
        .enumerate()
        .filter_map(|(drawn, (_, row))| row.map(|r| (r, drawn)))
        .collect();
    let how = if clusters {
        "clusters matched to classes"
    } else {
        "ids compared"
    };
    Ok(Matrix {
        rows: rows.into_iter().map(|(_, n)| n).collect(),
        cols: order.iter().map(|(c, _)| cols[*c].1.clone()).collect(),
        counts: counts
            .iter()
            .map(|r| order.iter().map(|(c, _)| r[*c]).collect())
            .collect(),
        diagonal,
        title: format!(
            "OA {}  kappa {} ({how})  ARI {}  NMI {}",
            three(doc, "overall_accuracy"),
            three(doc, "kappa"),
            three(doc, "adjusted_rand_index"),
            three(doc, "normalized_mutual_information")
        ),
    })
}

/// The shade of a cell holding `count` of at most `max`: white to [`FULL`].
fn shade(count: u64, max: u64) -> [u8; 3] {
    let t = if max == 0 {
        0.0
    } else {
        count as f64 / max as f64
    };
    let mix = |full: u8| (255.0 - t * (255.0 - f64::from(full))).round() as u8;
    [mix(FULL[0]), mix(FULL[1]), mix(FULL[2])]
}

fn text(img: &mut Image, s: &str, x: usize, y: usize, colour: [u8; 3]) {
    font::draw(s, x, y, SCALE, |px, py| img.put(px, py, colour));
}

/// Draws the confusion matrix of the assessment `doc` (see the module docs).
///
/// # Errors
/// Exit 3 when `doc` is not an assessment as `assess` writes it.
pub(crate) fn figure(doc: &Json) -> Result<Image, NodeError> {
    let m = matrix(doc)?;
    let max = m.counts.iter().flatten().copied().max().unwrap_or(0);
    let width_of = |s: &str| font::text_width(s, SCALE);
    let widest_count = width_of(&max.to_string());
    let cell_w = m
        .cols
        .iter()
        .map(|c| width_of(c))
        .chain([widest_count])
        .max()
        .unwrap_or(0)
        + 4 * PAD;
    let cell_h = LINE + 2 * PAD;
    let row_label_w = m.rows.iter().map(|r| width_of(r)).max().unwrap_or(0) + 2 * PAD;
    let grid_w = cell_w * m.cols.len();
    let grid_h = cell_h * m.rows.len();
    let title_w = width_of(&m.title).max(width_of("rows: reference classes, columns: map classes"));
    let width = (MARGIN + row_label_w + grid_w + MARGIN).max(MARGIN + title_w + MARGIN);
    // Title, figures, what rows and columns are, column labels, then the grid.
    let top = MARGIN + 4 * LINE + PAD;
    let height = top + grid_h + MARGIN;
    let mut img = Image::new(width, height);
    text(&mut img, "Confusion matrix (pixels)", MARGIN, MARGIN, BLACK);
    text(&mut img, &m.title, MARGIN, MARGIN + LINE, BLACK);
    let x0 = MARGIN + row_label_w;
    text(
        &mut img,
        "rows: reference classes, columns: map classes",
        MARGIN,
        MARGIN + 2 * LINE,
        BLACK,
    );
    for (c, label) in m.cols.iter().enumerate() {
        let x = x0 + c * cell_w + (cell_w - width_of(label)) / 2;
        text(&mut img, label, x, MARGIN + 3 * LINE, BLACK);
    }
    for (r, label) in m.rows.iter().enumerate() {
        let y = top + r * cell_h;
        text(&mut img, label, MARGIN, y + PAD, BLACK);
        for (c, &count) in m.counts[r].iter().enumerate() {
            let x = x0 + c * cell_w;
            let fill = shade(count, max);
            img.rect(x, y, cell_w, cell_h, fill);
            let s = count.to_string();
            let ink = if 2 * count > max { WHITE } else { BLACK };
            text(&mut img, &s, x + (cell_w - width_of(&s)) / 2, y + PAD, ink);
        }
    }
    // Thin lines between cells, the diagonal outlined.
    for r in 0..=m.rows.len() {
        img.rect(x0, top + r * cell_h, grid_w, 1, BLACK);
    }
    for c in 0..=m.cols.len() {
        img.rect(x0 + c * cell_w, top, 1, grid_h + 1, BLACK);
    }
    let accent = [214, 39, 40];
    for &(r, c) in &m.diagonal {
        let (x, y) = (x0 + c * cell_w, top + r * cell_h);
        for d in 0..3 {
            img.rect(x + d, y + d, cell_w + 1 - 2 * d, 1, accent);
            img.rect(x + d, y + cell_h - d, cell_w + 1 - 2 * d, 1, accent);
            img.rect(x + d, y + d, 1, cell_h + 1 - 2 * d, accent);
            img.rect(x + cell_w - d, y + d, 1, cell_h + 1 - 2 * d, accent);
        }
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(map_ids: &str) -> Json {
        json!({
            "assessment": "confusion",
            "map_ids": map_ids,
            "overall_accuracy": 0.857, "kappa": 0.78, "adjusted_rand_index": 0.62,
            "normalized_mutual_information": 0.69,
            "reference_classes": [{"id": 0, "name": "water"}, {"id": 1, "name": "forest"}],
            "map_classes": [{"id": 0, "name": "c0"}, {"id": 1, "name": "c1"}, {"id": 2, "name": "c2"}],
            "confusion_matrix": [[1, 0, 9], [7, 2, 0]],
            "matched": {"pairs": [{"map": 2, "reference": 0}, {"map": 0, "reference": 1}]},
        })
    }

    #[test]
    fn clusters_are_drawn_in_the_order_of_their_classes() {
        let m = matrix(&doc("clusters")).unwrap();
        assert_eq!(m.cols, ["c2", "c0", "c1"]);
        assert_eq!(m.counts, [[9, 1, 0], [0, 7, 2]]);
        assert_eq!(m.diagonal, [(0, 0), (1, 1)]);
        let m = matrix(&doc("classes")).unwrap();
        assert_eq!(m.cols, ["c0", "c1", "c2"]);
        assert_eq!(m.diagonal, [(0, 0), (1, 1)]);
        let img = figure(&doc("clusters")).unwrap();
        // The fullest cell (9, top left of the grid) is the darkest colour in the picture.
        assert!(img.pixels.contains(&FULL));
        assert!(is_assessment(&doc("clusters")) && !is_assessment(&json!({"a": 1})));
    }

    #[test]
    fn a_json_that_is_not_an_assessment_is_refused() {
        let mut d = doc("classes");
        d["confusion_matrix"] = json!([[1, 2]]);
        assert!(figure(&d)
            .unwrap_err()
            .to_string()
            .contains("confusion_matrix"));
    }
}
