//! Faults of the data and of the machine through the binary: a damaged tile, a checksum that does
//! not match, a server that errs or stalls, a cube larger than memory, a full disk and the
//! temporary files a killed write leaves. Each is an exit code and a message that names what
//! failed, never a wrong result with exit 0, a raw GDAL line or an abort.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gdal::Metadata;

use crate::support::{cached_kind, flow, output, write_scene};

const CLEAR_ITEM: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";
const AOI: &str = "[-73.9120245, 45.4263471, -73.883357, 45.4445361]";

/// Generates the offline scene into `dir/scene`; returns its catalog.
fn scene(cache: &Path, dir: &Path) -> PathBuf {
    let scene = dir.join("scene");
    write_scene(cache, &scene);
    scene.join("items.json")
}

/// A recipe stacking `assets` of the clear item of `catalog` with the `stack` lines (at least
/// its resolution), and whatever `tail` adds.
fn recipe(dir: &Path, catalog: &Path, assets: &str, stack: &str, tail: &str) -> PathBuf {
    let path = dir.join("trust.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"trust\"\n[nodes.items]\nkind = \"stac-search\"\ncatalog = \"{}\"\nids = [\"{CLEAR_ITEM}\"]\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"items\"\nassets = {assets}\n{stack}\n{tail}",
            catalog.display()
        ),
    )
    .unwrap();
    path
}

/// `flow run RECIPE --out OUT ARGS...` with `cache`; returns (exit code, stderr).
fn run(cache: &Path, recipe: &Path, out: &Path, args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = output(
        flow(cache)
            .arg("run")
            .arg(recipe)
            .arg("--out")
            .arg(out)
            .args(args),
    );
    (code, stderr)
}

/// No line of GDAL's own handler ("ERROR 1: ...", "Warning 1: ...") in `stderr`.
fn assert_no_raw_gdal_lines(stderr: &str) {
    for line in stderr.lines() {
        let raw = (line.starts_with("ERROR ") || line.starts_with("Warning "))
            && line.split(':').next().is_some_and(|head| {
                head.rsplit(' ')
                    .next()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            });
        assert!(!raw, "a raw GDAL line: {line}\n{stderr}");
    }
}

/// Flips 4 bytes in the middle of the stored tile (0, 0) of band 1 of `tif`, found through the
/// TIFF driver's BLOCK_OFFSET / BLOCK_SIZE metadata; returns the tile's byte range.
fn damage_tile(tif: &Path) -> (u64, u64) {
    let (offset, size) = {
        let ds = gdal::Dataset::open(tif).unwrap();
        let band = ds.rasterband(1).unwrap();
        let item = |key: &str| -> u64 {
            band.metadata_item(key, "TIFF")
                .unwrap_or_else(|| panic!("{key} of {}", tif.display()))
                .parse()
                .unwrap()
        };
        (item("BLOCK_OFFSET_0_0"), item("BLOCK_SIZE_0_0"))
    };
    assert_eq!(
        ds_compression(tif).as_deref(),
        Some("DEFLATE"),
        "the scene's COGs are DEFLATE"
    );
    let mut bytes = std::fs::read(tif).unwrap();
    let at = (offset + size / 3) as usize;
    for b in &mut bytes[at..at + 4] {
        *b ^= 0xff;
    }
    std::fs::write(tif, bytes).unwrap();
    (offset, offset + size)
}

fn ds_compression(tif: &Path) -> Option<String> {
    gdal::Dataset::open(tif)
        .unwrap()
        .metadata_item("COMPRESSION", "IMAGE_STRUCTURE")
}

#[test]
fn a_damaged_deflate_tile_is_bad_data_naming_item_asset_band_and_block() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = scene(cache.path(), dir.path());
    let b04 = catalog.parent().unwrap().join(CLEAR_ITEM).join("B04.tif");
    let (start, end) = damage_tile(&b04);
    let recipe = recipe(
        dir.path(),
        &catalog,
        "[\"B02\", \"B04\"]",
        &format!("resolution = 10\nbounds_latlon = {AOI}"),
        "",
    );
    let (code, stderr) = run(cache.path(), &recipe, &dir.path().join("out"), &[]);
    assert_eq!(code, 3, "{stderr}");
    for needle in [
        CLEAR_ITEM,
        "asset `B04`",
        "B04.tif",
        "band 1",
        "block (0, 0)",
        &format!("file bytes {start}..{end}"),
        "Adler-32",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
    }
    assert_no_raw_gdal_lines(&stderr);
    assert!(cached_kind(cache.path(), "stac-search"));
    assert!(
        !cached_kind(cache.path(), "stack"),
        "no cube is cached from a damaged tile"
    );
}

