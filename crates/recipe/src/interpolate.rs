//! `${params.NAME}` references inside node parameters.

/// The outcome of interpolating one string.
#[derive(Debug, Clone, PartialEq)]
pub enum Interpolated {
    /// The string had no reference.
    Unchanged,
    /// The string was exactly one reference: the param's value with its own TOML type.
    Value(toml::Value),
    /// References inside a longer string, replaced by their text.
    Text(String),
}

/// A reference to a param that does not exist.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownRef {
    /// The name after `params.`.
    pub name: String,
    /// Byte range of `${...}` in the string.
    pub range: std::ops::Range<usize>,
}

/// Text form of a value inside a longer string (strings without quotes).
fn as_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces `${params.NAME}` references in `s` using `params`.
///
/// # Errors
/// Every reference to an unknown param, or a malformed one (`${k}`), with its range.
pub fn interpolate(s: &str, params: &toml::Table) -> Result<Interpolated, Vec<UnknownRef>> {
    if !s.contains("${") {
        return Ok(Interpolated::Unchanged);
    }
    let mut out = String::new();
    let mut errors = Vec::new();
    let mut rest = s;
    let mut offset = 0;
    let mut single: Option<toml::Value> = None;
    let mut refs = 0;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + len];
        let range = (offset + start)..(offset + start + len + 1);
        out.push_str(&rest[..start]);
        refs += 1;
        match inner
            .trim()
            .strip_prefix("params.")
            .and_then(|n| params.get(n).map(|v| (n, v)))
        {
            Some((_, v)) => {
                out.push_str(&as_text(v));
                single = Some(v.clone());
            }
            None => errors.push(UnknownRef {
                name: inner
                    .trim()
                    .strip_prefix("params.")
                    .unwrap_or(inner.trim())
                    .to_string(),
                range,
            }),
        }
        offset += start + len + 1;
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    let whole = s.trim().starts_with("${") && s.trim().ends_with('}') && refs == 1;
    Ok(match (whole, single) {
        (true, Some(v)) => Interpolated::Value(v),
        _ => Interpolated::Text(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> toml::Table {
        toml::from_str("k = 4\ncatalog = \"builtin:timberlea\"\nrange = [0, 255]").unwrap()
    }

    #[test]
    fn a_lone_reference_keeps_its_type() {
        assert_eq!(
            interpolate("${params.k}", &params()),
            Ok(Interpolated::Value(toml::Value::Integer(4)))
        );
        assert!(matches!(
            interpolate("${params.range}", &params()),
            Ok(Interpolated::Value(toml::Value::Array(_)))
        ));
    }

    #[test]
    fn references_inside_text_become_text() {
        assert_eq!(
            interpolate("classes_k${params.k}.tif", &params()),
            Ok(Interpolated::Text("classes_k4.tif".into()))
        );
        assert_eq!(interpolate("plain", &params()), Ok(Interpolated::Unchanged));
    }

    #[test]
    fn unknown_references_are_reported_with_their_range() {
        let err = interpolate("a${params.kk}b", &params()).unwrap_err();
        assert_eq!(
            err,
            vec![UnknownRef {
                name: "kk".into(),
                range: 1..13
            }]
        );
    }
}
