//! `flow init`: a commented starter recipe that validates and runs offline as written.

use std::io::Write;
use std::path::Path;

use crate::cli::InitArgs;
use crate::error::{CommandError, CommandResult};

/// The starter recipe; `{{name}}` and `{{file}}` are replaced by the recipe's name and path.
const STARTER: &str = include_str!("starter.toml");

/// `flow init`.
pub fn init(args: InitArgs) -> CommandResult {
    let path = &args.path;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => plain_name(path),
    };
    // A recipe's own rule for names, and nothing that would break the starter's TOML string or
    // comment line.
    if !flow_recipe::is_plain_name(&name) || name.contains('"') || name.contains(char::is_control) {
        return Err(CommandError::usage(format!(
            "`{name}` cannot be a recipe name: it names the output directory (use letters, \
             digits, `-`, `_` or `.`)"
        )));
    }
    if path.extension().is_none_or(|e| e != "toml") {
        return Err(CommandError::usage(format!(
            "{} does not end in .toml",
            path.display()
        )));
    }
    let text = STARTER
        .replace("{{file}}", &path.display().to_string())
        .replace("{{name}}", &name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CommandError::usage(format!(
            "{} already exists; nothing was written (--force replaces it)",
            path.display()
        )),
        _ => CommandError::io(format!("cannot write {}: {e}", path.display())),
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CommandError::io(format!("cannot write {}: {e}", path.display())))?;
    crate::outln!("{}", path.display());
    eprintln!(
        "next: flow run {} --profile offline   (the embedded offline scene)",
        path.display()
    );
    Ok(())
}

/// The file stem with every character a directory name should not hold replaced by `-`.
fn plain_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}
