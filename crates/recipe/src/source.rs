//! The recipe text parsed with the position of every key and value.

use std::collections::HashMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A path of keys (and array indices, as strings) from the document root.
pub type KeyPath = Vec<String>;

/// Where a key and its value are in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The key's bytes.
    pub key: Range<usize>,
    /// The value's bytes (for a `[table]` header this is the header).
    pub value: Range<usize>,
}

/// A parsed recipe: its values as a [`toml::Table`] plus the location of every key path.
#[derive(Debug, Clone)]
pub struct SpannedDoc {
    /// The document.
    pub table: toml::Table,
    locations: HashMap<KeyPath, Location>,
}

/// A TOML syntax error: message and byte span.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// Where.
    pub span: Range<usize>,
}

impl SpannedDoc {
    /// Parses `text`.
    ///
    /// # Errors
    /// The first syntax error.
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        Self::parse_at(text, 0)
    }

    /// Parses `text` as if it began at byte `offset` of a longer text: every span, the syntax
    /// error's too, is shifted by `offset`. A recipe and the recipes it extends are laid end to end
    /// this way, so that one byte offset names both the file and the position in it.
    ///
    /// # Errors
    /// The first syntax error.
    pub fn parse_at(text: &str, offset: usize) -> Result<Self, SyntaxError> {
        let shift = |span: Range<usize>| (span.start + offset)..(span.end + offset);
        let table: toml::Table = toml::from_str(text).map_err(|e| SyntaxError {
            message: e.message().to_string(),
            span: shift(e.span().unwrap_or(0..0)),
        })?;
        let spanned = DeTable::parse(text).map_err(|e| SyntaxError {
            message: e.message().to_string(),
            span: shift(e.span().unwrap_or(0..0)),
        })?;
        let mut locations = HashMap::new();
        index_table(&mut Vec::new(), spanned.get_ref(), &mut locations);
        for location in locations.values_mut() {
            location.key = shift(location.key.clone());
            location.value = shift(location.value.clone());
        }
        Ok(SpannedDoc { table, locations })
    }

    /// The location of `path`, if it is in the text.
    pub fn location(&self, path: &[&str]) -> Option<&Location> {
        let key: KeyPath = path.iter().map(|s| s.to_string()).collect();
        self.locations.get(&key)
    }

    /// The value span of `path`, else of the nearest ancestor found in the text.
    pub fn value_span(&self, path: &[&str]) -> Range<usize> {
        self.nearest(path, |l| l.value.clone())
    }

    /// The key span of `path`, else of the nearest ancestor found in the text.
    pub fn key_span(&self, path: &[&str]) -> Range<usize> {
        self.nearest(path, |l| l.key.clone())
    }

    /// Forgets the key `path` and everything under it.
    pub(crate) fn remove(&mut self, path: &[&str]) {
        if let Some((last, parents)) = path.split_last() {
            let mut table = Some(&mut self.table);
            for p in parents {
                table = table
                    .and_then(|t| t.get_mut(*p))
                    .and_then(|v| v.as_table_mut());
            }
            if let Some(t) = table {
                t.remove(*last);
            }
        }
        self.locations.retain(|k, _| !starts_with(k, path));
    }

    /// Takes the locations of `path` and of everything under it from `other`, replacing this
    /// document's (the values are the caller's to move).
    pub(crate) fn take_locations(&mut self, other: &SpannedDoc, path: &[&str]) {
        self.locations.retain(|k, _| !starts_with(k, path));
        for (k, l) in &other.locations {
            if starts_with(k, path) {
                self.locations.insert(k.clone(), l.clone());
            }
        }
    }

    /// Takes the location of the key `path` alone from `other`.
    pub(crate) fn take_location(&mut self, other: &SpannedDoc, path: &[&str]) {
        if let Some(l) = other.location(path) {
            let key: KeyPath = path.iter().map(|s| s.to_string()).collect();
            self.locations.insert(key, l.clone());
        }
    }

    fn nearest(&self, path: &[&str], pick: impl Fn(&Location) -> Range<usize>) -> Range<usize> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.location(&path[..n]).map(&pick))
            .unwrap_or(0..0)
    }
}

/// True when `key` is `path` or lies under it.
fn starts_with(key: &KeyPath, path: &[&str]) -> bool {
    key.len() >= path.len() && key.iter().zip(path).all(|(a, b)| a == b)
}

fn index_table(prefix: &mut KeyPath, table: &DeTable<'_>, out: &mut HashMap<KeyPath, Location>) {
    for (key, value) in table.iter() {
        prefix.push(key.get_ref().to_string());
        out.insert(
            prefix.clone(),
            Location {
                key: key.span(),
                value: value.span(),
            },
        );
        index_value(prefix, value.get_ref(), out);
        prefix.pop();
    }
}

fn index_value(prefix: &mut KeyPath, value: &DeValue<'_>, out: &mut HashMap<KeyPath, Location>) {
    match value {
        DeValue::Table(t) => index_table(prefix, t, out),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                prefix.push(i.to_string());
                out.insert(
                    prefix.clone(),
                    Location {
                        key: item.span(),
                        value: item.span(),
                    },
                );
                index_value(prefix, item.get_ref(), out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_and_values_in_tables_and_arrays() {
        let text = "name = \"x\"\n[nodes.fit]\nkind = \"kmeans-fit\"\nk = [1, 2]\n";
        let doc = SpannedDoc::parse(text).unwrap();
        let kind = doc.location(&["nodes", "fit", "kind"]).unwrap();
        assert_eq!(&text[kind.key.clone()], "kind");
        assert_eq!(&text[kind.value.clone()], "\"kmeans-fit\"");
        assert_eq!(&text[doc.value_span(&["nodes", "fit", "k", "1"])], "2");
        // A missing key falls back to its nearest ancestor.
        assert_eq!(
            doc.key_span(&["nodes", "fit", "nope"]),
            doc.key_span(&["nodes", "fit"])
        );
    }

    #[test]
    fn spans_shift_by_the_offset() {
        let text = "a = 1\n[b]\nc = 2\n";
        let doc = SpannedDoc::parse_at(text, 100).unwrap();
        let c = doc.location(&["b", "c"]).unwrap();
        assert_eq!(&text[(c.key.start - 100)..(c.key.end - 100)], "c");
        let err = SpannedDoc::parse_at("a = [1,\n", 100).unwrap_err();
        assert!(err.span.start > 100);
    }

    #[test]
    fn syntax_error_has_a_span() {
        let err = SpannedDoc::parse("a = [1,\n").unwrap_err();
        assert!(!err.message.is_empty());
        assert!(err.span.start > 0);
    }
}
