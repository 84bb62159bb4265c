//! Node kinds as JSON: what `describe` returns and the host reads back.
//!
//! ```json
//! [{"name": "majority-filter", "version": 1, "doc": "...", "pixel_local": false,
//!   "inputs": [{"name": "input", "type": "Labels", "required": true, "doc": "..."}],
//!   "output": "Labels",
//!   "params": [{"name": "size", "type": "integer", "required": false, "default": 3, "doc": "..."}]}]
//! ```
//!
//! Param types are `"string"`, `"integer"`, `"float"`, `"bool"`, `"table"`, `"any"`,
//! `{"enum": ["a", "b"]}` or `{"array": <type>}`; defaults are the TOML value as JSON.

use flow_core::{ParamSpec, ParamType, Port, Signature, ValueType};
use serde_json::{json, Value as Json};

/// A node kind as described by a plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct KindInfo {
    /// The kind name.
    pub name: String,
    /// The kind's version.
    pub version: u32,
    /// Its documentation.
    pub doc: String,
    /// Whether it is pixel-local.
    pub pixel_local: bool,
    /// Ports and output type.
    pub signature: Signature,
    /// Params schema.
    pub params: Vec<ParamSpec>,
}

fn ptype_to_json(t: &ParamType) -> Json {
    match t {
        ParamType::String => json!("string"),
        ParamType::Integer => json!("integer"),
        ParamType::Float => json!("float"),
        ParamType::Bool => json!("bool"),
        ParamType::Table => json!("table"),
        ParamType::Any => json!("any"),
        ParamType::Enum(v) => json!({ "enum": v }),
        ParamType::Array(item) => json!({ "array": ptype_to_json(item) }),
    }
}

fn ptype_from_json(j: &Json) -> Result<ParamType, String> {
    Ok(match j {
        Json::String(s) => match s.as_str() {
            "string" => ParamType::String,
            "integer" => ParamType::Integer,
            "float" => ParamType::Float,
            "bool" => ParamType::Bool,
            "table" => ParamType::Table,
            "any" => ParamType::Any,
            other => return Err(format!("unknown param type `{other}`")),
        },
        Json::Object(o) if o.len() == 1 => {
            if let Some(values) = o.get("enum").and_then(Json::as_array) {
                ParamType::Enum(
                    values
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .map(String::from)
                                .ok_or("enum values must be strings")
                        })
                        .collect::<Result<_, _>>()?,
                )
            } else if let Some(item) = o.get("array") {
                ParamType::array(ptype_from_json(item)?)
            } else {
                return Err(format!("unknown param type {j}"));
            }
        }
        other => return Err(format!("unknown param type {other}")),
    })
}

/// One kind as JSON.
pub fn kind_to_json(info: &KindInfo) -> Json {
    json!({
        "name": info.name,
        "version": info.version,
        "doc": info.doc,
        "pixel_local": info.pixel_local,
        "inputs": info.signature.inputs.iter().map(|p| json!({
            "name": p.name, "type": p.ty.name(), "required": p.required, "doc": p.doc,
        })).collect::<Vec<_>>(),
        "output": info.signature.output.name(),
        "params": info.params.iter().map(|p| {
            let mut o = json!({
                "name": p.name, "type": ptype_to_json(&p.ty), "required": p.required, "doc": p.doc,
            });
            if let Some(d) = &p.default {
                o["default"] = serde_json::to_value(d).unwrap_or(Json::Null);
            }
            o
        }).collect::<Vec<_>>(),
    })
}

fn str_field<'a>(o: &'a Json, key: &str) -> Result<&'a str, String> {
    o.get(key)
        .and_then(Json::as_str)
        .ok_or_else(|| format!("`{key}` must be a string"))
}

fn bool_field(o: &Json, key: &str) -> bool {
    o.get(key).and_then(Json::as_bool).unwrap_or(false)
}

fn value_type(o: &Json, key: &str) -> Result<ValueType, String> {
    let name = str_field(o, key)?;
    ValueType::parse(name).ok_or_else(|| format!("unknown value type `{name}`"))
}

fn kind_from_json(j: &Json) -> Result<KindInfo, String> {
    let name = str_field(j, "name")?.to_string();
    let ctx = |e: String| format!("kind `{name}`: {e}");
    let version = j
        .get("version")
        .and_then(Json::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ctx("`version` must be a u32".into()))?;
    let inputs = j
        .get("inputs")
        .and_then(Json::as_array)
        .ok_or_else(|| ctx("`inputs` must be an array".into()))?
        .iter()
        .map(|p| {
            Ok(Port {
                name: str_field(p, "name")?.to_string(),
                ty: value_type(p, "type")?,
                required: bool_field(p, "required"),
                doc: str_field(p, "doc").unwrap_or_default().to_string(),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(ctx)?;
    let params =
        j.get("params")
            .and_then(Json::as_array)
            .ok_or_else(|| ctx("`params` must be an array".into()))?
            .iter()
            .map(|p| {
                let default = match p.get("default") {
                    None | Some(Json::Null) => None,
                    Some(d) => Some(serde_json::from_value::<toml::Value>(d.clone()).map_err(
                        |e| format!("default of `{}`: {e}", str_field(p, "name").unwrap_or("?")),
                    )?),
                };
                Ok(ParamSpec {
                    name: str_field(p, "name")?.to_string(),
                    ty: ptype_from_json(p.get("type").unwrap_or(&Json::Null))?,
                    required: bool_field(p, "required"),
                    default,
                    doc: str_field(p, "doc").unwrap_or_default().to_string(),
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(ctx)?;
    Ok(KindInfo {
        version,
        doc: str_field(j, "doc").unwrap_or_default().to_string(),
        pixel_local: bool_field(j, "pixel_local"),
        signature: Signature {
            inputs,
            output: value_type(j, "output").map_err(ctx)?,
        },
        params,
        name,
    })
}

/// Parses the kinds JSON a plugin's `describe` returned.
///
/// # Errors
/// A message naming the field at fault.
pub fn kinds_from_json(text: &str) -> Result<Vec<KindInfo>, String> {
    let j: Json = serde_json::from_str(text).map_err(|e| format!("kinds are not JSON: {e}"))?;
    j.as_array()
        .ok_or("kinds must be a JSON array")?
        .iter()
        .map(kind_from_json)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        let info = KindInfo {
            name: "k".into(),
            version: 3,
            doc: "d".into(),
            pixel_local: true,
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
                ParamSpec::optional("xs", ParamType::array(ParamType::Float), "xs"),
                ParamSpec::with_default("f", ParamType::Float, 0.5, "f"),
            ],
        };
        let text = json!([kind_to_json(&info)]).to_string();
        assert_eq!(kinds_from_json(&text).unwrap(), vec![info]);
    }

    #[test]
    fn bad_kinds_are_errors() {
        assert!(kinds_from_json("{").is_err());
        assert!(kinds_from_json("{}").is_err());
        let e = kinds_from_json(
            r#"[{"name": "x", "version": 1, "inputs": [], "output": "Nope", "params": []}]"#,
        )
        .unwrap_err();
        assert!(e.contains("kind `x`") && e.contains("Nope"), "{e}");
    }
}
