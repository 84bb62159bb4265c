//! `assess`: a class map judged against a reference map on the same grid.
//!
//! Over the pixels valid in both: the confusion matrix (reference classes as rows, map classes
//! as columns), then
//!
//! - `by_id`: overall accuracy, Cohen's kappa and per-class precision / recall / F1 with the
//!   map's ids read as the reference's (a supervised classifier's map);
//! - `matched`: the same after the optimal one-to-one matching of the map's classes to the
//!   reference's ([`hungarian`], the most pixels on the matched pairs), for a clustering whose
//!   ids are arbitrary; map classes left without a partner count as wrong;
//! - the adjusted Rand index and the normalized mutual information, which need no matching.
//!
//! `map_ids` says which of `by_id` and `matched` is the headline (`overall_accuracy`, `kappa`
//! at the top of the JSON, the line after the run). The figures follow scikit-learn's
//! definitions ([`metrics`]).

mod hungarian;
mod metrics;

use flow_core::{
    ClassInfo, DeclaredParams, Grid, Inputs, Labels, Node, NodeError, NodeKind, ParamError,
    ParamSpec, Params, Port, RunContext, Signature, Value, ValueType,
};
use serde_json::{json, Value as Json};

use metrics::{Agreement, Contingency};

/// The `assess` node kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct AssessKind;

flow_core::param_enum! {
    /// What the map's class ids are.
    pub enum MapIds {
        /// Cluster numbers (K-Means): the headline figures follow the optimal matching of
        /// clusters to classes.
        Clusters = "clusters",
        /// The reference's class ids (a supervised classifier): the headline figures compare
        /// ids as they are.
        Classes = "classes",
    }
}

flow_core::params! {
    /// `assess` parameters as written in the recipe.
    pub struct AssessParams {
        /// what the map's ids are: "clusters" (the headline OA and kappa after matching clusters to classes one to one) or "classes" (ids compared as they are); both are always in the JSON
        pub map_ids: MapIds = MapIds::Clusters,
    }
}

impl NodeKind for AssessKind {
    fn name(&self) -> &str {
        "assess"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Judges a class map against a reference map on the same grid, over the pixels valid in \
         both: the confusion matrix (reference classes as rows, map classes as columns), overall \
         accuracy, Cohen's kappa and per-class precision / recall / F1 with ids compared as they \
         are (`by_id`) and after the optimal one-to-one matching of map classes to reference \
         classes (`matched`, Hungarian algorithm), the adjusted Rand index and the normalized \
         mutual information (arithmetic mean), as scikit-learn defines them. Outputs JSON for \
         `write` (.json, or .png for a picture of the confusion matrix); the run's summary \
         prints OA, kappa, ARI and NMI."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![
                Port::required("map", ValueType::Labels, "the class map to judge"),
                Port::required(
                    "reference",
                    ValueType::Labels,
                    "the reference classes on the map's grid (`read` with `like` puts a file there)",
                ),
            ],
            output: ValueType::Json,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        AssessParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let p = AssessParams::parse(params)?;
        Ok(Box::new(AssessNode { map_ids: p.map_ids }))
    }
}

/// A built `assess` node.
#[derive(Debug, Clone, Copy)]
pub struct AssessNode {
    map_ids: MapIds,
}

/// A grid in words: CRS, size, origin and pixel size.
fn describe(g: &Grid) -> String {
    let t = &g.transform;
    let rotated = if t[2] != 0.0 || t[4] != 0.0 {
        format!(", rotation ({}, {})", t[2], t[4])
    } else {
        String::new()
    };
    format!(
        "{}, {} x {} pixels, origin ({}, {}), pixel {} x {}{rotated}",
        g.crs, g.width, g.height, t[0], t[3], t[1], t[5]
    )
}

/// The name of class `id` among `classes`, else `class <id>`.
fn name_of(classes: &[ClassInfo], id: u16) -> String {
    classes
        .iter()
        .find(|c| c.id == id)
        .map_or_else(|| format!("class {id}"), |c| c.name.clone())
}

fn class_list(classes: &[ClassInfo], ids: &[u16]) -> Json {
    Json::Array(
        ids.iter()
            .map(|&id| json!({"id": id, "name": name_of(classes, id)}))
            .collect(),
    )
}

/// A figure, or null when it is undefined.
fn figure(v: Option<f64>) -> Json {
    v.map_or(Json::Null, |x| json!(x))
}

