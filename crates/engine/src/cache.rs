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
//!
//! # The remote tier
//!
//! [`Cache::with_remote`] attaches a [`Remote`] (a prefix on object storage, or a directory on a
//! shared filesystem) that many runs share; the directory is then its read-through copy. Objects
//! mirror the local layout, `<prefix>/objects/ab/<key>/{value.json,*.npy,manifest.json}`.
//!
//! - A put writes the entry locally as always, then uploads each file with a conditional
//!   create (an object that already exists is left alone: it came from the same key), the
//!   manifest last. A reader that finds a manifest therefore finds every file it lists, and two
//!   writers of one key leave one object per file name.
//! - A get that misses locally reads the remote manifest, streams its files into `tmp/`,
//!   checking each one's size and BLAKE3 against the manifest, renames the directory into
//!   `objects/` and reads it from there like any local entry. A remote entry that does not
//!   verify is deleted remotely (manifest first) and reported as [`Lookup::Corrupt`] naming the
//!   object's URL; the caller recomputes and its put writes the entry again. A local hit whose
//!   entry the remote lacks is uploaded (one HEAD request per hit).
//! - `lookup` (and `contains`) read the local manifest, else the remote one; `remove` removes
//!   both copies.
//! - A remote that fails during a run is a warning: the run goes on with the local cache.
//!
//! Records (small named blobs such as task completion records, [`Cache::put_record`]) live under
//! `records/` in the directory without a remote, and only remotely (`<prefix>/records/`) with
//! one: the remote is then the truth every run shares.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use flow_core::store::StoredFiles;
use flow_core::Value;
use flow_core::{atomic, store};
use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::key::Key;
use crate::remote::{Remote, WriteMode};

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

/// An on-disk cache rooted at a directory, optionally the read-through copy of a [`Remote`].
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    remote: Option<Arc<Remote>>,
    /// Set at the first failure of the remote in this process (after its retries): the rest of
    /// the run uses the local cache alone rather than waiting on every entry.
    remote_down: Arc<AtomicBool>,
    /// Keys this process knows the remote holds (it uploaded, fetched or found them), so that a
    /// hit asks the remote about its entry once, not at every lookup.
    on_remote: Arc<std::sync::Mutex<std::collections::HashSet<Key>>>,
}

/// What fetching an entry from the remote gave.
enum Fetched {
    /// The entry is now in `objects/`.
    Stored,
    /// The remote has no (unexpired) entry, or could not be read.
    Miss,
    /// The remote entry did not verify and has been deleted.
    Corrupt(String),
}

/// The name of a key's entry, relative to the cache root or the remote's prefix.
fn entry_name(key: &Key) -> String {
    let hex = key.hex();
    format!("objects/{}/{hex}", &hex[..2])
}

