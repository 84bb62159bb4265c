//! The remote tier of the cache: a prefix in an object store shared by every run that names it.
//!
//! [`Remote::open`] takes a URL:
//!
//! - `s3://bucket/prefix` (also `s3a://`): Amazon S3 or any S3-compatible store. Configured from
//!   every `AWS_*` environment variable that `object_store`'s `AmazonS3Builder::from_env` knows,
//!   among them `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (or
//!   `AWS_TOKEN`), `AWS_REGION` (else `AWS_DEFAULT_REGION`, else us-east-1), `AWS_ENDPOINT_URL`
//!   (or `AWS_ENDPOINT`: a custom endpoint, addressed path-style), `AWS_ENDPOINT_URL_S3`,
//!   `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, `AWS_ALLOW_HTTP=true` (needed for an `http://`
//!   endpoint such as a server on the loopback interface), `AWS_SKIP_SIGNATURE`,
//!   `AWS_CONDITIONAL_PUT`, `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`, and the container
//!   credential variables. It does not read `~/.aws/config` or `AWS_PROFILE`. Without keys in
//!   the environment it asks the instance metadata endpoint.
//! - `gs://bucket/prefix`: Google Cloud Storage, from the `GOOGLE_*` variables
//!   (`GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_SERVICE_ACCOUNT_KEY`, `GOOGLE_APPLICATION_CREDENTIALS`).
//! - `az://container/prefix` (also `azure://`, `abfs://`, `abfss://`): Azure Blob Storage, from
//!   the `AZURE_*` variables (`AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ...).
//! - `file:///absolute/path`: a directory, typically on a parallel filesystem that every node of
//!   a cluster mounts. It must exist.
//!
//! Names given to the methods are relative to the prefix (`objects/ab/<key>/value.json`,
//! `records/tasks/<hex>.json`). [`WriteMode::Create`] is a conditional put: `If-None-Match: *`
//! on S3 (and the stores' equivalents), a hard link that fails when the target exists on a
//! filesystem; of two writers of one name exactly one succeeds, and nothing else is left behind.
//!
//! The engine calls the cache from blocking threads, some of them inside its tokio runtime, where
//! `Runtime::block_on` panics. So a `Remote` owns a small multi-threaded runtime of its own: each
//! call is spawned onto it and the calling thread waits on a channel for the answer. Waiting on a
//! channel is allowed on any thread, the remote's worker threads drive the I/O whatever the caller
//! is doing, and no thread is started per call.

use std::fmt;
use std::future::Future;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::error::CacheError;

/// How [`Remote::put`] treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Write only if no object has the name (a conditional put).
    Create,
    /// Replace whatever is there.
    Overwrite,
}

