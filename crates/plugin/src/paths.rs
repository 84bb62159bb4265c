//! Where plugins come from: a recipe's `plugins = [...]`, `FLOW_PLUGIN_PATH` and `--plugin`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The environment variable listing plugin libraries or directories, `:`-separated (`;` on
/// Windows), like `PATH`.
pub const ENV: &str = "FLOW_PLUGIN_PATH";

/// The libraries a recipe lists in `plugins = [...]` (with those of the recipes it extends, see
/// `flow_recipe::extends::plugins`), resolved against the recipe's directory.
pub fn recipe_plugins(list: &[String], recipe_dir: &Path) -> Vec<PathBuf> {
    list.iter()
        .map(|p| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                recipe_dir.join(p)
            }
        })
        .collect()
}

/// Whether `path` looks like a shared library by its extension.
fn is_library(path: &Path) -> bool {
    matches!(
        path.extension().and_then(OsStr::to_str),
        Some("so" | "dylib" | "dll")
    )
}

/// The libraries named by a `FLOW_PLUGIN_PATH` value: each entry is a library, or a directory
/// whose `*.so` / `*.dylib` / `*.dll` files are taken in name order. Empty entries are skipped; an
/// entry that does not exist is kept, so that loading it reports the missing file.
pub fn env_plugins(value: &OsStr) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::env::split_paths(value) {
        if entry.as_os_str().is_empty() {
            continue;
        }
        if entry.is_dir() {
            let mut libs: Vec<PathBuf> = std::fs::read_dir(&entry)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file() && is_library(p))
                        .collect()
                })
                .unwrap_or_default();
            libs.sort();
            out.extend(libs);
        } else {
            out.push(entry);
        }
    }
    out
}

/// Every plugin library to load, in order: the recipe's `plugins` (relative to the recipe), then
/// `FLOW_PLUGIN_PATH`, then `--plugin` paths. Pass `recipe = None` for commands without a recipe
/// (`flow nodes`). Duplicates are kept here; [`crate::load_into`] loads each library once.
pub fn plugin_paths(recipe: Option<(&[String], &Path)>, cli: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some((list, dir)) = recipe {
        paths.extend(recipe_plugins(list, dir));
    }
    if let Some(v) = std::env::var_os(ENV) {
        paths.extend(env_plugins(&v));
    }
    paths.extend(cli.iter().cloned());
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_paths_are_relative_to_the_recipe() {
        let list = ["../target/libx.so".to_string(), "/abs/liby.so".to_string()];
        assert_eq!(
            recipe_plugins(&list, Path::new("recipes")),
            vec![
                PathBuf::from("recipes/../target/libx.so"),
                PathBuf::from("/abs/liby.so")
            ]
        );
    }

    #[test]
    fn env_entries_are_files_or_directories_of_libraries() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.so", "a.so", "notes.txt"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let value = std::env::join_paths([dir.path().to_path_buf(), PathBuf::from("/some/lib.so")])
            .unwrap();
        assert_eq!(
            env_plugins(&value),
            vec![
                dir.path().join("a.so"),
                dir.path().join("b.so"),
                PathBuf::from("/some/lib.so")
            ]
        );
        assert!(env_plugins(OsStr::new("")).is_empty());
    }
}
