//! Cache keys: BLAKE3 over what determines a node's output.

use std::fmt;

use flow_core::{NodeKind, Origin};

/// A node's cache key (BLAKE3, shown as 64 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The key as hex.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 12 hex digits, for reports.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Key> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
        }
        Some(Key(out))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.short())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// BLAKE3 over length-prefixed fields, so that no two field lists hash alike.
#[derive(Default)]
struct Fields(blake3::Hasher);

impl Fields {
    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn key(&self) -> Key {
        Key(*self.0.finalize().as_bytes())
    }
}

/// Version of the key scheme itself; bump it to invalidate every cache entry.
const SCHEME: &str = "flow-cache-key-v1";

/// Writes `value` canonically: tables with sorted keys, integers and floats kept distinct, floats
/// in their shortest round-trip form. Two recipes that mean the same params hash the same.
pub fn canonical(value: &toml::Value, out: &mut String) {
    match value {
        toml::Value::String(s) => {
            out.push('s');
            out.push_str(&serde_json::to_string(s).unwrap_or_default());
        }
        toml::Value::Integer(i) => out.push_str(&format!("i{i}")),
        toml::Value::Float(f) => out.push_str(&format!("f{f:?}")),
        toml::Value::Boolean(b) => out.push_str(if *b { "T" } else { "F" }),
        toml::Value::Datetime(d) => out.push_str(&format!("d{d}")),
        toml::Value::Array(a) => {
            out.push('[');
            for v in a {
                canonical(v, out);
                out.push(',');
            }
            out.push(']');
        }
        toml::Value::Table(t) => canonical_table(t, out),
    }
}

fn canonical_table(t: &toml::Table, out: &mut String) {
    let mut keys: Vec<&String> = t.keys().collect();
    keys.sort();
    out.push('{');
    for k in keys {
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        canonical(&t[k], out);
        out.push(',');
    }
    out.push('}');
}

