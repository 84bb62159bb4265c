//! What can be wrong with a recipe, one variant per kind of mistake, and how each one reads.
//!
//! Plan building decides *that* something is wrong and *where*; a [`Problem`] carries the facts
//! (names, types, suggestions) and this module alone words them: the message
//! ([`std::fmt::Display`]), the caption under the caret ([`Problem::label`]) and the hint
//! ([`Problem::help`]). [`crate::RecipeError`] pairs a problem with its location.

use flow_core::{ParamError, Port, ValueType};

/// One kind of recipe mistake with the facts needed to explain it.
///
/// `suggestion` fields hold the closest known name when it is close enough to be a likely typo;
/// the help then reads "did you mean `...`?".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    // The document and its top-level keys.
    /// The text is not TOML.
    #[error("TOML syntax error: {message}")]
    Syntax {
        /// What the TOML parser said.
        message: String,
    },
    /// A top-level key that recipes do not have.
    #[error("unknown top-level key `{key}`")]
    UnknownTopLevelKey {
        /// The key as written.
        key: String,
        /// The closest allowed key.
        suggestion: Option<String>,
        /// Every allowed top-level key.
        allowed: &'static [&'static str],
    },
    /// A top-level key that must hold a string (`name`, `description`) holds something else.
    #[error("`{key}` must be a string, found {found}")]
    NotAString {
        /// The key.
        key: String,
        /// The TOML type found.
        found: &'static str,
    },
    /// The recipe's `name` is not a plain name: it names the default output directory, so it may
    /// not hold a path separator, be `.` or `..`, or be empty.
    #[error("the recipe name `{name}` is not a plain name")]
    BadRecipeName {
        /// The name as written.
        name: String,
    },
    /// Two nodes write the same file: the second would silently replace the first.
    #[error("node `{node}` writes `{path}`, which node `{first}` writes too")]
    SameOutputFile {
        /// The node reported.
        node: String,
        /// The file, relative to the output directory.
        path: String,
        /// The node that writes it first (in recipe order).
        first: String,
    },
    /// A top-level key that must hold a table (`params`, `profiles`, `nodes`) holds something
    /// else.
    #[error("`{key}` must be a table, found {found}")]
    NotATable {
        /// The key.
        key: String,
        /// The TOML type found.
        found: &'static str,
    },
    /// `plugins` is not an array of strings.
    #[error("`plugins` must be an array of library paths")]
    PluginsNotPaths,

    /// The recipe's `aoi` is not an area: a bbox, a GeoJSON geometry or a GeoJSON file.
    #[error("`aoi` is not a usable area of interest: {reason}")]
    BadAoi {
        /// What is wrong.
        reason: String,
    },
    /// The recipe's `[scale]` table cannot cut it into work units.
    #[error("`[scale]` is not usable: {reason}")]
    BadScale {
        /// What is wrong.
        reason: String,
    },

    // Recipes built on others.
    /// `extends` names something other than a `.toml` file.
    #[error("`extends` must name a recipe file ending in .toml, found `{path}`")]
    ExtendsNotARecipe {
        /// The value as written.
        path: String,
    },
    /// The recipe that `extends` names cannot be read.
    #[error("cannot read the recipe `{path}` that this recipe extends: {reason}")]
    ExtendsUnreadable {
        /// The file, as resolved against the extending recipe's directory.
        path: String,
        /// Why (the I/O error).
        reason: String,
    },
    /// Following `extends` comes back to a recipe already on the way.
    #[error("recipes extend each other in a cycle: {}", chain.join(" -> "))]
    ExtendsCycle {
        /// The files along the cycle, the first repeated at the end.
        chain: Vec<String>,
    },
    /// `extends` chains deeper than [`crate::extends::MAX_DEPTH`].
    #[error("more than {} recipes extend one another", crate::extends::MAX_DEPTH)]
    ExtendsTooDeep,

    // Profiles.
    /// `[profiles]` holds a value that is not a `[profiles.NAME]` table.
    #[error("profile `{profile}` must be a table")]
    ProfileNotATable {
        /// The profile's name.
        profile: String,
    },
    /// A profile sets a param that `[params]` does not declare.
    #[error("profile `{profile}` sets `{param}`, which is not in [params]")]
    ProfileSetsUnknownParam {
        /// The profile's name.
        profile: String,
        /// The param it sets.
        param: String,
        /// The closest declared param.
        suggestion: Option<String>,
    },
    /// A profile gives a param a value of another type than `[params]` does.
    #[error(
        "profile `{profile}` sets `{param}` to {}, but [params] declares it as {}",
        a_type(found),
        a_type(declared)
    )]
    ProfileChangesType {
        /// The profile's name.
        profile: String,
        /// The param it sets.
        param: String,
        /// The TOML type in `[params]`.
        declared: &'static str,
        /// The TOML type the profile gives.
        found: &'static str,
    },
    /// `--profile NAME` names no `[profiles.NAME]` table.
    #[error("unknown profile `{profile}`")]
    UnknownProfile {
        /// The name given.
        profile: String,
        /// The closest defined profile.
        suggestion: Option<String>,
        /// Every profile the recipe defines.
        defined: Vec<String>,
    },

    // `--set` overrides.
    /// A `--set` argument without `NAME=VALUE`.
    #[error("`--set` needs NAME=VALUE")]
    SetNeedsNameValue,
    /// The value of a `--set` looks like TOML but does not parse.
    #[error("`--set {target}`: the value is not valid TOML: {message}")]
    SetValueNotToml {
        /// What the argument sets (`k`, `fit.k`).
        target: String,
        /// What the TOML parser said.
        message: String,
    },
    /// `--set NODE.PARAM` names a node the recipe does not have.
    #[error("`--set {target}`: the recipe has no node `{node}`")]
    SetUnknownNode {
        /// What the argument sets.
        target: String,
        /// The node named.
        node: String,
        /// The closest node id.
        suggestion: Option<String>,
    },
    /// `--set NAME` names no entry of `[params]`.
    #[error("`--set {param}`: no param `{param}` in [params]")]
    SetUnknownParam {
        /// The param named.
        param: String,
        /// The closest declared param.
        suggestion: Option<String>,
    },
    /// `--set NAME=VALUE` gives a value of another type than `[params]` does.
    #[error(
        "`--set {param}`: `{param}` is {} in [params], got {}",
        a_type(declared),
        a_type(found)
    )]
    SetChangesType {
        /// The param named.
        param: String,
        /// The TOML type in `[params]`.
        declared: &'static str,
        /// The TOML type given.
        found: &'static str,
    },

    // References.
    /// `${params.NAME}` names no entry of `[params]` (or the reference is malformed).
    #[error("unknown reference `${{params.{name}}}`")]
    UnknownReference {
        /// The name after `params.`.
        name: String,
        /// The closest declared param.
        suggestion: Option<String>,
    },

    // Nodes and their params.
    /// `[nodes]` holds a value that is not a `[nodes.ID]` table.
    #[error("node `{node}` must be a table")]
    NodeNotATable {
        /// The node id.
        node: String,
    },
    /// A node has no `kind`.
    #[error("node `{node}` has no `kind`")]
    MissingKind {
        /// The node id.
        node: String,
    },
    /// `kind` is not a string.
    #[error("`kind` must be a string, found {found}")]
    KindNotAString {
        /// The TOML type found.
        found: &'static str,
    },
    /// `kind` names no registered kind.
    #[error("unknown node kind `{kind}`")]
    UnknownKind {
        /// The kind as written.
        kind: String,
        /// The closest registered kind.
        suggestion: Option<String>,
    },
    /// A param the node's kind does not take.
    #[error("unknown param `{param}` for node `{node}` ({kind})")]
    UnknownParam {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
        /// The param as written.
        param: String,
        /// The closest param of the kind.
        suggestion: Option<String>,
        /// Every param the kind takes, in the order of its schema.
        takes: Vec<String>,
    },
    /// A required param is absent.
    #[error("node `{node}` ({kind}) is missing the required param `{param}` ({ty})")]
    MissingParam {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
        /// The param.
        param: String,
        /// Its type, described.
        ty: String,
    },
    /// A param's value has the wrong type.
    #[error("param `{param}` of node `{node}` ({kind}) must be {expected}, found {found}")]
    WrongParamType {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
        /// The param.
        param: String,
        /// The type it takes, described.
        expected: String,
        /// The type found (or the enum value, quoted).
        found: String,
    },
    /// The kind refused to build the node from params that passed the schema; when
    /// [`ParamError::plugin_fault`] is set, the kind's own (plugin) code failed instead.
    #[error("{}", refused(node, kind, error))]
    Refused {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
        /// What the kind said.
        error: ParamError,
    },

    // Inputs and edges.
    /// `input = ...` is not a string.
    #[error("`input` must be a node id (a string)")]
    InputNotANodeId,
    /// `input = "..."` on a kind without input ports.
    #[error("node `{node}` ({kind}) takes no input")]
    TakesNoInput {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
    },
    /// `inputs = ...` is not a table.
    #[error("`inputs` must be a table of port = \"node\"")]
    InputsNotATable,
    /// An entry of `inputs = { ... }` is not a string.
    #[error("input `{port}` must be a node id (a string)")]
    PortInputNotANodeId {
        /// The port as written.
        port: String,
    },
    /// `inputs = { PORT = ... }` names a port the kind does not have.
    #[error("node `{node}` ({kind}) has no input port `{port}`")]
    UnknownPort {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
        /// The port as written.
        port: String,
        /// The closest port of the kind.
        suggestion: Option<String>,
        /// The kind's ports.
        ports: Vec<Port>,
    },
    /// `inputs = { PORT = ... }` names a port that a kind taking ports of the recipe's choosing
    /// refuses (see `NodeKind::open_port`).
    #[error("node `{node}` ({kind}) cannot take an input port named `{port}`")]
    RefusedPortName {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
        /// The port as written.
        port: String,
        /// Why the kind refuses it.
        why: String,
    },
    /// The first port is connected by both `input` and `inputs`.
    #[error("input port `{port}` of node `{node}` is connected twice (by `input` and `inputs`)")]
    ConnectedTwice {
        /// The node id.
        node: String,
        /// The port.
        port: String,
    },
    /// An input names a node the recipe does not have.
    #[error("node `{node}` reads from `{from}`, but the recipe has no node `{from}`")]
    DanglingInput {
        /// The reading node.
        node: String,
        /// The missing node it names.
        from: String,
        /// The closest node id.
        suggestion: Option<String>,
    },
    /// A required port is not connected.
    #[error("node `{node}` ({kind}) needs its input `{port}` ({ty})")]
    InputNotConnected {
        /// The node id.
        node: String,
        /// Its kind.
        kind: String,
        /// The port.
        port: String,
        /// The port's type.
        ty: ValueType,
        /// The port is the kind's first, which `input = "NODE"` connects.
        first: bool,
    },
    /// An edge whose upstream output does not fit the downstream port.
    #[error(
        "type mismatch: `{from}` ({from_kind}) outputs {output}, but input `{port}` of `{to}` ({to_kind}) takes {port_type}"
    )]
    TypeMismatch {
        /// The upstream node.
        from: String,
        /// Its kind.
        from_kind: String,
        /// Its output type.
        output: ValueType,
        /// The downstream node.
        to: String,
        /// Its kind.
        to_kind: String,
        /// The downstream port.
        port: String,
        /// The port's type.
        port_type: ValueType,
    },
    /// The inputs form a cycle.
    #[error("cycle: {}", path.join(" -> "))]
    Cycle {
        /// The node ids along the cycle, the first repeated at the end.
        path: Vec<String>,
    },
}

