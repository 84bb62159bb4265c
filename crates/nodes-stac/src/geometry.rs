//! GeoJSON read with the `geojson` crate and turned into `geo` geometries, and STAC bboxes.
//!
//! Kept here: the checks that `geojson` leaves out (its conversion to `geo` indexes the second
//! number of every position, so a one-number position would panic, and it accepts rings and lines
//! too short to be GeoJSON), and the STAC bbox (4 or 6 numbers; `west > east` crosses the
//! antimeridian), which neither crate models.

use geo::{BoundingRect, Coord, Geometry, MultiPolygon, Rect};
use geojson::{GeoJson, GeometryValue, Position};
use serde::Deserialize;
use serde_json::Value as Json;

fn check_positions(positions: &[Position], min: usize, what: &str) -> Result<(), String> {
    if let Some(p) = positions.iter().find(|p| p.len() < 2) {
        return Err(format!(
            "a position needs at least two numbers, not {}",
            p.len()
        ));
    }
    if positions.len() < min {
        return Err(format!("{what} needs at least {min} positions"));
    }
    Ok(())
}

fn check_polygon(rings: &[Vec<Position>]) -> Result<(), String> {
    if rings.is_empty() {
        return Err("a Polygon needs at least one ring".into());
    }
    rings
        .iter()
        .try_for_each(|r| check_positions(r, 4, "a Polygon ring"))
}

/// Checks a parsed geometry against RFC 7946 §3.1: positions of two or more numbers, lines of two
/// or more positions, polygons with rings of four or more.
fn check(g: &geojson::Geometry) -> Result<(), String> {
    match &g.value {
        GeometryValue::Point { coordinates } => {
            check_positions(std::slice::from_ref(coordinates), 1, "a Point")
        }
        GeometryValue::MultiPoint { coordinates } => {
            check_positions(coordinates, 0, "a MultiPoint")
        }
        GeometryValue::LineString { coordinates } => {
            check_positions(coordinates, 2, "a LineString")
        }
        GeometryValue::MultiLineString { coordinates } => coordinates
            .iter()
            .try_for_each(|l| check_positions(l, 2, "a LineString")),
        GeometryValue::Polygon { coordinates } => check_polygon(coordinates),
        GeometryValue::MultiPolygon { coordinates } => {
            coordinates.iter().try_for_each(|p| check_polygon(p))
        }
        GeometryValue::GeometryCollection { geometries } => geometries.iter().try_for_each(check),
    }
}

/// Parses and checks a GeoJSON geometry object.
fn parse(v: &Json) -> Result<geojson::Geometry, String> {
    let g = geojson::Geometry::deserialize(v).map_err(|e| e.to_string())?;
    check(&g)?;
    Ok(g)
}

/// Converts a GeoJSON geometry object into a `geo` geometry.
///
/// # Errors
/// A message saying what is malformed.
pub fn to_geometry(v: &Json) -> Result<Geometry<f64>, String> {
    Geometry::try_from(parse(v)?).map_err(|e| e.to_string())
}

/// The geometry of a GeoJSON document: a geometry itself, a Feature's geometry, or a
/// FeatureCollection's geometries (as a GeometryCollection when there are several).
///
/// # Errors
/// A message saying what is malformed.
pub fn document_geometry(v: &Json) -> Result<Json, String> {
    if v.get("type").and_then(Json::as_str).is_none() {
        return Err("not a GeoJSON object (no `type`)".into());
    }
    let geometry = match GeoJson::deserialize(v).map_err(|e| e.to_string())? {
        GeoJson::Geometry(_) => {
            parse(v)?;
            return Ok(v.clone());
        }
        GeoJson::Feature(f) => f.geometry.ok_or("the Feature has no geometry")?,
        GeoJson::FeatureCollection(fc) => {
            let mut geometries: Vec<_> =
                fc.features.into_iter().filter_map(|f| f.geometry).collect();
            match geometries.len() {
                0 => return Err("the FeatureCollection has no geometry".into()),
                1 => geometries.remove(0),
                _ => geojson::Geometry::new(GeometryValue::GeometryCollection { geometries }),
            }
        }
    };
    check(&geometry)?;
    serde_json::to_value(&geometry).map_err(|e| e.to_string())
}