/// A prefix in an object store, with blocking methods.
pub struct Remote {
    /// The URL as given, without a trailing slash.
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The prefix inside the store (empty for `file://` URLs, whose store is rooted there).
    prefix: Vec<String>,
    /// Drives every request (see the module docs). An `Option` so that `Drop` can shut it down
    /// without blocking, which is allowed even inside another runtime.
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Retries of one request: a few, within seconds, so that an unreachable endpoint is reported
/// quickly and a run falls back on its local cache rather than waiting minutes per entry.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

/// The error of a call made after the remote's runtime stopped (or whose task was dropped).
fn stopped() -> object_store::Error {
    object_store::Error::Generic {
        store: "flow",
        source: "the remote's I/O threads stopped".into(),
    }
}

impl Remote {
    /// Opens the store named by `url` and checks that its bucket (or directory) exists with one
    /// listing request.
    ///
    /// # Errors
    /// [`CacheError::Remote`] naming the URL when it is not a supported URL, when the store
    /// cannot be configured from the environment, or when the bucket is missing or the endpoint
    /// does not answer.
    pub fn open(url: &str) -> Result<Remote, CacheError> {
        let url = url.trim_end_matches('/').to_string();
        let fail = |reason: String| CacheError::Remote {
            url: url.clone(),
            reason,
        };
        let parsed = url::Url::parse(&url).map_err(|e| fail(format!("not a URL: {e}")))?;
        // rustls needs one process-wide crypto provider; the first caller installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let segments = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        let (store, prefix): (Arc<dyn ObjectStore>, Vec<String>) = match parsed.scheme() {
            "s3" | "s3a" => {
                let store = AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                (Arc::new(store), segments(parsed.path()))
            }
            "gs" => {
                let store = GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                (Arc::new(store), segments(parsed.path()))
            }
            "az" | "azure" | "abfs" | "abfss" => {
                let store = MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry_config())
                    .build()
                    .map_err(|e| fail(e.to_string()))?;
                (Arc::new(store), segments(parsed.path()))
            }
            "file" => {
                if parsed.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(fail(
                        "a file URL names an absolute path: file:///path".into(),
                    ));
                }
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| fail("not an absolute path".into()))?;
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| fail(e.to_string()))?
                    .with_fsync(true)
                    .with_automatic_cleanup(true);
                (Arc::new(store), Vec::new())
            }
            other => {
                return Err(fail(format!(
                    "unsupported scheme {other}:// (use s3://, gs://, az:// or file://)"
                )))
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flow-remote")
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start its I/O threads: {e}")))?;
        let remote = Remote {
            url,
            store,
            prefix,
            runtime: Some(runtime),
        };
        // One cheap request: a listing of the prefix's first level. A missing bucket or an
        // endpoint that does not answer fails here, not halfway through a run.
        let store = Arc::clone(&remote.store);
        let path = remote.path("");
        if let Err(e) = remote.call(async move { store.list_with_delimiter(Some(&path)).await }) {
            let text = e.to_string();
            let reason = if matches!(e, object_store::Error::NotFound { .. })
                || text.contains("NoSuchBucket")
                || text.contains("ContainerNotFound")
            {
                format!("the bucket does not exist ({text})")
            } else {
                format!("cannot list the bucket ({text})")
            };
            return Err(CacheError::Remote {
                url: remote.url.clone(),
                reason,
            });
        }
        Ok(remote)
    }

    /// The URL of the object `name`.
    pub fn object_url(&self, name: &str) -> String {
        if name.is_empty() {
            self.url.clone()
        } else {
            format!("{}/{name}", self.url)
        }
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from_iter(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain(name.split('/').filter(|s| !s.is_empty())),
        )
    }

    fn error(&self, name: &str, e: &object_store::Error) -> CacheError {
        CacheError::Remote {
            url: self.object_url(name),
            reason: e.to_string(),
        }
    }

    /// Runs `fut` on the remote's runtime and waits for it (see the module docs).
    fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> object_store::Result<T> {
        let Some(rt) = &self.runtime else {
            return Err(stopped());
        };
        let (tx, rx) = mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// The object `name`, or `None` when there is none.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let store = Arc::clone(&self.store);
        let path = self.path(name);
        let result = self.call(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        result
            .map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| self.error(name, &e))
    }

    /// Streams the object `name` into `out`; returns false when there is none (then nothing
    /// was written). The object is never held whole in memory.
    ///
    /// # Errors
    /// When the store cannot be read or `out` cannot be written.
    pub fn download(&self, name: &str, out: &mut dyn std::io::Write) -> Result<bool, CacheError> {
        let store = Arc::clone(&self.store);
        let path = self.path(name);
        // Chunks come back through a channel so that the writer stays on this thread.
        let (tx, rx) = mpsc::sync_channel(4);
        let Some(rt) = &self.runtime else {
            return Err(self.error(name, &stopped()));
        };
        rt.spawn(async move {
            let result = match store.get(&path).await {
                Ok(r) => {
                    let mut stream = r.into_stream();
                    loop {
                        match stream.try_next().await {
                            Ok(Some(chunk)) => {
                                if tx.send(Ok(Some(chunk))).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break Ok(()),
                            Err(e) => break Err(e),
                        }
                    }
                }
                Err(e) => Err(e),
            };
            let _ = tx.send(result.map(|()| None));
        });
        let mut any = false;
        loop {
            match rx.recv() {
                Ok(Ok(Some(chunk))) => {
                    any = true;
                    out.write_all(&chunk).map_err(|e| CacheError::Remote {
                        url: self.object_url(name),
                        reason: format!("cannot write the local copy: {e}"),
                    })?;
                }
                Ok(Ok(None)) => return Ok(true),
                Ok(Err(object_store::Error::NotFound { .. })) if !any => return Ok(false),
                Ok(Err(e)) => return Err(self.error(name, &e)),
                Err(_) => {
                    return Err(CacheError::Remote {
                        url: self.object_url(name),
                        reason: "the download stopped".into(),
                    })
                }
            }
        }
    }

    /// True when the object `name` exists (one HEAD request).
    ///
    /// # Errors
    /// When the store cannot be asked.
    pub fn exists(&self, name: &str) -> Result<bool, CacheError> {
        let store = Arc::clone(&self.store);
        let path = self.path(name);
        self.call(async move {
            match store.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.error(name, &e))
    }

    /// Writes `bytes` as the object `name`. Returns whether it was written: false when `mode`
    /// is [`WriteMode::Create`] and an object of that name exists (it is left as it is).
    ///
    /// # Errors
    /// When the store refuses the write for another reason or cannot be reached.
    pub fn put(&self, name: &str, bytes: Vec<u8>, mode: WriteMode) -> Result<bool, CacheError> {
        let store = Arc::clone(&self.store);
        let path = self.path(name);
        let opts = PutOptions {
            mode: match mode {
                WriteMode::Create => PutMode::Create,
                WriteMode::Overwrite => PutMode::Overwrite,
            },
            ..PutOptions::default()
        };
        self.call(async move {
            match store.put_opts(&path, PutPayload::from(bytes), opts).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.error(name, &e))
    }

    /// Deletes the object `name` (nothing happens when there is none).
    ///
    /// # Errors
    /// When the store refuses or cannot be reached.
    pub fn delete(&self, name: &str) -> Result<(), CacheError> {
        let store = Arc::clone(&self.store);
        let path = self.path(name);
        self.call(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.error(name, &e))
    }

    /// The names of every object under `prefix` (whole path segments: `tasks` lists
    /// `tasks/a.json`, not `tasks2/b.json`), relative to the remote's prefix, sorted.
    ///
    /// # Errors
    /// When the store cannot be listed.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, CacheError> {
        let store = Arc::clone(&self.store);
        let path = self.path(prefix);
        let metas = self
            .call(async move { store.list(Some(&path)).try_collect::<Vec<_>>().await })
            .map_err(|e| self.error(prefix, &e))?;
        let skip = self.prefix.len();
        let mut names: Vec<String> = metas
            .into_iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_remote(dir: &std::path::Path) -> Remote {
        Remote::open(&format!("file://{}", dir.display())).unwrap()
    }

    #[test]
    fn create_is_conditional_and_overwrite_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let remote = file_remote(dir.path());
        assert!(remote
            .put("a/b.json", b"one".to_vec(), WriteMode::Create)
            .unwrap());
        assert!(!remote
            .put("a/b.json", b"two".to_vec(), WriteMode::Create)
            .unwrap());
        assert_eq!(remote.get("a/b.json").unwrap().unwrap(), b"one");
        assert!(remote
            .put("a/b.json", b"three".to_vec(), WriteMode::Overwrite)
            .unwrap());
        assert_eq!(remote.get("a/b.json").unwrap().unwrap(), b"three");
        assert_eq!(remote.list("a").unwrap(), vec!["a/b.json".to_string()]);
        assert!(remote.list("ab").unwrap().is_empty());
        assert!(remote.exists("a/b.json").unwrap());
        let mut copy = Vec::new();
        assert!(remote.download("a/b.json", &mut copy).unwrap());
        assert_eq!(copy, b"three");
        remote.delete("a/b.json").unwrap();
        remote.delete("a/b.json").unwrap();
        assert_eq!(remote.get("a/b.json").unwrap(), None);
        assert!(!remote.download("a/b.json", &mut copy).unwrap());
        assert!(!remote.exists("a/b.json").unwrap());
        // Nothing but the objects themselves is ever left in the directory.
        assert!(remote.list("").unwrap().is_empty());
    }

    #[test]
    fn racing_creators_leave_one_object() {
        let dir = tempfile::tempdir().unwrap();
        let remote = Arc::new(file_remote(dir.path()));
        let created: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let remote = Arc::clone(&remote);
                    s.spawn(move || remote.put("x", vec![i; 1000], WriteMode::Create).unwrap())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(created, 1);
        assert_eq!(remote.list("").unwrap(), vec!["x".to_string()]);
        let bytes = remote.get("x").unwrap().unwrap();
        assert!(bytes.iter().all(|b| *b == bytes[0]));
    }

    #[test]
    fn usable_from_inside_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let remote = file_remote(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let remote = rt.block_on(async move {
            assert!(remote.put("n", b"v".to_vec(), WriteMode::Create).unwrap());
            assert_eq!(remote.get("n").unwrap().unwrap(), b"v");
            remote
        });
        // Dropped inside a runtime too: no panic.
        rt.block_on(async move { drop(remote) });
    }

    #[test]
    fn a_missing_directory_names_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/absent", dir.path().display());
        let err = Remote::open(&url).unwrap_err();
        assert!(err.to_string().contains(&url), "{err}");
        assert_eq!(err.exit_code(), flow_core::ExitCode::Io);
        let err = Remote::open("ftp://host/x").unwrap_err();
        assert!(err.to_string().contains("ftp://host/x"), "{err}");
    }
}
