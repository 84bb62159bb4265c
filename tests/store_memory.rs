//! A cube that fits in memory once but not twice is cached, and loaded again, under an
//! address-space limit: the cache streams arrays to and from its `.npy` files instead of encoding
//! them into a second buffer (docs/reliability.md, row 11b).

use std::path::Path;
use std::process::Command;

use crate::support::{output, write_scene};

const CLEAR_ITEM: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";

/// The address-space limit (`ulimit -v`) of the runs, in MiB.
///
/// Measured on the 2-core CI machine with `MALLOC_ARENA_MAX=2` (see [`limited`]), by bisecting the
/// smallest limit under which `flow run` of this recipe exits 0:
/// - the same recipe at 10 m (a 0.2 MB cube) needs 307 MiB: flow, GDAL, threads and heaps;
/// - at 0.14 m the cube is 1 x 1 x 14654 x 16215 f32, 950,458,440 bytes (906 MiB; under the
///   1 GiB from which `stack` defers a cube into windows, so it is held and cached whole). Run
///   and cached, then loaded, it needs 1194-1202 MiB, the same as without the cache: 307 + 906,
///   nothing for the cache;
/// - before streaming, caching it needed 2089 MiB (the `.npy` bytes were a second copy), and under
///   this limit it aborted (exit 134, "memory allocation of 950458568 bytes failed").
///
/// So 1600 MiB leaves about 1290 MiB beside flow's own 307: the cube takes 70 % of that, more than
/// half, and fits once with about 390 MiB to spare. The limit is below twice the cube (1812 MiB),
/// so a second copy cannot fit whatever flow's own share is; the test checks that relation from
/// the cube it gets.
const LIMIT_MIB: u64 = 1600;

/// `flow run RECIPE --out OUT` under [`LIMIT_MIB`], which is also its `--memory-limit` (by
/// default flow takes half of it, and would compute a cube of a quarter of that window by
/// window), with windows larger than the grid so that the cube is held whole, and with glibc's
/// heaps capped at two arenas:
/// each arena reserves 64 MiB of address space, and without a cap their number grows with the
/// machine's cores (up to 8 per core), which would make flow's own share depend on the machine.
/// Returns (exit code, stdout and stderr).
fn limited(cache: &Path, recipe: &Path, out: &Path) -> (i32, String) {
    let (code, stdout, stderr) = output(
        Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -v {}; exec \"$0\" \"$@\"", LIMIT_MIB << 10))
            .arg(env!("CARGO_BIN_EXE_flow"))
            .arg("run")
            .arg(recipe)
            .arg("--out")
            .arg(out)
            .args([
                "--memory-limit",
                &format!("{LIMIT_MIB}M"),
                "--window",
                "20000",
            ])
            .current_dir(crate::support::root())
            .env("NO_COLOR", "1")
            .env("FLOW_CACHE_DIR", cache)
            .env("MALLOC_ARENA_MAX", "2")
            .env_remove("RUST_LOG")
            .env_remove("FLOW_PLUGIN_PATH"),
    );
    (code, format!("{stdout}{stderr}"))
}

/// The `Raster [T,B,H,W]` the report shows for node `stack`.
fn stack_shape(report: &str) -> [u64; 4] {
    let line = report
        .lines()
        .find(|l| l.contains(" stack ") && l.contains("Raster ["))
        .unwrap_or_else(|| panic!("no stack line in: {report}"));
    let dims = &line[line.find("Raster [").unwrap() + "Raster [".len()..];
    let dims: Vec<u64> = dims[..dims.find(']').unwrap()]
        .split(',')
        .map(|d| d.trim().parse().unwrap())
        .collect();
    dims.try_into().unwrap()
}

/// The sizes of the `data.npy` files in the cache.
fn cached_arrays(cache: &Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    for shard in std::fs::read_dir(cache.join("objects")).unwrap().flatten() {
        for entry in std::fs::read_dir(shard.path()).unwrap().flatten() {
            if let Ok(m) = std::fs::metadata(entry.path().join("data.npy")) {
                sizes.push(m.len());
            }
        }
    }
    sizes
}

#[test]
fn a_cube_that_fits_once_but_not_twice_is_cached_and_loaded_under_a_memory_limit() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_scene(cache.path(), &dir.path().join("scene"));
    let recipe = dir.path().join("cube.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"cube\"\n\
             [nodes.items]\nkind = \"stac-search\"\ncatalog = \"{}\"\nids = [\"{CLEAR_ITEM}\"]\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"items\"\nassets = [\"B04\"]\nresolution = 0.14\n\
             bounds_latlon = [-73.9120245, 45.4263471, -73.883357, 45.4445361]\n",
            dir.path().join("scene/items.json").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");

    let (code, report) = limited(cache.path(), &recipe, &out);
    assert_eq!(code, 0, "{report}");
    let [t, b, h, w] = stack_shape(&report);
    let bytes = 4 * t * b * h * w;
    // The premise: more than half the limit, less than all of it; twice would not fit.
    let limit = LIMIT_MIB << 20;
    assert!(
        bytes > limit / 2 && bytes < limit,
        "a cube of {bytes} bytes"
    );
    // Cached whole (not as windows): its one `.npy` file holds every pixel.
    let npy = cached_arrays(cache.path());
    assert!(
        npy.len() == 1 && npy[0] > bytes && npy[0] <= bytes + 128,
        "{npy:?} for a cube of {bytes} bytes"
    );

    let (code, report) = limited(cache.path(), &recipe, &out);
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("0 computed"), "{report}");
    let line = report.lines().find(|l| l.contains(" stack ")).unwrap();
    assert!(line.contains("cached"), "{report}");
    assert_eq!(stack_shape(&report), [t, b, h, w]);
}