/// The JSON of figures that compare ids; `names` names an id.
fn agreement_json(a: &Agreement, names: &dyn Fn(u16) -> String) -> Json {
    json!({
        "overall_accuracy": a.overall_accuracy,
        "kappa": figure(a.kappa),
        "per_class": a.per_class.iter().map(|c| json!({
            "id": c.id,
            "name": names(c.id),
            "reference_pixels": c.reference_pixels,
            "map_pixels": c.map_pixels,
            "correct": c.correct,
            "precision": figure(c.precision),
            "recall": figure(c.recall),
            "f1": figure(c.f1),
        })).collect::<Vec<_>>(),
    })
}

impl AssessNode {
    /// The assessment of `map` against `reference`.
    ///
    /// # Errors
    /// [`NodeError::InvalidData`] (exit 3) when the grids differ (naming both) or no pixel is
    /// valid in both.
    pub fn assess(&self, map: &Labels, reference: &Labels) -> Result<Json, NodeError> {
        if map.grid != reference.grid || map.data.dim() != reference.data.dim() {
            return Err(NodeError::InvalidData(format!(
                "assess: the map and the reference are on different grids: the map's is {}, \
                 the reference's is {}; read the reference with `read` and its `like` input \
                 connected to the map, which warps it onto the map's grid",
                describe(&map.grid),
                describe(&reference.grid)
            )));
        }
        let pairs = reference
            .data
            .iter()
            .zip(map.data.iter())
            .filter(|&(&r, &m)| r != reference.nodata && m != map.nodata)
            .map(|(&r, &m)| (r, m));
        let table = Contingency::of(pairs);
        let pixels = table.total();
        if pixels == 0 {
            return Err(NodeError::InvalidData(
                "assess: no pixel has a class in both the map and the reference".into(),
            ));
        }
        let by_id = metrics::agreement(&table);
        // Map classes matched one to one with reference classes (the most pixels on the pairs);
        // the others get ids past every reference id, so that they match nothing.
        let matching = hungarian::max_weight_matching(&table.counts);
        let pairs: Vec<(u16, u16)> = matching
            .iter()
            .map(|&(i, j)| (table.cols[j], table.rows[i]))
            .collect();
        let unmatched: Vec<u16> = table
            .cols
            .iter()
            .copied()
            .filter(|c| !pairs.iter().any(|p| p.0 == *c))
            .collect();
        let spare = |c: u16| -> u16 {
            let past = table.rows.iter().max().map_or(0, |&m| u32::from(m) + 1);
            let k = unmatched.iter().position(|&u| u == c).unwrap_or(0) as u32;
            u16::try_from(past + k).unwrap_or(u16::MAX)
        };
        let matched_table = table.relabelled(|c| {
            pairs
                .iter()
                .find(|p| p.0 == c)
                .map_or_else(|| spare(c), |p| p.1)
        });
        let matched = metrics::agreement(&matched_table);
        let ari = metrics::adjusted_rand_index(&table);
        let nmi = metrics::normalized_mutual_information(&table);
        let count = |m: u16, r: u16| -> u64 {
            match (table.cols.binary_search(&m), table.rows.binary_search(&r)) {
                (Ok(j), Ok(i)) => table.counts[i][j],
                _ => 0,
            }
        };
        let reference_name = |id: u16| name_of(&reference.classes, id);
        let mut matched_json = agreement_json(&matched, &|id| {
            if table.rows.contains(&id) {
                reference_name(id)
            } else {
                // A map class left without a partner.
                let c = unmatched
                    .iter()
                    .copied()
                    .find(|&c| spare(c) == id)
                    .unwrap_or(id);
                format!("{} (unmatched)", name_of(&map.classes, c))
            }
        });
        // The per-class rows of unmatched map classes carry no reference class: left out.
        if let Some(rows) = matched_json["per_class"].as_array_mut() {
            rows.retain(|r| {
                r["id"]
                    .as_u64()
                    .is_some_and(|id| table.rows.contains(&(id as u16)))
            });
        }
        matched_json["pairs"] = Json::Array(
            pairs
                .iter()
                .map(|&(m, r)| {
                    json!({
                        "map": m,
                        "map_name": name_of(&map.classes, m),
                        "reference": r,
                        "reference_name": reference_name(r),
                        "pixels": count(m, r),
                    })
                })
                .collect(),
        );
        matched_json["unmatched_map_classes"] = json!(unmatched);
        let headline = match self.map_ids {
            MapIds::Clusters => &matched,
            MapIds::Classes => &by_id,
        };
        Ok(json!({
            "assessment": "confusion",
            "map_ids": self.map_ids.name(),
            "pixels": pixels,
            "overall_accuracy": headline.overall_accuracy,
            "kappa": figure(headline.kappa),
            "adjusted_rand_index": ari,
            "normalized_mutual_information": nmi,
            "reference_classes": class_list(&reference.classes, &table.rows),
            "map_classes": class_list(&map.classes, &table.cols),
            "confusion_matrix": table.counts,
            "by_id": agreement_json(&by_id, &reference_name),
            "matched": matched_json,
        }))
    }
}

