//! Plugins through the `flow` binary: the majority-filter example plugin and the test-only
//! plugins (plugins/test-*), each built with cargo as a cdylib into target/plugins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flow_plugin::abi::ABI_VERSION;

use crate::support::{flow, output, root};

/// The plugin libraries, built once per test process.
struct Libs {
    majority: PathBuf,
    test: PathBuf,
    wrong_abi: PathBuf,
    no_entry: PathBuf,
}

/// Builds the plugins (debug) into target/plugins: its own target directory, so that the build
/// neither waits for nor disturbs the `cargo test` that runs this. Incremental after the first.
fn libs() -> &'static Libs {
    static LIBS: OnceLock<Libs> = OnceLock::new();
    LIBS.get_or_init(|| {
        let target = root().join("target").join("plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let packages = [
            "flow-majority-filter",
            "flow-test-plugins",
            "flow-test-wrong-abi",
            "flow-test-no-entry",
        ];
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root())
            .args(["build", "--quiet", "--target-dir"])
            .arg(&target);
        for p in packages {
            cmd.args(["-p", p]);
        }
        let out = cmd.output().expect("cargo runs");
        assert!(
            out.status.success(),
            "building the plugins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = |name: &str| {
            let p = target.join("debug").join(format!(
                "{}{name}{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            ));
            assert!(p.is_file(), "{} was built", p.display());
            p
        };
        Libs {
            majority: lib("flow_majority_filter"),
            test: lib("flow_test_plugins"),
            wrong_abi: lib("flow_test_wrong_abi"),
            no_entry: lib("flow_test_no_entry"),
        }
    })
}

/// `flow` with a private cache and no plugins from the environment.
fn flow_in(cache: &Path) -> Command {
    let mut c = flow(cache);
    c.env_remove("FLOW_PLUGIN_PATH");
    c
}

fn toml_str(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).unwrap()
}

/// Reads band 1 of a GeoTIFF as u16, with its (width, height).
fn read_u16(path: &Path) -> (Vec<u16>, (usize, usize)) {
    let ds = gdal::Dataset::open(path).unwrap();
    let (w, h) = ds.raster_size();
    let buf = ds
        .rasterband(1)
        .unwrap()
        .read_as::<u16>((0, 0), (w, h), (w, h), None)
        .unwrap();
    (buf.data().to_vec(), (w, h))
}

/// The majority filter written out plainly, to check the plugin against: per pixel, count the
/// classes of the window (nodata does not vote); keep the centre when it is among the most
/// frequent, else take the smallest of the most frequent.
fn mode_filter(data: &[u16], (w, h): (usize, usize), nodata: u16, size: usize) -> Vec<u16> {
    let r = size as isize / 2;
    let mut out = vec![nodata; data.len()];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let centre = data[(y * w as isize + x) as usize];
            if centre == nodata {
                continue;
            }
            let mut counts: HashMap<u16, usize> = HashMap::new();
            for yy in (y - r).max(0)..=(y + r).min(h as isize - 1) {
                for xx in (x - r).max(0)..=(x + r).min(w as isize - 1) {
                    let v = data[(yy * w as isize + xx) as usize];
                    if v != nodata {
                        *counts.entry(v).or_default() += 1;
                    }
                }
            }
            let max = *counts.values().max().unwrap();
            out[(y * w as isize + x) as usize] = if counts[&centre] == max {
                centre
            } else {
                *counts
                    .iter()
                    .filter(|(_, &n)| n == max)
                    .map(|(c, _)| c)
                    .min()
                    .unwrap()
            };
        }
    }
    out
}

/// Classified pixels none of whose classified 8-neighbours shares their class.
fn speckles(data: &[u16], (w, h): (usize, usize), nodata: u16) -> usize {
    let mut n = 0;
    for y in 0..h {
        for x in 0..w {
            let c = data[y * w + x];
            if c == nodata {
                continue;
            }
            let mut same = false;
            let mut any = false;
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let (yy, xx) = (y as isize + dy, x as isize + dx);
                    if (dy, dx) == (0, 0)
                        || yy < 0
                        || xx < 0
                        || yy >= h as isize
                        || xx >= w as isize
                    {
                        continue;
                    }
                    let v = data[yy as usize * w + xx as usize];
                    if v != nodata {
                        any = true;
                        same |= v == c;
                    }
                }
            }
            n += usize::from(any && !same);
        }
    }
    n
}