#[test]
fn a_file_checksum_is_checked_when_the_file_is_read_whole() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = scene(cache.path(), dir.path());
    let b01 = catalog.parent().unwrap().join(CLEAR_ITEM).join("B01.tif");
    let sha256 = |path: &Path| -> String {
        let out = Command::new("sha256sum").arg(path).output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    // The whole 60 m scene: B01 is read whole.
    let stack = "resolution = 60\nbounds = [583980, 5029980, 588420, 5034000]";
    for (checksum, want) in [
        (format!("1220{}", sha256(&b01)), 0),
        (format!("1220{}", sha256(&catalog)), 3),
    ] {
        let mut items: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&catalog).unwrap()).unwrap();
        for item in items["features"].as_array_mut().unwrap() {
            item["assets"]["B01"]["file:checksum"] = checksum.clone().into();
        }
        let signed = dir.path().join("scene").join("checksummed.json");
        std::fs::write(&signed, items.to_string()).unwrap();
        let recipe = recipe(dir.path(), &signed, "[\"B01\"]", stack, "");
        let cache = tempfile::tempdir().unwrap();
        let (code, stderr) = run(cache.path(), &recipe, &dir.path().join("out"), &[]);
        assert_eq!(code, want, "{checksum}: {stderr}");
        if want == 3 {
            for needle in [CLEAR_ITEM, "asset `B01`", "file:checksum", "sha2-256"] {
                assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
            }
            assert!(!cached_kind(cache.path(), "stack"));
        }
    }
}

/// A server on loopback; `status` answers every request with it, None accepts connections and
/// never answers. Returns its base URL.
fn server(status: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let Some(status) = status else {
                held.push(stream);
                continue;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let mut s = stream;
            let _ = s.write_all(
                format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno")
                    .as_bytes(),
            );
        }
    });
    base
}

/// The scene's items with every asset on `base`; returns the catalog file.
fn items_on(cache: &Path, dir: &Path, base: &str) -> PathBuf {
    let catalog = scene(cache, dir);
    let mut items: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&catalog).unwrap()).unwrap();
    for item in items["features"].as_array_mut().unwrap() {
        for asset in item["assets"].as_object_mut().unwrap().values_mut() {
            let href = asset["href"].as_str().unwrap().to_string();
            asset["href"] = format!("{base}/{href}").into();
        }
    }
    let path = dir.join("http-items.json");
    std::fs::write(&path, items.to_string()).unwrap();
    path
}

#[test]
fn http_errors_name_their_status_and_gdal_never_prints() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (status, code, words) in [
        ("404 Not Found", 3, ["HTTP 404 Not Found", "404"]),
        ("403 Forbidden", 3, ["HTTP 403 Forbidden", "403"]),
    ] {
        let base = server(Some(status));
        let catalog = items_on(cache.path(), dir.path(), &base);
        let recipe = recipe(dir.path(), &catalog, "[\"B02\"]", "resolution = 10", "");
        let (got, stderr) = run(cache.path(), &recipe, &dir.path().join("out"), &[]);
        assert_eq!(got, code, "{stderr}");
        for needle in words
            .iter()
            .chain(&[CLEAR_ITEM, "asset `B02`", base.as_str()])
        {
            assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
        }
        assert!(!stderr.contains("Error msg: ''"), "{stderr}");
        assert_no_raw_gdal_lines(&stderr);
    }
}

