//! The `script` kind and its nodes: key material, the run and the estimate.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use flow_core::estimate::{Estimate, Known, Pixels, Shape};
use flow_core::{
    DeclaredParams, Inputs, Node, NodeError, NodeKind, ParamError, ParamSpec, Params, Port,
    RunContext, Signature, Value, ValueType,
};
use serde_json::json;

use crate::error::ScriptError;
use crate::inputs::{check_port_name, grid_json, ordered, write_input, write_json};
use crate::output::{read_output, Expect, Reference};
use crate::params::{
    OutputKind, ScriptParams, ValidScriptParams, DEFAULT_INTERPRETER, INTERPRETER_ENV,
};
use crate::process::{self, Ending};

/// How long `INTERPRETER --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of the script's stderr shown in an error.
const STDERR_SHOWN: usize = 4096;

/// The `script` node kind.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScriptKind;

impl NodeKind for ScriptKind {
    fn name(&self) -> &str {
        "script"
    }

    fn version(&self) -> u32 {
        1
    }

    fn doc(&self) -> &str {
        "Runs a script of the recipe's own (Python 3 by default) on the node's inputs: each input \
         is written to a temporary directory as NAME.npy (f32 cubes as (time, band, y, x), NaN = \
         nodata) and NAME.json (grid, bands, times), the script runs there as `interpreter script \
         args...` (FLOW_SCRIPT_DIR names the directory) and writes output.npy (and optionally \
         output.json: band names, times) for a raster, matrix or labels output, or output.json \
         for json. The output is checked against the declared type and the inputs' grid. Inputs \
         take names of the recipe's choosing: inputs = { cube = \"mask\" }. The cache key holds \
         the script's contents, its args and the interpreter's version. See docs/scripts.md."
    }

    fn signature(&self) -> Signature {
        Signature {
            inputs: vec![Port::optional(
                "input",
                ValueType::Any,
                "written as input.npy / input.json; any other name in `inputs` adds an input",
            )],
            output: ValueType::Any,
        }
    }

    fn params(&self) -> Vec<ParamSpec> {
        ScriptParams::specs()
    }

    fn build(&self, params: &Params) -> Result<Box<dyn Node>, ParamError> {
        let params = ScriptParams::parse(params)?.validate()?;
        Ok(Box::new(ScriptNode {
            params,
            prepared: Mutex::new(None),
        }))
    }

    fn unkeyed_params(&self) -> &[&str] {
        // How long the script may take changes nothing it writes.
        &["timeout"]
    }

    fn open_port(&self, port: &str) -> Option<Result<ValueType, String>> {
        Some(check_port_name(port).map(|()| ValueType::Any))
    }
}

/// A built `script` node.
#[derive(Debug)]
pub struct ScriptNode {
    params: ValidScriptParams,
    /// What `key_material` found, which the run checks the script against.
    prepared: Mutex<Option<Prepared>>,
}

/// The script and interpreter a run uses, as found before it.
#[derive(Debug, Clone, PartialEq)]
struct Prepared {
    /// The script's absolute path.
    script: PathBuf,
    /// BLAKE3 of its contents.
    digest: [u8; 32],
    /// The interpreter as named (param, FLOW_PYTHON or python3).
    interpreter_name: String,
    /// What runs: a name looked up on PATH, or an absolute path.
    interpreter: PathBuf,
    /// Its `--version` answer.
    version: String,
}

impl ScriptNode {
    /// The validated params.
    pub fn params(&self) -> &ValidScriptParams {
        &self.params
    }

