//! `extends = "base.toml"`: a recipe built on another.
//!
//! The recipe takes its base's `[params]`, `[profiles]`, `[nodes]` and `plugins`, then its own
//! keys go on top:
//!
//! - a param, or a profile's param, replaces the base's of the same name; new ones are added;
//! - a node of an id the base has is merged key by key into the base's node (the recipe can change
//!   one param of a node), unless it names another `kind`, which replaces the node whole; giving
//!   `input` drops the base's `inputs` and the other way round;
//! - new nodes come after the base's, in the recipe's order;
//! - `plugins` lists the base's libraries (relative to the base's directory) then the recipe's;
//! - `aoi` is the recipe's when it has one, else the base's (a file relative to the base);
//! - `name` and `description` are the recipe's own, never inherited;
//! - any other value (a param's table or array, a node param) is replaced whole.
//!
//! A base may itself extend another, up to [`MAX_DEPTH`] files; a cycle is an error. Every key keeps
//! the location of the file it came from, so errors point at the right file, line and column: the
//! texts are laid end to end in the [`Collector`] and each file is parsed at its offset.

use std::path::{Path, PathBuf};

use crate::diagnostic::Collector;
use crate::problem::Problem;
use crate::source::SpannedDoc;

/// How many recipes may extend one another in a chain (the recipe run included).
pub const MAX_DEPTH: usize = 16;

/// The largest recipe file read through `extends`.
pub const MAX_RECIPE_BYTES: u64 = 4 << 20;

/// Reads the text of a recipe named by `extends`.
pub type ReadRecipe<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// Reads a recipe file from disk, refusing files larger than [`MAX_RECIPE_BYTES`].
///
/// # Errors
/// The I/O error, or `InvalidData` for a file too large or not UTF-8.
pub fn read_recipe_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.is_dir() {
        return Err(std::io::Error::other("it is a directory"));
    }
    let mut text = String::new();
    file.take(MAX_RECIPE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_RECIPE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_RECIPE_BYTES >> 20),
        ));
    }
    Ok(text)
}

/// Parses the recipe `text` of `file` and everything it extends, merged into one document.
/// `None` when a file cannot be read or parsed (the problems are in `errors`).
pub(crate) fn load(
    file: &str,
    text: &str,
    read: ReadRecipe<'_>,
    errors: &mut Collector,
) -> Option<SpannedDoc> {
    let mut chain = vec![identity(Path::new(file))];
    load_layer(Path::new(file), text, 0, read, errors, &mut chain)
}

/// The recipe's `plugins` and those of the recipes it extends, relative to the recipe's directory
/// as written; empty when the recipe does not parse (validation reports why).
pub fn plugins(file: &str, text: &str, read: ReadRecipe<'_>) -> Vec<String> {
    let mut errors = Collector::new(file, text);
    load(file, text, read, &mut errors)
        .and_then(|doc| doc.table.get("plugins").cloned())
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(String::from))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// A file's identity for cycle detection: its canonical path when it exists.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn load_layer(
    path: &Path,
    text: &str,
    offset: usize,
    read: ReadRecipe<'_>,
    errors: &mut Collector,
    chain: &mut Vec<PathBuf>,
) -> Option<SpannedDoc> {
    let doc = match SpannedDoc::parse_at(text, offset) {
        Ok(doc) => doc,
        Err(e) => {
            errors.report(e.span, Problem::Syntax { message: e.message });
            return None;
        }
    };
    let extends = match doc.table.get("extends") {
        None => return Some(doc),
        Some(toml::Value::String(s)) => s.clone(),
        Some(other) => {
            let problem = Problem::NotAString {
                key: "extends".into(),
                found: flow_core::schema::toml_type_name(other),
            };
            errors.report(doc.value_span(&["extends"]), problem);
            return None;
        }
    };
    let span = doc.value_span(&["extends"]);
    if Path::new(&extends).extension().is_none_or(|e| e != "toml") {
        errors.report(span, Problem::ExtendsNotARecipe { path: extends });
        return None;
    }
    let base_path = path.parent().unwrap_or(Path::new("")).join(&extends);
    let id = identity(&base_path);
    if let Some(first) = chain.iter().position(|p| *p == id) {
        let mut files: Vec<String> = chain[first..]
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        files.push(id.display().to_string());
        errors.report(span, Problem::ExtendsCycle { chain: files });
        return None;
    }
    if chain.len() >= MAX_DEPTH {
        errors.report(span, Problem::ExtendsTooDeep);
        return None;
    }
    let base_text = match read(&base_path) {
        Ok(t) => t,
        Err(e) => {
            let problem = Problem::ExtendsUnreadable {
                path: base_path.display().to_string(),
                reason: e.to_string(),
            };
            errors.report(span, problem);
            return None;
        }
    };
    let base_offset = errors.add_text(&base_path.display().to_string(), &base_text);
    chain.push(id);
    let base = load_layer(&base_path, &base_text, base_offset, read, errors, chain);
    chain.pop();
    Some(overlay(base?, doc, Path::new(&extends).parent()))
}