/// A STAC bbox (`[w, s, e, n]` or `[w, s, zmin, e, n, zmax]`) as geometries: two boxes when it
/// crosses the antimeridian (`w > e`).
///
/// # Errors
/// A message when it is not 4 or 6 finite numbers with `s <= n`.
pub fn bbox_geometry(b: &[f64]) -> Result<Geometry<f64>, String> {
    let (w, s, e, n) = match b {
        [w, s, e, n] => (*w, *s, *e, *n),
        [w, s, _, e, n, _] => (*w, *s, *e, *n),
        _ => {
            return Err(format!(
                "a bbox has 4 numbers (west, south, east, north), not {}",
                b.len()
            ))
        }
    };
    if ![w, s, e, n].iter().all(|v| v.is_finite()) {
        return Err("a bbox must hold finite numbers".into());
    }
    if s > n {
        return Err(format!("the bbox's south ({s}) is above its north ({n})"));
    }
    let rect = |w: f64, e: f64| Rect::new(Coord { x: w, y: s }, Coord { x: e, y: n }).to_polygon();
    if w <= e {
        Ok(Geometry::Polygon(rect(w, e)))
    } else {
        Ok(Geometry::MultiPolygon(MultiPolygon(vec![
            rect(w, 180.0),
            rect(-180.0, e),
        ])))
    }
}

/// The bounding box `[w, s, e, n]` of a geometry.
pub fn envelope(g: &Geometry<f64>) -> Option<[f64; 4]> {
    g.bounding_rect()
        .map(|r| [r.min().x, r.min().y, r.max().x, r.max().y])
}

/// The footprint of a STAC item: its geometry, or else its bbox.
pub fn item_footprint(item: &Json) -> Option<Geometry<f64>> {
    if let Some(g) = item.get("geometry").filter(|g| g.is_object()) {
        if let Ok(g) = to_geometry(g) {
            return Some(g);
        }
    }
    let b: Vec<f64> = item
        .get("bbox")?
        .as_array()?
        .iter()
        .filter_map(Json::as_f64)
        .collect();
    bbox_geometry(&b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::Intersects;
    use serde_json::json;

    #[test]
    fn converts_and_intersects() {
        let p = to_geometry(
            &json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}),
        )
        .unwrap();
        let q = to_geometry(&json!({"type": "Point", "coordinates": [0.5, 0.5]})).unwrap();
        assert!(p.intersects(&q));
        assert_eq!(envelope(&p), Some([0.0, 0.0, 1.0, 1.0]));
        assert!(to_geometry(&json!({"type": "Polygon", "coordinates": [[[0, 0]]]})).is_err());
        assert!(to_geometry(&json!({"type": "Polygon", "coordinates": []})).is_err());
        assert!(to_geometry(&json!({"type": "Circle", "coordinates": [0, 0]})).is_err());
        assert!(to_geometry(&json!({"type": "Point", "coordinates": ["a", 0]})).is_err());
        // a one-number position would make the conversion to `geo` panic
        let short = json!({"type": "LineString", "coordinates": [[0], [1, 1]]});
        assert!(to_geometry(&short).unwrap_err().contains("two numbers"));
        let in_collection = json!({"type": "GeometryCollection", "geometries": [short]});
        assert!(to_geometry(&in_collection).is_err());
        let am = bbox_geometry(&[170.0, -10.0, -170.0, 10.0]).unwrap();
        assert!(am
            .intersects(&to_geometry(&json!({"type": "Point", "coordinates": [175, 0]})).unwrap()));
        assert!(!am.intersects(&q));
        assert!(bbox_geometry(&[0.0, 1.0, 1.0, 0.0]).is_err());
        assert!(bbox_geometry(&[0.0, 1.0, 1.0]).is_err());
    }

    #[test]
    fn documents() {
        let point = json!({"type": "Point", "coordinates": [1, 2]});
        assert_eq!(document_geometry(&point).unwrap(), point);
        let feature = |g: Json| json!({"type": "Feature", "properties": {}, "geometry": g});
        let g = document_geometry(&feature(point.clone())).unwrap();
        assert_eq!(to_geometry(&g).unwrap(), to_geometry(&point).unwrap());
        assert!(document_geometry(&feature(Json::Null)).is_err());
        let fc = |gs: Vec<Json>| json!({"type": "FeatureCollection", "features": gs.into_iter().map(feature).collect::<Vec<_>>()});
        let two = document_geometry(&fc(vec![point.clone(), point.clone()])).unwrap();
        assert_eq!(two["type"], "GeometryCollection");
        assert_eq!(two["geometries"].as_array().map(Vec::len), Some(2));
        assert!(document_geometry(&fc(vec![])).is_err());
        let bad = json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]});
        assert!(document_geometry(&fc(vec![bad])).is_err());
        assert!(document_geometry(&json!({"coordinates": [1, 2]})).is_err());
    }
}