/// Each node's status in `report`, by id.
fn statuses(report: &serde_json::Value) -> HashMap<String, String> {
    crate::support::report_statuses(report)
        .into_iter()
        .collect()
}

/// The kinds of every entry in a cache directory.
fn cached_kinds(cache: &Path) -> Vec<String> {
    let mut kinds = Vec::new();
    let Ok(shards) = std::fs::read_dir(cache.join("objects")) else {
        return kinds;
    };
    for shard in shards.flatten() {
        for entry in std::fs::read_dir(shard.path()).unwrap().flatten() {
            if let Ok(m) = std::fs::read(entry.path().join("manifest.json")) {
                let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
                kinds.push(m["kind"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    kinds
}

/// A 6 x 6 class map: left half 0, right half 1, one speckle of 2 in each, a nodata corner.
const KNOWN_ROWS: &str = "[[65535, 0, 0, 1, 1, 1], [0, 0, 0, 1, 2, 1], [0, 2, 0, 1, 1, 1], \
                          [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1]]";

/// A recipe in `dir` that runs `test-labels` (rows above) -> majority-filter -> GeoTIFF, with the
/// plugins listed relative to the recipe (through a `libs` link to the build directory).
fn known_recipe(dir: &Path, size: &str) -> PathBuf {
    let libs = libs();
    #[cfg(unix)]
    std::os::unix::fs::symlink(libs.majority.parent().unwrap(), dir.join("libs")).unwrap();
    let name = |p: &Path| format!("libs/{}", p.file_name().unwrap().to_string_lossy());
    let recipe = dir.join("known.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"known\"\nplugins = [\"{}\", \"{}\"]\n\n\
             [nodes.labels]\nkind = \"test-labels\"\nrows = {KNOWN_ROWS}\n\n\
             [nodes.smooth]\nkind = \"majority-filter\"\ninput = \"labels\"\nsize = {size}\n\n\
             [nodes.tif]\nkind = \"write\"\ninput = \"smooth\"\npath = \"smooth.tif\"\n",
            name(&libs.test),
            name(&libs.majority)
        ),
    )
    .unwrap();
    recipe
}

#[test]
fn majority_filter_smooths_a_known_array_and_reruns_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = known_recipe(dir.path(), "3");
    let run = || {
        output(
            flow_in(cache.path())
                .arg("run")
                .arg(&recipe)
                .arg("--out")
                .arg(&out),
        )
    };

    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let (data, size) = read_u16(&out.join("smooth.tif"));
    assert_eq!(size, (6, 6));
    // Both speckles are gone, the edge stays, the nodata corner is nodata (255 in a Byte GeoTIFF).
    #[rustfmt::skip]
    let want: Vec<u16> = vec![
        255, 0, 0, 1, 1, 1,
        0, 0, 0, 1, 1, 1,
        0, 0, 0, 1, 1, 1,
        0, 0, 0, 1, 1, 1,
        0, 0, 0, 1, 1, 1,
        0, 0, 0, 1, 1, 1,
    ];
    assert_eq!(data, want);

    // Again: the plugin nodes are cache hits like built-in ones.
    let (code, _, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    let s = statuses(&crate::support::run_report(&out));
    assert_eq!(s["smooth"], "cached", "{s:?}");
    assert!(cached_kinds(cache.path()).contains(&"majority-filter".to_string()));
}

#[test]
fn majority_filter_after_reshape_on_the_offline_scene() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The shipped recipe, with its `plugins` pointed at the debug build of the plugin.
    let text =
        std::fs::read_to_string(root().join("recipes/timberlea_kmeans_smooth.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("plugins = "))
        .expect("the recipe lists its plugin");
    let base = root().join("recipes/timberlea_kmeans.toml");
    let text = text
        .replace(line, &format!("plugins = [{}]", toml_str(&libs().majority)))
        .replace("\"timberlea_kmeans.toml\"", &toml_str(&base));
    let recipe = dir.path().join("smooth.toml");
    std::fs::write(&recipe, text).unwrap();

    let (code, stdout, stderr) = output(
        flow_in(cache.path())
            .arg("run")
            .arg(&recipe)
            .args(["--profile", "offline", "--out"])
            .arg(&out),
    );
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let (classes, size) = read_u16(&out.join("timberlea_classes.tif"));
    let (smooth, size2) = read_u16(&out.join("timberlea_classes_smooth.tif"));
    assert_eq!((size, size2), ((228, 207), (228, 207)));
    assert!(out.join("timberlea_classes_smooth.png").is_file());

    // Pixel for pixel what a plain mode filter of reshape's output gives.
    assert_eq!(smooth, mode_filter(&classes, size, 255, 3));
    // Nodata is exactly preserved, and speckle goes down.
    for (a, b) in classes.iter().zip(&smooth) {
        assert_eq!(*a == 255, *b == 255);
    }
    let (before, after) = (speckles(&classes, size, 255), speckles(&smooth, size, 255));
    println!("Timberlea offline: {before} speckle pixels before majority-filter, {after} after");
    assert!(after < before, "{before} -> {after}");
}

#[test]
fn flow_nodes_lists_plugin_kinds_with_their_library() {
    let cache = tempfile::tempdir().unwrap();
    let libs = libs();
    let (code, stdout, stderr) = output(
        flow_in(cache.path())
            .arg("nodes")
            .arg("--plugin")
            .arg(&libs.majority),
    );
    assert_eq!(code, 0, "{stderr}");
    let canonical = libs.majority.canonicalize().unwrap();
    assert!(
        stdout.contains(&format!(
            "[plugin majority-filter 0.1.0, {}]",
            canonical.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("size"), "params are listed:\n{stdout}");

    // The same through FLOW_PLUGIN_PATH (a library, and a directory of libraries elsewhere).
    let (code, stdout, stderr) = output(
        flow_in(cache.path())
            .args(["nodes", "--format", "json"])
            .env("FLOW_PLUGIN_PATH", &libs.majority),
    );
    assert_eq!(code, 0, "{stderr}");
    let kinds: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mf = kinds
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "majority-filter")
        .expect("majority-filter is listed");
    assert_eq!(mf["origin"]["origin"], "plugin");
    assert_eq!(mf["origin"]["abi"], ABI_VERSION);
    assert_eq!(mf["params"][0]["name"], "size");
}

#[test]
fn a_library_for_the_previous_abi_version_is_refused_without_running_it() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = known_recipe(dir.path(), "3");
    let lib = &libs().wrong_abi;
    // plugins/test-wrong-abi declares (and has the layout of) the version before this one.
    let previous = ABI_VERSION - 1;
    assert_eq!(
        previous, 1,
        "update plugins/test-wrong-abi to the previous layout"
    );
    for args in [
        vec!["nodes"],
        vec!["validate", recipe.to_str().unwrap()],
        vec!["run", recipe.to_str().unwrap()],
    ] {
        let (code, stdout, stderr) =
            output(flow_in(cache.path()).args(&args).arg("--plugin").arg(lib));
        assert_eq!(code, 6, "{args:?}\nstdout: {stdout}\nstderr: {stderr}");
        let canonical = lib.canonicalize().unwrap();
        assert!(
            stderr.contains(&canonical.display().to_string())
                && stderr.contains(&format!("built for plugin ABI version {previous},"))
                && stderr.contains(&format!("expects ABI version {ABI_VERSION}")),
            "{stderr}"
        );
        // Every function of the library, and its initializer, aborts the process with these
        // messages: it was not even opened.
        assert!(
            !stderr.contains("flow called into") && !stderr.contains("flow opened"),
            "nothing of it ran: {stderr}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
    assert!(!cache.path().join("objects").exists(), "nothing ran");
}

#[test]
fn a_panicking_plugin_node_fails_the_run_with_exit_6_and_caches_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("panic.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"panic\"\nplugins = [{}]\n\n\
             [nodes.labels]\nkind = \"test-labels\"\nrows = [[1, 2], [3, 4]]\n\n\
             [nodes.boom]\nkind = \"test-panic\"\ninput = \"labels\"\nmessage = \"kaboom\"\n",
            toml_str(&libs().test)
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = output(
        flow_in(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 6, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("plugin `test-plugins` panicked: deliberate test panic: kaboom"),
        "{stderr}"
    );
    // The host went on to write its report: it did not abort.
    let report = crate::support::run_report(&out);
    assert_eq!(statuses(&report)["boom"], "failed", "{report}");
    let kinds = cached_kinds(cache.path());
    assert!(kinds.contains(&"test-labels".to_string()), "{kinds:?}");
    assert!(!kinds.contains(&"test-panic".to_string()), "{kinds:?}");
}

#[test]
fn a_plugin_panicking_while_building_exits_6_and_a_refusal_exits_2() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // (kind, exit code, message, caption, line: the node for a panic, the param it names else)
    for (kind, code, message, label, line) in [
        (
            "test-panic",
            6,
            "plugin `test-plugins` panicked: deliberate test panic while building: kaboom",
            "the plugin failed here",
            4,
        ),
        (
            "test-fail",
            2,
            "deliberate test failure while building: kaboom",
            "invalid value",
            7,
        ),
    ] {
        let recipe = dir.path().join(format!("{kind}.toml"));
        std::fs::write(
            &recipe,
            format!(
                "name = \"build\"\nplugins = [{}]\n\n\
                 [nodes.boom]\nkind = \"{kind}\"\nmessage = \"kaboom\"\nwhen = \"build\"\n",
                toml_str(&libs().test)
            ),
        )
        .unwrap();
        for command in ["validate", "run"] {
            let out = dir.path().join("out");
            let mut cmd = flow_in(cache.path());
            cmd.arg(command).arg(&recipe);
            if command == "run" {
                cmd.arg("--out").arg(&out);
            }
            let (got, stdout, stderr) = output(&mut cmd);
            assert_eq!(got, code, "{kind} {command}: {stdout}\n{stderr}");
            // miette wraps long messages; join its continuation lines.
            let joined = stderr.replace("\n  │ ", " ");
            assert!(joined.contains(message), "{stderr}");
            assert!(stderr.contains(label), "{stderr}");
            // Located like any recipe error: file:line:col.
            assert!(stderr.contains(&format!("{kind}.toml:{line}:")), "{stderr}");
            assert!(!out.exists(), "nothing written: {kind} {command}");
        }
    }
}

#[test]
fn files_that_are_not_plugins_are_refused_with_exit_6() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.so");
    std::fs::write(&text, "not a library\n").unwrap();
    let cases = [
        (text.clone(), "cannot load plugin"),
        (dir.path().join("missing.so"), "cannot load plugin"),
        (
            libs().no_entry.clone(),
            "is not a flow plugin: it exports no `flow_plugin_entry`",
        ),
    ];
    for (lib, message) in cases {
        let (code, _, stderr) =
            output(flow_in(cache.path()).arg("nodes").arg("--plugin").arg(&lib));
        assert_eq!(code, 6, "{}: {stderr}", lib.display());
        assert!(stderr.contains(message), "{stderr}");
        assert!(
            stderr.contains(lib.file_name().unwrap().to_str().unwrap()),
            "the path is named: {stderr}"
        );
    }
    // A recipe's `plugins` entry is reported the same way, before any validation.
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        "plugins = [\"notes.so\"]\n[nodes.a]\nkind = \"nope\"\n",
    )
    .unwrap();
    let (code, _, stderr) = output(flow_in(cache.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("notes.so"), "{stderr}");
}

#[test]
fn validate_locates_plugin_param_errors_like_builtin_ones() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = known_recipe(dir.path(), "3");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("size = 3", "sise = 5")).unwrap();
    let line = std::fs::read_to_string(&recipe)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("sise"))
        .unwrap()
        + 1;
    let (code, _, stderr) = output(flow_in(cache.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("unknown param `sise` for node `smooth` (majority-filter)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("known.toml:{line}:1]")),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `size`?"), "{stderr}");

    // A value the plugin's build refuses is located at the value.
    std::fs::write(&recipe, text.replace("size = 3", "size = 4")).unwrap();
    let (code, _, stderr) = output(flow_in(cache.path()).arg("validate").arg(&recipe));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("must be an odd integer from 3 to 51, got 4"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("known.toml:{line}:8]")),
        "{stderr}"
    );
    assert!(
        !cache.path().join("objects").exists(),
        "nothing was computed"
    );
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Waits (60 s at most) for `file` to appear.
fn wait_for_file(file: &Path, child: &mut std::process::Child) {
    let t0 = Instant::now();
    while !file.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("flow ended ({status}) before {} appeared", file.display());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The node called `id` in a run report.
fn node<'r>(report: &'r serde_json::Value, id: &str) -> &'r serde_json::Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node `{id}` in {report}"))
}

#[test]
fn ctrl_c_while_a_plugin_node_runs_exits_130_promptly() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("wait.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"wait\"\nplugins = [{}]\n\n\
             [nodes.wait]\nkind = \"test-wait\"\nstarted = \"started\"\n",
            toml_str(&libs().test)
        ),
    )
    .unwrap();
    let mut child = flow_in(cache.path())
        .arg("run")
        .arg(&recipe)
        .arg("--out")
        .arg(dir.path().join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&dir.path().join("started"), &mut child);
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    println!("SIGINT while the plugin node ran: flow ended {took:?} after the signal");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        !cached_kinds(cache.path()).contains(&"test-wait".to_string()),
        "nothing cached for the plugin node"
    );
}

