//! BLAKE3 of files, read in pieces: what `write` records of the files it wrote, what a task's
//! completion record lists, and what a script node's key holds of its script.

use std::path::Path;

/// The BLAKE3 hash of the file at `path` and its size in bytes, read in pieces (never held
/// whole).
///
/// # Errors
/// When the file cannot be opened or read.
pub fn hash_file(path: &Path) -> std::io::Result<(blake3::Hash, u64)> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok((hasher.finalize(), hasher.count()))
}