/// The key of a node of `kind` with `params`, extra `material` and input keys `(port, key)`.
pub fn node_key(
    kind: &dyn NodeKind,
    params: &toml::Table,
    material: Option<&[u8]>,
    inputs: &[(String, Key)],
) -> Key {
    let mut h = Fields::default();
    let mut field = |bytes: &[u8]| h.field(bytes);
    field(SCHEME.as_bytes());
    field(kind.name().as_bytes());
    field(&kind.version().to_le_bytes());
    match kind.origin() {
        Origin::Builtin => field(b"builtin"),
        Origin::Plugin {
            name, version, abi, ..
        } => {
            field(b"plugin");
            field(name.as_bytes());
            field(version.as_bytes());
            field(&abi.to_le_bytes());
        }
    }
    let mut p = String::new();
    let unkeyed = kind.unkeyed_params();
    if unkeyed.is_empty() {
        canonical_table(params, &mut p);
    } else {
        let keyed: toml::Table = params
            .iter()
            .filter(|(k, _)| !unkeyed.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        canonical_table(&keyed, &mut p);
    }
    field(p.as_bytes());
    match material {
        Some(m) => field(blake3::hash(m).as_bytes()),
        None => field(b""),
    }
    let mut sorted: Vec<&(String, Key)> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (port, key) in sorted {
        field(port.as_bytes());
        field(&key.0);
    }
    h.key()
}

/// Version of the content-identity scheme.
const CONTENT_SCHEME: &str = "flow-content-v1";

/// The identity of a value by its content: BLAKE3 over its description and the bytes of its
/// arrays (the store's parts). Nodes downstream of a live (TTL-cached) search take this in place
/// of the search's key, so their keys change exactly when the search returns something else.
/// The arrays are streamed into the hash ([`flow_core::store::NpyFile::write_to`]), never
/// copied.
pub fn content_identity(value: &flow_core::Value) -> Key {
    let (meta, files) = flow_core::store::to_files(value);
    let mut h = Fields::default();
    h.field(CONTENT_SCHEME.as_bytes());
    h.field(meta.to_string().as_bytes());
    for file in &files {
        h.field(file.name().as_bytes());
        // The same bytes as `field` of the file's bytes: its length, then the bytes.
        h.0.update(&file.size().to_le_bytes());
        // Writing into a hasher cannot fail.
        let _ = file.write_to(&mut h.0);
    }
    h.key()
}

/// Version of the source-identity scheme.
const SOURCES_SCHEME: &str = "flow-sources-v1";

/// The identity of a node's output as its consumers key on it: its key, and when it read files
/// (see [`flow_core::Source`]), the versions of those files too, so that a changed input file
/// changes the keys after it. Without sources it is the key itself.
pub fn with_sources(key: &Key, sources: &[flow_core::Source]) -> Key {
    if sources.is_empty() {
        return *key;
    }
    let mut h = Fields::default();
    let mut field = |bytes: &[u8]| h.field(bytes);
    field(SOURCES_SCHEME.as_bytes());
    field(&key.0);
    for s in sources {
        field(s.location.as_bytes());
        field(&s.size.unwrap_or(u64::MAX).to_le_bytes());
        field(s.version.as_deref().unwrap_or("").as_bytes());
    }
    h.key()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::{Node, ParamError, ParamSpec, Params, Signature, ValueType};

    struct Kind(&'static str, u32);
    impl NodeKind for Kind {
        fn unkeyed_params(&self) -> &[&str] {
            &["timeout"]
        }
        fn name(&self) -> &str {
            self.0
        }
        fn version(&self) -> u32 {
            self.1
        }
        fn doc(&self) -> &str {
            ""
        }
        fn signature(&self) -> Signature {
            Signature {
                inputs: vec![],
                output: ValueType::Json,
            }
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![]
        }
        fn build(&self, _: &Params) -> Result<Box<dyn Node>, ParamError> {
            Err(ParamError::general("not built in this test"))
        }
    }

    fn params(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn keys_are_pinned() {
        // Changing the key scheme by accident invalidates every user's cache: this pins it.
        let k = node_key(
            &Kind("kmeans-fit", 1),
            &params("k = 4\nseed = 0"),
            None,
            &[],
        );
        assert_eq!(
            k.hex(),
            "eb03b34a2d5d4bae8fd7c274cda61f91bf76e670d7768505e3cac7a5284a4d63"
        );
    }

    #[test]
    fn key_depends_on_everything_that_matters_and_nothing_else() {
        let base = node_key(&Kind("a", 1), &params("x = 1\ny = [1.0, 2.0]"), None, &[]);
        assert_eq!(
            base,
            node_key(&Kind("a", 1), &params("y = [1.0, 2.0]\nx = 1"), None, &[]),
            "key order"
        );
        assert_ne!(
            base,
            node_key(&Kind("a", 2), &params("x = 1\ny = [1.0, 2.0]"), None, &[]),
            "version"
        );
        assert_ne!(
            base,
            node_key(&Kind("b", 1), &params("x = 1\ny = [1.0, 2.0]"), None, &[]),
            "kind"
        );
        assert_ne!(
            base,
            node_key(&Kind("a", 1), &params("x = 1.0\ny = [1.0, 2.0]"), None, &[]),
            "int vs float"
        );
        assert_ne!(
            base,
            node_key(
                &Kind("a", 1),
                &params("x = 1\ny = [1.0, 2.0]"),
                Some(b"file"),
                &[]
            ),
            "material"
        );
        let with_input = node_key(
            &Kind("a", 1),
            &params("x = 1\ny = [1.0, 2.0]"),
            None,
            &[("input".into(), base)],
        );
        assert_ne!(base, with_input, "inputs");
        let with_timeout = node_key(
            &Kind("a", 1),
            &params("x = 1\ny = [1.0, 2.0]\ntimeout = 5"),
            None,
            &[],
        );
        assert_eq!(base, with_timeout, "unkeyed params stay out of the key");
        assert_eq!(Key::from_hex(&base.hex()), Some(base));
    }

    #[test]
    fn content_identity_follows_the_content_only() {
        use flow_core::{Items, Value};
        let items = |ids: &[&str]| {
            Value::Items(Items::from_features(
                ids.iter().map(|id| serde_json::json!({"id": id})).collect(),
            ))
        };
        assert_eq!(
            content_identity(&items(&["a", "b"])),
            content_identity(&items(&["a", "b"]))
        );
        assert_ne!(
            content_identity(&items(&["a", "b"])),
            content_identity(&items(&["a", "c"]))
        );
        assert_ne!(
            content_identity(&items(&["a", "b"])),
            content_identity(&items(&["b", "a"])),
            "the order of items is part of the data"
        );
    }

    #[test]
    fn content_identity_streams_the_same_bytes_as_the_stored_parts() {
        for value in flow_core::meta::examples() {
            let parts = flow_core::store::to_parts(&value);
            let mut h = Fields::default();
            h.field(CONTENT_SCHEME.as_bytes());
            h.field(parts.meta.to_string().as_bytes());
            for (name, bytes) in &parts.arrays {
                h.field(name.as_bytes());
                h.field(bytes);
            }
            assert_eq!(content_identity(&value), h.key(), "{value:?}");
        }
    }
}