#[test]
fn a_stalled_server_times_out_within_the_timeout_as_a_remote_failure() {
    let base = server(None);
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = items_on(cache.path(), dir.path(), &base);
    let recipe = recipe(
        dir.path(),
        &catalog,
        "[\"B02\", \"B04\"]",
        "resolution = 10\ntimeout = 1\nretries = 1",
        "",
    );
    let started = Instant::now();
    let (code, stderr) = run(cache.path(), &recipe, &dir.path().join("out"), &[]);
    let took = started.elapsed();
    // Two tries of 1 s each and GDAL's pause between them, not GDAL's minutes.
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(code, 4, "{stderr}");
    for needle in [
        "timed out",
        "1 s timeout",
        CLEAR_ITEM,
        &format!("{base}/{CLEAR_ITEM}/B0"),
    ] {
        assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
    }
    assert_no_raw_gdal_lines(&stderr);
}

/// `flow ARGS...` under an address-space limit of `gib` GiB, so that no test can exhaust the
/// machine's memory; returns (exit code, stderr).
fn limited(cache: &Path, gib: u64, args: &[&str]) -> (i32, String) {
    limited_mib(cache, gib << 10, args)
}

/// `flow ARGS...` under an address-space limit of `mib` MiB; returns (exit code, stderr).
fn limited_mib(cache: &Path, mib: u64, args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = output(
        Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", mib << 10))
            .arg(env!("CARGO_BIN_EXE_flow"))
            .args(args)
            .current_dir(crate::support::root())
            .env("NO_COLOR", "1")
            .env("FLOW_CACHE_DIR", cache)
            .env_remove("RUST_LOG"),
    );
    (code, stderr)
}

#[test]
fn a_cube_larger_than_the_disk_is_refused_before_anything_is_written() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = scene(cache.path(), dir.path());
    let recipe = recipe(
        dir.path(),
        &catalog,
        "[\"B02\", \"B04\"]",
        &format!("resolution = 10\nbounds_latlon = {AOI}"),
        // Written as a GeoTIFF window by window, the cube never needs to fit in memory, but
        // at 1 mm it is 35 TiB: more than any disk this runs on.
        "[nodes.save]\nkind = \"write\"\ninput = \"stack\"\npath = \"cube.tif\"\n",
    );
    let out = dir.path().join("out");
    let (code, stderr) = limited(
        cache.path(),
        4,
        &[
            "run",
            &recipe.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
            "--set",
            "stack.resolution=0.001",
        ],
    );
    assert_eq!(code, 5, "{stderr}");
    for needle in ["cube.tif", "Raster of 1 x 2 x", "TiB uncompressed", "free"] {
        assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
    }
    assert_eq!(names(&out), ["run.json"]);
}

#[test]
fn a_node_that_needs_a_cube_larger_than_memory_whole_is_refused_before_it_runs() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = scene(cache.path(), dir.path());
    // Fitting every pixel needs the whole matrix: at 1 cm, 2 bands of about 227,000 x 205,000.
    let recipe = recipe(
        dir.path(),
        &catalog,
        "[\"B02\", \"B04\"]",
        &format!("resolution = 10\nbounds_latlon = {AOI}"),
        "[nodes.flat]\nkind = \"flatten\"\ninput = \"stack\"\n\
         [nodes.fit]\nkind = \"kmeans-fit\"\ninput = \"flat\"\nk = 3\n\
         [nodes.save]\nkind = \"write\"\ninput = \"fit\"\npath = \"model.json\"\n",
    );
    let out = dir.path().join("out");
    // Under a 4 GiB address space the default memory limit is half of it.
    let (code, stderr) = limited(
        cache.path(),
        4,
        &[
            "run",
            &recipe.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
            "--set",
            "stack.resolution=0.01",
        ],
    );
    assert_eq!(code, 3, "{stderr}");
    for needle in [
        "at node `fit` (kmeans-fit",
        "TiB of memory",
        "more than the memory limit of 2.0 GiB",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
    }
    let statuses = crate::support::node_statuses(&out);
    assert!(
        statuses.iter().all(|(id, s)| s
            == if id == "items" {
                "computed"
            } else {
                "cancelled"
            }),
        "{statuses:?}"
    );
}