/// `recipe` on top of `base`; `base_dir` is the base's directory relative to the recipe's.
fn overlay(mut base: SpannedDoc, recipe: SpannedDoc, base_dir: Option<&Path>) -> SpannedDoc {
    for key in ["extends", "name", "description"] {
        base.remove(&[key]);
    }
    rebase_paths(&mut base, base_dir);
    let mut table = std::mem::take(&mut base.table);
    merge(
        &mut base,
        &recipe,
        &mut Vec::new(),
        &mut table,
        &recipe.table,
    );
    base.table = table;
    base
}

/// The base's relative paths (its plugins, its `aoi` file) made relative to the extending
/// recipe's directory.
fn rebase_paths(base: &mut SpannedDoc, base_dir: Option<&Path>) {
    let Some(dir) = base_dir.filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    if let Some(toml::Value::String(s)) = base.table.get_mut("aoi") {
        if Path::new(s.as_str()).is_relative() {
            *s = dir.join(s.as_str()).display().to_string();
        }
    }
    if let Some(toml::Value::Array(paths)) = base.table.get_mut("plugins") {
        for p in paths.iter_mut() {
            if let toml::Value::String(s) = p {
                if Path::new(s.as_str()).is_relative() {
                    *s = dir.join(s.as_str()).display().to_string();
                }
            }
        }
    }
}

/// Merges `over` (the table at `path` of `recipe`) into `into` (the same table of `doc`, taken
/// out of it), moving the locations along.
fn merge(
    doc: &mut SpannedDoc,
    recipe: &SpannedDoc,
    path: &mut Vec<String>,
    into: &mut toml::Table,
    over: &toml::Table,
) {
    for (key, value) in over {
        if path.is_empty() && key == "extends" {
            continue;
        }
        path.push(key.clone());
        let here: Vec<&str> = path.iter().map(String::as_str).collect();
        match (into.get_mut(key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(table))
                if merges_key_by_key(&here, base, table) =>
            {
                doc.take_location(recipe, &here);
                if here.len() == 2 && here[0] == "nodes" {
                    drop_replaced_inputs(doc, &here, base, table);
                }
                merge(doc, recipe, path, base, table);
            }
            (Some(toml::Value::Array(base)), toml::Value::Array(more)) if here == ["plugins"] => {
                doc.take_locations(recipe, &here);
                base.extend(more.iter().cloned());
            }
            _ => {
                doc.take_locations(recipe, &here);
                into.insert(key.clone(), value.clone());
            }
        }
        path.pop();
    }
}

/// Whether the tables at `path` merge key by key (else the recipe's replaces the base's).
fn merges_key_by_key(path: &[&str], base: &toml::Table, recipe: &toml::Table) -> bool {
    match path {
        ["params" | "profiles" | "nodes"] | ["profiles", _] => true,
        ["nodes", _] => match (base.get("kind"), recipe.get("kind")) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        },
        _ => false,
    }
}

