//! What `stack` needs to know of STAC items and assets: ids, datetimes, CRS, native grid,
//! scale / offset / nodata and band descriptions, read from the item JSON.

use std::path::Path;

use flow_core::BandInfo;
use serde_json::Value as Json;

use crate::grid::Bounds;

/// One asset of one item, as `stack` reads it.
#[derive(Debug, Clone)]
pub(crate) struct AssetRef {
    /// The href, made absolute where it was relative.
    pub href: String,
    /// Its EPSG code (asset `proj:code` / `proj:epsg`, else the item's).
    pub epsg: Option<u32>,
    /// Its native GDAL geotransform, from `proj:transform`.
    pub transform: Option<[f64; 6]>,
    /// Its native `(rows, cols)`, from `proj:shape`.
    pub shape: Option<(usize, usize)>,
    /// `raster:bands[0].scale`, default 1.
    pub scale: f64,
    /// `raster:bands[0].offset`, default 0.
    pub offset: f64,
    /// `raster:bands[0].nodata`, used when the file declares none.
    pub nodata: Option<f64>,
    /// Name, common name and wavelength from `eo:bands` (or STAC 1.1 `bands`).
    pub band: BandInfo,
    /// `file:checksum`: a hex multihash of the whole file.
    pub checksum: Option<String>,
}

impl AssetRef {
    /// The native bounds, when `proj:transform` and `proj:shape` are known and the grid is north-up.
    pub(crate) fn bounds(&self) -> Option<Bounds> {
        let (t, (rows, cols)) = (self.transform?, self.shape?);
        if t[2] != 0.0 || t[4] != 0.0 {
            return None;
        }
        let (x1, y1) = (t[0] + cols as f64 * t[1], t[3] + rows as f64 * t[5]);
        Some([t[0].min(x1), t[3].min(y1), t[0].max(x1), t[3].max(y1)])
    }

    /// The href without its query string, for messages (signed URLs carry tokens).
    pub(crate) fn public_href(&self) -> &str {
        public_href(&self.href)
    }
}

/// An href without its query string.
pub(crate) fn public_href(href: &str) -> &str {
    if href.starts_with("http://") || href.starts_with("https://") {
        href.split('?').next().unwrap_or(href)
    } else {
        href
    }
}

/// One item, with the requested assets in the requested order (None where the item lacks one).
#[derive(Debug, Clone)]
pub(crate) struct ItemRef {
    /// Item id.
    pub id: String,
    /// `datetime` (or `start_datetime`), RFC 3339.
    pub datetime: String,
    /// `bbox` in longitude / latitude.
    pub bbox: Option<Bounds>,
    /// The requested assets.
    pub assets: Vec<Option<AssetRef>>,
}

/// Reads an EPSG code from an object holding `proj:code` and / or `proj:epsg`.
pub(crate) fn epsg_of(obj: &Json) -> Option<u32> {
    if let Some(code) = obj.get("proj:code").and_then(Json::as_str) {
        if let Some(n) = code.strip_prefix("EPSG:").and_then(|c| c.parse().ok()) {
            return Some(n);
        }
    }
    obj.get("proj:epsg")
        .and_then(Json::as_u64)
        .and_then(|n| u32::try_from(n).ok())
}

fn stac_transform(obj: &Json) -> Option<[f64; 6]> {
    let t: Vec<f64> = obj
        .get("proj:transform")?
        .as_array()?
        .iter()
        .map(Json::as_f64)
        .collect::<Option<_>>()?;
    if t.len() < 6 {
        return None;
    }
    // STAC (rasterio Affine) order a, b, c, d, e, f -> GDAL c, a, b, f, d, e.
    Some([t[2], t[0], t[1], t[5], t[3], t[4]])
}

fn stac_shape(obj: &Json) -> Option<(usize, usize)> {
    let s = obj.get("proj:shape")?.as_array()?;
    Some((s.first()?.as_u64()? as usize, s.get(1)?.as_u64()? as usize))
}

/// The first entry of the array `key` of an asset (`eo:bands`, `raster:bands`, `bands`).
fn first_entry<'a>(asset: &'a Json, key: &str) -> Option<&'a Json> {
    asset
        .get(key)
        .and_then(Json::as_array)
        .and_then(|a| a.first())
}

fn band_info(key: &str, asset: &Json) -> BandInfo {
    let first = |k: &str| first_entry(asset, k);
    let mut info = BandInfo {
        name: key.to_string(),
        ..Default::default()
    };
    if let Some(eo) = first("eo:bands") {
        info.common_name = eo
            .get("common_name")
            .and_then(Json::as_str)
            .map(String::from);
        info.wavelength = eo.get("center_wavelength").and_then(Json::as_f64);
    } else if let Some(b) = first("bands") {
        info.common_name = b
            .get("eo:common_name")
            .and_then(Json::as_str)
            .map(String::from);
        info.wavelength = b.get("eo:center_wavelength").and_then(Json::as_f64);
    }
    info
}