/// True for a file name an entry may hold: one plain path segment.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Checks a record name: a relative path of plain segments.
fn check_record_name(name: &str) -> Result<(), CacheError> {
    let bad = |reason| {
        Err(CacheError::RecordName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('/') {
        return bad("absolute; records are named by relative paths such as tasks/<hex>.json");
    }
    if name.contains(['\\', '\0']) {
        return bad("contains a backslash or NUL");
    }
    for segment in name.split('/') {
        match segment {
            "" => return bad("has an empty segment"),
            "." | ".." => return bad("has a . or .. segment"),
            _ => {}
        }
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A name part no other temporary of this cache has: the process, a counter of the process and
/// the time (threads of one process may ask within one tick of a coarse clock).
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos}", std::process::id())
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
        Ok(Cache {
            root,
            remote: None,
            remote_down: Arc::new(AtomicBool::new(false)),
            on_remote: Default::default(),
        })
    }

    /// This cache as the local, read-through copy of `remote` (see the module docs).
    pub fn with_remote(mut self, remote: Remote) -> Cache {
        self.remote = Some(Arc::new(remote));
        self
    }

    /// The remote, for entries, unless it has failed in this process.
    fn live_remote(&self) -> Option<&Remote> {
        if self.remote_down.load(Ordering::Relaxed) {
            return None;
        }
        self.remote.as_deref()
    }

    /// Reports a failure of the entries' remote tier: a remote error stops its use for the rest
    /// of the process (warned once); a local one is warned.
    fn remote_failed(&self, e: &CacheError, consequence: &str) {
        if matches!(e, CacheError::Remote { .. }) {
            if !self.remote_down.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "{e}; {consequence}, and the shared cache is not used again in this run"
                );
            }
        } else {
            tracing::warn!("{e}; {consequence}");
        }
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
        self.root.join(entry_name(key))
    }

    /// True when an entry for `key` exists and is younger than `ttl` seconds (when given). Does
    /// not verify its contents; [`Cache::get`] does.
    pub fn contains(&self, key: &Key, ttl: Option<u64>) -> bool {
        self.lookup(key, ttl).is_some()
    }

    /// The manifest of the entry for `key` when there is one younger than `ttl` seconds (when
    /// given): local, else remote. Does not verify the entry; [`Cache::get`] does.
    pub fn lookup(&self, key: &Key, ttl: Option<u64>) -> Option<Manifest> {
        self.manifest(key)
            .filter(|m| ttl.is_none_or(|ttl| now().saturating_sub(m.created) <= ttl))
    }

    /// The entry's manifest: the local one, else the remote one.
    fn manifest(&self, key: &Key) -> Option<Manifest> {
        let local = fs::read(self.entry_dir(key).join("manifest.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        local.or_else(|| self.remote_manifest(key))
    }

    fn remote_manifest(&self, key: &Key) -> Option<Manifest> {
        let remote = self.live_remote()?;
        match remote.get(&format!("{}/manifest.json", entry_name(key))) {
            Ok(bytes) => serde_json::from_slice(&bytes?).ok(),
            Err(e) => {
                self.remote_failed(&e, "going on with the local cache");
                None
            }
        }
    }

    /// Reads and verifies the entry for `key` (fetching it from the remote on a local miss).
    pub fn get(&self, key: &Key, ttl: Option<u64>) -> Lookup {
        let dir = self.entry_dir(key);
        let fetched = !dir.exists();
        if fetched {
            match self.fetch(key, ttl) {
                Fetched::Stored => {}
                Fetched::Miss => return Lookup::Miss,
                Fetched::Corrupt(reason) => return Lookup::Corrupt(reason),
            }
        }
        match self.read_verified(key, &dir) {
            Ok((value, manifest)) => {
                if ttl.is_some_and(|ttl| now().saturating_sub(manifest.created) > ttl) {
                    Lookup::Miss
                } else {
                    if !fetched {
                        self.ensure_uploaded(key);
                    }
                    Lookup::Hit(Box::new(value), manifest)
                }
            }
            // The entry is intact; this process cannot hold its arrays right now.
            Err(store::StoreError::Memory(reason)) => {
                Lookup::Corrupt(format!("cannot be loaded: {reason}; the entry is kept"))
            }
            Err(e) => {
                let reason = match e {
                    store::StoreError::Invalid(reason) => reason,
                    other => other.to_string(),
                };
                self.discard(&dir);
                match (&self.remote, fetched) {
                    // Every file matched the remote manifest, yet the entry is not a value
                    // for this key: the remote copy is wrong as a whole.
                    (Some(remote), true) => {
                        self.delete_remote(key);
                        Lookup::Corrupt(format!(
                            "remote entry {}: {reason}; deleted",
                            remote.object_url(&entry_name(key))
                        ))
                    }
                    _ => Lookup::Corrupt(reason),
                }
            }
        }
    }

    /// Copies the remote entry for `key` into `objects/`, every file checked against the
    /// remote manifest on the way.
    fn fetch(&self, key: &Key, ttl: Option<u64>) -> Fetched {
        let Some(remote) = self.live_remote() else {
            return Fetched::Miss;
        };
        let base = entry_name(key);
        let manifest_name = format!("{base}/manifest.json");
        let manifest_bytes = match remote.get(&manifest_name) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Fetched::Miss,
            Err(e) => {
                self.remote_failed(&e, "going on with the local cache");
                return Fetched::Miss;
            }
        };
        let corrupt = |reason: String| {
            self.delete_remote(key);
            Fetched::Corrupt(format!("{reason}; deleted from the shared cache"))
        };
        let manifest: Manifest = match serde_json::from_slice(&manifest_bytes) {
            Ok(m) => m,
            Err(e) => {
                return corrupt(format!(
                    "remote object {}: {e}",
                    remote.object_url(&manifest_name)
                ))
            }
        };
        if manifest.key != key.hex() {
            return corrupt(format!(
                "remote object {}: names another key",
                remote.object_url(&manifest_name)
            ));
        }
        if let Some(bad) = manifest
            .files
            .iter()
            .find(|f| !plain_file_name(&f.name) || f.name == "manifest.json")
        {
            return corrupt(format!(
                "remote object {}: lists a file named {:?}",
                remote.object_url(&manifest_name),
                bad.name
            ));
        }
        if ttl.is_some_and(|ttl| now().saturating_sub(manifest.created) > ttl) {
            return Fetched::Miss;
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}-fetch-{}", key.short(), unique_suffix()));
        let fetched = match self.download_entry(remote, &base, &manifest, &manifest_bytes, &tmp) {
            Ok(None) => match self.publish(key, &tmp) {
                Ok(()) => {
                    self.mark_on_remote(key);
                    Fetched::Stored
                }
                Err(e) => {
                    tracing::warn!("{e}: cannot store what the shared cache holds");
                    Fetched::Miss
                }
            },
            Ok(Some(reason)) => corrupt(reason),
            Err(e) => {
                self.remote_failed(&e, "going on with the local cache");
                Fetched::Miss
            }
        };
        // Whatever is left of the download (nothing once it was published).
        let _ = fs::remove_dir_all(&tmp);
        fetched
    }

    /// Streams the remote entry's files into `tmp`, hashing them on the way. Returns the
    /// problem when one is missing or does not match the manifest.
    fn download_entry(
        &self,
        remote: &Remote,
        base: &str,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        tmp: &Path,
    ) -> Result<Option<String>, CacheError> {
        fs::create_dir_all(tmp).map_err(|e| CacheError::io(tmp, e))?;
        for f in &manifest.files {
            let name = format!("{base}/{}", f.name);
            let path = tmp.join(&f.name);
            let file = File::create(&path).map_err(|e| CacheError::io(&path, e))?;
            let mut out = Hashing::new(BufWriter::new(file));
            if !remote.download(&name, &mut out)? {
                return Ok(Some(format!(
                    "remote object {}: missing",
                    remote.object_url(&name)
                )));
            }
            out.flush().map_err(|e| CacheError::io(&path, e))?;
            let (blake3, size) = out.digest();
            let file = out
                .inner
                .into_inner()
                .map_err(|e| CacheError::io(&path, e.into_error()))?;
            file.sync_all().map_err(|e| CacheError::io(&path, e))?;
            if size != f.size || blake3 != f.blake3 {
                return Ok(Some(format!(
                    "remote object {}: checksum mismatch",
                    remote.object_url(&name)
                )));
            }
        }
        write_synced(&tmp.join("manifest.json"), manifest_bytes)?;
        atomic::sync_dir(tmp);
        Ok(None)
    }

    /// Deletes the remote copy of `key`'s entry, its manifest first so that no reader trusts
    /// what remains meanwhile. Failures are warnings.
    fn delete_remote(&self, key: &Key) {
        let Some(remote) = self.live_remote() else {
            return;
        };
        if let Ok(mut k) = self.on_remote.lock() {
            k.remove(key);
        }
        let base = entry_name(key);
        let manifest = format!("{base}/manifest.json");
        let result = remote.delete(&manifest).and_then(|()| {
            for name in remote.list(&base)? {
                remote.delete(&name)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            self.remote_failed(&e, "the shared cache's copy of the entry is not deleted");
        }
    }

    /// Uploads `key`'s local entry when the remote lacks it (asked once per key and process).
    /// Failures are warnings.
    fn ensure_uploaded(&self, key: &Key) {
        let Some(remote) = self.live_remote() else {
            return;
        };
        if self.known_on_remote(key) {
            return;
        }
        let result = remote
            .exists(&format!("{}/manifest.json", entry_name(key)))
            .and_then(|there| {
                if there {
                    Ok(())
                } else {
                    self.upload(remote, key)
                }
            });
        match result {
            Ok(()) => self.mark_on_remote(key),
            Err(e) => self.remote_failed(&e, "the entry stays in the local cache only"),
        }
    }

    fn known_on_remote(&self, key: &Key) -> bool {
        self.on_remote.lock().is_ok_and(|k| k.contains(key))
    }

    fn mark_on_remote(&self, key: &Key) {
        if let Ok(mut k) = self.on_remote.lock() {
            k.insert(*key);
        }
    }

    /// Uploads `key`'s local entry: every file with a conditional create (one that exists came
    /// from the same key), the manifest last.
    fn upload(&self, remote: &Remote, key: &Key) -> Result<(), CacheError> {
        let dir = self.entry_dir(key);
        let manifest_path = dir.join("manifest.json");
        let manifest_bytes =
            fs::read(&manifest_path).map_err(|e| CacheError::io(&manifest_path, e))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| CacheError::io(&manifest_path, io::Error::other(e)))?;
        let base = entry_name(key);
        for f in &manifest.files {
            // Held whole while it is sent: one file at a time, as large as the value itself.
            let path = dir.join(&f.name);
            let bytes = fs::read(&path).map_err(|e| CacheError::io(&path, e))?;
            remote.put(&format!("{base}/{}", f.name), bytes, WriteMode::Create)?;
        }
        remote.put(
            &format!("{base}/manifest.json"),
            manifest_bytes,
            WriteMode::Create,
        )?;
        Ok(())
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
        self.delete_remote(key);
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
        result?;
        if let Some(remote) = self.live_remote() {
            match self.upload(remote, key) {
                Ok(()) => self.mark_on_remote(key),
                Err(e) => self.remote_failed(&e, "the entry stays in the local cache only"),
            }
        }
        Ok(())
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
        self.publish(key, tmp)
    }

    /// Renames the complete entry in `tmp` into `objects/`.
    fn publish(&self, key: &Key, tmp: &Path) -> Result<(), CacheError> {
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

    /// Stores the record `name` (a relative path such as `tasks/<hex>.json`). With
    /// `create_only`, only when no record of that name exists, atomically: of two writers
    /// exactly one creates it. Returns whether this call wrote it. Records live in `records/`
    /// under the cache root, or with a remote only remotely, in `<prefix>/records/`.
    ///
    /// # Errors
    /// When the name is not a plain relative path, or the record cannot be written.
    pub fn put_record(
        &self,
        name: &str,
        bytes: &[u8],
        create_only: bool,
    ) -> Result<bool, CacheError> {
        check_record_name(name)?;
        let mode = if create_only {
            WriteMode::Create
        } else {
            WriteMode::Overwrite
        };
        if let Some(remote) = &self.remote {
            return remote.put(&format!("records/{name}"), bytes.to_vec(), mode);
        }
        let path = self.root.join("records").join(name);
        let parent = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(|e| CacheError::io(parent, e))?;
        // Written whole beside the other temporaries first, then linked or renamed into place:
        // a reader sees the whole record or none.
        let tmp = self
            .root
            .join("tmp")
            .join(format!("record-{}", unique_suffix()));
        write_synced(&tmp, bytes)?;
        if !create_only {
            atomic::commit(&tmp, &path).map_err(|e| CacheError::io(&path, e))?;
            return Ok(true);
        }
        // A hard link fails when the target exists, where a rename would replace it.
        let placed = match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(CacheError::io(&path, e)),
        };
        let _ = fs::remove_file(&tmp);
        if matches!(placed, Ok(true)) {
            atomic::sync_dir(parent);
        }
        placed
    }

    /// The record `name`, or `None` when there is none.
    ///
    /// # Errors
    /// When the name is not a plain relative path, or the record cannot be read.
    pub fn get_record(&self, name: &str) -> Result<Option<Vec<u8>>, CacheError> {
        check_record_name(name)?;
        if let Some(remote) = &self.remote {
            return remote.get(&format!("records/{name}"));
        }
        let path = self.root.join("records").join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io(&path, e)),
        }
    }

    /// The names of every record under `prefix` (whole segments: `tasks` lists `tasks/a.json`;
    /// an empty prefix lists all), sorted.
    ///
    /// # Errors
    /// When the prefix is not a plain relative path, or the records cannot be listed.
    pub fn list_records(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            check_record_name(prefix)?;
        }
        if let Some(remote) = &self.remote {
            let base = if prefix.is_empty() {
                "records".to_string()
            } else {
                format!("records/{prefix}")
            };
            return Ok(remote
                .list(&base)?
                .into_iter()
                .filter_map(|n| n.strip_prefix("records/").map(String::from))
                .collect());
        }
        let records = self.root.join("records");
        let mut out = Vec::new();
        let start = if prefix.is_empty() {
            records.clone()
        } else {
            records.join(prefix)
        };
        list_files(&records, &start, &mut out)?;
        out.sort();
        Ok(out)
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

