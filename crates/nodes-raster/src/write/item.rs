//! The STAC Item that `write` can put beside a GeoTIFF / COG: where the file lies on Earth, on
//! which grid, when its sources were acquired, and what its pixels mean.
//!
//! Everything about the file (grid, CRS, data type, nodata, size, checksum) is read back from the
//! file that was written, so the Item describes what is on disk rather than what was intended.
//! The Item is deterministic: no creation time, so that two runs give the same bytes.

use std::path::Path;

use flow_core::{BandInfo, ClassInfo, Items};
use gdal::raster::GdalDataType;
use gdal::spatial_ref::{CoordTransform, SpatialRef};
use gdal::Dataset;
use serde_json::{json, Value as Json};

use crate::error::{RasterError, Result};

/// The STAC extensions an Item may use, by what it describes.
const PROJECTION: &str = "https://stac-extensions.github.io/projection/v1.1.0/schema.json";
const RASTER: &str = "https://stac-extensions.github.io/raster/v1.1.0/schema.json";
const FILE: &str = "https://stac-extensions.github.io/file/v2.1.0/schema.json";
const CLASSIFICATION: &str = "https://stac-extensions.github.io/classification/v1.1.0/schema.json";
const EO: &str = "https://stac-extensions.github.io/eo/v1.1.0/schema.json";

/// What the Item says about the written file beyond what the file itself holds.
pub(crate) struct Describe<'a> {
    /// The Item id (the file's stem).
    pub id: &'a str,
    /// The written GeoTIFF / COG.
    pub file: &'a Path,
    /// Its href relative to the Item file.
    pub href: &'a str,
    /// Whether it is a Cloud-Optimized GeoTIFF.
    pub cog: bool,
    /// Its classes, for a class map.
    pub classes: Option<&'a [ClassInfo]>,
    /// Its bands, for a raster (one per file band, in order).
    pub bands: Option<&'a [BandInfo]>,
    /// The STAC items the file was derived from (datetime and `derived_from` links).
    pub sources: Option<&'a Items>,
    /// Otherwise, the acquisition times of the raster written.
    pub times: &'a [String],
}