impl Problem {
    /// The caption under the caret.
    pub fn label(&self) -> String {
        let label = match self {
            Problem::Syntax { .. } => "here",
            Problem::UnknownTopLevelKey { .. } => "not a recipe key",
            Problem::NotAString { .. } => "expected a string",
            Problem::BadRecipeName { .. } => "names the default output directory",
            Problem::SameOutputFile { .. } => "this node",
            Problem::NotATable { .. } => "expected a table",
            Problem::PluginsNotPaths => "expected [\"path\", ...]",
            Problem::BadAoi { .. } => "this area",
            Problem::BadScale { .. } => "here",
            Problem::ExtendsNotARecipe { .. } => "expected \"FILE.toml\"",
            Problem::ExtendsUnreadable { .. } => "this file",
            Problem::ExtendsCycle { .. } => "extended again here",
            Problem::ExtendsTooDeep => "one recipe too many",
            Problem::ProfileNotATable { .. } => "expected [profiles.NAME]",
            Problem::ProfileSetsUnknownParam { .. } => "unknown param",
            Problem::ProfileChangesType { .. } => "wrong type",
            Problem::UnknownProfile { .. } => "no such [profiles] table",
            Problem::SetNeedsNameValue => "no `=`",
            Problem::SetValueNotToml { .. } => "bad value",
            Problem::SetUnknownNode { .. } => "unknown node",
            Problem::SetUnknownParam { .. } => "unknown param",
            Problem::SetChangesType { .. } => "wrong type",
            Problem::UnknownReference { .. } => "not in [params]",
            Problem::NodeNotATable { .. } => "expected [nodes.ID] table",
            Problem::MissingKind { .. } => "missing kind",
            Problem::KindNotAString { .. } => "expected a kind name",
            Problem::UnknownKind { .. } => "unknown kind",
            Problem::UnknownParam { .. } => "unknown param",
            Problem::MissingParam { .. } => "missing param",
            Problem::WrongParamType { expected, .. } => return format!("expected {expected}"),
            Problem::Refused { error, .. } if error.plugin_fault => "the plugin failed here",
            Problem::Refused { .. } => "invalid value",
            Problem::InputNotANodeId | Problem::PortInputNotANodeId { .. } => "expected \"node\"",
            Problem::TakesNoInput { .. } => "unexpected input",
            Problem::InputsNotATable => "expected a table",
            Problem::UnknownPort { .. } => "unknown port",
            Problem::RefusedPortName { .. } => "refused port name",
            Problem::ConnectedTwice { .. } => "connected twice",
            Problem::DanglingInput { .. } => "dangling input",
            Problem::InputNotConnected { .. } => "input not connected",
            Problem::TypeMismatch {
                output, port_type, ..
            } => return format!("{output} does not fit {port_type}"),
            Problem::Cycle { .. } => "this input closes the cycle",
        };
        label.to_string()
    }

