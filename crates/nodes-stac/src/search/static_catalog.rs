//! Reading items from local files: an ItemCollection, a single Item, or a static catalog tree
//! (`catalog.json` / `collection.json` with `child` and `item` links relative to each file).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::StacError;
use crate::items::{absolutize_assets, has_scheme, join_lexically};

/// The outcome of reading a local catalog.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every item found, hrefs made absolute.
    pub items: Vec<Json>,
    /// A BLAKE3 hash over the path and bytes of every file read, in reading order.
    pub digest: [u8; 32],
    /// Things the user should know (links that were skipped).
    pub warnings: Vec<String>,
}

struct Walker {
    items: Vec<Json>,
    hasher: blake3::Hasher,
    visited: HashSet<PathBuf>,
    warnings: Vec<String>,
}

/// The absolute, lexically normalized form of `path`.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    join_lexically(&p, ".")
}

/// Reads the items of the ItemCollection, Item or catalog at `path`.
///
/// # Errors
/// [`StacError::Io`] when a file cannot be read, [`StacError::Catalog`] when one is not the
/// JSON it should be.
pub fn load(path: &Path) -> Result<Loaded, StacError> {
    let mut w = Walker {
        items: Vec::new(),
        hasher: blake3::Hasher::new(),
        visited: HashSet::new(),
        warnings: Vec::new(),
    };
    w.visit(&absolute(path), None, true)?;
    Ok(Loaded {
        items: w.items,
        digest: *w.hasher.finalize().as_bytes(),
        warnings: w.warnings,
    })
}

impl Walker {
    fn read(&mut self, path: &Path) -> Result<Json, StacError> {
        let bytes = std::fs::read(path).map_err(|e| StacError::io(path, e))?;
        let p = path.to_string_lossy();
        self.hasher.update(&(p.len() as u64).to_le_bytes());
        self.hasher.update(p.as_bytes());
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(&bytes);
        serde_json::from_slice(&bytes)
            .map_err(|e| StacError::catalog(path, format!("not valid JSON: {e}")))
    }

    /// Visits one file. `collection` is the id of the parent collection, given to items that
    /// lack one.
    fn visit(
        &mut self,
        path: &Path,
        collection: Option<&str>,
        root: bool,
    ) -> Result<(), StacError> {
        if !self.visited.insert(path.to_path_buf()) {
            return Ok(());
        }
        let doc = self.read(path)?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let ty = doc.get("type").and_then(Json::as_str).unwrap_or_default();
        match ty {
            "FeatureCollection" => {
                let features = doc
                    .get("features")
                    .and_then(Json::as_array)
                    .ok_or_else(|| StacError::catalog(path, "a FeatureCollection without a `features` array"))?;
                for (i, f) in features.iter().enumerate() {
                    self.add_item(path, &dir, f.clone(), collection, Some(i))?;
                }
            }
            "Feature" => self.add_item(path, &dir, doc, collection, None)?,
            "Catalog" | "Collection" => {
                let own = if ty == "Collection" { doc.get("id").and_then(Json::as_str) } else { collection };
                let own = own.map(str::to_owned);
                let links = doc.get("links").and_then(Json::as_array).cloned().unwrap_or_default();
                for link in &links {
                    let rel = link.get("rel").and_then(Json::as_str).unwrap_or_default();
                    if rel != "child" && rel != "item" {
                        continue;
                    }
                    let Some(href) = link.get("href").and_then(Json::as_str) else {
                        return Err(StacError::catalog(path, format!("a `{rel}` link without an href")));
                    };
                    match self.link_path(&dir, href) {
                        Some(target) => self.visit(&target, own.as_deref(), false)?,
                        None => self.warnings.push(format!(
                            "{}: skipped the {rel} link to {href} (only local files are followed)",
                            path.display()
                        )),
                    }
                }
            }
            other if root => {
                return Err(StacError::catalog(
                    path,
                    format!(
                        "type `{other}`: expected an ItemCollection (FeatureCollection), an Item, a Catalog or a Collection"
                    ),
                ))
            }
            other => {
                return Err(StacError::catalog(path, format!("linked file has type `{other}`, not a STAC object")));
            }
        }
        Ok(())
    }

    /// The local file a link points to, or `None` for remote links.
    fn link_path(&self, dir: &Path, href: &str) -> Option<PathBuf> {
        if has_scheme(href) {
            let url = url::Url::parse(href).ok()?;
            if url.scheme() == "file" {
                return url.to_file_path().ok().map(|p| absolute(&p));
            }
            return None;
        }
        Some(join_lexically(dir, href))
    }

    fn add_item(
        &mut self,
        path: &Path,
        dir: &Path,
        mut item: Json,
        collection: Option<&str>,
        index: Option<usize>,
    ) -> Result<(), StacError> {
        let whence = || index.map_or_else(String::new, |i| format!("feature {i}: "));
        let Some(obj) = item.as_object_mut() else {
            return Err(StacError::catalog(
                path,
                format!("{}an item must be a JSON object", whence()),
            ));
        };
        if !obj.get("id").is_some_and(Json::is_string) {
            return Err(StacError::catalog(
                path,
                format!("{}an item needs a string `id`", whence()),
            ));
        }
        if !obj.get("properties").is_some_and(Json::is_object) {
            return Err(StacError::catalog(
                path,
                format!("{}an item needs a `properties` object", whence()),
            ));
        }
        if let (None, Some(c)) = (obj.get("collection"), collection) {
            obj.insert("collection".into(), Json::String(c.into()));
        }
        absolutize_assets(&mut item, dir);
        self.items.push(item);
        Ok(())
    }
}
