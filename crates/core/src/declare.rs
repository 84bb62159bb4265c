//! Node parameters declared once: [`params!`](crate::params) writes a serde struct and its
//! [`ParamSpec`] schema from one list of fields (name, Rust type, default, doc), so the schema
//! that `flow validate` checks, the defaults, the docs of `flow nodes` and the parsing cannot
//! drift apart. [`param_enum!`](crate::param_enum) does the same for string enumerations.
//!
//! # Example
//!
//! ```
//! use flow_core::declare::DeclaredParams;
//!
//! flow_core::param_enum! {
//!     /// How to start.
//!     pub enum Init {
//!         /// Greedy k-means++.
//!         PlusPlus = "k-means++",
//!         /// Uniformly drawn rows.
//!         Random = "random",
//!     }
//! }
//!
//! flow_core::params! {
//!     /// `fit` parameters as written.
//!     pub struct FitParams {
//!         /// Number of clusters.
//!         pub k: i64,
//!         /// Initialization.
//!         pub init: Init = Init::PlusPlus,
//!         /// Optional subset size.
//!         pub sample: Option<i64>,
//!     }
//! }
//!
//! let specs = FitParams::specs();
//! assert!(specs[0].required && specs[0].default.is_none());
//! assert_eq!(specs[1].default, Some(toml::Value::String("k-means++".into())));
//! assert!(!specs[2].required);
//! let p = FitParams::parse(&toml::from_str("k = 4").unwrap()).unwrap();
//! assert_eq!((p.k, p.init, p.sample), (4, Init::PlusPlus, None));
//! ```

use crate::error::ParamError;
use crate::schema::{ParamSpec, ParamType, Params};

/// A Rust type that a node parameter can have: its schema type, and whether it may be absent.
pub trait ParamKind {
    /// The type `flow validate` checks the recipe's value against.
    fn param_type() -> ParamType;
    /// True for `Option<T>`: the param may be left out and then has no value.
    const OPTIONAL: bool = false;
}

macro_rules! param_kinds {
    ($($t:ty => $pt:expr),* $(,)?) => {
        $(impl ParamKind for $t {
            fn param_type() -> ParamType {
                $pt
            }
        })*
    };
}

param_kinds! {
    i64 => ParamType::Integer,
    u64 => ParamType::Integer,
    u32 => ParamType::Integer,
    usize => ParamType::Integer,
    f64 => ParamType::Float,
    f32 => ParamType::Float,
    bool => ParamType::Bool,
    String => ParamType::String,
    toml::Table => ParamType::Table,
    toml::Value => ParamType::Any,
    serde_json::Value => ParamType::Any,
}

impl<T: ParamKind> ParamKind for Vec<T> {
    fn param_type() -> ParamType {
        ParamType::array(T::param_type())
    }
}

impl<T: ParamKind> ParamKind for Option<T> {
    fn param_type() -> ParamType {
        T::param_type()
    }
    const OPTIONAL: bool = true;
}

/// A params struct written by [`params!`](crate::params).
pub trait DeclaredParams: Sized {
    /// The schema: one [`ParamSpec`] per field, in declaration order.
    fn specs() -> Vec<ParamSpec>;

    /// Parses params (as checked by the schema) into the struct, filling in the declared
    /// defaults of those not given; a param the declaration does not name is refused.
    ///
    /// # Errors
    /// A [`ParamError`] naming the field that does not parse.
    fn parse(params: &Params) -> Result<Self, ParamError>;
}

/// The [`ParamSpec`] of one declared field (used by [`params!`](crate::params)).
#[doc(hidden)]
pub fn spec_of<T: ParamKind>(
    name: &str,
    docs: &[&str],
    default: Option<Result<toml::Value, toml::ser::Error>>,
) -> ParamSpec {
    let name = name.strip_prefix("r#").unwrap_or(name);
    let doc = docs
        .iter()
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    // A default that TOML cannot represent would be a bug in the declaration; the doc tests and
    // every kind's `flow nodes` snapshot exercise each one.
    let default = default.and_then(Result::ok);
    ParamSpec {
        name: name.into(),
        ty: T::param_type(),
        required: !T::OPTIONAL && default.is_none(),
        default,
        doc,
    }
}

/// Deserializes `params`, after filling in defaults from `specs` (used by
/// [`params!`](crate::params)).
#[doc(hidden)]
pub fn parse_with<T: serde::de::DeserializeOwned>(
    specs: &[ParamSpec],
    params: &Params,
) -> Result<T, ParamError> {
    if let Some(unknown) = params.keys().find(|k| !specs.iter().any(|s| &s.name == *k)) {
        return Err(ParamError::new(
            unknown.as_str(),
            format!("unknown param `{unknown}`"),
        ));
    }
    let mut filled = params.clone();
    crate::schema::apply_defaults(specs, &mut filled);
    T::deserialize(toml::Value::Table(filled)).map_err(|e| {
        let message = e.to_string().trim().to_string();
        let param = specs
            .iter()
            .find(|s| message.contains(&format!("`{}`", s.name)))
            .map(|s| s.name.clone());
        match param {
            Some(p) => ParamError::new(p, message),
            None => ParamError::general(message),
        }
    })
}