/// Builds the Item.
///
/// # Errors
/// [`RasterError::InvalidData`] when no datetime can be given (no source items and no times) or
/// the file has no EPSG code; [`RasterError::Gdal`] when the file cannot be read back.
pub(crate) fn describe(d: &Describe<'_>) -> Result<Json> {
    let what = format!("describing {}", d.file.display());
    let gdal_err = |e: gdal::errors::GdalError| RasterError::gdal(&what, e);
    let ds = Dataset::open(d.file).map_err(gdal_err)?;
    let gt = ds.geo_transform().map_err(gdal_err)?;
    let (w, h) = ds.raster_size();
    let srs = ds.spatial_ref().map_err(gdal_err)?;
    let epsg = srs
        .auth_code()
        .ok()
        .filter(|_| srs.auth_name().is_some_and(|a| a == "EPSG"))
        .ok_or_else(|| {
            RasterError::InvalidData(format!(
                "{}: a STAC Item needs an EPSG code and the file's CRS has none",
                d.file.display()
            ))
        })?;
    let (geometry, bbox) = footprint(&gt, (w, h), epsg as u32)?;
    let mut properties = datetime(d)?;
    let props = properties.as_object_mut().expect("an object");
    props.insert("proj:epsg".into(), json!(epsg));
    props.insert("proj:code".into(), json!(format!("EPSG:{epsg}")));
    props.insert("proj:shape".into(), json!([h, w]));
    // STAC's (rasterio's) affine order: a, b, c, d, e, f.
    props.insert(
        "proj:transform".into(),
        json!([gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]),
    );
    let mut extensions = vec![PROJECTION, RASTER, FILE];

    let mut raster_bands = Vec::new();
    for i in 1..=ds.raster_count() {
        let band = ds.rasterband(i).map_err(gdal_err)?;
        let mut b = json!({
            "data_type": data_type(band.band_type()),
            "spatial_resolution": gt[1].abs(),
        });
        if let Some(nd) = band.no_data_value() {
            b["nodata"] = if nd.is_nan() {
                json!("nan")
            } else if nd.fract() == 0.0 && nd.abs() < 1e15 {
                json!(nd as i64)
            } else {
                json!(nd)
            };
        }
        raster_bands.push(b);
    }
    let (hash, size) = super::hash_file(d.file).map_err(|e| RasterError::io(d.file, e))?;
    let mut media = "image/tiff; application=geotiff".to_string();
    if d.cog {
        media.push_str("; profile=cloud-optimized");
    }
    let mut asset = json!({
        "href": d.href,
        "type": media,
        "roles": ["data"],
        "raster:bands": raster_bands,
        "file:size": size,
        // A multihash: BLAKE3 (0x1e), 32 bytes (0x20).
        "file:checksum": format!("1e20{hash}"),
    });
    if let Some(classes) = d.classes {
        extensions.push(CLASSIFICATION);
        asset["title"] = json!("class map");
        asset["roles"] = json!(["data", "classification"]);
        asset["classification:classes"] = classes
            .iter()
            .map(|c| {
                json!({
                    "value": c.id,
                    "name": class_name(&c.name),
                    "description": c.name,
                    "color_hint": format!("{:02X}{:02X}{:02X}", c.color[0], c.color[1], c.color[2]),
                })
            })
            .collect();
    }
    if let Some(bands) = d.bands {
        extensions.push(EO);
        asset["eo:bands"] = bands
            .iter()
            .map(|b| {
                let mut e = json!({"name": b.name});
                if let Some(c) = &b.common_name {
                    e["common_name"] = json!(c);
                }
                if let Some(wl) = b.wavelength {
                    e["center_wavelength"] = json!(wl);
                }
                e
            })
            .collect();
    }
    let features = d.sources.map_or(&[][..], source_features);
    let links: Vec<Json> = features
        .iter()
        .filter_map(|f| {
            let href = f.get("links")?.as_array()?.iter().find_map(|l| {
                (l.get("rel")?.as_str()? == "self").then(|| l.get("href")?.as_str())?
            })?;
            Some(json!({"rel": "derived_from", "href": href, "type": "application/geo+json"}))
        })
        .collect();
    if d.sources.is_some() {
        let ids: Vec<&str> = features
            .iter()
            .filter_map(|f| f.get("id")?.as_str())
            .collect();
        props.insert("flow:source_items".into(), json!(ids));
    }
    Ok(json!({
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": extensions,
        "id": d.id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": properties,
        "assets": {"data": asset},
        "links": links,
    }))
}

/// The features of an ItemCollection.
fn source_features(items: &Items) -> &[Json] {
    items
        .collection
        .get("features")
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `datetime`, or `start_datetime` / `end_datetime` (with a null `datetime`) when the sources
/// span more than one instant: from the source items, else from the raster's times.
fn datetime(d: &Describe<'_>) -> Result<Json> {
    let mut instants: Vec<String> = Vec::new();
    if let Some(sources) = d.sources {
        for f in source_features(sources) {
            let p = f.get("properties");
            for key in ["datetime", "start_datetime", "end_datetime"] {
                if let Some(t) = p.and_then(|p| p.get(key)).and_then(Json::as_str) {
                    instants.push(t.to_string());
                }
            }
        }
    } else {
        instants.extend(d.times.iter().cloned());
    }
    // RFC 3339 in UTC with the same precision sorts as text; mixed precisions still sort well
    // enough for a range, and the extremes are kept as written.
    instants.sort();
    instants.dedup();
    match (instants.first(), instants.last()) {
        (Some(a), Some(b)) if a == b => Ok(json!({"datetime": a})),
        (Some(a), Some(b)) => Ok(json!({"datetime": null, "start_datetime": a, "end_datetime": b})),
        _ => Err(RasterError::InvalidData(format!(
            "{}: a STAC Item needs a datetime: connect the `items` port of `write` to the \
             searched items the map comes from",
            d.file.display()
        ))),
    }
}

/// The file's outline in WGS 84 (each edge densified to 21 points, so that a reprojected edge
/// stays close to the true one), counter-clockwise, and its bounding box.
fn footprint(gt: &[f64; 6], (w, h): (usize, usize), epsg: u32) -> Result<(Json, [f64; 4])> {
    let at = |c: f64, r: f64| (gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5]);
    let (w, h) = (w as f64, h as f64);
    const STEPS: usize = 20;
    let mut ring: Vec<(f64, f64)> = Vec::with_capacity(4 * STEPS + 1);
    for (from, to) in [
        ((0.0, 0.0), (w, 0.0)),
        ((w, 0.0), (w, h)),
        ((w, h), (0.0, h)),
        ((0.0, h), (0.0, 0.0)),
    ] {
        for s in 0..STEPS {
            let t = s as f64 / STEPS as f64;
            ring.push(at(
                from.0 + (to.0 - from.0) * t,
                from.1 + (to.1 - from.1) * t,
            ));
        }
    }
    let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = ring.into_iter().unzip();
    if epsg != 4326 {
        let wgs84 = crate::grid::srs(4326)?;
        let src: SpatialRef = crate::grid::srs(epsg)?;
        let t = CoordTransform::new(&src, &wgs84)
            .map_err(|e| RasterError::InvalidData(format!("EPSG:{epsg} -> EPSG:4326: {e}")))?;
        t.transform_coords(&mut xs, &mut ys, &mut [])
            .map_err(|e| RasterError::InvalidData(format!("EPSG:{epsg} -> EPSG:4326: {e}")))?;
    }
    let round = |v: f64| (v * 1e9).round() / 1e9;
    let mut coords: Vec<[f64; 2]> = xs
        .iter()
        .zip(&ys)
        .map(|(&x, &y)| [round(x), round(y)])
        .collect();
    // Counter-clockwise, as RFC 7946 asks of an exterior ring (the corners went clockwise).
    coords.reverse();
    coords.push(coords[0]);
    let fold = |v: &[f64], f: fn(f64, f64) -> f64, init: f64| v.iter().copied().fold(init, f);
    let bbox = [
        round(fold(&xs, f64::min, f64::INFINITY)),
        round(fold(&ys, f64::min, f64::INFINITY)),
        round(fold(&xs, f64::max, f64::NEG_INFINITY)),
        round(fold(&ys, f64::max, f64::NEG_INFINITY)),
    ];
    Ok((json!({"type": "Polygon", "coordinates": [coords]}), bbox))
}

