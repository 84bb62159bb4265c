//! The recipe's `[scale]` table: the work units a recipe runs over when it is cut into tasks.
//!
//! ```toml
//! [scale]
//! tiles = ["18TWR", "18TXR"]   # one unit per tile: each sets params.tile
//! dates = ["2021-08-03"]       # optional: units are tiles x dates, each sets params.date
//! gather = ["fit"]             # nodes run once, on the rows of every unit gathered
//! ```
//!
//! Instead of `tiles`, `grid = 0.25` cuts the recipe's `aoi` into cells of that many degrees
//! (rows from the north, `r0c0`, `r0c1`, ...), keeping the cells that meet the area; each unit
//! then sets `params.tile` to its cell's name and `params.bbox` to its `[west, south, east,
//! north]`.
//!
//! The table is checked here (with spans); cutting the plan into units, stages and tasks is the
//! CLI's `scale` module.

use super::builder::Builder;
use crate::problem::Problem;

/// The work units of a recipe: tiles, optionally times dates, and the nodes that gather them.
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    /// The values of `params.tile`, one unit (per date) each.
    pub tiles: Vec<String>,
    /// The values of `params.date`; empty when units are tiles only.
    pub dates: Vec<String>,
    /// Nodes that run once over every unit: each input that comes from a per-unit node receives
    /// the rows of all units gathered (`gather`).
    pub gather: Vec<String>,
    /// With `grid`: the `[west, south, east, north]` of each tile (a cell of the grid), in the
    /// order of `tiles`; empty otherwise.
    pub cells: Vec<[f64; 4]>,
}

const SCALE_KEYS: &[&str] = &["tiles", "grid", "dates", "gather"];

/// The most cells a `grid` may cut an area into.
pub(super) const MAX_CELLS: usize = 100_000;

/// The cells of `size` degrees over the bbox of `aoi` that meet it, rows from the north: their
/// names and bounds (the last row and column end at the area's bbox).
///
/// # Errors
/// A cell size that is not a positive number, or more than [`MAX_CELLS`] cells.
pub(super) fn grid_cells(aoi: &toml::Value, size: f64) -> Result<Vec<(String, [f64; 4])>, String> {
    if !(size.is_finite() && size > 0.0) {
        return Err(format!("`grid` is a cell size in degrees > 0, got {size}"));
    }
    let area = flow_core::polygon::Polygons::from_geojson(aoi)?;
    let [w, s, e, n] = area.bbox();
    let cols = ((e - w) / size).ceil().max(1.0);
    let rows = ((n - s) / size).ceil().max(1.0);
    if cols * rows > MAX_CELLS as f64 {
        return Err(format!(
            "a grid of {size} degrees cuts the aoi into {} cells; at most {MAX_CELLS}",
            cols * rows
        ));
    }
    let (cols, rows) = (cols as usize, rows as usize);
    let (rw, cw) = (rows.to_string().len(), cols.to_string().len());
    let mut out = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            let cell = [
                w + c as f64 * size,
                (n - (r + 1) as f64 * size).max(s),
                (w + (c + 1) as f64 * size).min(e),
                n - r as f64 * size,
            ];
            if area.meets_rect(cell) {
                out.push((format!("r{r:0rw$}c{c:0cw$}"), cell));
            }
        }
    }
    Ok(out)
}

