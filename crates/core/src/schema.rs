//! Parameter schemas: what a node kind accepts, checked before anything runs.
//!
//! The same [`ParamSpec`] list drives `flow validate` (unknown, missing and mistyped parameters)
//! and `flow nodes` (the documentation of every kind).

use serde::{Deserialize, Serialize};

/// A node's parameters as written in the recipe, after interpolation and overrides.
pub type Params = toml::Table;

/// The type of a parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "of")]
pub enum ParamType {
    /// A string.
    String,
    /// An integer.
    Integer,
    /// A number; integers are accepted.
    Float,
    /// `true` or `false`.
    Bool,
    /// One of the listed strings.
    Enum(Vec<String>),
    /// An array whose items have the given type.
    Array(Box<ParamType>),
    /// A table (inline or not).
    Table,
    /// Anything.
    Any,
}

impl ParamType {
    /// An enumeration of strings.
    pub fn one_of(values: &[&str]) -> Self {
        ParamType::Enum(values.iter().map(|s| s.to_string()).collect())
    }

    /// An array of `item`.
    pub fn array(item: ParamType) -> Self {
        ParamType::Array(Box::new(item))
    }

    /// How the type reads in messages and in `flow nodes`.
    pub fn describe(&self) -> String {
        match self {
            ParamType::String => "string".into(),
            ParamType::Integer => "integer".into(),
            ParamType::Float => "number".into(),
            ParamType::Bool => "boolean".into(),
            ParamType::Enum(v) => v
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(" | "),
            ParamType::Array(t) => format!("array of {}", t.describe()),
            ParamType::Table => "table".into(),
            ParamType::Any => "any".into(),
        }
    }

    /// True when `value` has this type.
    pub fn accepts(&self, value: &toml::Value) -> bool {
        match (self, value) {
            (ParamType::Any, _) => true,
            (ParamType::String, toml::Value::String(_)) => true,
            (ParamType::Integer, toml::Value::Integer(_)) => true,
            (ParamType::Float, toml::Value::Float(_) | toml::Value::Integer(_)) => true,
            (ParamType::Bool, toml::Value::Boolean(_)) => true,
            (ParamType::Enum(values), toml::Value::String(s)) => values.iter().any(|v| v == s),
            (ParamType::Array(item), toml::Value::Array(a)) => a.iter().all(|v| item.accepts(v)),
            (ParamType::Table, toml::Value::Table(_)) => true,
            _ => false,
        }
    }
}

/// One parameter of a node kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Its key in the node's table.
    pub name: String,
    /// Its type.
    #[serde(flatten)]
    pub ty: ParamType,
    /// Whether the recipe must give it.
    pub required: bool,
    /// The value used when the recipe does not give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<toml::Value>,
    /// One line on what it does.
    pub doc: String,
}

impl ParamSpec {
    /// A required parameter.
    pub fn required(name: &str, ty: ParamType, doc: &str) -> Self {
        ParamSpec {
            name: name.into(),
            ty,
            required: true,
            default: None,
            doc: doc.into(),
        }
    }

    /// An optional parameter with no default.
    pub fn optional(name: &str, ty: ParamType, doc: &str) -> Self {
        ParamSpec {
            name: name.into(),
            ty,
            required: false,
            default: None,
            doc: doc.into(),
        }
    }

    /// An optional parameter with a default.
    pub fn with_default(
        name: &str,
        ty: ParamType,
        default: impl Into<toml::Value>,
        doc: &str,
    ) -> Self {
        ParamSpec {
            name: name.into(),
            ty,
            required: false,
            default: Some(default.into()),
            doc: doc.into(),
        }
    }
}

/// What is wrong with one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaIssue {
    /// The kind has no such parameter; `suggestion` is the closest known name, if close.
    Unknown {
        /// The parameter as written.
        param: String,
        /// The closest known name, when close enough to be a likely typo.
        suggestion: Option<String>,
    },
    /// A required parameter is absent.
    Missing {
        /// The parameter.
        param: String,
        /// Its type, described.
        ty: String,
    },
    /// The value has the wrong type.
    WrongType {
        /// The parameter.
        param: String,
        /// The type it takes, described.
        expected: String,
        /// The type found (or the enum value, quoted).
        found: String,
    },
}

