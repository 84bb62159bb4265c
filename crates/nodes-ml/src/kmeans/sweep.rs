//! `k = "auto"`: one fit per k of the range, each scored by the three [`criteria`], the best by
//! the chosen criterion kept, and the whole sweep recorded in the model's `info.sweep`.
//!
//! Every k is fitted exactly as `k = <that k>` would be ([`KMeansFitNode::fit_k`]: the same
//! rows, the same init stream from the seed), so the model kept is the one `--set k=N` gives for
//! the chosen N, and no k's result depends on which thread ran it or on the other k. The rows,
//! their statistics and the initialization sample are prepared once ([`FitRows`]) and shared; the
//! k run in parallel (rayon), each fit itself parallel over fixed chunks of rows.
//!
//! `info.sweep` holds `criterion`, `best` (`"highest"` or `"lowest"`), `k_range` (as asked),
//! `k` (the chosen one), `rows` (the rows the fits and Calinski-Harabasz / Davies-Bouldin used),
//! `silhouette_rows` (the rows of the silhouette's sample), and `results`: per k, in order, its
//! `k`, `inertia`, `iterations`, `converged`, `silhouette`, `calinski_harabasz`,
//! `davies_bouldin` (null where undefined) and `chosen`.

use flow_core::Model;
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde_json::json;

use super::assign::{self, Rows};
use super::criteria::{self, Scores};
use super::{Criterion, FitRows, KMeansFitNode};
use crate::error::MlError;

/// One k of a sweep: its fit's figures and its criteria.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Trial {
    /// Clusters.
    pub(crate) k: usize,
    /// The fit's inertia.
    pub(crate) inertia: f64,
    /// Lloyd iterations of its kept run.
    pub(crate) iterations: usize,
    /// Whether that run converged.
    pub(crate) converged: bool,
    /// Its criteria.
    pub(crate) scores: Scores,
}