impl Node for AssessNode {
    fn run(&self, _ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        let map = inputs.labels("map")?;
        let reference = inputs.labels("reference")?;
        Ok(Value::Json(self.assess(map, reference)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn labels(values: [[u16; 4]; 4], nodata: u16, grid: &Grid, names: &[&str]) -> Labels {
        Labels {
            data: Array2::from_shape_fn((4, 4), |(y, x)| values[y][x]),
            nodata,
            classes: names
                .iter()
                .enumerate()
                .map(|(id, name)| ClassInfo {
                    id: id as u16,
                    name: name.to_string(),
                    color: [0, 0, 0],
                })
                .collect(),
            grid: grid.clone(),
        }
    }

    /// A 4 x 4 reference of three classes (one nodata pixel) and a clustering of it whose
    /// cluster ids are shuffled, with one pixel without a class and three wrong.
    fn case() -> (Labels, Labels) {
        let grid = Grid::north_up("EPSG:32618", 500_000.0, 5_000_000.0, 10.0, 4, 4);
        let reference = labels(
            [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 2, 255]],
            255,
            &grid,
            &["water", "forest", "field"],
        );
        let map = labels(
            [[2, 2, 0, 0], [2, 1, 0, 0], [1, 1, 0, 65535], [1, 1, 2, 2]],
            65535,
            &grid,
            &["cluster 0", "cluster 1"],
        );
        (map, reference)
    }

    #[test]
    fn a_hand_made_case_has_its_exact_figures() {
        let (map, reference) = case();
        let doc = AssessNode {
            map_ids: MapIds::Clusters,
        }
        .assess(&map, &reference)
        .unwrap();
        // 14 pixels valid in both; the clusters match 0 -> 1, 1 -> 2, 2 -> 0 with 12 pixels.
        // scikit-learn 1.2.1 on these pixels: confusion_matrix as below, cohen_kappa_score
        // -0.3893129770992365 (ids as they are) and 0.7846153846153846 (clusters renamed by
        // the matching), adjusted_rand_score 0.6230769230769231,
        // normalized_mutual_info_score 0.6896010763822535.
        assert_eq!(doc["pixels"], 14);
        assert_eq!(
            doc["confusion_matrix"],
            json!([[0, 1, 3], [5, 0, 0], [0, 4, 1]])
        );
        assert_eq!(doc["overall_accuracy"], json!(12.0 / 14.0));
        let close = |v: &Json, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-15;
        assert!(close(&doc["by_id"]["kappa"], -0.389_312_977_099_236_5));
        assert!(close(&doc["kappa"], 0.784_615_384_615_384_6));
        assert!(close(&doc["adjusted_rand_index"], 0.623_076_923_076_923_1));
        assert!(close(
            &doc["normalized_mutual_information"],
            0.689_601_076_382_253_5
        ));
        insta::assert_json_snapshot!(doc);
    }

    #[test]
    fn ids_compared_as_they_are_make_the_headline_of_a_classifier_s_map() {
        let (map, reference) = case();
        let doc = AssessNode {
            map_ids: MapIds::Classes,
        }
        .assess(&reference, &reference)
        .unwrap();
        assert_eq!(doc["overall_accuracy"], 1.0);
        assert_eq!(doc["kappa"], 1.0);
        assert_eq!(doc["adjusted_rand_index"], 1.0);
        let doc = AssessNode {
            map_ids: MapIds::Classes,
        }
        .assess(&map, &reference)
        .unwrap();
        assert_eq!(doc["overall_accuracy"], doc["by_id"]["overall_accuracy"]);
        assert_eq!(doc["overall_accuracy"], json!(1.0 / 14.0));
    }

    #[test]
    fn maps_on_different_grids_or_without_common_pixels_are_refused() {
        let (mut map, reference) = case();
        map.grid.transform[0] += 10.0;
        let e = AssessNode {
            map_ids: MapIds::Clusters,
        }
        .assess(&map, &reference)
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("origin (500010, 5000000)"), "{text}");
        assert!(text.contains("origin (500000, 5000000)"), "{text}");
        assert_eq!(e.exit_code().code(), 3);
        let (mut map, reference) = case();
        map.data.fill(map.nodata);
        let e = AssessNode {
            map_ids: MapIds::Clusters,
        }
        .assess(&map, &reference)
        .unwrap_err();
        assert!(e.to_string().contains("no pixel"), "{e}");
    }
}