/// The TOML type name of a value, for messages.
pub fn toml_type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "string",
        toml::Value::Integer(_) => "integer",
        toml::Value::Float(_) => "float",
        toml::Value::Boolean(_) => "boolean",
        toml::Value::Datetime(_) => "datetime",
        toml::Value::Array(_) => "array",
        toml::Value::Table(_) => "table",
    }
}

/// Checks `params` against `spec`: every issue, in the order of the params then the spec.
pub fn check(spec: &[ParamSpec], params: &Params) -> Vec<SchemaIssue> {
    let mut issues = Vec::new();
    for (key, value) in params {
        match spec.iter().find(|s| &s.name == key) {
            None => issues.push(SchemaIssue::Unknown {
                param: key.clone(),
                suggestion: suggest(key, spec.iter().map(|s| s.name.as_str())),
            }),
            Some(s) if !s.ty.accepts(value) => {
                let found = match value {
                    toml::Value::String(v) if matches!(s.ty, ParamType::Enum(_)) => {
                        format!("\"{v}\"")
                    }
                    other => toml_type_name(other).to_string(),
                };
                issues.push(SchemaIssue::WrongType {
                    param: key.clone(),
                    expected: s.ty.describe(),
                    found,
                })
            }
            Some(_) => {}
        }
    }
    for s in spec {
        if s.required && !params.contains_key(&s.name) {
            issues.push(SchemaIssue::Missing {
                param: s.name.clone(),
                ty: s.ty.describe(),
            });
        }
    }
    issues
}

/// Fills in the defaults of parameters that `params` does not give.
pub fn apply_defaults(spec: &[ParamSpec], params: &mut Params) {
    for s in spec {
        if let (false, Some(d)) = (params.contains_key(&s.name), &s.default) {
            params.insert(s.name.clone(), d.clone());
        }
    }
}

/// The candidate closest to `name`, when it is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

/// Deserializes validated params into a node's own params type.
///
/// # Errors
/// A [`crate::ParamError`] naming the field that serde refused.
pub fn parse<T: serde::de::DeserializeOwned>(params: &Params) -> Result<T, crate::ParamError> {
    T::deserialize(toml::Value::Table(params.clone()))
        .map_err(|e| crate::ParamError::general(e.to_string().trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Vec<ParamSpec> {
        vec![
            ParamSpec::required("k", ParamType::Integer, "clusters"),
            ParamSpec::with_default(
                "init",
                ParamType::one_of(&["k-means++", "random"]),
                "k-means++",
                "init",
            ),
            ParamSpec::optional("tol", ParamType::Float, "tolerance"),
        ]
    }

    #[test]
    fn reports_unknown_missing_and_mistyped() {
        let params: Params = toml::from_str("max_iters = 3\ninit = \"kmeans\"\ntol = 1").unwrap();
        let issues = check(&spec(), &params);
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(
            matches!(&issues[0], SchemaIssue::Unknown { param, suggestion: None } if param == "max_iters")
        );
        assert!(matches!(&issues[1], SchemaIssue::WrongType { param, .. } if param == "init"));
        assert!(matches!(&issues[2], SchemaIssue::Missing { param, .. } if param == "k"));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            suggest("kmean-fit", ["kmeans-fit", "stack"]).as_deref(),
            Some("kmeans-fit")
        );
        assert_eq!(suggest("zzz", ["kmeans-fit", "stack"]), None);
    }

    #[test]
    fn defaults_fill_gaps_only() {
        let mut params: Params = toml::from_str("k = 3").unwrap();
        apply_defaults(&spec(), &mut params);
        assert_eq!(params["init"].as_str(), Some("k-means++"));
        assert!(!params.contains_key("tol"));
    }
}
