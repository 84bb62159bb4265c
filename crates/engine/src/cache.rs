//! The content-addressed, on-disk cache.
//!
//! Layout under the cache root:
//!
//! ```text
//! objects/ab/<key>/value.json     what the value is (type, grid, band names, ...)
//! objects/ab/<key>/*.npy          its arrays, readable with numpy.load
//! objects/ab/<key>/manifest.json  kind, node, creation time, and BLAKE3 + size of every file
//! tmp/                            entries being written; never read
//! data/                           materialized datasets (the offline scene)
//! ```
//!
//! An entry is written into `tmp/`, every file fsynced, then the directory renamed into
//! `objects/`; a rename is atomic, so a reader sees a whole entry or none, and a process killed
//! mid-write leaves only a directory in `tmp/` that nothing trusts (`flow cache gc` removes it).
//! When two runs write the same key, the second rename fails and its copy is discarded: both
//! wrote the same content. Reads verify every file against the manifest; a mismatch is reported
//! as [`Lookup::Corrupt`], the entry is moved out of the way, and the caller recomputes.
//!
//! Arrays are streamed in both directions ([`store::to_files`], [`store::from_files`]): a put
//! writes each `.npy` file from the array's own memory through a hashing writer, and a get reads
//! each file straight into the array's one allocation through a hashing reader, comparing size
//! and BLAKE3 with the manifest once the file has been read. Caching or loading a cube needs the
//! cube once plus a 1 MiB chunk, never a second copy of it. A cube too large to allocate on load
//! is reported as [`Lookup::Corrupt`] too (the caller recomputes, and then meets the same limit
//! with its own message), but its entry is kept: nothing is wrong with it.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flow_core::store::StoredFiles;
use flow_core::Value;
use flow_core::{atomic, store};
use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::key::Key;

/// The manifest of an entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The key, in hex.
    pub key: String,
    /// The node kind that produced it.
    pub kind: String,
    /// The node id in the recipe that produced it (informative only).
    pub node: String,
    /// Seconds since the Unix epoch when it was written.
    pub created: u64,
    /// Files with their BLAKE3 and size.
    pub files: Vec<FileEntry>,
    /// What the node read, with the versions it read (see [`flow_core::Source`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<flow_core::Source>,
}

/// One file of an entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// File name inside the entry.
    pub name: String,
    /// BLAKE3 of its bytes, hex.
    pub blake3: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The result of a cache read.
#[derive(Debug)]
pub enum Lookup {
    /// A verified value.
    Hit(Box<Value>, Manifest),
    /// No entry (or an expired one).
    Miss,
    /// An entry that could not be read back: one that did not verify has been removed; one
    /// whose arrays could not be allocated is kept (its files are fine).
    Corrupt(String),
}

/// A summary of one entry, for `flow cache ls`.
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    /// The manifest (None when it is unreadable).
    pub manifest: Option<Manifest>,
    /// The key directory name.
    pub key: String,
    /// Bytes on disk.
    pub size: u64,
}

/// An on-disk cache rooted at a directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    atomic::write_synced(path, bytes).map_err(|e| CacheError::io(path, e))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        }
    }

    /// The BLAKE3 (hex) and the number of bytes that passed.
    fn digest(&self) -> (String, u64) {
        (self.hasher.finalize().to_hex().to_string(), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Creates `path`, writes it through `fill` (buffered, hashed on the way), fsyncs it; returns
/// its BLAKE3 (hex) and size.
fn write_streamed(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<(String, u64)> {
    let mut out = Hashing::new(BufWriter::new(File::create(path)?));
    fill(&mut out)?;
    out.flush()?;
    let digest = out.digest();
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(digest)
}

/// The files of one entry as [`store::StoredFiles`]: each is read through a hashing reader and
/// checked against the manifest (size first, BLAKE3 once read); damage anywhere in a file is
/// reported as a checksum mismatch, whatever else went wrong reading it.
struct EntryFiles<'a> {
    dir: &'a Path,
    manifest: &'a Manifest,
    /// The files read so far.
    done: Vec<String>,
}

impl store::StoredFiles for EntryFiles<'_> {
    fn read<T>(
        &mut self,
        name: &str,
        read: impl FnOnce(&mut dyn Read, u64) -> Result<T, store::StoreError>,
    ) -> Result<T, store::StoreError> {
        let invalid = store::StoreError::Invalid;
        let entry = self
            .manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| invalid(format!("missing file {name}")))?;
        self.done.push(name.to_string());
        let path = self.dir.join(name);
        let file = File::open(&path).map_err(|e| invalid(format!("{name}: {e}")))?;
        let size = file
            .metadata()
            .map_err(|e| invalid(format!("{name}: {e}")))?
            .len();
        let mismatch = || invalid(format!("{name}: checksum mismatch"));
        if size != entry.size {
            return Err(mismatch());
        }
        let mut r = Hashing::new(BufReader::new(file));
        let result = read(&mut r, size);
        if let Err(store::StoreError::Memory(_)) = result {
            // Nothing is known to be wrong with the file.
            return result;
        }
        // Whatever `read` left (all of it, when it failed early) is hashed too.
        io::copy(&mut r, &mut io::sink()).map_err(|e| invalid(format!("{name}: {e}")))?;
        let (hash, bytes) = r.digest();
        if bytes != entry.size || hash != entry.blake3 {
            return Err(mismatch());
        }
        result
    }
}

