//! Builtin datasets on disk: a [`DatasetProvider`](crate::DatasetProvider) registered under a
//! name (the offline Timberlea scene as `timberlea`) is materialized once into
//! `data_dir/NAME-VERSION` and read from there by every node that names it — `stac-search`'s
//! `catalog = "builtin:timberlea"` (its ItemCollection), `read`'s
//! `path = "builtin:timberlea/truth.tif"` (a file inside it).

use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

use crate::{atomic, schema, NodeError, RunContext};

/// The file that records, inside a materialized dataset directory, which file to read; a
/// directory without it is not a complete dataset.
pub const MARKER: &str = ".flow-dataset.json";

/// `s` with every character but ASCII letters, digits, `-`, `_` and `.` replaced by `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The file a materialized dataset's marker in `dir` names, or None when `dir` does not exist.
fn read_marker(dir: &Path) -> Result<Option<PathBuf>, NodeError> {
    let marker = dir.join(MARKER);
    match std::fs::read(&marker) {
        Ok(bytes) => {
            let v: Json = serde_json::from_slice(&bytes).map_err(|e| {
                NodeError::InvalidData(format!("{}: {e}; remove the directory", marker.display()))
            })?;
            let rel = v.get("path").and_then(Json::as_str).ok_or_else(|| {
                NodeError::InvalidData(format!(
                    "{}: no `path`; remove the directory",
                    marker.display()
                ))
            })?;
            Ok(Some(dir.join(rel)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.exists() {
                Err(NodeError::InvalidData(format!(
                    "{} exists but is not a complete dataset (no {MARKER}); remove it",
                    dir.display()
                )))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(NodeError::io(marker, e)),
    }
}

/// The directory builtin dataset `name` lives in once materialized: `data_dir/NAME-VERSION`.
///
/// # Errors
/// [`unknown`] when no provider is registered under `name`.
pub fn dir(ctx: &RunContext, name: &str) -> Result<PathBuf, NodeError> {
    let provider = ctx.datasets.get(name).ok_or_else(|| unknown(ctx, name))?;
    Ok(ctx.data_dir.join(format!(
        "{}-{}",
        sanitize(name),
        sanitize(provider.version())
    )))
}

/// True when dataset `name` is materialized (its directory holds the marker).
pub fn is_materialized(ctx: &RunContext, name: &str) -> bool {
    dir(ctx, name).is_ok_and(|d| d.join(MARKER).exists())
}

/// The error for a dataset name no provider is registered under, with a "did you mean" or the
/// names known (exit 3).
pub fn unknown(ctx: &RunContext, name: &str) -> NodeError {
    let known: Vec<&str> = ctx.datasets.names().collect();
    let hint = match schema::suggest(name, known.iter().copied()) {
        Some(s) => format!("; did you mean `builtin:{s}`?"),
        None if known.is_empty() => "; no builtin datasets are registered".into(),
        None => format!("; known: {}", known.join(", ")),
    };
    NodeError::InvalidData(format!("unknown dataset `builtin:{name}`{hint}"))
}

/// Materializes builtin dataset `name` once into [`dir`] and returns the file its provider
/// names (an ItemCollection, say). Safe against concurrent runs: each generates into its own
/// temporary directory, writes the marker synced, and renames the directory into place with
/// [`atomic::commit`]; a loser of the race uses the winner's directory.
///
/// # Errors
/// [`unknown`] for an unknown name; the provider's error; an I/O error (exit 5) when the data
/// directory cannot be written; exit 3 for a directory that is there but incomplete.
pub fn materialize(ctx: &RunContext, name: &str) -> Result<PathBuf, NodeError> {
    let provider = ctx
        .datasets
        .get(name)
        .ok_or_else(|| unknown(ctx, name))?
        .clone();
    let target = dir(ctx, name)?;
    if let Some(p) = read_marker(&target)? {
        return Ok(p);
    }
    std::fs::create_dir_all(&ctx.data_dir).map_err(|e| NodeError::io(&ctx.data_dir, e))?;
    let dir_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{dir_name}.tmp-"))
        .tempdir_in(&ctx.data_dir)
        .map_err(|e| NodeError::io(&ctx.data_dir, e))?;
    tracing::info!(dataset = name, dir = %target.display(), "materializing builtin dataset");
    let path = provider.materialize(tmp.path())?;
    let rel = path
        .strip_prefix(tmp.path())
        .map(Path::to_path_buf)
        .unwrap_or(path);
    let marker = tmp.path().join(MARKER);
    let text = json!({"path": rel.to_string_lossy(), "version": provider.version()}).to_string();
    atomic::write_synced(&marker, text.as_bytes()).map_err(|e| NodeError::io(&marker, e))?;
    atomic::sync_dir(tmp.path());
    match atomic::commit(tmp.path(), &target) {
        Ok(()) => {
            let _ = tmp.keep();
        }
        Err(e) => {
            if !target.exists() {
                return Err(NodeError::io(&target, e));
            }
            tracing::debug!(dataset = name, "another run materialized the dataset first");
            drop(tmp);
        }
    }
    read_marker(&target)?.ok_or_else(|| {
        NodeError::InvalidData(format!(
            "{}: dataset vanished after materializing",
            target.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::DatasetProvider;

    struct Two;

    impl DatasetProvider for Two {
        fn materialize(&self, dir: &Path) -> Result<PathBuf, NodeError> {
            std::fs::write(dir.join("a.txt"), "a").map_err(|e| NodeError::io(dir, e))?;
            std::fs::write(dir.join("b.txt"), "b").map_err(|e| NodeError::io(dir, e))?;
            Ok(dir.join("a.txt"))
        }

        fn version(&self) -> &str {
            "two/1"
        }
    }

    #[test]
    fn a_dataset_is_materialized_once_under_its_name_and_version() {
        let data = tempfile::tempdir().unwrap();
        let mut ctx = RunContext::new(
            "n",
            PathBuf::from("."),
            PathBuf::from("."),
            data.path().to_path_buf(),
        );
        ctx.datasets.add("two", Arc::new(Two));
        assert!(!is_materialized(&ctx, "two"));
        let file = materialize(&ctx, "two").unwrap();
        assert_eq!(file, data.path().join("two-two_1").join("a.txt"));
        assert!(is_materialized(&ctx, "two"));
        assert_eq!(
            std::fs::read_to_string(dir(&ctx, "two").unwrap().join("b.txt")).unwrap(),
            "b"
        );
        // Again: the same directory, nothing regenerated.
        std::fs::write(&file, "changed").unwrap();
        assert_eq!(materialize(&ctx, "two").unwrap(), file);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "changed");
        let e = materialize(&ctx, "tow").unwrap_err().to_string();
        assert!(
            e.contains("unknown dataset `builtin:tow`") && e.contains("two"),
            "{e}"
        );
    }
}