impl Builder<'_> {
    /// The recipe's `[scale]`, checked against its params and nodes; `None` when absent or wrong
    /// (each problem is reported).
    pub(super) fn scale(
        &mut self,
        top: &toml::Table,
        params: &toml::Table,
        nodes: &toml::Table,
    ) -> Option<Scale> {
        let table = self.table_field(top, "scale")?;
        let mut ok = true;
        for key in table.keys() {
            if !SCALE_KEYS.contains(&key.as_str()) {
                let hint = flow_core::schema::suggest(key, SCALE_KEYS.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.scale_problem(
                    &["scale", key],
                    format!("unknown key `{key}` (the keys are tiles, dates and gather){hint}"),
                );
                ok = false;
            }
        }
        let mut cells = Vec::new();
        let tiles = match (table.get("tiles"), table.get("grid")) {
            (Some(_), Some(_)) => {
                self.scale_problem(
                    &["scale", "grid"],
                    "give `tiles` or `grid`, not both".into(),
                );
                None
            }
            (Some(v), None) => self.names(v, "tiles", true),
            (None, Some(v)) => self.grid(v, params).map(|c| {
                cells = c.iter().map(|(_, b)| *b).collect();
                c.into_iter().map(|(name, _)| name).collect()
            }),
            (None, None) => {
                self.scale_problem(&["scale"], "`tiles` (or `grid`) is missing".into());
                None
            }
        };
        let dates = match table.get("dates") {
            Some(v) => self.names(v, "dates", false),
            None => Some(Vec::new()),
        };
        let gather = match table.get("gather") {
            Some(v) => self.names(v, "gather", false),
            None => Some(Vec::new()),
        };
        for (param, needed) in [
            ("tile", true),
            ("date", dates.as_ref().is_some_and(|d| !d.is_empty())),
        ] {
            if needed && !matches!(params.get(param), Some(toml::Value::String(_))) {
                let key = if param == "tile" { "tiles" } else { "dates" };
                self.scale_problem(
                    &["scale", key],
                    format!(
                        "each unit sets params.{param}: declare it in [params] as a string (the \
                         value a run of one unit uses)"
                    ),
                );
                ok = false;
            }
        }
        if let Some(gather) = &gather {
            for name in gather {
                if !nodes.contains_key(name) {
                    self.scale_problem(
                        &["scale", "gather"],
                        format!("`{name}` is not a node of this recipe"),
                    );
                    ok = false;
                }
            }
        }
        match (tiles, dates, gather) {
            (Some(tiles), Some(dates), Some(gather)) if ok => Some(Scale {
                tiles,
                dates,
                gather,
                cells,
            }),
            _ => None,
        }
    }

    /// The cells of `scale.grid` over the recipe's `aoi` (which a grid needs, with a `bbox`
    /// param for each cell's bounds).
    fn grid(
        &mut self,
        value: &toml::Value,
        params: &toml::Table,
    ) -> Option<Vec<(String, [f64; 4])>> {
        let path = ["scale", "grid"];
        let size = value
            .as_float()
            .or_else(|| value.as_integer().map(|i| i as f64));
        let Some(size) = size else {
            self.scale_problem(&path, "`grid` is a cell size in degrees (a number)".into());
            return None;
        };
        let Some(aoi) = self.aoi.clone() else {
            self.scale_problem(
                &path,
                "a `grid` cuts the recipe's `aoi` into cells: give the recipe an `aoi`".into(),
            );
            return None;
        };
        if !matches!(params.get("bbox"), Some(toml::Value::Array(_))) {
            self.scale_problem(
                &path,
                "each cell sets params.bbox: declare it in [params] as [west, south, east, north] \
                 (the bounds a run of one unit uses)"
                    .into(),
            );
            return None;
        }
        match grid_cells(&aoi, size) {
            Ok(cells) => Some(cells),
            Err(reason) => {
                self.scale_problem(&path, reason);
                None
            }
        }
    }

    /// `scale.KEY` as a list of distinct strings (non-empty when `required`); tiles and dates
    /// name units, so they have no spaces or slashes.
    fn names(&mut self, value: &toml::Value, key: &str, required: bool) -> Option<Vec<String>> {
        let path = ["scale", key];
        let Some(list) = value.as_array() else {
            self.scale_problem(&path, format!("`{key}` must be an array of strings"));
            return None;
        };
        let mut out: Vec<String> = Vec::new();
        for v in list {
            let Some(s) = v.as_str() else {
                self.scale_problem(&path, format!("`{key}` must be an array of strings"));
                return None;
            };
            let bad = s.is_empty()
                || s.chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c.is_control())
                || (key == "tiles" && !super::is_plain_name(s));
            if bad {
                self.scale_problem(&path, format!("`{s}` cannot name a unit in `{key}`"));
                return None;
            }
            if out.iter().any(|o| o == s) {
                self.scale_problem(&path, format!("`{s}` appears twice in `{key}`"));
                return None;
            }
            out.push(s.to_string());
        }
        if required && out.is_empty() {
            self.scale_problem(&path, format!("`{key}` needs at least one value"));
            return None;
        }
        Some(out)
    }

    fn scale_problem(&mut self, path: &[&str], reason: String) {
        let span = self.value_span(path);
        self.errors.report(span, Problem::BadScale { reason });
    }
}
