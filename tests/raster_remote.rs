//! Remote catalogs and remote files through the binary: what the items of an http(s) catalog
//! may point at, which GDAL drivers open files, and remote files that change behind unchanged
//! items.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::http_files::{serve, FileServer, Reply};
use crate::support::{flow, output, write_scene};

const CLEAR_ITEM: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";
const AOI: &str = "[-73.9120245, 45.4263471, -73.883357, 45.4445361]";

/// `flow run RECIPE --out OUT`; returns (exit code, stderr).
fn run(cache: &Path, recipe: &Path, out: &Path) -> (i32, String) {
    let (code, _, stderr) = output(flow(cache).arg("run").arg(recipe).arg("--out").arg(out));
    (code, stderr)
}

/// A recipe: the clear item of `catalog`, its `assets` stacked at 10 m over the AOI (`extra`
/// lines added to the stack table), written to stack.tif.
fn recipe(dir: &Path, catalog: &str, assets: &str, extra: &str) -> PathBuf {
    let path = dir.join("remote.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"remote\"\n[nodes.items]\nkind = \"stac-search\"\ncatalog = {catalog:?}\nids = [\"{CLEAR_ITEM}\"]\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"items\"\nassets = {assets}\nresolution = 10\n\
             bounds_latlon = {AOI}\n{extra}\n\
             [nodes.save]\nkind = \"write\"\ninput = \"stack\"\npath = \"stack.tif\"\n"
        ),
    )
    .unwrap();
    path
}

/// The scene's items (the clear one only), each asset's href made by `href` from its path
/// relative to the scene directory.
fn clear_item(scene: &Path, href: impl Fn(&str) -> String) -> serde_json::Value {
    let mut items: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scene.join("items.json")).unwrap()).unwrap();
    let mut item = items["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == CLEAR_ITEM)
        .unwrap()
        .clone();
    for asset in item["assets"].as_object_mut().unwrap().values_mut() {
        let relative = asset["href"].as_str().unwrap().to_string();
        asset["href"] = href(&relative).into();
    }
    items["features"] = serde_json::json!([item]);
    items
}

/// A STAC API on loopback whose `/search` answers `items` (its items given `self` links on the
/// server, as an API gives them), and which serves the files under `root`.
fn stac_api(root: &Path, items: serde_json::Value) -> FileServer {
    let body = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let answer = body.clone();
    let server = serve(root, move |r| {
        (r.path == "/search").then(|| Reply::json(answer.lock().unwrap().clone()))
    });
    let mut items = items;
    for item in items["features"].as_array_mut().unwrap() {
        let id = item["id"].as_str().unwrap().to_string();
        item["links"] = serde_json::json!([
            {"rel": "self", "href": format!("{}/collections/sentinel-2-l2a/items/{id}", server.base)}
        ]);
    }
    *body.lock().unwrap() = items.to_string();
    server
}

#[test]
fn items_of_a_remote_catalog_cannot_make_flow_read_local_files() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene");
    write_scene(cache.path(), &scene);
    let cog = scene.join(CLEAR_ITEM).join("B04.tif");
    // A VRT that names the local COG, served over HTTP.
    let vrt = scene.join("local.vrt");
    let status = Command::new("gdalbuildvrt")
        .arg("-q")
        .arg(&vrt)
        .arg(&cog)
        .status()
        .unwrap();
    assert!(status.success());
    // It names the COG by its absolute path (gdalbuildvrt wrote it relative to the VRT).
    let text = std::fs::read_to_string(&vrt).unwrap().replace(
        &format!("relativeToVRT=\"1\">{CLEAR_ITEM}/B04.tif<"),
        &format!("relativeToVRT=\"0\">{}<", cog.display()),
    );
    assert!(text.contains(&format!(">{}<", cog.display())), "{text}");
    std::fs::write(&vrt, text).unwrap();
    let files = serve(&scene, |_| None);
    for (href, words) in [
        (cog.to_string_lossy().into_owned(), &["a local path"][..]),
        (format!("file://{}", cog.display()), &["file://"][..]),
        (
            format!("/vsicurl/{}/{CLEAR_ITEM}/B04.tif", files.base),
            &["/vsi"][..],
        ),
        (
            format!("{}/local.vrt", files.base),
            &["VRT", "GTiff", "`drivers`"][..],
        ),
    ] {
        // B04 of the item points at `href`; the other band is the real one, over HTTP.
        let mut items = clear_item(&scene, |rel| format!("{}/{rel}", files.base));
        items["features"][0]["assets"]["B04"]["href"] = href.clone().into();
        let api = stac_api(&scene, items);
        let recipe = recipe(dir.path(), &api.base, "[\"B02\", \"B04\"]", "");
        let out = dir.path().join("out");
        let (code, stderr) = run(cache.path(), &recipe, &out);
        assert_eq!(code, 3, "{href}: {stderr}");
        for needle in [CLEAR_ITEM, "asset `B04`", href.as_str()]
            .iter()
            .chain(words)
        {
            assert!(stderr.contains(needle), "{href}: `{needle}` in {stderr}");
        }
        assert!(
            !out.join("stack.tif").exists(),
            "{href}: nothing was written"
        );
    }
    // No request reached the COG behind the /vsicurl/ href: it was refused before any read.
    assert_eq!(files.count("B04.tif"), 0);
    assert!(
        files.count("local.vrt") > 0,
        "the VRT was looked at, not opened"
    );
}

