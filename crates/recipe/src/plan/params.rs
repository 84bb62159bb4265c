//! The recipe's `[params]` after overrides: every `[profiles.NAME]` checked against `[params]`,
//! the chosen profile applied, then `--set NAME=VALUE`; `--set NODE.PARAM=VALUE` is kept for the
//! nodes.

use flow_core::schema::{suggest, toml_type_name};

use super::builder::Builder;
use crate::overrides::SetOverride;
use crate::problem::Problem;

/// The flag whose arguments [`SetOverride`]s are, as shown in diagnostics.
const SET_FLAG: &str = "--set";
/// The flag that chooses a profile, as shown in diagnostics.
const PROFILE_FLAG: &str = "--profile";

/// A parsed `--set NODE.PARAM=VALUE`.
pub(super) struct NodeSet<'a> {
    /// The node id.
    pub(super) node: String,
    /// The param of the node.
    pub(super) param: String,
    /// The value, parsed as TOML.
    pub(super) value: toml::Value,
    /// The argument it came from, to locate errors about the value.
    pub(super) origin: &'a SetOverride,
}

/// True when `new` may replace `old`: the same TOML type, one number for another, or the word
/// `"auto"` for a number and back.
fn same_type(old: &toml::Value, new: &toml::Value) -> bool {
    // A number is a number: `res = 10` may become 0.5 and `scale = 1.5` may become 2; where it
    // is used, the node's params say whether it must be an integer (`k = 4.5` is refused there).
    // `"auto"` stands for a number the node chooses (`kmeans-fit`'s `k = "auto"`): `k = 4` may
    // become "auto" and `k = "auto"` may become 6; a node that takes no "auto" refuses it there.
    let number = |v: &toml::Value| matches!(v, toml::Value::Integer(_) | toml::Value::Float(_));
    let auto = |v: &toml::Value| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("auto"));
    toml_type_name(old) == toml_type_name(new)
        || (number(old) && number(new))
        || (number(old) && auto(new))
        || (auto(old) && number(new))
}

impl Builder<'_> {
    /// Reports a problem located in the `--set` argument `set`, at `span` of its text.
    pub(super) fn report_on_set(
        &mut self,
        set: &SetOverride,
        span: std::ops::Range<usize>,
        problem: Problem,
    ) {
        self.errors
            .report_on_command_line(SET_FLAG, &set.raw, span, problem);
    }

    /// Checks every profile against `[params]` and applies the chosen one.
    pub(super) fn apply_profiles(
        &mut self,
        top: &toml::Table,
        params: &mut toml::Table,
        chosen: Option<&str>,
    ) {
        let profiles = self.table_field(top, "profiles").unwrap_or_default();
        for (pname, profile) in &profiles {
            let Some(profile) = profile.as_table() else {
                let span = self.value_span(&["profiles", pname]);
                let problem = Problem::ProfileNotATable {
                    profile: pname.clone(),
                };
                self.errors.report(span, problem);
                continue;
            };
            for (key, value) in profile {
                match params.get(key) {
                    None => {
                        let span = self.key_span(&["profiles", pname, key]);
                        let problem = Problem::ProfileSetsUnknownParam {
                            profile: pname.clone(),
                            param: key.clone(),
                            suggestion: suggest(key, params.keys().map(String::as_str)),
                        };
                        self.errors.report(span, problem);
                    }
                    Some(old) if !same_type(old, value) => {
                        let span = self.value_span(&["profiles", pname, key]);
                        let problem = Problem::ProfileChangesType {
                            profile: pname.clone(),
                            param: key.clone(),
                            declared: toml_type_name(old),
                            found: toml_type_name(value),
                        };
                        self.errors.report(span, problem);
                    }
                    Some(_) => {}
                }
            }
        }
        let Some(chosen) = chosen else {
            return;
        };
        match profiles.get(chosen).and_then(|p| p.as_table()) {
            Some(profile) => {
                for (key, value) in profile {
                    if params.contains_key(key) {
                        params.insert(key.clone(), value.clone());
                    }
                }
            }
            None => {
                let problem = Problem::UnknownProfile {
                    profile: chosen.into(),
                    suggestion: suggest(chosen, profiles.keys().map(String::as_str)),
                    defined: profiles.keys().cloned().collect(),
                };
                self.errors
                    .report_on_command_line(PROFILE_FLAG, chosen, 0..chosen.len(), problem);
            }
        }
    }

    /// Applies `--set NAME=VALUE` to params; returns the `NODE.PARAM` ones for the nodes.
    pub(super) fn apply_sets<'s>(
        &mut self,
        sets: &'s [SetOverride],
        params: &mut toml::Table,
        nodes: &toml::Table,
    ) -> Vec<NodeSet<'s>> {
        let mut node_sets = Vec::new();
        for set in sets {
            if set.target.is_empty() || set.value_text.is_empty() && !set.raw.contains('=') {
                self.report_on_set(set, 0..set.raw.len(), Problem::SetNeedsNameValue);
                continue;
            }
            let value = match set.value() {
                Ok(v) => v,
                Err(message) => {
                    let problem = Problem::SetValueNotToml {
                        target: set.target.clone(),
                        message,
                    };
                    self.report_on_set(set, set.value_span(), problem);
                    continue;
                }
            };
            if let Some((node, param)) = set.target.split_once('.') {
                if !nodes.contains_key(node) {
                    let problem = Problem::SetUnknownNode {
                        target: set.target.clone(),
                        node: node.into(),
                        suggestion: suggest(node, nodes.keys().map(String::as_str)),
                    };
                    self.report_on_set(set, 0..node.len(), problem);
                    continue;
                }
                node_sets.push(NodeSet {
                    node: node.into(),
                    param: param.into(),
                    value,
                    origin: set,
                });
                continue;
            }
            match params.get(&set.target) {
                None => {
                    let problem = Problem::SetUnknownParam {
                        param: set.target.clone(),
                        suggestion: suggest(&set.target, params.keys().map(String::as_str)),
                    };
                    self.report_on_set(set, set.target_span(), problem);
                }
                Some(old) if !same_type(old, &value) => {
                    let problem = Problem::SetChangesType {
                        param: set.target.clone(),
                        declared: toml_type_name(old),
                        found: toml_type_name(&value),
                    };
                    self.report_on_set(set, set.value_span(), problem);
                }
                Some(_) => {
                    params.insert(set.target.clone(), value);
                }
            }
        }
        node_sets
    }
}
