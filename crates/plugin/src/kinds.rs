//! Node kinds as they cross: what `describe` returns is the serde JSON of a list of
//! [`KindInfo`], whose signature and params are flow-core's own `Signature` and `ParamSpec`
//! (so a param type, a default or a port is written exactly as `flow nodes --format json` shows
//! it).

use flow_core::{ParamSpec, Signature};
use serde::{Deserialize, Serialize};

/// A node kind as described by a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindInfo {
    /// The kind name.
    pub name: String,
    /// The kind's version.
    pub version: u32,
    /// Its documentation.
    pub doc: String,
    /// Whether each output pixel depends only on the same pixel of the inputs.
    pub pixel_local: bool,
    /// Params left out of the cache key.
    pub unkeyed_params: Vec<String>,
    /// Ports and output type.
    pub signature: Signature,
    /// Params schema.
    pub params: Vec<ParamSpec>,
}

/// Parses the kinds JSON a plugin's `describe` returned.
///
/// # Errors
/// serde's message, which names the field at fault.
pub fn kinds_from_json(text: &str) -> Result<Vec<KindInfo>, String> {
    serde_json::from_str(text).map_err(|e| format!("its kinds are not a list of KindInfo: {e}"))
}

/// The kinds JSON of `describe`.
///
/// # Errors
/// When a kind cannot be written as JSON (a non-finite float default, say).
pub fn kinds_to_json(kinds: &[KindInfo]) -> Result<String, String> {
    serde_json::to_string(kinds).map_err(|e| format!("the kinds cannot be written as JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::{ParamType, Port, ValueType};

    #[test]
    fn kinds_round_trip() {
        let info = KindInfo {
            name: "k".into(),
            version: 3,
            doc: "d".into(),
            pixel_local: true,
            unkeyed_params: vec!["timeout".into()],
            signature: Signature {
                inputs: vec![
                    Port::required("input", ValueType::Labels, "in"),
                    Port::optional("rgb", ValueType::Raster, "rgb"),
                ],
                output: ValueType::Labels,
            },
            params: vec![
                ParamSpec::with_default("size", ParamType::Integer, 3, "window"),
                ParamSpec::required("mode", ParamType::one_of(&["a", "b"]), "m"),
                ParamSpec::optional(
                    "xs",
                    ParamType::array(ParamType::array(ParamType::Float)),
                    "xs",
                ),
                ParamSpec::with_default("f", ParamType::Float, 0.5, "f"),
                ParamSpec::with_default("one", ParamType::Float, 1.0, "a float that looks whole"),
                ParamSpec::with_default("t", ParamType::Table, toml::Table::new(), "t"),
                ParamSpec::optional("timeout", ParamType::Any, "t"),
            ],
        };
        let text = kinds_to_json(std::slice::from_ref(&info)).unwrap();
        let back = kinds_from_json(&text).unwrap();
        assert_eq!(back, vec![info]);
        assert_eq!(back[0].params[4].default, Some(toml::Value::Float(1.0)));
    }

    #[test]
    fn bad_kinds_are_errors() {
        assert!(kinds_from_json("{").is_err());
        assert!(kinds_from_json("{}").is_err());
        let e = kinds_from_json(
            r#"[{"name": "x", "version": 1, "doc": "", "pixel_local": false,
                 "unkeyed_params": [], "signature": {"inputs": [], "output": "nope"},
                 "params": []}]"#,
        )
        .unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }
}
