//! The recipe's `[scale]` table: the work units a recipe runs over when it is cut into tasks.
//!
//! ```toml
//! [scale]
//! tiles = ["18TWR", "18TXR"]   # one unit per tile: each sets params.tile
//! dates = ["2021-08-03"]       # optional: units are tiles x dates, each sets params.date
//! gather = ["fit"]             # nodes run once, on the rows of every unit gathered
//! ```
//!
//! The table is checked here (with spans); cutting the plan into units, stages and tasks is the
//! CLI's `scale` module.

use super::builder::Builder;
use crate::problem::Problem;

/// The work units of a recipe: tiles, optionally times dates, and the nodes that gather them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// The values of `params.tile`, one unit (per date) each.
    pub tiles: Vec<String>,
    /// The values of `params.date`; empty when units are tiles only.
    pub dates: Vec<String>,
    /// Nodes that run once over every unit: each input that comes from a per-unit node receives
    /// the rows of all units gathered (`gather`).
    pub gather: Vec<String>,
}

const SCALE_KEYS: &[&str] = &["tiles", "dates", "gather"];

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
        let tiles = match table.get("tiles") {
            Some(v) => self.names(v, "tiles", true),
            None => {
                self.scale_problem(&["scale"], "`tiles` is missing".into());
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
            }),
            _ => None,
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