#[test]
fn a_plugin_node_stops_when_another_node_fails() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = dir.path().join("fail.toml");
    // `fail` fails once `wait` has started; the two are independent and run side by side.
    std::fs::write(
        &recipe,
        format!(
            "name = \"fail\"\nplugins = [{}]\n\n\
             [nodes.wait]\nkind = \"test-wait\"\nstarted = \"started\"\n\n\
             [nodes.fail]\nkind = \"test-fail\"\nwait_for = \"started\"\nmessage = \"kaboom\"\n",
            toml_str(&libs().test)
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let (code, stdout, stderr) = output(
        flow_in(cache.path())
            .arg("run")
            .arg(&recipe)
            .args(["--jobs", "2", "--out"])
            .arg(&out),
    );
    let ended = unix_ms();
    // The failing node's exit code: InvalidData is 3.
    assert_eq!(code, 3, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("deliberate test failure: kaboom"),
        "{stderr}"
    );
    let report = crate::support::run_report(&out);
    let (wait, fail) = (node(&report, "wait"), node(&report, "fail"));
    assert_eq!(fail["status"], "failed", "{report}");
    assert_eq!(wait["status"], "cancelled", "{report}");
    // The plugin's warning came back through the context although the node did not succeed.
    let warnings = wait["warnings"].to_string();
    assert!(
        warnings.contains("test-wait saw the cancellation"),
        "{report}"
    );

    let failed_at = fail["span_ms"][1].as_u64().unwrap() as u128;
    let stopped_at = wait["span_ms"][1].as_u64().unwrap() as u128;
    let (to_stop, to_end) = (
        stopped_at.saturating_sub(failed_at),
        ended.saturating_sub(failed_at),
    );
    println!(
        "another node failed: the plugin node stopped {to_stop} ms later, flow ended {to_end} ms \
         later (whole run {:?})",
        t0.elapsed()
    );
    assert!(
        to_stop < 10_000 && to_end < 10_000,
        "{to_stop} ms, {to_end} ms"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(50),
        "it did not wait for the 60 s limit"
    );
    let kinds = cached_kinds(cache.path());
    assert!(!kinds.contains(&"test-wait".to_string()), "{kinds:?}");
}

#[test]
fn a_plugin_output_that_does_not_fit_its_grid_is_a_plugin_error() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = dir.path().join("bad.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"bad\"\nplugins = [{}, {}]\n\n\
             [nodes.bad]\nkind = \"test-bad-output\"\n\n\
             [nodes.smooth]\nkind = \"majority-filter\"\ninput = \"bad\"\n",
            toml_str(&libs().test),
            toml_str(&libs().majority)
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = output(
        flow_in(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 6, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(
            "plugin `test-plugins`: returned a malformed value: array `data` is 2 x 2 pixels but \
             its grid is 3 x 3"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let report = crate::support::run_report(&out);
    let s = statuses(&report);
    assert_eq!(s["bad"], "failed", "{report}");
    assert_eq!(s["smooth"], "cancelled", "{report}");
    assert!(cached_kinds(cache.path()).is_empty(), "nothing cached");
}

#[test]
fn plugin_key_material_freshness_and_unkeyed_params_reach_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = dir.path().join("stamp.toml");
    let write_recipe = |note: &str| {
        std::fs::write(
            &recipe,
            format!(
                "name = \"stamp\"\nplugins = [{}]\n\n\
                 [nodes.stamp]\nkind = \"test-stamp\"\npath = \"input.txt\"\nnote = \"{note}\"\n",
                toml_str(&libs().test)
            ),
        )
        .unwrap()
    };
    let run = || {
        let (code, stdout, stderr) = output(
            flow_in(cache.path())
                .arg("run")
                .arg(&recipe)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
        let report = crate::support::run_report(&out);
        let n = node(&report, "stamp");
        (
            n["status"].as_str().unwrap().to_string(),
            n["key"].as_str().unwrap().to_string(),
        )
    };
    write_recipe("first");
    std::fs::write(dir.path().join("input.txt"), "abc").unwrap();
    let (status, key1) = run();
    assert_eq!(status, "computed");
    assert!(out.join("stamp.txt").is_file());

    // Same file, another unkeyed note: the same key, served from the cache.
    write_recipe("second");
    let (status, key2) = run();
    assert_eq!((status.as_str(), &key2), ("cached", &key1));

    // The file's contents are key material: new contents, new key.
    std::fs::write(dir.path().join("input.txt"), "abcd").unwrap();
    let (status, key3) = run();
    assert_eq!(status, "computed");
    assert_ne!(key3, key1);
    let (status, _) = run();
    assert_eq!(status, "cached");

    // The marker is gone: the plugin says the cached output is stale, so it is recomputed.
    std::fs::remove_file(out.join("stamp.txt")).unwrap();
    let (status, key4) = run();
    assert_eq!((status.as_str(), &key4), ("computed", &key3));
    assert!(out.join("stamp.txt").is_file());

    // Key material that cannot be read fails the run before anything runs, with its exit code.
    std::fs::remove_file(dir.path().join("input.txt")).unwrap();
    let (code, _, stderr) = output(
        flow_in(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("input.txt"), "{stderr}");
}

#[test]
fn a_library_that_someone_else_could_have_replaced_is_not_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str, mode: u32| {
        let lib = dir.path().join(name);
        std::fs::copy(&libs().majority, &lib).unwrap();
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(mode)).unwrap();
        lib
    };
    let nodes = |lib: &Path| output(flow_in(cache.path()).arg("nodes").arg("--plugin").arg(lib));

    let (code, stdout, stderr) = nodes(&copy("libowned.so", 0o755));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("majority-filter"), "{stdout}");

    let (code, _, stderr) = nodes(&copy("libopen.so", 0o777));
    assert_eq!(code, 6, "{stderr}");
    assert!(
        stderr.contains("refusing to load plugin") && stderr.contains("anyone may write it"),
        "{stderr}"
    );

    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let inside = shared.join("lib.so");
    std::fs::copy(&libs().majority, &inside).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, stderr) = nodes(&inside);
    assert_eq!(code, 6, "{stderr}");
    assert!(stderr.contains("may be written by anyone"), "{stderr}");

    // Another user's library (only root can make one to test with).
    let theirs = copy("libtheirs.so", 0o755);
    if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_ok() {
        let (code, _, stderr) = nodes(&theirs);
        assert_eq!(code, 6, "{stderr}");
        assert!(stderr.contains("belongs to user 65534"), "{stderr}");
    }
}