    /// How to fix it, when there is something to say.
    pub fn help(&self) -> Option<String> {
        match self {
            Problem::BadScale { .. } => Some(
                "write tiles = [\"18TWR\", ...] (each sets params.tile) or grid = 0.25 (cells of \
                 the aoi, each setting params.tile and params.bbox), optionally dates = \
                 [\"2021-08-03\", ...] (params.date) and gather = [\"fit\"] (nodes run once over \
                 every unit's inputs)"
                    .into(),
            ),
            Problem::BadAoi { .. } => Some(
                "write [min_lon, min_lat, max_lon, max_lat], a GeoJSON Polygon / MultiPolygon / \
                 Feature / FeatureCollection, or \"FILE.geojson\" relative to the recipe"
                    .into(),
            ),
            Problem::ExtendsNotARecipe { .. } | Problem::ExtendsUnreadable { .. } => {
                Some("`extends` names another recipe, relative to this one's directory".into())
            }
            Problem::SameOutputFile { first, .. } => Some(format!(
                "give this node or `{first}` another `path`, so that neither replaces the other"
            )),
            Problem::BadRecipeName { .. } => Some(
                "use letters, digits, `-`, `_` or `.` (outputs go to out/<name>/ beside the \
                 recipe unless --out says otherwise)"
                    .into(),
            ),
            Problem::UnknownTopLevelKey {
                suggestion,
                allowed,
                ..
            } => Some(
                did_you_mean(suggestion)
                    .unwrap_or_else(|| format!("allowed top-level keys: {}", allowed.join(", "))),
            ),
            Problem::ProfileSetsUnknownParam { suggestion, .. } => {
                Some(did_you_mean(suggestion).unwrap_or_else(|| {
                    "a profile can only change values declared in [params]".into()
                }))
            }
            Problem::UnknownProfile {
                suggestion,
                defined,
                ..
            } => Some(did_you_mean(suggestion).unwrap_or_else(|| {
                if defined.is_empty() {
                    "the recipe defines no [profiles]".into()
                } else {
                    format!("the recipe defines: {}", defined.join(", "))
                }
            })),
            Problem::SetNeedsNameValue => {
                Some("for example --set k=6 or --set fit.max_iter=50".into())
            }
            Problem::SetValueNotToml { .. } => {
                Some("quote strings that contain TOML syntax, e.g. --set 'name=\"[x]\"'".into())
            }
            Problem::SetUnknownNode { suggestion, .. }
            | Problem::DanglingInput { suggestion, .. } => did_you_mean(suggestion),
            Problem::SetUnknownParam { suggestion, .. } => {
                Some(did_you_mean(suggestion).unwrap_or_else(|| {
                    "use NAME for a [params] entry or NODE.PARAM for a node's param".into()
                }))
            }
            Problem::UnknownReference { suggestion, .. } => {
                Some(did_you_mean(suggestion).unwrap_or_else(|| {
                    "references look like ${params.NAME}, with NAME declared in [params]".into()
                }))
            }
            Problem::MissingKind { .. } => {
                Some("add e.g. kind = \"stack\"; `flow nodes` lists every kind".into())
            }
            Problem::UnknownKind { suggestion, .. } => Some(
                did_you_mean(suggestion).unwrap_or_else(|| "`flow nodes` lists every kind".into()),
            ),
            Problem::UnknownParam {
                kind,
                suggestion,
                takes,
                ..
            } => Some(
                did_you_mean(suggestion)
                    .unwrap_or_else(|| format!("{kind} takes: {}", takes.join(", "))),
            ),
            Problem::Refused { error, .. } => error.help.clone(),
            Problem::InputNotANodeId => {
                Some("use `inputs = { port = \"node\" }` for several inputs".into())
            }
            Problem::UnknownPort {
                suggestion, ports, ..
            } => Some(did_you_mean(suggestion).unwrap_or_else(|| {
                let ports: Vec<String> = ports
                    .iter()
                    .map(|p| format!("{} ({})", p.name, p.ty))
                    .collect();
                format!("ports: {}", ports.join(", "))
            })),
            Problem::RefusedPortName { why, .. } => Some(why.clone()),
            Problem::InputNotConnected { port, first, .. } => Some(if *first {
                "connect it with input = \"NODE\"".into()
            } else {
                format!("connect it with inputs = {{ {port} = \"NODE\" }}")
            }),
            Problem::Cycle { .. } => {
                Some("a recipe must be a DAG: remove one of these inputs".into())
            }
            Problem::Syntax { .. }
            | Problem::NotAString { .. }
            | Problem::NotATable { .. }
            | Problem::PluginsNotPaths
            | Problem::ExtendsCycle { .. }
            | Problem::ExtendsTooDeep
            | Problem::ProfileNotATable { .. }
            | Problem::ProfileChangesType { .. }
            | Problem::SetChangesType { .. }
            | Problem::NodeNotATable { .. }
            | Problem::KindNotAString { .. }
            | Problem::MissingParam { .. }
            | Problem::WrongParamType { .. }
            | Problem::TakesNoInput { .. }
            | Problem::InputsNotATable
            | Problem::PortInputNotANodeId { .. }
            | Problem::ConnectedTwice { .. }
            | Problem::TypeMismatch { .. } => None,
        }
    }

