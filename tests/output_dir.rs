//! `write` stays inside the output directory: a symbolic link inside `--out` that leads elsewhere
//! is refused (exit 5, naming the file, the link, where it leads and the output directory) and
//! nothing is written outside; a link that stays inside is followed.

use std::path::{Path, PathBuf};

use crate::support::{flow, output, write_scene};

const CLEAR_ITEM: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";

/// A recipe that stacks one band of the offline scene at 10 m and writes it to `path` as a
/// GeoTIFF with its STAC Item (so a sidecar goes beside it).
fn recipe(dir: &Path, catalog: &Path, path: &str) -> PathBuf {
    let recipe = dir.join("write.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"write-where\"\n\
             [nodes.items]\nkind = \"stac-search\"\ncatalog = \"{}\"\nids = [\"{CLEAR_ITEM}\"]\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"items\"\nassets = [\"B04\"]\nresolution = 10\n\
             bounds_latlon = [-73.9120245, 45.4263471, -73.883357, 45.4445361]\n\
             [nodes.w]\nkind = \"write\"\ninput = \"stack\"\npath = \"{path}\"\nstac_item = true\n",
            catalog.display()
        ),
    )
    .unwrap();
    recipe
}

/// Every file under `dir`, relative, sorted (following no links).
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            }
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            out.push(rel);
        }
    }
    out.sort();
    out
}

#[test]
fn a_symlinked_directory_leading_out_of_the_output_directory_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_scene(cache.path(), &dir.path().join("scene"));
    let catalog = dir.path().join("scene/items.json");
    let out = dir.path().join("out");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();

    for path in ["sub/x.tif", "sub/deeper/x.tif"] {
        let (code, _, stderr) = output(
            flow(cache.path())
                .arg("run")
                .arg(recipe(dir.path(), &catalog, path))
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(code, 5, "{stderr}");
        let out_real = std::fs::canonicalize(&out).unwrap();
        let elsewhere_real = std::fs::canonicalize(&elsewhere).unwrap();
        for needle in [
            "node `w` (write)".to_string(),
            out.join(path).display().to_string(),
            "`sub` is a symbolic link to".to_string(),
            elsewhere_real.display().to_string(),
            format!("outside the output directory {}", out_real.display()),
        ] {
            assert!(stderr.contains(&needle), "`{needle}` in: {stderr}");
        }
        assert!(files(&elsewhere).is_empty(), "{:?}", files(&elsewhere));
    }
    // Only the link and the report: no file, no temporary file, no sidecar.
    assert_eq!(files(&out), ["run.json", "sub"]);
}

#[test]
fn a_symlinked_directory_that_stays_inside_the_output_directory_is_followed() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_scene(cache.path(), &dir.path().join("scene"));
    let catalog = dir.path().join("scene/items.json");
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("maps/2021")).unwrap();
    std::os::unix::fs::symlink("maps/2021", out.join("latest")).unwrap();

    let run = || {
        output(
            flow(cache.path())
                .arg("run")
                .arg(recipe(dir.path(), &catalog, "latest/x.tif"))
                .arg("--out")
                .arg(&out),
        )
    };
    let (code, _, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        files(&out.join("maps")),
        ["2021", "2021/x.item.json", "2021/x.tif"]
    );
    // The report names the files as the recipe does.
    let report = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(report.contains("\"latest/x.tif\""), "{report}");
    assert!(report.contains("\"latest/x.item.json\""), "{report}");
    // A second run finds the files where it wrote them.
    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    let said = format!("{stdout}{stderr}");
    assert!(said.contains("0 computed"), "{said}");
}