/// Declares a node kind's params once: a `Deserialize` struct and its
/// [`DeclaredParams`] schema, from fields written as `/// doc` + `name: Type` or
/// `name: Type = default`. A field of type `Option<T>` is optional; a field with a default is
/// optional and takes the default; any other field is required. The doc comments become the
/// params' docs in `flow nodes`. The calling crate needs `serde` with its derive.
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $fvis:vis $field:ident : $fty:ty $(= $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, ::serde::Deserialize)]
        $vis struct $name {
            $( $(#[doc = $doc])* $fvis $field: $fty, )*
        }

        impl $crate::declare::DeclaredParams for $name {
            fn specs() -> ::std::vec::Vec<$crate::ParamSpec> {
                ::std::vec![
                    $(
                        $crate::declare::spec_of::<$fty>(
                            stringify!($field),
                            &[$($doc),*],
                            $crate::params!(@default $fty $(, $default)?),
                        )
                    ),*
                ]
            }

            fn parse(params: &$crate::Params) -> ::std::result::Result<Self, $crate::ParamError> {
                $crate::declare::parse_with(&Self::specs(), params)
            }
        }
    };
    (@default $fty:ty) => { ::std::option::Option::None };
    (@default $fty:ty, $default:expr) => {{
        let value: $fty = $default;
        ::std::option::Option::Some($crate::__toml::Value::try_from(value))
    }};
}

/// Declares a string enumeration usable as a node parameter: the enum, its serde forms (the
/// listed strings), `name()`, and a [`ParamKind`] whose schema type lists the strings.
#[macro_export]
macro_rules! param_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $variant:ident = $text:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $( $(#[doc = $doc])* #[serde(rename = $text)] $variant, )*
        }

        // The enum may be private to its crate; its helpers follow its visibility in effect.
        #[allow(unreachable_pub)]
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The name used in recipes.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl $crate::declare::ParamKind for $name {
            fn param_type() -> $crate::ParamType {
                $crate::ParamType::one_of(&[$($text),*])
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::declare::DeclaredParams;
    use crate::schema::{self, ParamType};

    crate::param_enum! {
        /// A method.
        pub(crate) enum Method {
            /// The first.
            First = "first",
            /// The second.
            Second = "second-one",
        }
    }

    crate::params! {
        /// Params for tests.
        pub(crate) struct TestParams {
            /// Required count.
            /// Second doc line.
            pub(crate) n: i64,
            /// A method.
            pub(crate) method: Method = Method::Second,
            /// Names.
            pub(crate) names: Vec<String> = vec!["a".into()],
            /// A factor.
            pub(crate) factor: f64 = 1.5,
            /// Optional.
            pub(crate) r#type: Option<String>,
        }
    }

    #[test]
    fn specs_follow_the_declaration() {
        let specs = TestParams::specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["n", "method", "names", "factor", "type"]);
        assert_eq!(specs[0].doc, "Required count. Second doc line.");
        assert!(specs[0].required);
        assert_eq!(
            specs[1].ty,
            ParamType::Enum(vec!["first".into(), "second-one".into()])
        );
        assert_eq!(specs[1].default, Some(toml::Value::from("second-one")));
        assert_eq!(specs[2].ty, ParamType::array(ParamType::String));
        assert_eq!(specs[3].default, Some(toml::Value::Float(1.5)));
        assert!(!specs[4].required && specs[4].default.is_none());
    }

    #[test]
    fn parse_fills_defaults_and_schema_checks_the_same_fields() {
        let params: crate::Params = toml::from_str("n = 3\ntype = \"x\"").unwrap();
        assert!(schema::check(&TestParams::specs(), &params).is_empty());
        let p = TestParams::parse(&params).unwrap();
        assert_eq!(p.n, 3);
        assert_eq!(p.method, Method::Second);
        assert_eq!(p.names, ["a"]);
        assert_eq!(p.factor, 1.5);
        assert_eq!(p.r#type.as_deref(), Some("x"));
        assert_eq!(Method::ALL.len(), 2);
        assert_eq!(Method::First.to_string(), "first");
    }

    #[test]
    fn an_undeclared_param_is_refused() {
        let params: crate::Params = toml::from_str("n = 1\nbogus = 2").unwrap();
        let e = TestParams::parse(&params).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("bogus"), "{e}");
    }

    #[test]
    fn a_field_that_does_not_parse_is_named() {
        let params: crate::Params = toml::from_str("n = \"three\"").unwrap();
        let e = TestParams::parse(&params).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"), "{e}");
    }
}