#[test]
fn a_cube_larger_than_memory_is_computed_window_by_window() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = scene(cache.path(), dir.path());
    // At 0.1 m the cube is 1 x 1 x 20517 x 22701 f32, 1.7 GiB: more than the 1.5 GiB address
    // space the process gets. Every node reads it window by window and keeps what it gathers.
    let recipe = recipe(
        dir.path(),
        &catalog,
        "[\"B04\"]",
        &format!("resolution = 10\nbounds_latlon = {AOI}"),
        "[nodes.mask]\nkind = \"mask-nodata\"\ninput = \"stack\"\nnodata = 0\n\
         [nodes.norm]\nkind = \"normalize\"\ninput = \"mask\"\n\
         [nodes.flat]\nkind = \"flatten\"\ninput = \"norm\"\n\
         [nodes.fit]\nkind = \"kmeans-fit\"\ninput = \"flat\"\nk = 3\nsample = 2000\n\
         [nodes.save]\nkind = \"write\"\ninput = \"fit\"\npath = \"model.json\"\n",
    );
    let out = dir.path().join("out");
    let (code, stderr) = limited_mib(
        cache.path(),
        1536,
        &[
            "run",
            &recipe.to_string_lossy(),
            "--no-cache",
            "--out",
            &out.to_string_lossy(),
            "--set",
            "stack.resolution=0.1",
            "--memory-limit",
            "768M",
        ],
    );
    // Twice the memory limit as address space is enough.
    assert_eq!(code, 0, "{stderr}");
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(model["k"], 3, "{model}");
    let report = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(report.contains("\"windows\": 483"), "{report}");
}

/// The id of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const WRITE: &str = "[nodes.save]\nkind = \"write\"\ninput = \"stack\"\npath = \"cube.tif\"\n";

#[test]
fn a_write_removes_the_temporary_files_a_dead_run_left() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = scene(cache.path(), dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dead = dead_pid();
    // What a run killed in the middle of writing cube.tif as a COG leaves behind.
    let stale = [
        format!(".cube.tif.tmp-{dead}-0"),
        format!(".cube.tif.tmp-{dead}-0.ovr.tmp"),
        format!(".cube.tif.tmp-{dead}-0.aux.xml"),
    ];
    // A write in progress in a live process (pid 1), and another file's.
    let kept = [
        ".cube.tif.tmp-1-0".to_string(),
        format!(".other.tif.tmp-{dead}-0"),
    ];
    for name in stale.iter().chain(&kept) {
        std::fs::write(out.join(name), vec![0u8; 1 << 20]).unwrap();
    }
    let recipe = recipe(
        dir.path(),
        &catalog,
        "[\"B02\", \"B04\"]",
        &format!("resolution = 10\nbounds_latlon = {AOI}"),
        WRITE,
    );
    let (code, stderr) = run(cache.path(), &recipe, &out, &[]);
    assert_eq!(code, 0, "{stderr}");
    let mut want: Vec<String> = kept.to_vec();
    want.extend(["cube.tif".into(), "run.json".into()]);
    want.sort();
    assert_eq!(names(&out), want);
}

/// A 256 KiB tmpfs mounted for the life of the value (None where mounting is not allowed): more
/// than a quarter of the test cube's 755 KB of pixels, so `write` does not refuse it up front,
/// and less than its compressed file, so writing it fills the disk.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(at)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_while_writing_is_an_io_error_naming_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Some(full) = Tmpfs::mount(&dir.path().join("full")) else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let catalog = scene(cache.path(), dir.path());
    let recipe = recipe(
        dir.path(),
        &catalog,
        "[\"B02\", \"B03\", \"B04\", \"B08\"]",
        &format!("resolution = 10\nbounds_latlon = {AOI}"),
        WRITE,
    );
    // Whole, and window by window (a GeoTIFF, and a COG through a temporary GeoTIFF).
    for args in [
        &[][..],
        &["--window", "64"],
        &["--window", "64", "--set", "save.format=\"cog\""],
    ] {
        let (code, stderr) = run(cache.path(), &recipe, &full.0, args);
        assert_eq!(code, 5, "{args:?}: {stderr}");
        for needle in [
            "node `save`",
            &format!("{}", full.0.join("cube.tif").display()),
            "No space left on device",
        ] {
            assert!(stderr.contains(needle), "{args:?}: `{needle}` in: {stderr}");
        }
        assert_no_raw_gdal_lines(&stderr);
        // The half-written file is gone: only the run report is there.
        assert_eq!(names(&full.0), ["run.json"], "{args:?}");
    }
}
