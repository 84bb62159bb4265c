//! The recipe's area of interest: `aoi` at the top of a recipe, stated once and given to every node
//! whose kind takes an `aoi` param (stac-search searches it, stack takes its bounds and clips to
//! it) unless the node sets its own.
//!
//! It may be written as a bbox `[min_lon, min_lat, max_lon, max_lat]`, an inline GeoJSON geometry,
//! Feature or FeatureCollection, or the path of a GeoJSON file relative to the recipe. Whatever
//! the form, nodes receive one GeoJSON geometry in longitude / latitude (a Polygon, MultiPolygon,
//! or a GeometryCollection of them for a FeatureCollection), so the cache key holds the geometry
//! itself and a changed file is a changed key.

use std::path::Path;

use flow_core::polygon::Polygons;

use super::builder::Builder;
use crate::problem::Problem;

impl Builder<'_> {
    /// The recipe's `aoi` as one GeoJSON geometry, checked; `None` when absent or wrong (the
    /// problem is reported).
    pub(super) fn aoi(&mut self, top: &toml::Table) -> Option<toml::Value> {
        let value = top.get("aoi")?;
        let span = self.value_span(&["aoi"]);
        let geometry = match value {
            toml::Value::Array(b) => bbox_polygon(b),
            toml::Value::Table(_) => as_geometry(value.clone()),
            toml::Value::String(path) => self.read_geojson(path),
            other => Err(format!(
                "`aoi` is a bbox, a GeoJSON geometry or a GeoJSON file, not {}",
                flow_core::schema::toml_type_name(other)
            )),
        }
        .and_then(|g| check(&g).map(|()| g));
        match geometry {
            Ok(g) => Some(g),
            Err(reason) => {
                self.errors.report(span, Problem::BadAoi { reason });
                None
            }
        }
    }

    /// The GeoJSON file `path` (relative to the recipe) as a geometry.
    fn read_geojson(&self, path: &str) -> Result<toml::Value, String> {
        if !matches!(
            Path::new(path).extension().and_then(|e| e.to_str()),
            Some("geojson" | "json")
        ) {
            return Err(format!(
                "`{path}` is not a GeoJSON file (.geojson or .json)"
            ));
        }
        let file = self.file_dir().join(path);
        let text =
            (self.read)(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
        let value = json_to_toml(json).map_err(|e| format!("{}: {e}", file.display()))?;
        as_geometry(value).map_err(|e| format!("{}: {e}", file.display()))
    }
}

/// Gives a node of a kind that takes `aoi` the recipe's, unless it sets its own.
pub(super) fn give_aoi(
    kind: &dyn flow_core::NodeKind,
    params: &mut flow_core::Params,
    aoi: Option<&toml::Value>,
) {
    if let Some(aoi) = aoi {
        if !params.contains_key("aoi") && kind.params().iter().any(|p| p.name == "aoi") {
            params.insert("aoi".into(), aoi.clone());
        }
    }
}

/// `[min_lon, min_lat, max_lon, max_lat]` as a Polygon.
fn bbox_polygon(b: &[toml::Value]) -> Result<toml::Value, String> {
    let n: Vec<f64> = b
        .iter()
        .filter_map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .collect();
    let [w, s, e, north] = n[..] else {
        return Err("a bbox `aoi` is [min_lon, min_lat, max_lon, max_lat]".into());
    };
    if !(w < e && s < north) {
        return Err(format!(
            "the bbox {n:?} is empty: it is [min_lon, min_lat, max_lon, max_lat]"
        ));
    }
    let ring = [[w, s], [e, s], [e, north], [w, north], [w, s]]
        .iter()
        .map(|p| toml::Value::Array(vec![p[0].into(), p[1].into()]))
        .collect();
    let mut t = toml::Table::new();
    t.insert("type".into(), "Polygon".into());
    t.insert(
        "coordinates".into(),
        toml::Value::Array(vec![toml::Value::Array(ring)]),
    );
    Ok(toml::Value::Table(t))
}

/// A GeoJSON object as a geometry: a Feature's geometry, a FeatureCollection's as a
/// GeometryCollection, a geometry as it is.
fn as_geometry(value: toml::Value) -> Result<toml::Value, String> {
    let toml::Value::Table(mut t) = value else {
        return Err("a GeoJSON `aoi` is an object with a `type`".into());
    };
    match t.get("type").and_then(toml::Value::as_str) {
        Some("Feature") => match t.remove("geometry") {
            Some(g @ toml::Value::Table(_)) => Ok(g),
            _ => Err("the Feature has no geometry".into()),
        },
        Some("FeatureCollection") => {
            let features = match t.remove("features") {
                Some(toml::Value::Array(f)) => f,
                _ => return Err("the FeatureCollection has no `features` array".into()),
            };
            let geometries = features
                .into_iter()
                .map(as_geometry)
                .collect::<Result<Vec<_>, _>>()?;
            let mut c = toml::Table::new();
            c.insert("type".into(), "GeometryCollection".into());
            c.insert("geometries".into(), toml::Value::Array(geometries));
            Ok(toml::Value::Table(c))
        }
        _ => Ok(toml::Value::Table(t)),
    }
}

/// The geometry is polygons with longitudes and latitudes in range.
fn check(geometry: &toml::Value) -> Result<(), String> {
    let polygons = Polygons::from_geojson(geometry)?;
    let [w, s, e, n] = polygons.bbox();
    if w < -180.0 || e > 180.0 || s < -90.0 || n > 90.0 {
        return Err(format!(
            "its bbox [{w}, {s}, {e}, {n}] is not in longitude / latitude degrees (GeoJSON is \
             WGS 84 lon/lat)"
        ));
    }
    Ok(())
}

/// JSON to TOML: numbers stay integers or floats; `null` has no TOML form.
fn json_to_toml(json: serde_json::Value) -> Result<toml::Value, String> {
    Ok(match json {
        serde_json::Value::Null => return Err("null has no place in an area of interest".into()),
        serde_json::Value::Bool(b) => toml::Value::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => toml::Value::String(s),
        serde_json::Value::Array(a) => toml::Value::Array(
            a.into_iter()
                .filter(|v| !v.is_null())
                .map(json_to_toml)
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => toml::Value::Table(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| Ok((k, json_to_toml(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_becomes_one_checked_geometry() {
        let bbox = bbox_polygon(&[(-74).into(), 45.0.into(), (-73.5).into(), 45.5.into()]).unwrap();
        assert_eq!(
            Polygons::from_geojson(&bbox).unwrap().bbox(),
            [-74.0, 45.0, -73.5, 45.5]
        );
        assert!(bbox_polygon(&[1.into(), 2.into()]).is_err());
        assert!(bbox_polygon(&[2.into(), 0.into(), 1.into(), 1.into()]).is_err());

        let json: serde_json::Value = serde_json::json!({
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": null, "geometry": {
                "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]
        });
        let g = as_geometry(json_to_toml(json).unwrap()).unwrap();
        assert_eq!(g["type"].as_str(), Some("GeometryCollection"));
        check(&g).unwrap();

        let projected = serde_json::json!({"type": "Polygon",
            "coordinates": [[[600000, 5000000], [600100, 5000000], [600100, 5000100], [600000, 5000000]]]});
        let err = check(&json_to_toml(projected).unwrap()).unwrap_err();
        assert!(err.contains("longitude / latitude"), "{err}");
    }
}
