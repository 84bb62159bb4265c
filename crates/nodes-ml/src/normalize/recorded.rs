//! The scaling `normalize` records on its output bands (and `flatten` and `kmeans-fit` carry into
//! the matrix and the model), and the statistics read back from such a record, so that data of
//! another scene is rescaled exactly as the training data was.

use flow_core::{BandInfo, NodeError, Scaling, Value};

use super::hyperparams::{NormalizeValidParams, Scope};

/// The record of one group's statistics (`None` for a group without a finite value).
pub(super) fn scaling(p: &NormalizeValidParams, statistics: Option<(f64, f64)>) -> Option<Scaling> {
    let (a, b) = statistics?;
    let (lo, hi) = p.range();
    Some(Scaling {
        method: p.method().name().into(),
        scope: p.scope().name().into(),
        statistics: [a, b],
        range: [lo, hi],
        clip: p.clip(),
    })
}

/// Per band name, the scaling recorded by `value`: a Raster's (or windowed Raster's) bands, a
/// Matrix's or a Model's features.
fn records(value: &Value) -> Result<Vec<(String, Option<Scaling>)>, NodeError> {
    let from_bands = |bands: &[BandInfo]| {
        bands
            .iter()
            .map(|b| (b.name.clone(), b.scaling.clone()))
            .collect()
    };
    let from_features = |features: &[String], scaling: &[Option<Scaling>]| {
        features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), scaling.get(i).cloned().flatten()))
            .collect()
    };
    Ok(match value {
        Value::Raster(r) => from_bands(&r.bands),
        Value::Model(m) => from_features(&m.features, &m.scaling),
        Value::Matrix(m) => from_features(&m.features, &m.scaling),
        Value::Deferred(d) => match d.template.as_ref() {
            Value::Raster(r) => from_bands(&r.bands),
            Value::Matrix(m) => from_features(&m.features, &m.scaling),
            other => return Err(not_a_record(other)),
        },
        other => return Err(not_a_record(other)),
    })
}

fn not_a_record(value: &Value) -> NodeError {
    NodeError::Input {
        port: "statistics".into(),
        message: format!(
            "a {} records no scaling: connect a normalized Raster, or a Model fitted on one",
            value.value_type().name()
        ),
    }
}

/// The statistics, one pair per group of `p`'s scope, that `value` recorded for `bands`.
///
/// # Errors
/// [`NodeError::InvalidData`] (exit 3) when a band has no record, when the record was made with
/// another method, scope, range or clip than `p`'s, or when a global scaling differs between
/// bands; both lists of names are given.
pub(super) fn statistics(
    p: &NormalizeValidParams,
    value: &Value,
    bands: &[BandInfo],
) -> Result<Vec<(f64, f64)>, NodeError> {
    let records = records(value)?;
    let recorded: Vec<&str> = records
        .iter()
        .filter(|(_, s)| s.is_some())
        .map(|(n, _)| n.as_str())
        .collect();
    let names: Vec<&str> = bands.iter().map(|b| b.name.as_str()).collect();
    let mut per_band = Vec::with_capacity(bands.len());
    for band in bands {
        let found = records
            .iter()
            .find(|(n, _)| *n == band.name)
            .and_then(|(_, s)| s.as_ref());
        let Some(s) = found else {
            return Err(NodeError::InvalidData(format!(
                "normalize: `statistics` records no scaling of band `{}`; the input's bands are \
                 [{}], the scaling recorded is of [{}]",
                band.name,
                names.join(", "),
                recorded.join(", ")
            )));
        };
        let (lo, hi) = p.range();
        let mine = (p.method().name(), p.scope().name(), [lo, hi], p.clip());
        let theirs = (s.method.as_str(), s.scope.as_str(), s.range, s.clip);
        if mine != theirs {
            return Err(NodeError::InvalidData(format!(
                "normalize: band `{}` was scaled with method = \"{}\", scope = \"{}\", range = \
                 {:?}, clip = {}, but this node has method = \"{}\", scope = \"{}\", range = \
                 {:?}, clip = {}: give it the same params",
                band.name, theirs.0, theirs.1, theirs.2, theirs.3, mine.0, mine.1, mine.2, mine.3
            )));
        }
        per_band.push((s.statistics[0], s.statistics[1]));
    }
    match p.scope() {
        Scope::Band => Ok(per_band),
        Scope::Global => {
            let first = per_band
                .first()
                .copied()
                .ok_or_else(|| NodeError::InvalidData("normalize: the input has no band".into()))?;
            if per_band.iter().any(|s| *s != first) {
                return Err(NodeError::InvalidData(format!(
                    "normalize: the global scaling recorded for [{}] is not one pair",
                    names.join(", ")
                )));
            }
            Ok(vec![first])
        }
    }
}