impl Cache {
    /// Opens (creating when needed) the cache at `root`.
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Cache, CacheError> {
        let root = root.into();
        for sub in ["objects", "tmp", "data"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| CacheError::io(&p, e))?;
        }
        Ok(Cache { root })
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where datasets are materialized.
    pub fn data_dir(&self) -> PathBuf {
        Self::data_dir_in(&self.root)
    }

    /// Where datasets are materialized for the cache rooted at `root` (also used by runs that
    /// store no results: datasets are inputs, generated once).
    pub fn data_dir_in(root: &Path) -> PathBuf {
        root.join("data")
    }

    fn entry_dir(&self, key: &Key) -> PathBuf {
        let hex = key.hex();
        self.root.join("objects").join(&hex[..2]).join(hex)
    }

    /// True when an entry for `key` exists and is younger than `ttl` seconds (when given). Does
    /// not verify its contents; [`Cache::get`] does.
    pub fn contains(&self, key: &Key, ttl: Option<u64>) -> bool {
        match self.manifest(key) {
            Some(m) => ttl.is_none_or(|ttl| now().saturating_sub(m.created) <= ttl),
            None => false,
        }
    }

    /// The files the entry's node read, from its manifest (`None` without an entry).
    pub fn sources(&self, key: &Key) -> Option<Vec<flow_core::Source>> {
        self.manifest(key).map(|m| m.sources)
    }

