//! GeoJSON (as `serde_json`) to `geo` geometries, and bounding boxes.

use geo::{
    BoundingRect, Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint,
    MultiPolygon, Point, Polygon, Rect,
};
use serde_json::Value;

fn coord(v: &Value) -> Result<Coord<f64>, String> {
    let a = v
        .as_array()
        .ok_or("a position must be an array of numbers")?;
    if a.len() < 2 {
        return Err("a position needs at least two numbers".into());
    }
    let x = a[0]
        .as_f64()
        .ok_or("a position must be an array of numbers")?;
    let y = a[1]
        .as_f64()
        .ok_or("a position must be an array of numbers")?;
    Ok(Coord { x, y })
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array()
        .ok_or_else(|| format!("`coordinates` of a {what} must be an array"))
}

fn line(v: &Value) -> Result<LineString<f64>, String> {
    Ok(LineString(
        array(v, "line")?
            .iter()
            .map(coord)
            .collect::<Result<_, _>>()?,
    ))
}

fn polygon(v: &Value) -> Result<Polygon<f64>, String> {
    let rings = array(v, "Polygon")?;
    let mut rings = rings.iter().map(line);
    let exterior = rings.next().ok_or("a Polygon needs at least one ring")??;
    if exterior.0.len() < 4 {
        return Err("a Polygon ring needs at least four positions".into());
    }
    Ok(Polygon::new(exterior, rings.collect::<Result<_, _>>()?))
}

/// Converts a GeoJSON geometry object into a `geo` geometry.
///
/// # Errors
/// A message saying what is malformed.
pub fn to_geometry(v: &Value) -> Result<Geometry<f64>, String> {
    let ty = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a GeoJSON geometry needs a string `type`")?;
    if ty == "GeometryCollection" {
        let parts = v
            .get("geometries")
            .and_then(Value::as_array)
            .ok_or("a GeometryCollection needs a `geometries` array")?;
        return Ok(Geometry::GeometryCollection(GeometryCollection(
            parts.iter().map(to_geometry).collect::<Result<_, _>>()?,
        )));
    }
    let c = v
        .get("coordinates")
        .ok_or_else(|| format!("a {ty} needs `coordinates`"))?;
    Ok(match ty {
        "Point" => Geometry::Point(Point(coord(c)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            array(c, ty)?
                .iter()
                .map(|p| coord(p).map(Point))
                .collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(line(c)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            array(c, ty)?.iter().map(line).collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(c)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            array(c, ty)?
                .iter()
                .map(polygon)
                .collect::<Result<_, _>>()?,
        )),
        other => return Err(format!("`{other}` is not a GeoJSON geometry type")),
    })
}

/// The geometry of a GeoJSON document: a geometry itself, a Feature's geometry, or a
/// FeatureCollection's geometries as a GeometryCollection.
///
/// # Errors
/// A message saying what is malformed.
pub fn document_geometry(v: &Value) -> Result<Value, String> {
    match v.get("type").and_then(Value::as_str) {
        Some("Feature") => match v.get("geometry") {
            Some(g) if g.is_object() => Ok(g.clone()),
            _ => Err("the Feature has no geometry".into()),
        },
        Some("FeatureCollection") => {
            let geoms: Vec<Value> = v
                .get("features")
                .and_then(Value::as_array)
                .ok_or("the FeatureCollection has no `features` array")?
                .iter()
                .filter_map(|f| f.get("geometry").filter(|g| g.is_object()).cloned())
                .collect();
            match geoms.len() {
                0 => Err("the FeatureCollection has no geometry".into()),
                1 => Ok(geoms.into_iter().next().unwrap_or_default()),
                _ => Ok(serde_json::json!({"type": "GeometryCollection", "geometries": geoms})),
            }
        }
        Some(_) => {
            to_geometry(v)?;
            Ok(v.clone())
        }
        None => Err("not a GeoJSON object (no `type`)".into()),
    }
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
pub fn item_footprint(item: &Value) -> Option<Geometry<f64>> {
    if let Some(g) = item.get("geometry").filter(|g| g.is_object()) {
        if let Ok(g) = to_geometry(g) {
            return Some(g);
        }
    }
    let b: Vec<f64> = item
        .get("bbox")?
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
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
        assert!(to_geometry(&json!({"type": "Circle", "coordinates": [0, 0]})).is_err());
        assert!(to_geometry(&json!({"type": "Point", "coordinates": ["a", 0]})).is_err());
        let am = bbox_geometry(&[170.0, -10.0, -170.0, 10.0]).unwrap();
        assert!(am
            .intersects(&to_geometry(&json!({"type": "Point", "coordinates": [175, 0]})).unwrap()));
        assert!(!am.intersects(&q));
        assert!(bbox_geometry(&[0.0, 1.0, 1.0, 0.0]).is_err());
    }
}