#[test]
fn local_catalogs_may_point_at_local_files_and_drivers_are_opted_into() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene");
    write_scene(cache.path(), &scene);
    // B04 as an Erdas Imagine file: another driver than GTiff.
    let img = scene.join(CLEAR_ITEM).join("B04.img");
    let status = Command::new("gdal_translate")
        .args(["-q", "-of", "HFA"])
        .arg(scene.join(CLEAR_ITEM).join("B04.tif"))
        .arg(&img)
        .status()
        .unwrap();
    assert!(status.success());
    let mut items = clear_item(&scene, |rel| scene.join(rel).to_string_lossy().into_owned());
    items["features"][0]["assets"]["B04"]["href"] = img.to_string_lossy().into_owned().into();
    let catalog = dir.path().join("items.json");
    std::fs::write(&catalog, items.to_string()).unwrap();
    let catalog = catalog.to_string_lossy().into_owned();

    let recipe_plain = recipe(dir.path(), &catalog, "[\"B02\", \"B04\"]", "");
    let (code, stderr) = run(cache.path(), &recipe_plain, &dir.path().join("plain"));
    assert_eq!(code, 3, "{stderr}");
    for needle in ["asset `B04`", "B04.img", "HFA", "GTiff", "`drivers`"] {
        assert!(stderr.contains(needle), "`{needle}` in {stderr}");
    }
    let recipe_hfa = recipe(
        dir.path(),
        &catalog,
        "[\"B02\", \"B04\"]",
        "drivers = [\"HFA\"]",
    );
    let (code, stderr) = run(cache.path(), &recipe_hfa, &dir.path().join("hfa"));
    assert_eq!(code, 0, "{stderr}");
    assert!(dir.path().join("hfa").join("stack.tif").exists());
}

fn status_of<'a>(statuses: &'a [(String, String)], id: &str) -> &'a str {
    &statuses.iter().find(|(i, _)| i == id).unwrap().1
}

#[test]
fn a_remote_cog_that_changes_behind_unchanged_items_is_a_miss() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene");
    write_scene(cache.path(), &scene);
    let files = serve(&scene, |_| None);
    let items = clear_item(&scene, |rel| format!("{}/{rel}", files.base));
    let catalog = dir.path().join("http-items.json");
    std::fs::write(&catalog, items.to_string()).unwrap();
    let recipe = recipe(
        dir.path(),
        &catalog.to_string_lossy(),
        "[\"B03\", \"B04\"]",
        "",
    );
    let out = dir.path().join("out");
    let stack_tif = || std::fs::read(out.join("stack.tif")).unwrap();

    let (code, stderr) = run(cache.path(), &recipe, &out);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        status_of(&crate::support::node_statuses(&out), "stack"),
        "computed"
    );
    let before = stack_tif();
    // Unchanged files: everything is reused.
    let (code, stderr) = run(cache.path(), &recipe, &out);
    assert_eq!(code, 0, "{stderr}");
    let all = crate::support::node_statuses(&out);
    assert!(all.iter().all(|(_, s)| s == "cached"), "{all:?}");

    // Another band's content behind B04 (a new ETag), the items unchanged.
    let b04 = scene.join(CLEAR_ITEM).join("B04.tif");
    std::fs::copy(scene.join(CLEAR_ITEM).join("B08.tif"), &b04).unwrap();
    let heads = files.count("HEAD");
    let (code, stderr) = run(cache.path(), &recipe, &out);
    assert_eq!(code, 0, "{stderr}");
    let all = crate::support::node_statuses(&out);
    assert_eq!(status_of(&all, "items"), "cached", "{all:?}");
    assert_eq!(status_of(&all, "stack"), "computed", "{all:?}");
    assert_eq!(status_of(&all, "save"), "computed", "{all:?}");
    assert!(stack_tif() != before, "the output follows the new file");
    assert!(files.count("HEAD") > heads, "the files were asked about");
    // And now that is what is cached.
    let (code, stderr) = run(cache.path(), &recipe, &out);
    assert_eq!(code, 0, "{stderr}");
    let all = crate::support::node_statuses(&out);
    assert!(all.iter().all(|(_, s)| s == "cached"), "{all:?}");
}