/// The index of the best trial by `criterion` (the smallest k among equals); None when no trial
/// has a finite value of it.
pub(crate) fn best(trials: &[Trial], criterion: Criterion) -> Option<usize> {
    let higher = criterion.higher_is_better();
    let mut best: Option<(usize, f64)> = None;
    for (i, t) in trials.iter().enumerate() {
        let Some(v) = t.scores.get(criterion).filter(|v| v.is_finite()) else {
            continue;
        };
        let better = match best {
            None => true,
            Some((_, b)) if higher => v > b,
            Some((_, b)) => v < b,
        };
        if better {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Fits every k of `from..=top` (`asked` is the range's end as written, for the record), scores
/// them, and returns the best model by `criterion` with the sweep in its `info.sweep`, and the
/// warnings of that fit.
///
/// # Errors
/// [`MlError::Cancelled`], or a fit's own error.
pub(super) fn sweep(
    node: &KMeansFitNode,
    data: &FitRows<'_>,
    (from, top, asked): (usize, usize, usize),
    criterion: Criterion,
    features: &[String],
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(Model, Vec<String>), MlError> {
    let ks: Vec<usize> = (from..=top).collect();
    let fits = ks
        .par_iter()
        .map(|&k| node.fit_k(data, k, features, cancelled))
        .collect::<Result<Vec<_>, MlError>>()?;
    if cancelled() {
        return Err(MlError::Cancelled);
    }
    let flat = |m: &Model| m.centroids.iter().copied().collect::<Vec<f32>>();
    let (scores, silhouette_rows) = if data.constant {
        (vec![Scores::default(); fits.len()], 0)
    } else {
        // The silhouette's rows: the same sample for every k.
        let chosen = criteria::silhouette_rows(node.params.seed(), data.rows.n);
        let gathered: Option<Array2<f32>> = (chosen.len() < data.rows.n).then(|| {
            let f = data.rows.f;
            Array2::from_shape_vec(
                (chosen.len(), f),
                chosen
                    .iter()
                    .flat_map(|&i| data.rows.row(i).iter().copied())
                    .collect(),
            )
            .expect("rows of f values")
        });
        let sample = gathered
            .as_ref()
            .map_or_else(|| data.rows.clone(), |g| Rows::new(g.view()));
        let labels: Vec<Vec<u32>> = fits
            .iter()
            .map(|(m, _)| assign::labels(&sample, &flat(m)))
            .collect();
        let labelings: Vec<(&[u32], usize)> = labels
            .iter()
            .zip(&fits)
            .map(|(l, (m, _))| (l.as_slice(), m.centroids.len_of(Axis(0))))
            .collect();
        let silhouettes = criteria::silhouettes(&sample, &labelings);
        let dispersions: Vec<(Option<f64>, Option<f64>)> = fits
            .par_iter()
            .map(|(m, _)| criteria::dispersion(&data.rows, &flat(m), &data.means))
            .collect();
        let scores = silhouettes
            .into_iter()
            .zip(dispersions)
            .map(|(silhouette, (calinski_harabasz, davies_bouldin))| Scores {
                silhouette,
                calinski_harabasz,
                davies_bouldin,
            })
            .collect();
        (scores, sample.n)
    };
    let trials: Vec<Trial> = fits
        .iter()
        .zip(scores)
        .map(|((m, _), scores)| Trial {
            k: m.centroids.nrows(),
            inertia: m.inertia,
            iterations: m.iterations,
            converged: m.info["converged"].as_bool().unwrap_or(false),
            scores,
        })
        .collect();
    for t in &trials {
        tracing::debug!(
            k = t.k,
            inertia = t.inertia,
            silhouette = ?t.scores.silhouette,
            calinski_harabasz = ?t.scores.calinski_harabasz,
            davies_bouldin = ?t.scores.davies_bouldin,
            "kmeans sweep"
        );
    }
    let mut extra = Vec::new();
    let index = best(&trials, criterion).unwrap_or_else(|| {
        extra.push(format!(
            "kmeans-fit: no k of {from}..{top} could be scored by {criterion} (fewer than two \
             distinct clusters); k = {from} kept"
        ));
        0
    });
    let results: Vec<serde_json::Value> = trials
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({
                "k": t.k,
                "inertia": t.inertia,
                "iterations": t.iterations,
                "converged": t.converged,
                "silhouette": t.scores.silhouette,
                "calinski_harabasz": t.scores.calinski_harabasz,
                "davies_bouldin": t.scores.davies_bouldin,
                "chosen": i == index,
            })
        })
        .collect();
    let Some((mut model, mut warnings)) = fits.into_iter().nth(index) else {
        return Err(MlError::Shape("kmeans-fit: no k was fitted".into()));
    };
    warnings.extend(extra);
    model.info["sweep"] = json!({
        "criterion": criterion.name(),
        "best": if criterion.higher_is_better() { "highest" } else { "lowest" },
        "k_range": [from, asked],
        "k": trials[index].k,
        "rows": data.rows.n,
        "silhouette_rows": silhouette_rows,
        "results": results,
    });
    Ok((model, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmeans::{KChoice, KMeansParams};
    use flow_core::{DeclaredParams, Grid, Matrix};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256Plus;

    /// `rows` rows of 3 features around 4 well-separated centres (uniform noise of +-1), on a
    /// 100-pixel-wide grid.
    fn four_blobs(rows: usize) -> Matrix {
        let centres = [
            [0.0f32, 0.0, 0.0],
            [10.0, 0.0, 0.0],
            [0.0, 10.0, 0.0],
            [0.0, 0.0, 10.0],
        ];
        let mut rng = Xoshiro256Plus::seed_from_u64(42);
        let data = Array2::from_shape_fn((rows, 3), |(i, j)| {
            centres[i % 4][j] + rng.gen_range(-1.0f32..1.0)
        });
        let height = rows.div_ceil(100);
        let valid = Array2::from_shape_fn((height, 100), |(y, x)| y * 100 + x < rows);
        Matrix {
            scaling: Default::default(),
            data,
            features: vec!["a".into(), "b".into(), "c".into()],
            valid,
            grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 100, height),
        }
    }

    fn node(text: &str) -> KMeansFitNode {
        let p = KMeansParams::parse(&toml::from_str(text).unwrap()).unwrap();
        KMeansFitNode::new(p.validate().unwrap())
    }

    fn fit_on(threads: usize, node: &KMeansFitNode, m: &Matrix) -> Model {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| node.fit(m, &|_| {}, &|| false).unwrap())
    }

    #[test]
    fn auto_finds_four_blobs_and_keeps_the_fixed_k_model() {
        // More rows than the silhouette's sample, so that it is drawn.
        let m = four_blobs(6000);
        let auto = node("k = \"auto\"\nk_range = [2, 7]\nn_init = 3\nseed = 5");
        assert!(matches!(auto.params.k(), KChoice::Auto { .. }));
        let one = fit_on(1, &auto, &m);
        let two = fit_on(2, &auto, &m);
        assert_eq!(one, two, "the same model and sweep on 1 and 2 threads");
        let sweep = &one.info["sweep"];
        assert_eq!(sweep["k"], 4, "{sweep:#}");
        assert_eq!(one.centroids.nrows(), 4);
        assert_eq!(sweep["criterion"], "silhouette");
        assert_eq!(sweep["k_range"], json!([2, 7]));
        assert_eq!(sweep["rows"], 6000);
        assert_eq!(sweep["silhouette_rows"], criteria::SILHOUETTE_SAMPLE);
        let results = sweep["results"].as_array().unwrap();
        let ks: Vec<u64> = results.iter().map(|r| r["k"].as_u64().unwrap()).collect();
        assert_eq!(ks, [2, 3, 4, 5, 6, 7]);
        let chosen: Vec<bool> = results.iter().map(|r| r["chosen"] == true).collect();
        assert_eq!(chosen, [false, false, true, false, false, false]);
        // Inertia falls with k; every criterion is recorded, and on blobs this clear each one
        // picks 4.
        let inertia: Vec<f64> = results
            .iter()
            .map(|r| r["inertia"].as_f64().unwrap())
            .collect();
        assert!(inertia.windows(2).all(|w| w[1] < w[0]), "{inertia:?}");
        for (name, higher) in [
            ("silhouette", true),
            ("calinski_harabasz", true),
            ("davies_bouldin", false),
        ] {
            let v: Vec<f64> = results.iter().map(|r| r[name].as_f64().unwrap()).collect();
            let best = if higher {
                v.iter().cloned().fold(f64::MIN, f64::max)
            } else {
                v.iter().cloned().fold(f64::MAX, f64::min)
            };
            assert_eq!(v[2], best, "{name}: {v:?}");
        }
        // The model kept is the fixed-k fit with the same seed, sweep aside.
        let fixed = fit_on(2, &node("k = 4\nn_init = 3\nseed = 5"), &m);
        let mut kept = one.clone();
        kept.info.as_object_mut().unwrap().remove("sweep");
        assert_eq!(kept, fixed);
        // Another criterion is recorded as asked.
        let db = fit_on(2, &node("k = \"auto\"\nk_range = [2, 7]\nn_init = 3\nseed = 5\ncriterion = \"davies-bouldin\""), &m);
        assert_eq!(db.info["sweep"]["criterion"], "davies-bouldin");
        assert_eq!(db.info["sweep"]["best"], "lowest");
        assert_eq!(db.centroids, one.centroids);
    }

    #[test]
    fn the_estimate_holds_one_sample_for_the_whole_sweep() {
        use flow_core::estimate::{Known, Pixels, Shape};
        use flow_core::{Node, ValueType};
        let grid = Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 1000, 1000);
        let known = Known {
            shapes: vec![(
                "input".into(),
                Shape::Pixels(Pixels::whole(ValueType::Matrix, 1, 12, grid)),
            )],
            threads: 2,
            ..Known::default()
        };
        let working = |text: &str| node(text).estimate(&known).unwrap().working_bytes;
        let fixed = working("k = 5\nsample = 100000");
        assert_eq!(fixed, 100_000 * (12 * 4 + 32));
        // Nine k share the sample; the silhouette adds its 5000 rows, their labels for each k
        // and a row of distances per thread.
        let s = criteria::SILHOUETTE_SAMPLE as u64;
        assert_eq!(
            working("k = \"auto\"\nsample = 100000"),
            fixed + s * (12 * 4 + 4 * 9) + s * 8 * 2
        );
    }

    #[test]
    fn auto_on_few_rows_shortens_the_range_or_refuses() {
        let m = four_blobs(5);
        let warnings = std::sync::Mutex::new(Vec::new());
        let model = node("k = \"auto\"")
            .fit(&m, &|w| warnings.lock().unwrap().push(w), &|| false)
            .unwrap();
        let results = model.info["sweep"]["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), 3, "k = 2..4 on 5 rows");
        assert_eq!(model.info["sweep"]["k_range"], json!([2, 10]));
        let warnings = warnings.into_inner().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("k = 2..4 tried")),
            "{warnings:?}"
        );
        let two = four_blobs(2);
        let e = node("k = \"auto\"")
            .fit(&two, &|_| {}, &|| false)
            .unwrap_err();
        assert!(
            matches!(e, MlError::TooFewRows { k: 2, rows: 2, .. }),
            "{e}"
        );
        // Identical rows: nothing to score; the smallest k is kept, with a warning.
        let mut same = four_blobs(20);
        same.data.fill(1.0);
        let warnings = std::sync::Mutex::new(Vec::new());
        let model = node("k = \"auto\"\nk_range = [2, 3]")
            .fit(&same, &|w| warnings.lock().unwrap().push(w), &|| false)
            .unwrap();
        assert_eq!(model.info["sweep"]["k"], 2);
        assert!(model.info["sweep"]["results"][0]["silhouette"].is_null());
        let warnings = warnings.into_inner().unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("could be scored")),
            "{warnings:?}"
        );
    }

    fn trial(k: usize, s: Option<f64>, ch: Option<f64>, db: Option<f64>) -> Trial {
        Trial {
            k,
            inertia: 0.0,
            iterations: 1,
            converged: true,
            scores: Scores {
                silhouette: s,
                calinski_harabasz: ch,
                davies_bouldin: db,
            },
        }
    }

    #[test]
    fn the_best_k_by_each_criterion_ties_to_the_smallest() {
        let trials = [
            trial(2, Some(0.5), Some(100.0), Some(0.9)),
            trial(3, Some(0.7), Some(300.0), Some(0.4)),
            trial(4, Some(0.7), Some(f64::NAN), Some(0.6)),
            trial(5, None, Some(200.0), Some(0.4)),
        ];
        assert_eq!(best(&trials, Criterion::Silhouette), Some(1));
        assert_eq!(best(&trials, Criterion::CalinskiHarabasz), Some(1));
        assert_eq!(best(&trials, Criterion::DaviesBouldin), Some(1));
        assert_eq!(best(&trials[3..], Criterion::Silhouette), None);
    }
}
