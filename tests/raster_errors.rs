//! Unreadable assets through the binary: exit 3 naming item, asset and href, nothing cached.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use crate::support::{cached_kind, flow, output, write_scene};

const CLEAR_ITEM: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";

fn recipe(dir: &Path, catalog: &Path) -> std::path::PathBuf {
    let path = dir.join("stack.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"broken-asset\"\n[nodes.items]\nkind = \"stac-search\"\ncatalog = \"{}\"\nids = [\"{CLEAR_ITEM}\"]\n\
             [nodes.stack]\nkind = \"stack\"\ninput = \"items\"\nassets = [\"B02\", \"B04\"]\nresolution = 10\n",
            catalog.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_truncated_cog_is_bad_data_naming_item_asset_and_href() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene");
    write_scene(cache.path(), &scene);
    let b04 = scene.join(CLEAR_ITEM).join("B04.tif");
    let bytes = std::fs::read(&b04).unwrap();
    std::fs::write(&b04, &bytes[..bytes.len() / 3]).unwrap();

    let recipe = recipe(dir.path(), &scene.join("items.json"));
    let (code, _, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(dir.path().join("out")),
    );
    assert_eq!(code, 3, "{stderr}");
    for needle in [CLEAR_ITEM, "B04", "B04.tif"] {
        assert!(stderr.contains(needle), "`{needle}` in: {stderr}");
    }
    assert!(
        cached_kind(cache.path(), "stac-search"),
        "the search before it is cached"
    );
    assert!(
        !cached_kind(cache.path(), "stack"),
        "nothing is cached for the failed node"
    );
}

/// A server on loopback that answers every request with `status`; returns its base URL.
fn answering(status: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let mut s = stream;
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 {status}\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found"
                )
                .as_bytes(),
            );
        }
    });
    base
}

/// The offline scene's items with every asset on `base`, each href followed by `query`; returns
/// the catalog file.
fn items_on(cache: &Path, dir: &Path, base: &str, query: &str) -> std::path::PathBuf {
    let scene = dir.join("scene");
    write_scene(cache, &scene);
    let mut items: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scene.join("items.json")).unwrap()).unwrap();
    for item in items["features"].as_array_mut().unwrap() {
        for asset in item["assets"].as_object_mut().unwrap().values_mut() {
            let href = asset["href"].as_str().unwrap().to_string();
            asset["href"] = serde_json::Value::String(format!("{base}/{href}{query}"));
        }
    }
    let catalog = dir.join("http-items.json");
    std::fs::write(&catalog, items.to_string()).unwrap();
    catalog
}

#[test]
fn a_failed_signed_read_never_shows_the_signature() {
    let base = answering("403 Forbidden");
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog = items_on(
        cache.path(),
        dir.path(),
        &base,
        "?st=2021-08-04&se=2031-08-04&sp=rl&sv=2021-06-08&sr=c&sig=SeCrEtSiG%2B123%3D",
    );
    let recipe = recipe(dir.path(), &catalog);
    let out = dir.path().join("out");
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .env("RUST_LOG", "debug")
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(code, 3, "{stderr}");
    let report = std::fs::read_to_string(out.join("run.json")).unwrap();
    for text in [&stdout, &stderr, &report] {
        assert!(!text.contains("SeCrEtSiG"), "{text}");
    }
    assert!(
        stderr.contains("sig=REDACTED") && stderr.contains(CLEAR_ITEM),
        "{stderr}"
    );
}

#[test]
fn a_404_asset_is_bad_data_naming_item_asset_and_href() {
    let base = answering("404 Not Found");
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The same items, with every asset on the 404 server.
    let catalog = items_on(cache.path(), dir.path(), &base, "");
    let recipe = recipe(dir.path(), &catalog);
    let (code, _, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(dir.path().join("out")),
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains(CLEAR_ITEM)
            && stderr.contains("B02")
            && stderr.contains(&format!("{base}/")),
        "{stderr}"
    );
    assert!(
        !cached_kind(cache.path(), "stack"),
        "nothing is cached for the failed node"
    );
}