    /// True when a plugin's own code failed rather than the recipe being wrong: the command then
    /// exits 6 (a plugin failed), not 2.
    pub fn is_plugin_fault(&self) -> bool {
        matches!(self, Problem::Refused { error, .. } if error.plugin_fault)
    }
}

/// "did you mean `x`?" for a suggestion.
fn did_you_mean(suggestion: &Option<String>) -> Option<String> {
    suggestion.as_ref().map(|s| format!("did you mean `{s}`?"))
}

/// A TOML type name with its article: "a string", "an integer".
fn a_type(name: &str) -> String {
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// The message of [`Problem::Refused`]: located at the param the kind named, if any.
fn refused(node: &str, kind: &str, error: &ParamError) -> String {
    match &error.param {
        Some(param) => format!(
            "param `{param}` of node `{node}` ({kind}): {}",
            error.message
        ),
        None => format!("node `{node}` ({kind}): {}", error.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_take_the_place_of_the_general_help() {
        let typo = Problem::UnknownKind {
            kind: "stak".into(),
            suggestion: Some("stack".into()),
        };
        assert_eq!(typo.to_string(), "unknown node kind `stak`");
        assert_eq!(typo.label(), "unknown kind");
        assert_eq!(typo.help().as_deref(), Some("did you mean `stack`?"));
        let unknown = Problem::UnknownKind {
            kind: "zzz".into(),
            suggestion: None,
        };
        assert_eq!(
            unknown.help().as_deref(),
            Some("`flow nodes` lists every kind")
        );
    }

    #[test]
    fn types_read_with_their_article() {
        let p = Problem::SetChangesType {
            param: "k".into(),
            declared: "integer",
            found: "string",
        };
        assert_eq!(
            p.to_string(),
            "`--set k`: `k` is an integer in [params], got a string"
        );
    }

    #[test]
    fn only_a_failing_plugin_is_a_plugin_fault() {
        let refused = |error: ParamError| Problem::Refused {
            node: "n".into(),
            kind: "k".into(),
            error,
        };
        let bad = refused(ParamError::new("size", "must be odd"));
        assert!(!bad.is_plugin_fault());
        assert_eq!(bad.to_string(), "param `size` of node `n` (k): must be odd");
        assert_eq!(bad.label(), "invalid value");
        let fault = refused(ParamError::plugin_fault("panicked"));
        assert!(fault.is_plugin_fault());
        assert_eq!(fault.to_string(), "node `n` (k): panicked");
        assert_eq!(fault.label(), "the plugin failed here");
    }
}