/// The raster extension's name of a GDAL data type.
fn data_type(t: GdalDataType) -> &'static str {
    match t {
        GdalDataType::UInt8 => "uint8",
        GdalDataType::UInt16 => "uint16",
        GdalDataType::Int16 => "int16",
        GdalDataType::UInt32 => "uint32",
        GdalDataType::Int32 => "int32",
        GdalDataType::UInt64 => "uint64",
        GdalDataType::Int64 => "int64",
        GdalDataType::Float32 => "float32",
        GdalDataType::Float64 => "float64",
        _ => "other",
    }
}

/// A classification `name` (letters, digits, `-` and `_` only) from a class's human name.
fn class_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_keep_only_allowed_characters() {
        assert_eq!(class_name("class 0"), "class_0");
        assert_eq!(class_name("forest-dense"), "forest-dense");
        assert_eq!(class_name("eau/water"), "eau_water");
        assert_eq!(class_name(""), "_");
    }

    #[test]
    fn datetimes_become_an_instant_or_a_range() {
        let items = |times: &[&str]| Items {
            collection: json!({"type": "FeatureCollection", "features": times.iter().map(|t| json!({
                "type": "Feature", "id": t, "properties": {"datetime": t}
            })).collect::<Vec<_>>()}),
        };
        let file = Path::new("x.tif");
        let d = |sources: Option<&Items>, times: &[String]| -> Result<Json> {
            datetime(&Describe {
                id: "x",
                file,
                href: "x.tif",
                cog: false,
                classes: None,
                bands: None,
                sources,
                times,
            })
        };
        let one = items(&["2021-08-03T15:49:09Z"]);
        assert_eq!(
            d(Some(&one), &[]).unwrap(),
            json!({"datetime": "2021-08-03T15:49:09Z"})
        );
        let two = items(&["2021-08-13T15:49:09Z", "2021-08-03T15:49:09Z"]);
        assert_eq!(
            d(Some(&two), &[]).unwrap(),
            json!({"datetime": null, "start_datetime": "2021-08-03T15:49:09Z",
                   "end_datetime": "2021-08-13T15:49:09Z"})
        );
        assert_eq!(
            d(None, &["2021-07-01T00:00:00Z".into()]).unwrap(),
            json!({"datetime": "2021-07-01T00:00:00Z"})
        );
        let err = d(None, &[]).unwrap_err().to_string();
        assert!(err.contains("connect the `items` port"), "{err}");
    }
}