    /// The interpreter as named and as it is run: a bare name is looked up on PATH; a path is
    /// taken from the recipe's directory (the param) or the current directory (FLOW_PYTHON).
    fn interpreter(&self, ctx: &RunContext) -> (String, PathBuf) {
        let from_env = || {
            std::env::var(INTERPRETER_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty())
        };
        let (name, base) = match &self.params.interpreter {
            Some(i) => (i.clone(), Some(ctx.recipe_dir.as_path())),
            None => match from_env() {
                Some(e) => (e, None),
                None => (DEFAULT_INTERPRETER.to_string(), None),
            },
        };
        let path = Path::new(&name);
        let run = if path.components().count() > 1 || path.is_absolute() {
            let joined = match base {
                Some(b) if path.is_relative() => b.join(path),
                _ => path.to_path_buf(),
            };
            std::path::absolute(&joined).unwrap_or(joined)
        } else {
            path.to_path_buf()
        };
        (name, run)
    }

    /// Finds the script (a regular file; relative to the recipe), hashes it, and asks the
    /// interpreter its version.
    fn prepare(&self, ctx: &RunContext) -> Result<Prepared, ScriptError> {
        let resolved = ctx.resolve(&self.params.script);
        let script = std::path::absolute(&resolved).unwrap_or(resolved);
        let digest = hash_script(&script)?;
        let (interpreter_name, interpreter) = self.interpreter(ctx);
        let version = interpreter_version(&interpreter_name, &interpreter, ctx)?;
        Ok(Prepared {
            script,
            digest,
            interpreter_name,
            interpreter,
            version,
        })
    }

    /// The script's error for `message` about its output.
    fn output_error(&self, message: String) -> ScriptError {
        ScriptError::Output {
            script: self.params.script.clone(),
            message,
        }
    }

