//! `script` params as written, and validated.

use std::time::Duration;

use flow_core::{ParamError, ValueType};

flow_core::param_enum! {
    /// The type of value a script outputs.
    pub enum OutputKind {
        /// A cube on the inputs' grid: `output.npy` f32, (time, band, y, x), (band, y, x) or (y, x).
        Raster = "raster",
        /// Pixels x features: `output.npy` f32 (rows, features), one row per valid pixel.
        Matrix = "matrix",
        /// A class map on the inputs' grid: `output.npy` u16 (y, x).
        Labels = "labels",
        /// Small structured data: `output.json`.
        Json = "json",
    }
}

impl OutputKind {
    /// The value type of the output.
    pub fn value_type(self) -> ValueType {
        match self {
            OutputKind::Raster => ValueType::Raster,
            OutputKind::Matrix => ValueType::Matrix,
            OutputKind::Labels => ValueType::Labels,
            OutputKind::Json => ValueType::Json,
        }
    }
}

flow_core::params! {
    /// `script` params as written in the recipe.
    pub struct ScriptParams {
        /// the script file, relative to the recipe's directory
        pub script: String,
        /// the program that runs it, by name on PATH or as a path (relative to the recipe); default python3, or FLOW_PYTHON when set
        pub interpreter: Option<String>,
        /// arguments after the script's path
        pub args: Vec<String> = Vec::new(),
        /// the type of value the script writes
        pub output: OutputKind = OutputKind::Raster,
        /// names of the output's bands (raster) or features (matrix), unless the script writes them in output.json
        pub bands: Option<Vec<String>>,
        /// how long the script may run before it is killed: 90s, 10m, 1h30m (or seconds)
        pub timeout: String = "1h".to_string(),
    }
}

/// The interpreter when the recipe names none and FLOW_PYTHON is not set.
pub const DEFAULT_INTERPRETER: &str = "python3";

/// The environment variable that replaces [`DEFAULT_INTERPRETER`].
pub const INTERPRETER_ENV: &str = "FLOW_PYTHON";

/// The longest timeout a recipe may give: a week.
const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// `script` params that passed validation; made only by [`ScriptParams::validate`].
#[derive(Debug, Clone)]
pub struct ValidScriptParams {
    pub(crate) script: String,
    pub(crate) interpreter: Option<String>,
    pub(crate) args: Vec<String>,
    pub(crate) output: OutputKind,
    pub(crate) bands: Option<Vec<String>>,
    pub(crate) timeout: Duration,
    pub(crate) timeout_text: String,
}

impl ValidScriptParams {
    /// The script as the recipe names it.
    pub fn script(&self) -> &str {
        &self.script
    }
    /// The declared output type.
    pub fn output(&self) -> OutputKind {
        self.output
    }
    /// The output's band or feature names given by the recipe.
    pub fn bands(&self) -> Option<&[String]> {
        self.bands.as_deref()
    }
    /// How long the script may run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl ScriptParams {
    /// Checks the params.
    ///
    /// # Errors
    /// A [`ParamError`] naming the param: an empty script path or interpreter, `bands` with an
    /// output that has none or with a repeated or empty name, a timeout that does not parse or
    /// is not between 0 and a week.
    pub fn validate(self) -> Result<ValidScriptParams, ParamError> {
        if self.script.trim().is_empty() {
            return Err(ParamError::new("script", "`script` is empty"));
        }
        if self
            .interpreter
            .as_deref()
            .is_some_and(|i| i.trim().is_empty())
        {
            return Err(ParamError::new(
                "interpreter",
                "`interpreter` is empty; leave it out for python3",
            ));
        }
        if let Some(bands) = &self.bands {
            if matches!(self.output, OutputKind::Labels | OutputKind::Json) {
                return Err(ParamError::new(
                    "bands",
                    format!("a {} output has no bands", self.output),
                )
                .with_help("`bands` names the bands of a raster or the features of a matrix"));
            }
            if bands.is_empty() {
                return Err(ParamError::new("bands", "`bands` is empty"));
            }
            if let Some(dup) = bands
                .iter()
                .enumerate()
                .find(|(i, b)| b.is_empty() || bands[..*i].contains(b))
            {
                return Err(ParamError::new(
                    "bands",
                    format!("band name `{}` is empty or repeated", dup.1),
                ));
            }
        }
        let timeout = parse_duration(&self.timeout)
            .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
            .ok_or_else(|| {
                ParamError::new(
                    "timeout",
                    format!(
                        "timeout `{}` is not a duration between 0 and a week",
                        self.timeout
                    ),
                )
                .with_help("write seconds or a number with a unit: 90s, 10m, 2h, 1h30m, 1d")
            })?;
        Ok(ValidScriptParams {
            script: self.script,
            interpreter: self.interpreter,
            args: self.args,
            output: self.output,
            bands: self.bands,
            timeout,
            timeout_text: self.timeout.trim().to_string(),
        })
    }
}

/// Parses `90`, `90s`, `1.5m`, `2h`, `1h30m`, `1d`, `500ms`: numbers each followed by a unit
/// (`ms`, `s`, `m`, `h`, `d`), or one bare number of seconds. `None` when it does not parse.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_core::DeclaredParams;

    fn valid(text: &str) -> Result<ValidScriptParams, ParamError> {
        ScriptParams::parse(&toml::from_str(text).unwrap())?.validate()
    }

    #[test]
    fn durations_take_units_and_sums() {
        let d = |s: &str| parse_duration(s).map(|d| d.as_secs_f64());
        assert_eq!(d("90"), Some(90.0));
        assert_eq!(d("90s"), Some(90.0));
        assert_eq!(d("10m"), Some(600.0));
        assert_eq!(d("1h30m"), Some(5400.0));
        assert_eq!(d("1.5h"), Some(5400.0));
        assert_eq!(d("500ms"), Some(0.5));
        assert_eq!(d("2d"), Some(172_800.0));
        for bad in ["", "m", "10 minutes", "-5", "1h-3m", "1e400", "5x"] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn params_are_checked_and_defaults_filled() {
        let p = valid("script = \"s.py\"").unwrap();
        assert_eq!(p.output(), OutputKind::Raster);
        assert_eq!(p.timeout(), Duration::from_secs(3600));
        assert!(p.args.is_empty() && p.interpreter.is_none() && p.bands().is_none());
        let p = valid("script = \"s.py\"\noutput = \"labels\"\ntimeout = \"2s\"").unwrap();
        assert_eq!((p.output(), p.timeout().as_secs()), (OutputKind::Labels, 2));

        let e = |text: &str| valid(text).unwrap_err();
        assert_eq!(e("script = \"\"").param.as_deref(), Some("script"));
        assert_eq!(
            e("script = \"s.py\"\ninterpreter = \" \"").param.as_deref(),
            Some("interpreter")
        );
        let labels = e("script = \"s.py\"\noutput = \"labels\"\nbands = [\"a\"]");
        assert_eq!(labels.param.as_deref(), Some("bands"));
        assert!(labels.message.contains("labels output has no bands"));
        let dup = e("script = \"s.py\"\nbands = [\"a\", \"b\", \"a\"]");
        assert!(dup.message.contains("`a` is empty or repeated"), "{dup}");
        for t in ["0s", "8d", "soon"] {
            let err = e(&format!("script = \"s.py\"\ntimeout = \"{t}\""));
            assert_eq!(err.param.as_deref(), Some("timeout"), "{t}");
        }
        assert_eq!(
            e("script = \"s.py\"\noutput = \"model\"").param.as_deref(),
            Some("output")
        );
    }
}
