//! Command-line overrides: `--set NAME=VALUE`, `--set NODE.PARAM=VALUE` and `--profile NAME`.

/// One `--set` argument, split but not yet checked against a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOverride {
    /// The whole argument as typed, for diagnostics.
    pub raw: String,
    /// `k`, or `fit.max_iter`.
    pub target: String,
    /// The value text after `=`.
    pub value_text: String,
}

impl SetOverride {
    /// Splits `NAME=VALUE`. A missing `=` is reported when the recipe is built, with the argument
    /// as the source.
    pub fn parse(raw: &str) -> Self {
        match raw.split_once('=') {
            Some((t, v)) => SetOverride {
                raw: raw.into(),
                target: t.trim().into(),
                value_text: v.trim().into(),
            },
            None => SetOverride {
                raw: raw.into(),
                target: String::new(),
                value_text: String::new(),
            },
        }
    }

    /// Byte range of the value inside [`SetOverride::raw`].
    pub fn value_span(&self) -> std::ops::Range<usize> {
        match self.raw.find('=') {
            Some(i) => (i + 1)..self.raw.len(),
            None => 0..self.raw.len(),
        }
    }

    /// Byte range of the target inside [`SetOverride::raw`].
    pub fn target_span(&self) -> std::ops::Range<usize> {
        0..self.raw.find('=').unwrap_or(self.raw.len())
    }

    /// The value as TOML: `6` is an integer, `[1, 2]` an array, `"x"` a string. A bare word that is
    /// not TOML (`builtin:timberlea`) is taken as a string, so that shells need no extra quoting.
    ///
    /// # Errors
    /// The TOML parser's message when the text looks like TOML (starts with a quote, bracket or
    /// brace) but does not parse.
    pub fn value(&self) -> Result<toml::Value, String> {
        let doc = format!("v = {}", self.value_text);
        match toml::from_str::<toml::Table>(&doc) {
            Ok(mut t) => Ok(t.remove("v").unwrap_or(toml::Value::String(String::new()))),
            Err(e) => {
                let looks_like_toml = self.value_text.is_empty()
                    || self.value_text.starts_with(['[', '{', '"', '\'']);
                if looks_like_toml {
                    Err(e.message().to_string())
                } else {
                    Ok(toml::Value::String(self.value_text.clone()))
                }
            }
        }
    }
}

/// Everything on the command line that changes a recipe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--profile NAME`.
    pub profile: Option<String>,
    /// `--set` arguments, in order (later wins).
    pub sets: Vec<SetOverride>,
}

impl Overrides {
    /// Overrides from a profile name and raw `--set` arguments.
    pub fn new(profile: Option<String>, sets: &[String]) -> Self {
        Overrides {
            profile,
            sets: sets.iter().map(|s| SetOverride::parse(s)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_or_bare_strings() {
        assert_eq!(
            SetOverride::parse("k=6").value(),
            Ok(toml::Value::Integer(6))
        );
        assert_eq!(
            SetOverride::parse("fit.tol=1e-3").value(),
            Ok(toml::Value::Float(1e-3))
        );
        assert_eq!(
            SetOverride::parse("catalog=builtin:timberlea").value(),
            Ok(toml::Value::String("builtin:timberlea".into()))
        );
        assert!(SetOverride::parse("range=[0, ").value().is_err());
        let s = SetOverride::parse("fit.k = 3");
        assert_eq!((s.target.as_str(), s.value_text.as_str()), ("fit.k", "3"));
    }
}