/// A node given `input` loses the base's `inputs`, and the other way round.
fn drop_replaced_inputs(
    doc: &mut SpannedDoc,
    node: &[&str],
    base: &mut toml::Table,
    recipe: &toml::Table,
) {
    for (given, replaced) in [("input", "inputs"), ("inputs", "input")] {
        if recipe.contains_key(given) && !recipe.contains_key(replaced) {
            base.remove(replaced);
            let mut p = node.to_vec();
            p.push(replaced);
            doc.remove(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn files(list: &[(&str, &str)]) -> HashMap<PathBuf, String> {
        list.iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    fn load_with(files: &HashMap<PathBuf, String>, file: &str) -> (Option<SpannedDoc>, Collector) {
        let read = |p: &Path| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        };
        let text = &files[Path::new(file)];
        let mut errors = Collector::new(file, text);
        (load(file, text, &read, &mut errors), errors)
    }

    #[test]
    fn params_profiles_and_nodes_merge_key_by_key() {
        let base = "name = \"base\"\nplugins = [\"lib/a.so\"]\n[params]\nk = 4\nseed = 0\n\
                    [profiles.offline]\ncatalog = \"x\"\nk = 3\n\
                    [nodes.fit]\nkind = \"kmeans-fit\"\ninput = \"flatten\"\nk = 4\nseed = 1\n\
                    [nodes.out]\nkind = \"write\"\ninputs = { input = \"fit\" }\npath = \"a\"\n";
        let recipe = "extends = \"../base/b.toml\"\nplugins = [\"c.so\"]\n[params]\nk = 6\n\
                      [profiles.offline]\nk = 2\n[nodes.fit]\nk = 5\n[nodes.out]\ninput = \"fit\"\n\
                      [nodes.new]\nkind = \"write\"\ninput = \"fit\"\npath = \"b\"\n";
        let fs = files(&[("r/recipe.toml", recipe), ("r/../base/b.toml", base)]);
        let (doc, errors) = load_with(&fs, "r/recipe.toml");
        assert!(errors.is_empty(), "{:?}", errors.finish());
        let doc = doc.unwrap();
        let t = &doc.table;
        assert!(t.get("name").is_none() && t.get("extends").is_none());
        assert_eq!(t["plugins"].as_array().unwrap().len(), 2);
        assert_eq!(t["plugins"][0].as_str(), Some("../base/lib/a.so"));
        assert_eq!(t["params"]["k"].as_integer(), Some(6));
        assert_eq!(t["params"]["seed"].as_integer(), Some(0));
        assert_eq!(t["profiles"]["offline"]["k"].as_integer(), Some(2));
        assert_eq!(t["profiles"]["offline"]["catalog"].as_str(), Some("x"));
        assert_eq!(t["nodes"]["fit"]["k"].as_integer(), Some(5));
        assert_eq!(t["nodes"]["fit"]["seed"].as_integer(), Some(1));
        assert!(t["nodes"]["out"].get("inputs").is_none());
        let ids: Vec<&String> = t["nodes"].as_table().unwrap().keys().collect();
        assert_eq!(ids, ["fit", "out", "new"]);
        // The inherited seed is located in the base's text, the new k in the recipe's.
        assert!(doc.value_span(&["nodes", "fit", "seed"]).start > recipe.len());
        assert!(doc.value_span(&["nodes", "fit", "k"]).start < recipe.len());
    }

    #[test]
    fn another_kind_replaces_the_node() {
        let base = "[nodes.a]\nkind = \"x\"\np = 1\n";
        let recipe = "extends = \"b.toml\"\n[nodes.a]\nkind = \"y\"\nq = 2\n";
        let fs = files(&[("recipe.toml", recipe), ("b.toml", base)]);
        let doc = load_with(&fs, "recipe.toml").0.unwrap();
        let a = doc.table["nodes"]["a"].as_table().unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), ["kind", "q"]);
    }

    #[test]
    fn cycles_missing_files_and_bad_values_are_located() {
        let fs = files(&[
            ("a.toml", "extends = \"b.toml\"\n"),
            ("b.toml", "extends = \"a.toml\"\n"),
            ("c.toml", "extends = \"missing.toml\"\n"),
            ("d.toml", "extends = 3\n"),
            ("e.toml", "extends = \"/etc/passwd\"\n"),
            ("f.toml", "extends = \"g.toml\"\n"),
            ("g.toml", "x = [1,\n"),
        ]);
        let problems = |file: &str| {
            let (doc, errors) = load_with(&fs, file);
            assert!(doc.is_none());
            errors.finish().errors
        };
        let cycle = problems("a.toml");
        assert!(matches!(&cycle[0].problem, Problem::ExtendsCycle { chain } if chain.len() == 3));
        assert_eq!(cycle[0].source_code.name(), "b.toml");
        assert!(matches!(
            problems("c.toml")[0].problem,
            Problem::ExtendsUnreadable { .. }
        ));
        assert!(matches!(
            problems("d.toml")[0].problem,
            Problem::NotAString { .. }
        ));
        assert!(matches!(
            problems("e.toml")[0].problem,
            Problem::ExtendsNotARecipe { .. }
        ));
        let syntax = problems("f.toml");
        assert!(matches!(syntax[0].problem, Problem::Syntax { .. }));
        assert_eq!(syntax[0].source_code.name(), "g.toml");
    }
}
