//! Touch-ups applied to every item a search returns. Items stay `serde_json` values, so every
//! extension field survives; the `stac` crate's types are not used, since it depends on the
//! `cql2` crate (see [`crate::search::cql2`]).

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

/// Makes `proj:epsg` and `proj:code` both present where one is: on the item's properties and on
/// each asset. `proj:code` `"EPSG:n"` gives `proj:epsg` `n`; other authorities give no
/// `proj:epsg`.
pub fn normalize_proj(item: &mut Value) {
    if let Some(props) = item.get_mut("properties").and_then(Value::as_object_mut) {
        normalize_proj_object(props);
    }
    if let Some(assets) = item.get_mut("assets").and_then(Value::as_object_mut) {
        for asset in assets.values_mut() {
            if let Some(a) = asset.as_object_mut() {
                normalize_proj_object(a);
            }
        }
    }
}

fn normalize_proj_object(o: &mut Map<String, Value>) {
    let epsg = o.get("proj:epsg").and_then(Value::as_i64);
    let code = o
        .get("proj:code")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match (epsg, code) {
        (Some(n), None) if o.get("proj:code").is_none_or(|c| c.is_null()) => {
            o.insert("proj:code".into(), Value::String(format!("EPSG:{n}")));
        }
        (None, Some(code)) if o.get("proj:epsg").is_none_or(|c| c.is_null()) => {
            let n = code
                .split_once(':')
                .filter(|(auth, _)| auth.eq_ignore_ascii_case("EPSG"))
                .and_then(|(_, n)| n.trim().parse::<i64>().ok());
            if let Some(n) = n {
                o.insert("proj:epsg".into(), Value::from(n));
            }
        }
        _ => {}
    }
}

/// True when `href` is a URL with a scheme (`https://`, `s3://`, `file:///`).
pub fn has_scheme(href: &str) -> bool {
    match href.split_once(':') {
        // one-letter schemes are Windows drive letters
        Some((scheme, _)) if scheme.len() > 1 => {
            scheme
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        _ => false,
    }
}

/// Joins a relative `href` onto `dir`, folding `.` and `..` without touching the disk.
pub fn join_lexically(dir: &Path, href: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(href).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Makes relative asset hrefs absolute against `dir` (the directory of the file the item came
/// from). URLs and absolute paths are left alone.
pub fn absolutize_assets(item: &mut Value, dir: &Path) {
    if let Some(assets) = item.get_mut("assets").and_then(Value::as_object_mut) {
        for asset in assets.values_mut() {
            if let Some(Value::String(href)) = asset.get_mut("href") {
                if !has_scheme(href) && !Path::new(href.as_str()).is_absolute() {
                    *href = join_lexically(dir, href).to_string_lossy().into_owned();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proj_both_ways() {
        let mut item = json!({"properties": {"proj:epsg": 32618},
            "assets": {"a": {"href": "x", "proj:code": "EPSG:32619"}, "b": {"href": "y", "proj:code": "IAU_2015:30100"},
                       "c": {"href": "z", "proj:epsg": 4326, "proj:code": "EPSG:4326"}, "d": {"proj:epsg": null}}});
        normalize_proj(&mut item);
        assert_eq!(item["properties"]["proj:code"], "EPSG:32618");
        assert_eq!(item["assets"]["a"]["proj:epsg"], 32619);
        assert!(item["assets"]["b"].get("proj:epsg").is_none());
        assert_eq!(item["assets"]["c"]["proj:code"], "EPSG:4326");
        assert!(item["assets"]["d"].get("proj:code").is_none());
    }

    #[test]
    fn hrefs() {
        assert!(has_scheme("https://x/y") && has_scheme("s3://b/k") && has_scheme("file:///a"));
        assert!(!has_scheme("./a.tif") && !has_scheme("C:\\a.tif"));
        let mut item = json!({"assets": {"a": {"href": "../data/B04.tif"}, "b": {"href": "https://h/x.tif"}, "c": {"href": "/abs/x.tif"}}});
        absolutize_assets(&mut item, Path::new("/cat/items"));
        assert_eq!(item["assets"]["a"]["href"], "/cat/data/B04.tif");
        assert_eq!(item["assets"]["b"]["href"], "https://h/x.tif");
        assert_eq!(item["assets"]["c"]["href"], "/abs/x.tif");
    }
}