    /// Runs the script on `values` (see [`ordered`]).
    fn run_script(
        &self,
        ctx: &RunContext,
        values: &[(&str, Cow<'_, Value>)],
    ) -> Result<Value, ScriptError> {
        // What `key_material` found, when it ran (it always does under the engine): the script
        // is hashed again, since it may have been edited after its key was made; the
        // interpreter is not asked its version twice.
        let before = self.prepared.lock().ok().and_then(|p| p.clone());
        let prepared = match before {
            Some(before) => {
                if hash_script(&before.script)? != before.digest {
                    return Err(ScriptError::Changed {
                        path: before.script,
                    });
                }
                before
            }
            None => self.prepare(ctx)?,
        };
        let dir = tempfile::Builder::new()
            .prefix("flow-script-")
            .tempdir()
            .map_err(|source| ScriptError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        for (port, value) in values {
            if ctx.is_cancelled() {
                return Err(ScriptError::Cancelled);
            }
            write_input(dir.path(), port, value)?;
        }
        let reference = Reference::of(values.iter().map(|(p, v)| (*p, v.as_ref())));
        write_json(
            &dir.path().join("node.json"),
            &json!({
                "node": ctx.node_id,
                "script": self.params.script,
                "args": self.params.args,
                "inputs": values.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
                "output": {
                    "type": self.params.output.name(),
                    "bands": self.params.bands,
                    "grid": reference.grid.map(|(_, g)| grid_json(g)),
                },
            }),
        )?;
        let mut command = Command::new(&prepared.interpreter);
        command
            .arg(&prepared.script)
            .args(&self.params.args)
            .current_dir(dir.path())
            .env("FLOW_SCRIPT_DIR", dir.path())
            .env("FLOW_NODE_ID", &ctx.node_id);
        tracing::debug!(
            interpreter = %prepared.interpreter.display(),
            script = %prepared.script.display(),
            dir = %dir.path().display(),
            "running the script"
        );
        let finished = process::run(&mut command, self.params.timeout, &|| ctx.is_cancelled())
            .map_err(|e| interpreter_error(&prepared.interpreter_name, &e))?;
        let stderr = process::last_bytes(&finished.stderr, STDERR_SHOWN);
        match finished.ending {
            Ending::Cancelled => return Err(ScriptError::Cancelled),
            Ending::TimedOut => {
                return Err(ScriptError::TimedOut {
                    script: self.params.script.clone(),
                    timeout: self.params.timeout_text.clone(),
                    stderr,
                })
            }
            Ending::Exited(status) if !status.success() => {
                return Err(ScriptError::Exited {
                    script: self.params.script.clone(),
                    status: process::describe(status),
                    stderr,
                })
            }
            Ending::Exited(_) => {}
        }
        for (stream, text) in [("stdout", &finished.stdout), ("stderr", &finished.stderr)] {
            if !text.trim().is_empty() {
                tracing::info!(
                    "script {stream}:\n{}",
                    process::last_bytes(text.trim_end(), STDERR_SHOWN)
                );
            }
        }
        let expect = Expect {
            kind: self.params.output,
            bands: self.params.bands.as_deref(),
            reference,
        };
        read_output(dir.path(), &expect).map_err(|m| self.output_error(m))
    }
}

/// BLAKE3 of the script file at `path`, which must be a regular file (following links).
fn hash_script(path: &Path) -> Result<[u8; 32], ScriptError> {
    let err = |source| ScriptError::Script {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let (hash, _) = flow_core::digest::hash_file(path).map_err(err)?;
    Ok(*hash.as_bytes())
}

/// The error of an interpreter that could not be started.
fn interpreter_error(name: &str, e: &std::io::Error) -> ScriptError {
    let message = match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "not found ({e}); install it, or name another with the node's `interpreter` or \
             {INTERPRETER_ENV}"
        ),
        std::io::ErrorKind::PermissionDenied => format!("cannot be run: {e}"),
        _ => format!("could not be started: {e}"),
    };
    ScriptError::Interpreter {
        interpreter: name.to_string(),
        message,
    }
}

/// What identifies the interpreter's version: what `INTERPRETER --version` prints (stdout and
/// stderr, trimmed), or, for an interpreter that refuses `--version` (dash's `sh`), the BLAKE3
/// of its executable.
fn interpreter_version(
    name: &str,
    interpreter: &Path,
    ctx: &RunContext,
) -> Result<String, ScriptError> {
    let mut command = Command::new(interpreter);
    command.arg("--version");
    let finished = process::run(&mut command, VERSION_TIMEOUT, &|| ctx.is_cancelled())
        .map_err(|e| interpreter_error(name, &e))?;
    let fail = |message: String| ScriptError::Interpreter {
        interpreter: name.to_string(),
        message,
    };
    match finished.ending {
        Ending::Exited(s) if s.success() => {
            Ok(
                format!("{}\n{}", finished.stdout.trim(), finished.stderr.trim())
                    .trim()
                    .to_string(),
            )
        }
        Ending::Exited(s) => {
            tracing::debug!(
                "`{name} --version` failed ({}); the interpreter is known by its executable's hash",
                process::describe(s)
            );
            let path = find_program(interpreter).ok_or_else(|| {
                fail(format!(
                    "`{name} --version` failed and {name} is not found on PATH"
                ))
            })?;
            let (hash, _) = flow_core::digest::hash_file(&path)
                .map_err(|e| fail(format!("{} cannot be read: {e}", path.display())))?;
            Ok(format!("executable blake3 {}", hash.to_hex()))
        }
        Ending::TimedOut => Err(fail(format!(
            "`{name} --version` gave no answer within {} s",
            VERSION_TIMEOUT.as_secs()
        ))),
        Ending::Cancelled => Err(ScriptError::Cancelled),
    }
}

/// The file a program name runs: a path as it is, a bare name looked up on PATH as the shell
/// does (the first regular file of that name).
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 || program.is_absolute() {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

impl Node for ScriptNode {
    fn run(&self, ctx: &RunContext, inputs: &Inputs) -> Result<Value, NodeError> {
        // A windowed input is computed whole first (its own errors keep their exit codes).
        let values = ordered(ctx, inputs)?;
        Ok(self.run_script(ctx, &values)?)
    }

    fn key_material(&self, ctx: &RunContext) -> Result<Option<Vec<u8>>, NodeError> {
        let prepared = self.prepare(ctx)?;
        let mut material = b"script\0".to_vec();
        material.extend_from_slice(&prepared.digest);
        material.extend_from_slice(b"\0interpreter\0");
        material.extend_from_slice(prepared.interpreter_name.as_bytes());
        material.push(0);
        material.extend_from_slice(prepared.version.as_bytes());
        if let Ok(mut p) = self.prepared.lock() {
            *p = Some(prepared);
        }
        Ok(Some(material))
    }

    fn output_type(&self) -> Option<ValueType> {
        Some(self.params.output.value_type())
    }

    fn estimate(&self, known: &Known) -> Option<Estimate> {
        // The grid of the first input on one, in the order of the run (`input`, then by name).
        let mut shapes: Vec<&(String, Shape)> = known.shapes.iter().collect();
        shapes.sort_by_key(|(p, _)| (p.as_str() != "input", p.clone()));
        let first = |ty: Option<ValueType>| {
            shapes
                .iter()
                .filter_map(|(_, s)| s.pixels())
                .find(|p| ty.is_none_or(|t| p.ty == t))
        };
        let named = self.params.bands.as_ref().map(Vec::len);
        let whole = |ty, times, bands, p: &Pixels| {
            let mut out = Pixels::whole(ty, times, bands, p.grid.clone());
            out.at_least = p.at_least;
            Estimate::of(Shape::Pixels(out))
        };
        Some(match self.params.output {
            OutputKind::Json => Estimate::of(Shape::Small),
            OutputKind::Raster => match (first(None), first(Some(ValueType::Raster))) {
                (Some(grid), raster) => {
                    let times = raster.map_or(1, |r| r.times);
                    let bands = named.or(raster.map(|r| r.bands)).unwrap_or(1);
                    whole(ValueType::Raster, times, bands, grid)
                }
                (None, _) => Estimate::unknown(),
            },
            OutputKind::Labels => match first(None) {
                Some(grid) => whole(ValueType::Labels, 1, 1, grid),
                None => Estimate::unknown(),
            },
            OutputKind::Matrix => match first(Some(ValueType::Matrix)) {
                Some(m) => whole(ValueType::Matrix, 1, named.unwrap_or(m.bands), m),
                None => Estimate::unknown(),
            },
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::sync::Arc;

    use flow_core::meta::{examples, same};

    use super::*;

    /// A node built from recipe text, and a context whose recipe directory is `dir`.
    fn node(dir: &Path, text: &str) -> (Box<dyn Node>, RunContext) {
        let params: Params = toml::from_str(text).unwrap();
        let node = ScriptKind.build(&params).unwrap();
        let ctx = RunContext::new("s", dir.join("out"), dir.to_path_buf(), dir.join("data"));
        (node, ctx)
    }

    fn raster() -> Value {
        examples()
            .into_iter()
            .find(|v| matches!(v, Value::Raster(_)))
            .unwrap()
    }

    #[test]
    fn runs_the_script_in_its_directory_and_reads_its_output() {
        let dir = tempfile::tempdir().unwrap();
        // Any interpreter: sh copies the input cube as the output, and checks its environment.
        std::fs::write(
            dir.path().join("copy.sh"),
            "[ \"$FLOW_SCRIPT_DIR\" = \"$PWD\" ] && [ \"$FLOW_NODE_ID\" = s ] && [ \"$1\" = a ] \
             && cp cube.npy output.npy",
        )
        .unwrap();
        let (node, ctx) = node(
            dir.path(),
            "script = \"copy.sh\"\ninterpreter = \"sh\"\nargs = [\"a\"]",
        );
        assert_eq!(node.output_type(), Some(ValueType::Raster));
        let input = raster();
        let inputs = Inputs::new([("cube".to_string(), Arc::new(input.clone()))]);
        let out = node.run(&ctx, &inputs).unwrap();
        // Same pixels, grid, bands (as many as the input's) and times.
        assert!(same(&out, &input), "{out:?}");
    }

    #[test]
    fn the_key_follows_the_script_and_the_interpreter_and_a_late_edit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s.sh");
        std::fs::write(&script, "cp cube.npy output.npy").unwrap();
        let (a, ctx) = node(dir.path(), "script = \"s.sh\"\ninterpreter = \"sh\"");
        let first = a.key_material(&ctx).unwrap().unwrap();
        assert_eq!(a.key_material(&ctx).unwrap().unwrap(), first);
        let (b, _) = node(
            dir.path(),
            &format!("script = \"{}\"\ninterpreter = \"sh\"", script.display()),
        );
        assert_eq!(
            b.key_material(&ctx).unwrap().unwrap(),
            first,
            "the same file"
        );
        std::fs::write(&script, "cp cube.npy output.npy # edited").unwrap();
        assert_ne!(a.key_material(&ctx).unwrap().unwrap(), first);
        let (c, _) = node(dir.path(), "script = \"s.sh\"\ninterpreter = \"/bin/sh\"");
        assert_ne!(
            c.key_material(&ctx).unwrap(),
            a.key_material(&ctx).unwrap(),
            "another interpreter"
        );

        // Edited between the cache lookup (key material) and the run: refused.
        std::fs::write(&script, "cp cube.npy output.npy # again").unwrap();
        let inputs = Inputs::new([("cube".to_string(), Arc::new(raster()))]);
        let e = a.run(&ctx, &inputs).unwrap_err();
        assert!(
            e.to_string().contains("changed while the run was starting"),
            "{e}"
        );
    }

    #[test]
    fn missing_scripts_and_interpreters_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (n, ctx) = node(dir.path(), "script = \"none.py\"\ninterpreter = \"sh\"");
        let e = n.key_material(&ctx).unwrap_err();
        assert_eq!(e.exit_code().code(), 5, "{e}");
        assert!(e.to_string().contains("none.py"), "{e}");
        std::fs::create_dir(dir.path().join("d.py")).unwrap();
        let (n, ctx) = node(dir.path(), "script = \"d.py\"\ninterpreter = \"sh\"");
        assert!(n
            .key_material(&ctx)
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        std::fs::write(dir.path().join("s.py"), "").unwrap();
        let (n, ctx) = node(
            dir.path(),
            "script = \"s.py\"\ninterpreter = \"./no/python\"",
        );
        let e = n.key_material(&ctx).unwrap_err();
        assert_eq!(e.exit_code().code(), 1, "{e}");
        assert!(
            e.to_string()
                .contains("interpreter `./no/python`: not found"),
            "{e}"
        );
    }

    #[test]
    fn estimates_the_inputs_grid_with_the_declared_bands() {
        let dir = tempfile::tempdir().unwrap();
        let Value::Raster(r) = raster() else { panic!() };
        let known = Known {
            shapes: vec![
                ("z".into(), Shape::Small),
                ("cube".into(), Shape::of(&Value::Raster(r.clone()))),
            ],
            ..Known::default()
        };
        let (n, _) = node(
            dir.path(),
            "script = \"s.py\"\nbands = [\"A\", \"B\", \"C\"]",
        );
        let est = n.estimate(&known).unwrap();
        let p = est.output.pixels().unwrap();
        assert_eq!((p.ty, p.times, p.bands), (ValueType::Raster, 1, 3));
        assert_eq!(p.grid, r.grid);
        let (n, _) = node(dir.path(), "script = \"s.py\"\noutput = \"labels\"");
        assert_eq!(
            n.estimate(&known).unwrap().output.pixels().unwrap().ty,
            ValueType::Labels
        );
        let (n, _) = node(dir.path(), "script = \"s.py\"\noutput = \"json\"");
        assert_eq!(n.estimate(&known).unwrap().output, Shape::Small);
        let (n, _) = node(dir.path(), "script = \"s.py\"\noutput = \"matrix\"");
        assert_eq!(n.estimate(&known).unwrap().output, Shape::Unknown);
    }
}