    fn manifest(&self, key: &Key) -> Option<Manifest> {
        let bytes = fs::read(self.entry_dir(key).join("manifest.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Reads and verifies the entry for `key`.
    pub fn get(&self, key: &Key, ttl: Option<u64>) -> Lookup {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return Lookup::Miss;
        }
        match self.read_verified(key, &dir) {
            Ok((value, manifest)) => {
                if ttl.is_some_and(|ttl| now().saturating_sub(manifest.created) > ttl) {
                    Lookup::Miss
                } else {
                    Lookup::Hit(Box::new(value), manifest)
                }
            }
            // The entry is intact; this process cannot hold its arrays right now.
            Err(store::StoreError::Memory(reason)) => {
                Lookup::Corrupt(format!("cannot be loaded: {reason}; the entry is kept"))
            }
            Err(store::StoreError::Invalid(reason)) => {
                self.discard(&dir);
                Lookup::Corrupt(reason)
            }
            Err(e) => {
                self.discard(&dir);
                Lookup::Corrupt(e.to_string())
            }
        }
    }

    /// Reads the entry in `dir`, checking every file against its manifest while it is read.
    fn read_verified(&self, key: &Key, dir: &Path) -> Result<(Value, Manifest), store::StoreError> {
        let invalid = store::StoreError::Invalid;
        let manifest_bytes = fs::read(dir.join("manifest.json"))
            .map_err(|e| invalid(format!("manifest.json: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| invalid(format!("manifest.json: {e}")))?;
        if manifest.key != key.hex() {
            return Err(invalid("manifest names another key".into()));
        }
        let mut files = EntryFiles {
            dir,
            manifest: &manifest,
            done: Vec::new(),
        };
        if !manifest.files.iter().any(|f| f.name == "value.json") {
            return Err(invalid("no value.json".into()));
        }
        let meta = files.read("value.json", |r, _| {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes)
                .map_err(|e| invalid(format!("value.json: {e}")))?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| invalid(format!("value.json: {e}")))
        })?;
        let value = store::from_files(&meta, &mut files)?;
        // Files the value did not ask for are verified all the same.
        for f in &manifest.files {
            if !files.done.contains(&f.name) {
                files.read(&f.name, |_, _| Ok(()))?;
            }
        }
        Ok((value, manifest))
    }

    /// Removes the entry for `key` (one that is no longer right for its key, such as one whose
    /// input files changed), so that a recomputed value can take its place.
    pub fn remove(&self, key: &Key) {
        let dir = self.entry_dir(key);
        if dir.exists() {
            self.discard(&dir);
        }
    }

    /// Moves a bad entry out of `objects/` and deletes it.
    fn discard(&self, dir: &Path) {
        let trash = self
            .root
            .join("tmp")
            .join(format!("bad-{}", unique_suffix()));
        if fs::rename(dir, &trash).is_ok() {
            let _ = fs::remove_dir_all(&trash);
        }
    }

    /// Stores `value` under `key`, atomically.
    ///
    /// # Errors
    /// When the entry cannot be written (the cache is then unchanged).
    pub fn put(
        &self,
        key: &Key,
        kind: &str,
        node: &str,
        value: &Value,
        sources: &[flow_core::Source],
    ) -> Result<(), CacheError> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-{}", key.short(), unique_suffix()));
        fs::create_dir_all(&tmp).map_err(|e| CacheError::io(&tmp, e))?;
        let result = self.write_entry(key, (kind, node, sources), value, &tmp);
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn write_entry(
        &self,
        key: &Key,
        (kind, node, sources): (&str, &str, &[flow_core::Source]),
        value: &Value,
        tmp: &Path,
    ) -> Result<(), CacheError> {
        let (meta, arrays) = store::to_files(value);
        let meta_bytes = serde_json::to_vec_pretty(&meta)
            .map_err(|e| CacheError::io(tmp, std::io::Error::other(e)))?;
        write_synced(&tmp.join("value.json"), &meta_bytes)?;
        let mut files = vec![FileEntry {
            name: "value.json".into(),
            blake3: blake3::hash(&meta_bytes).to_hex().to_string(),
            size: meta_bytes.len() as u64,
        }];
        for array in &arrays {
            let path = tmp.join(array.name());
            let (blake3, size) = write_streamed(&path, |w| array.write_to(w))
                .map_err(|e| CacheError::io(&path, e))?;
            files.push(FileEntry {
                name: array.name().to_string(),
                blake3,
                size,
            });
        }
        let manifest = Manifest {
            key: key.hex(),
            kind: kind.into(),
            node: node.into(),
            created: now(),
            files,
            sources: sources.to_vec(),
        };
        let manifest_bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| CacheError::io(tmp, std::io::Error::other(e)))?;
        write_synced(&tmp.join("manifest.json"), &manifest_bytes)?;
        atomic::sync_dir(tmp);

        let dest = self.entry_dir(key);
        let parent = dest.parent().expect("entry dirs have a parent");
        fs::create_dir_all(parent).map_err(|e| CacheError::io(parent, e))?;
        match fs::rename(tmp, &dest) {
            Ok(()) => {
                atomic::sync_dir(parent);
                Ok(())
            }
            // Another run stored the same key first: its entry has the same content.
            Err(_) if dest.join("manifest.json").exists() => {
                let _ = fs::remove_dir_all(tmp);
                Ok(())
            }
            Err(e) => Err(CacheError::io(&dest, e)),
        }
    }

    /// Every entry, sorted by creation time.
    pub fn entries(&self) -> Vec<EntryInfo> {
        let mut out = Vec::new();
        let Ok(shards) = fs::read_dir(self.root.join("objects")) else {
            return out;
        };
        for shard in shards.flatten() {
            let Ok(entries) = fs::read_dir(shard.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let key = entry.file_name().to_string_lossy().into_owned();
                let manifest = fs::read(entry.path().join("manifest.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let size = dir_size(&entry.path());
                out.push(EntryInfo {
                    manifest,
                    key,
                    size,
                });
            }
        }
        out.sort_by_key(|e| {
            (
                e.manifest.as_ref().map(|m| m.created).unwrap_or(0),
                e.key.clone(),
            )
        });
        out
    }

    /// Verifies every entry; returns `(key, problem)` for each bad one. Bad entries are removed
    /// when `repair` is true.
    pub fn verify(&self, repair: bool) -> (usize, Vec<(String, String)>) {
        let mut bad = Vec::new();
        let entries = self.entries();
        for e in &entries {
            let Some(key) = Key::from_hex(&e.key) else {
                bad.push((e.key.clone(), "not a key directory".into()));
                continue;
            };
            let dir = self.entry_dir(&key);
            match self.read_verified(&key, &dir) {
                Ok(_) => {}
                // Intact, only too large for this process to hold: not bad.
                Err(store::StoreError::Memory(reason)) => {
                    tracing::warn!(key = %e.key, "not verified: {reason}");
                }
                Err(err) => {
                    if repair {
                        self.discard(&dir);
                    }
                    let reason = match err {
                        store::StoreError::Invalid(reason) => reason,
                        other => other.to_string(),
                    };
                    bad.push((e.key.clone(), reason));
                }
            }
        }
        (entries.len(), bad)
    }

    /// Removes leftovers of interrupted writes older than `tmp_age` seconds and entries created
    /// more than `max_age` seconds ago (when given). Returns `(removed entries, removed tmp dirs,
    /// bytes freed)`.
    pub fn gc(&self, max_age: Option<u64>, tmp_age: u64) -> (usize, usize, u64) {
        let (mut entries, mut tmps, mut freed) = (0, 0, 0);
        if let Ok(dir) = fs::read_dir(self.root.join("tmp")) {
            for t in dir.flatten() {
                let age = t
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                if age >= tmp_age {
                    freed += dir_size(&t.path());
                    if fs::remove_dir_all(t.path())
                        .or_else(|_| fs::remove_file(t.path()))
                        .is_ok()
                    {
                        tmps += 1;
                    }
                }
            }
        }
        if let Some(max_age) = max_age {
            for e in self.entries() {
                let old = e
                    .manifest
                    .as_ref()
                    .is_none_or(|m| now().saturating_sub(m.created) > max_age);
                if let (true, Some(key)) = (old, Key::from_hex(&e.key)) {
                    freed += e.size;
                    self.discard(&self.entry_dir(&key));
                    entries += 1;
                }
            }
        }
        (entries, tmps, freed)
    }

    /// Removes every entry and leftover, and with `datasets` the materialized datasets too.
    /// Datasets are inputs that runs read while they go, so by default they stay: a `clear`
    /// during a run then costs that run at most its cache writes and a recomputation.
    ///
    /// # Errors
    /// When a directory cannot be removed.
    pub fn clear(&self, datasets: bool) -> Result<(), CacheError> {
        let subs: &[&str] = if datasets {
            &["objects", "tmp", "data"]
        } else {
            &["objects", "tmp"]
        };
        for sub in subs {
            // Moved aside in one rename, then deleted: a run writing entries meanwhile writes
            // into the new, empty directory (or fails to cache, which it survives) and never
            // makes the removal fail with "directory not empty".
            let p = self.root.join(sub);
            if p.exists() {
                let trash = self.root.join(format!(".clear-{sub}-{}", unique_suffix()));
                fs::rename(&p, &trash).map_err(|e| CacheError::io(&p, e))?;
                fs::create_dir_all(&p).map_err(|e| CacheError::io(&p, e))?;
                fs::remove_dir_all(&trash).map_err(|e| CacheError::io(&trash, e))?;
            }
            fs::create_dir_all(&p).map_err(|e| CacheError::io(&p, e))?;
        }
        Ok(())
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(path) else {
        return fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::{Grid, Raster};
    use ndarray::Array4;

    fn raster() -> Value {
        Value::Raster(Raster {
            data: Array4::from_shape_fn((1, 2, 3, 4), |(_, b, y, x)| (b * 100 + y * 10 + x) as f32),
            grid: Grid::north_up("EPSG:32618", 0.0, 0.0, 10.0, 4, 3),
            bands: vec![Default::default(), Default::default()],
            times: vec!["t".into()],
        })
    }

    #[test]
    fn put_then_get_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Key([7; 32]);
        assert!(matches!(cache.get(&key, None), Lookup::Miss));
        cache.put(&key, "stack", "s", &raster(), &[]).unwrap();
        assert!(cache.contains(&key, None));
        match cache.get(&key, None) {
            Lookup::Hit(v, m) => {
                assert_eq!(*v, raster());
                assert_eq!(m.kind, "stack");
            }
            other => panic!("{other:?}"),
        }
        // A second writer of the same key succeeds and leaves one entry.
        cache.put(&key, "stack", "s", &raster(), &[]).unwrap();
        assert_eq!(cache.entries().len(), 1);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn flipped_bytes_are_detected_and_the_entry_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Key([9; 32]);
        cache.put(&key, "stack", "s", &raster(), &[]).unwrap();
        let npy = cache.entry_dir(&key).join("data.npy");
        let mut bytes = fs::read(&npy).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        fs::write(&npy, bytes).unwrap();
        assert_eq!(cache.verify(false).1.len(), 1);
        match cache.get(&key, None) {
            Lookup::Corrupt(reason) => assert!(reason.contains("checksum"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(!cache.contains(&key, None));
        assert_eq!(cache.verify(false), (0, vec![]));
    }

    #[test]
    fn ttl_expires_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Key([3; 32]);
        cache
            .put(
                &key,
                "stac-search",
                "s",
                &Value::Json(serde_json::json!(1)),
                &[],
            )
            .unwrap();
        let manifest_path = cache.entry_dir(&key).join("manifest.json");
        let mut m: Manifest = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
        m.created -= 100;
        fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(matches!(cache.get(&key, Some(1000)), Lookup::Hit(..)));
        assert!(matches!(cache.get(&key, Some(10)), Lookup::Miss));
        assert!(!cache.contains(&key, Some(10)));
    }

    #[test]
    fn gc_removes_interrupted_writes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("tmp/abc-1-2")).unwrap();
        fs::write(dir.path().join("tmp/abc-1-2/value.json"), b"{").unwrap();
        assert_eq!(cache.gc(None, 0).1, 1);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