fn raster_band(asset: &Json) -> Option<Json> {
    first_entry(asset, "raster:bands")
        .or_else(|| first_entry(asset, "bands"))
        .cloned()
}

fn resolve_href(href: &str, base: Option<&Path>) -> String {
    let is_url = href.contains("://") || href.starts_with("/vsi");
    if is_url || Path::new(href).is_absolute() {
        return href.to_string();
    }
    match base {
        Some(dir) => dir.join(href).to_string_lossy().into_owned(),
        None => href.to_string(),
    }
}

/// The directory of an item's `self` link, when it is a local file.
fn self_dir(item: &Json) -> Option<std::path::PathBuf> {
    let links = item.get("links")?.as_array()?;
    let href = links
        .iter()
        .find(|l| l.get("rel").and_then(Json::as_str) == Some("self"))?
        .get("href")?
        .as_str()?;
    let path = href.strip_prefix("file://").unwrap_or(href);
    if path.contains("://") {
        return None;
    }
    Path::new(path).parent().map(Path::to_path_buf)
}

/// Reads one item. Relative hrefs are resolved against the item's `self` link, else `fallback_dir`.
pub(crate) fn item_ref(item: &Json, keys: &[String], fallback_dir: &Path) -> ItemRef {
    let id = item
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or("<no id>")
        .to_string();
    let props = item.get("properties").cloned().unwrap_or(Json::Null);
    let datetime = props
        .get("datetime")
        .and_then(Json::as_str)
        .or_else(|| props.get("start_datetime").and_then(Json::as_str))
        .unwrap_or("")
        .to_string();
    let bbox = item.get("bbox").and_then(Json::as_array).and_then(|b| {
        let v: Vec<f64> = b.iter().map(Json::as_f64).collect::<Option<_>>()?;
        match v.len() {
            4 => Some([v[0], v[1], v[2], v[3]]),
            6 => Some([v[0], v[1], v[3], v[4]]),
            _ => None,
        }
    });
    let base = self_dir(item).unwrap_or_else(|| fallback_dir.to_path_buf());
    let item_epsg = epsg_of(&props);
    let assets = keys
        .iter()
        .map(|key| {
            let asset = item.get("assets")?.get(key)?;
            let href = asset.get("href")?.as_str()?;
            let rb = raster_band(asset);
            let num = |k: &str| rb.as_ref().and_then(|b| b.get(k)).and_then(Json::as_f64);
            Some(AssetRef {
                href: resolve_href(href, Some(&base)),
                epsg: epsg_of(asset).or(item_epsg),
                transform: stac_transform(asset).or_else(|| stac_transform(&props)),
                shape: stac_shape(asset).or_else(|| stac_shape(&props)),
                scale: num("scale").unwrap_or(1.0),
                offset: num("offset").unwrap_or(0.0),
                nodata: num("nodata"),
                band: band_info(key, asset),
                checksum: asset
                    .get("file:checksum")
                    .and_then(Json::as_str)
                    .map(String::from),
            })
        })
        .collect();
    ItemRef {
        id,
        datetime,
        bbox,
        assets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_projection_and_raster_metadata() {
        let item = json!({
            "id": "a", "properties": {"datetime": "2021-08-03T15:49:09Z", "proj:epsg": 32618},
            "assets": {"B04": {"href": "x/B04.tif", "proj:transform": [10, 0, 500000, 0, -10, 5000000],
                "proj:shape": [2, 3], "proj:code": "EPSG:32619", "file:checksum": "1220ab",
                "raster:bands": [{"scale": 0.0001, "offset": -0.1, "nodata": 0}],
                "eo:bands": [{"name": "B04", "common_name": "red", "center_wavelength": 0.665}]}}
        });
        let r = item_ref(&item, &["B04".into(), "B99".into()], Path::new("/data"));
        let a = r.assets[0].as_ref().unwrap();
        assert_eq!(a.href, "/data/x/B04.tif");
        assert_eq!(a.epsg, Some(32619));
        assert_eq!(
            a.transform,
            Some([500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0])
        );
        assert_eq!(a.bounds(), Some([500000.0, 4999980.0, 500030.0, 5000000.0]));
        assert_eq!((a.scale, a.offset, a.nodata), (0.0001, -0.1, Some(0.0)));
        assert_eq!(a.band.common_name.as_deref(), Some("red"));
        assert_eq!(a.checksum.as_deref(), Some("1220ab"));
        assert!(r.assets[1].is_none());
        assert_eq!(public_href("https://h/a.tif?sig=secret"), "https://h/a.tif");
    }
}
