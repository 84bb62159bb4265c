//! What `stack` needs to know of STAC items and assets: ids, datetimes, CRS, native grid,
//! scale / offset / nodata and band descriptions, read from the item JSON; where each item came
//! from, and which hrefs an item may name ([`refusal`]).
//!
//! An item from a remote catalog (an http(s) STAC API, or an item whose own `self` link is
//! http(s)) may only point at http(s) and cloud-store (`s3://`, `gs://`) URLs: a local path,
//! a `file://` URL or a GDAL virtual path (`/vsicurl/...`, `/vsizip/...`) would let whoever
//! serves the catalog make flow read the files of the machine it runs on. Items of local
//! catalogs may name anything.

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
    /// The id of the signer that signed the href (`flow:signer`, see [`flow_core::signer`]).
    pub signer: Option<String>,
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
    /// Where the item came from when that is remote: the catalog's URL, or the item's own
    /// http(s) `self` link (without its query). None for an item of a local catalog.
    pub remote: Option<String>,
}

/// True for an http(s) URL.
fn is_http(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The href of an item's `self` link.
fn self_href(item: &Json) -> Option<&str> {
    item.get("links")?
        .as_array()?
        .iter()
        .find(|l| l.get("rel").and_then(Json::as_str) == Some("self"))?
        .get("href")?
        .as_str()
}

/// Where `item` came from when that is remote: `catalog` (the [`flow_core::Items::catalog`] of
/// its collection) when it is an http(s) URL, else the item's own http(s) `self` link.
pub(crate) fn remote_origin(item: &Json, catalog: Option<&str>) -> Option<String> {
    catalog
        .filter(|c| is_http(c))
        .or_else(|| self_href(item).filter(|h| is_http(h)))
        .map(|u| public_href(u).to_string())
}

/// Why an item of a remote catalog may not name `href`, or None when it may: only http(s) and
/// cloud-store URLs ([`crate::gdalx::NETWORK_SCHEMES`]) are read for remote items.
pub(crate) fn refusal(href: &str) -> Option<&'static str> {
    if crate::gdalx::is_network_href(href) {
        return None;
    }
    let lower = href.to_ascii_lowercase();
    Some(if lower.starts_with("file:") {
        "a file:// URL, which names a local file"
    } else if lower.starts_with("/vsi") {
        "a GDAL virtual file system path (/vsi...), which can name local files"
    } else if href.contains("://") {
        "a URL of another scheme"
    } else {
        "a local path"
    })
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
    let href = self_href(item)?;
    let path = href.strip_prefix("file://").unwrap_or(href);
    if path.contains("://") {
        return None;
    }
    Path::new(path).parent().map(Path::to_path_buf)
}

/// A relative `href` of a remote item, resolved against its http(s) `self` link; unchanged (and
/// so refused as a local path) when the item has none. An absolute path (`/data/B04.tif`) is
/// left as it is too: it reads as a local file, and is refused as one.
fn resolve_remote_href(href: &str, item: &Json) -> String {
    let is_url = href.contains("://") || href.starts_with('/');
    if is_url {
        return href.to_string();
    }
    self_href(item)
        .filter(|h| is_http(h))
        .and_then(|base| url::Url::parse(base).ok())
        .and_then(|base| base.join(href).ok())
        .map_or_else(|| href.to_string(), String::from)
}

/// Reads one item. `remote` is where it came from when that is remote ([`remote_origin`]).
/// Relative hrefs are resolved against the item's `self` link, else (local items only)
/// `fallback_dir`.
pub(crate) fn item_ref(
    item: &Json,
    keys: &[String],
    fallback_dir: &Path,
    remote: Option<String>,
) -> ItemRef {
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
            let href = match remote {
                Some(_) => resolve_remote_href(href, item),
                None => resolve_href(href, Some(&base)),
            };
            Some(AssetRef {
                href,
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
                signer: asset
                    .get(flow_core::signer::SIGNER_FIELD)
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
        remote,
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
        let r = item_ref(
            &item,
            &["B04".into(), "B99".into()],
            Path::new("/data"),
            None,
        );
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
        assert_eq!(r.remote, None);
        assert_eq!(a.signer, None);
    }

    #[test]
    fn remote_items_are_known_by_their_catalog_or_self_link_and_name_network_urls_only() {
        let item = json!({
            "id": "a", "properties": {},
            "links": [{"rel": "self", "href": "https://api.example/collections/c/items/a?token=x"}],
            "assets": {"B04": {"href": "../../data/B04.tif", "flow:signer": "pc"}}
        });
        let local = json!({"id": "b", "properties": {}, "assets": {"B04": {"href": "B04.tif"}}});
        assert_eq!(
            remote_origin(&item, None).as_deref(),
            Some("https://api.example/collections/c/items/a")
        );
        assert_eq!(
            remote_origin(&local, Some("http://127.0.0.1:8080/api")).as_deref(),
            Some("http://127.0.0.1:8080/api")
        );
        assert_eq!(remote_origin(&local, Some("/data/items.json")), None);
        assert_eq!(remote_origin(&local, None), None);
        // A relative href of a remote item is a URL beside its self link, never a local path.
        let keys = ["B04".to_string()];
        let r = item_ref(&item, &keys, Path::new("/data"), remote_origin(&item, None));
        let a = r.assets[0].as_ref().unwrap();
        assert_eq!(a.href, "https://api.example/collections/data/B04.tif");
        assert_eq!(a.signer.as_deref(), Some("pc"));
        let r = item_ref(
            &local,
            &keys,
            Path::new("/data"),
            Some("http://h/api".into()),
        );
        assert_eq!(r.assets[0].as_ref().unwrap().href, "B04.tif");
        let mut rooted = item.clone();
        rooted["assets"]["B04"]["href"] = "/data/B04.tif".into();
        let r = item_ref(
            &rooted,
            &keys,
            Path::new("/x"),
            remote_origin(&rooted, None),
        );
        assert_eq!(r.assets[0].as_ref().unwrap().href, "/data/B04.tif");
        for ok in [
            "https://h/a.tif",
            "http://h/a.tif?sig=1",
            "s3://b/a.tif",
            "gs://b/a.tif",
        ] {
            assert_eq!(refusal(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("/etc/passwd", "a local path"),
            ("B04.tif", "a local path"),
            ("file:///etc/passwd", "file://"),
            ("FILE:///etc/passwd", "file://"),
            ("/vsicurl/http://h/a.tif", "/vsi"),
            ("/vsizip//tmp/a.zip/a.tif", "/vsi"),
            ("ftp://h/a.tif", "another scheme"),
            ("<VRTDataset><VRTRasterBand/></VRTDataset>", "a local path"),
        ] {
            let got = refusal(bad).unwrap_or_else(|| panic!("{bad} is refused"));
            assert!(got.contains(why), "{bad}: {got}");
        }
    }
}