/// Adds the files under `dir` to `out`, as `/`-separated paths relative to `base`.
fn list_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), CacheError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // A prefix that names a file, not a directory, lists nothing (as on object storage).
        Err(_) if dir.is_file() => return Ok(()),
        Err(e) => return Err(CacheError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CacheError::io(dir, e))?;
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => list_files(base, &path, out)?,
            Ok(_) => {
                if let Ok(rel) = path.strip_prefix(base) {
                    let parts: Vec<_> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push(parts.join("/"));
                }
            }
            Err(e) => return Err(CacheError::io(&path, e)),
        }
    }
    Ok(())
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

    fn shared(dir: &Path) -> Remote {
        Remote::open(&format!("file://{}", dir.display())).unwrap()
    }

    /// Every object name in a file:// remote rooted at `dir`.
    fn objects(dir: &Path) -> Vec<String> {
        shared(dir).list("").unwrap()
    }

    #[test]
    fn a_second_cache_reads_through_the_remote() {
        let (bucket, a, b) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let first = Cache::open(a.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        let key = Key([5; 32]);
        first.put(&key, "stack", "s", &raster(), &[]).unwrap();
        let hex = key.hex();
        let base = format!("objects/{}/{hex}", &hex[..2]);
        assert_eq!(
            objects(bucket.path()),
            vec![
                format!("{base}/data.npy"),
                format!("{base}/manifest.json"),
                format!("{base}/value.json"),
            ]
        );
        let second = Cache::open(b.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        assert!(second.contains(&key, None));
        assert!(!second.contains(&Key([6; 32]), None));
        match second.get(&key, None) {
            Lookup::Hit(v, m) => {
                assert_eq!(*v, raster());
                assert_eq!(m.kind, "stack");
            }
            other => panic!("{other:?}"),
        }
        // Now a local entry too, and verified like one.
        assert_eq!(second.verify(false), (1, vec![]));
        assert_eq!(fs::read_dir(b.path().join("tmp")).unwrap().count(), 0);
        // A second put of the same key changes nothing remotely.
        second.put(&key, "stack", "s", &raster(), &[]).unwrap();
        assert_eq!(objects(bucket.path()).len(), 3);
        // An expired remote entry is not fetched.
        let third = tempfile::tempdir().unwrap();
        let third = Cache::open(third.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        let manifest_path = bucket.path().join(&base).join("manifest.json");
        let mut m: Manifest = serde_json::from_slice(&fs::read(&manifest_path).unwrap()).unwrap();
        m.created -= 100;
        fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(third.contains(&key, Some(1000)));
        assert!(!third.contains(&key, Some(10)));
        assert!(matches!(third.get(&key, Some(10)), Lookup::Miss));
        assert!(third.entries().is_empty(), "nothing fetched");
        // remove() removes both copies.
        second.remove(&key);
        assert!(objects(bucket.path()).is_empty());
        assert!(!second.contains(&key, None));
    }

    #[test]
    fn a_local_hit_the_remote_lacks_is_uploaded() {
        let (bucket, a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let key = Key([4; 32]);
        Cache::open(a.path())
            .unwrap()
            .put(&key, "stack", "s", &raster(), &[])
            .unwrap();
        let cache = Cache::open(a.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        assert!(objects(bucket.path()).is_empty());
        assert!(matches!(cache.get(&key, None), Lookup::Hit(..)));
        assert_eq!(objects(bucket.path()).len(), 3);
    }

    #[test]
    fn a_corrupt_remote_object_is_reported_deleted_and_rewritten() {
        let (bucket, a, b) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let key = Key([8; 32]);
        let first = Cache::open(a.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        first.put(&key, "stack", "s", &raster(), &[]).unwrap();
        let hex = key.hex();
        let npy = bucket
            .path()
            .join(format!("objects/{}/{hex}/data.npy", &hex[..2]));
        let mut bytes = fs::read(&npy).unwrap();
        let n = bytes.len();
        bytes[n - 2] ^= 0x40;
        fs::write(&npy, &bytes).unwrap();

        let second = Cache::open(b.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        match second.get(&key, None) {
            Lookup::Corrupt(reason) => {
                assert!(
                    reason.contains(&format!("file://{}", npy.display()))
                        && reason.contains("checksum mismatch"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(objects(bucket.path()).is_empty(), "deleted remotely");
        assert!(second.entries().is_empty(), "and not kept locally");
        assert_eq!(fs::read_dir(b.path().join("tmp")).unwrap().count(), 0);
        // The recomputed value's put writes it again, and it verifies.
        second.put(&key, "stack", "s", &raster(), &[]).unwrap();
        let third = tempfile::tempdir().unwrap();
        let third = Cache::open(third.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        assert!(matches!(third.get(&key, None), Lookup::Hit(..)));
    }

    #[test]
    fn a_remote_manifest_listing_a_missing_file_is_corrupt() {
        let (bucket, a, b) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let key = Key([2; 32]);
        let first = Cache::open(a.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        first.put(&key, "stack", "s", &raster(), &[]).unwrap();
        let hex = key.hex();
        fs::remove_file(
            bucket
                .path()
                .join(format!("objects/{}/{hex}/value.json", &hex[..2])),
        )
        .unwrap();
        let second = Cache::open(b.path())
            .unwrap()
            .with_remote(shared(bucket.path()));
        match second.get(&key, None) {
            Lookup::Corrupt(reason) => assert!(reason.contains("value.json: missing"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(objects(bucket.path()).is_empty());
    }

    #[test]
    fn a_remote_that_fails_mid_run_leaves_the_local_cache_working() {
        let (dir, a) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bucket = dir.path().join("bucket");
        fs::create_dir(&bucket).unwrap();
        let cache = Cache::open(a.path()).unwrap().with_remote(shared(&bucket));
        // The shared directory is replaced by a file: every request fails from now on.
        fs::remove_dir(&bucket).unwrap();
        fs::write(&bucket, b"not a directory").unwrap();
        let key = Key([1; 32]);
        assert!(!cache.contains(&key, None));
        assert!(matches!(cache.get(&key, None), Lookup::Miss));
        cache.put(&key, "stack", "s", &raster(), &[]).unwrap();
        assert!(cache.contains(&key, None));
        match cache.get(&key, None) {
            Lookup::Hit(v, _) => assert_eq!(*v, raster()),
            other => panic!("{other:?}"),
        }
        cache.remove(&key);
        assert!(!cache.contains(&key, None));
        // Once failed, the remote is left alone for the rest of the process, even when it
        // would answer again.
        fs::remove_file(&bucket).unwrap();
        fs::create_dir(&bucket).unwrap();
        cache
            .put(&Key([3; 32]), "stack", "s", &raster(), &[])
            .unwrap();
        assert!(objects(&bucket).is_empty());
        // Records have no local fallback with a remote: the error names the object.
        fs::remove_dir(&bucket).unwrap();
        fs::write(&bucket, b"not a directory").unwrap();
        let err = cache.put_record("tasks/a.json", b"x", true).unwrap_err();
        assert!(err.to_string().contains("records/tasks/a.json"), "{err}");
    }

    #[test]
    fn records_are_created_once() {
        let bucket = tempfile::tempdir().unwrap();
        for remote in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut cache = Cache::open(dir.path()).unwrap();
            if remote {
                cache = cache.with_remote(shared(bucket.path()));
            }
            assert_eq!(cache.get_record("tasks/a.json").unwrap(), None);
            assert!(cache.put_record("tasks/a.json", b"first", true).unwrap());
            assert!(!cache.put_record("tasks/a.json", b"second", true).unwrap());
            assert_eq!(cache.get_record("tasks/a.json").unwrap().unwrap(), b"first");
            assert!(cache.put_record("tasks/a.json", b"third", false).unwrap());
            assert_eq!(cache.get_record("tasks/a.json").unwrap().unwrap(), b"third");
            assert!(cache.put_record("tasks/deep/b.json", b"b", true).unwrap());
            assert!(cache.put_record("other.json", b"o", true).unwrap());
            assert_eq!(
                cache.list_records("tasks").unwrap(),
                vec!["tasks/a.json".to_string(), "tasks/deep/b.json".to_string()]
            );
            assert_eq!(cache.list_records("").unwrap().len(), 3);
            assert!(cache.list_records("task").unwrap().is_empty());
            for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/./b", "a/"] {
                assert!(
                    matches!(
                        cache.put_record(bad, b"x", true),
                        Err(CacheError::RecordName { .. })
                    ),
                    "{bad:?}"
                );
                assert!(cache.get_record(bad).is_err(), "{bad:?}");
            }
            // Without a remote they are files under records/; with one, only remote objects.
            assert_eq!(dir.path().join("records").exists(), !remote);
            assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        }
        assert!(bucket.path().join("records/tasks/a.json").is_file());
    }

    #[test]
    fn racing_record_creators_leave_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let created: Vec<u8> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let cache = &cache;
                    s.spawn(move || cache.put_record("r", &[i; 64], true).unwrap().then_some(i))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(created.len(), 1);
        assert_eq!(
            cache.get_record("r").unwrap().unwrap(),
            vec![created[0]; 64]
        );
    }
}
