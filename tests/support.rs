use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

/// The repository root (where recipes/ is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `flow` command run from the repository root, with colours off and a private cache.
pub fn flow(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flow"));
    c.current_dir(root())
        .env("NO_COLOR", "1")
        .env("FLOW_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .env_remove("FLOW_PLUGIN_PATH");
    c
}

/// Runs and returns (exit code, stdout, stderr), after checking that the process ended as flow
/// ends ([`assert_no_crash`]): every test that runs the binary through here checks that it did
/// not panic, abort or get killed, whatever exit code it expects.
pub fn output(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("flow runs");
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert_no_crash(&format!("{cmd:?}"), status, &stderr);
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    )
}

/// Panics unless `status` is one of flow's own exits: a process killed by a signal (an abort, the
/// OOM killer, a segfault), exit 101 (a Rust panic), 134 (SIGABRT through a shell) or 137
/// (SIGKILL through a shell), or "panicked at" on stderr (a panic, even one caught) is a crash,
/// never an answer. The one panic allowed is a plugin's own (at `plugins/...`) in a run that
/// ended with the plugin error, exit 6: the plugin's copy of the standard library prints it
/// before flow catches it. Tests that kill flow on purpose wait for their child themselves.
pub fn assert_no_crash(what: &str, status: ExitStatus, stderr: &str) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        panic!("{what} was killed by signal {signal}{core}:\n{stderr}");
    }
    assert!(
        !matches!(status.code(), Some(101 | 134 | 137)),
        "{what} crashed with exit {status}:\n{stderr}"
    );
    let plugin_error = status.code() == Some(6);
    for (i, m) in stderr.match_indices("panicked at ") {
        let after = &stderr[i + m.len()..];
        assert!(
            plugin_error && after.starts_with("plugins/"),
            "{what} panicked ({status}):\n{stderr}"
        );
    }
}

/// Extra arguments a fixture asks for in a first-line comment: `# args: --set k=four`.
pub fn fixture_args(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# args:"))
        .map(|a| a.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// `recipes/invalid/x.toml` for a fixture path.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap().display().to_string()
}

/// Writes the offline Timberlea scene into `dir` with `flow fixture` (its catalog is
/// `dir/items.json`).
pub fn write_scene(cache: &Path, dir: &Path) {
    let (code, _, stderr) = output(flow(cache).args(["fixture", "timberlea", "--out"]).arg(dir));
    assert_eq!(code, 0, "{stderr}");
}

/// True when some cache entry was made by a node of `kind`.
pub fn cached_kind(cache: &Path, kind: &str) -> bool {
    let Ok(shards) = std::fs::read_dir(cache.join("objects")) else {
        return false;
    };
    shards
        .flatten()
        .flat_map(|s| std::fs::read_dir(s.path()).into_iter().flatten().flatten())
        .any(|e| {
            std::fs::read_to_string(e.path().join("manifest.json"))
                .is_ok_and(|m| m.contains(&format!("\"kind\": \"{kind}\"")))
        })
}

/// The run report `run.json` in output directory `out`.
pub fn run_report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap()
}

/// Each node's status in the run report in `out`, in plan order.
pub fn node_statuses(out: &Path) -> Vec<(String, String)> {
    report_statuses(&run_report(out))
}

/// Each node's status in a run report, in plan order.
pub fn report_statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Node `id`'s entry in the run report in `out`.
pub fn node_report(out: &Path, id: &str) -> serde_json::Value {
    run_report(out)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node `{id}` in the run report"))
        .clone()
}

/// Adjusted Rand index of two labelings (Hubert & Arabie).
pub fn adjusted_rand_index(a: &[u16], b: &[u16]) -> f64 {
    use std::collections::HashMap;
    let mut table: HashMap<(u16, u16), u64> = HashMap::new();
    let mut rows: HashMap<u16, u64> = HashMap::new();
    let mut cols: HashMap<u16, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let c2 = |n: u64| (n * n.saturating_sub(1)) as f64 / 2.0;
    let index: f64 = table.values().map(|&n| c2(n)).sum();
    let sa: f64 = rows.values().map(|&n| c2(n)).sum();
    let sb: f64 = cols.values().map(|&n| c2(n)).sum();
    let expected = sa * sb / c2(a.len() as u64);
    (index - expected) / (0.5 * (sa + sb) - expected)
}

/// A Python 3 interpreter that can import numpy, for `script` nodes: FLOW_PYTHON when set, else
/// `python3` on PATH, else Debian's `/usr/bin/python3` (which `scripts/setup` gives numpy when a
/// `python3` earlier on PATH, from pyenv or a venv, has none).
pub fn python_with_numpy() -> PathBuf {
    python_importing(&["numpy"])
}

/// A Python 3 interpreter that can import numpy and scikit-learn (Debian's `python3-sklearn`,
/// which `scripts/setup` installs), found as [`python_with_numpy`] finds one.
pub fn python_with_sklearn() -> PathBuf {
    python_importing(&["numpy", "sklearn", "scipy.optimize"])
}

/// The first of FLOW_PYTHON, `python3` on PATH and `/usr/bin/python3` that imports `modules`.
fn python_importing(modules: &[&str]) -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("FLOW_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(["python3", "/usr/bin/python3"].map(PathBuf::from))
        .collect();
    let import = format!("import {}", modules.join(", "));
    candidates
        .iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", &import])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .cloned()
        .unwrap_or_else(|| {
            panic!("no Python 3 that can `{import}` among {candidates:?}: run scripts/setup")
        })
}
