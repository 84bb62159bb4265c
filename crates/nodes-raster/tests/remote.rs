//! `stack` over HTTP in process: signatures that expire mid-run are renewed through the asset's
//! signer, items of remote catalogs cannot name local files, and the versions of remote files
//! are recorded and checked again.

mod common;

#[path = "../../../tests/http_files.rs"]
mod http_files;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use flow_core::signer::{self, HrefSigner};
use flow_core::{Items, Node, NodeError, NodeKind, Source, Value};
use flow_nodes_raster::StackKind;
use http_files::{serve, FileServer, Reply};

const CLEAR_ITEM: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";

/// A recipe's `stack` table: two 10 m bands and a 20 m one over the AOI, one reader at a time.
fn stack_params() -> String {
    format!("assets = [\"B02\", \"B04\", \"B05\"]\nresolution = 10\nbounds_latlon = {AOI}\nmax_parallel = 1\ntimeout = 10\nretries = 0")
}

/// The scene's clear item as an ItemCollection, with each asset's href made by `href` from its
/// path relative to the scene directory, and `extra` members added to each asset.
fn clear_item(href: impl Fn(&str) -> String, extra: serde_json::Value) -> serde_json::Value {
    let path = scene();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut item = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == CLEAR_ITEM)
        .unwrap()
        .clone();
    for (_, a) in item["assets"].as_object_mut().unwrap() {
        let relative = a["href"].as_str().unwrap().to_string();
        a["href"] = href(&relative).into();
        for (k, x) in extra.as_object().unwrap() {
            a[k] = x.clone();
        }
    }
    v["features"] = serde_json::json!([item]);
    v
}

fn stack(items: serde_json::Value) -> Result<(flow_core::Raster, Vec<Source>), NodeError> {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    match run(
        &StackKind,
        &stack_params(),
        vec![("input", items_value(items))],
        &ctx,
    )? {
        Value::Raster(r) => Ok((r, ctx.sources())),
        other => panic!("not a raster: {other:?}"),
    }
}

fn bits(r: &flow_core::Raster) -> Vec<u32> {
    r.data.iter().map(|v| v.to_bits()).collect()
}

/// The scene served over loopback, where `sig=t1` is honoured for the first `fresh` signed
/// requests and refused (403) after, `sig=t2` always, anything else never.
fn expiring_server(fresh: usize) -> FileServer {
    let used = AtomicUsize::new(0);
    serve(scene().parent().unwrap(), move |r| {
        let ok = match r.query.as_str() {
            "sig=t1" => used.fetch_add(1, Ordering::SeqCst) < fresh,
            "sig=t2" => true,
            _ => false,
        };
        (!ok).then(|| Reply::status("403 Forbidden"))
    })
}

/// A signer like Planetary Computer's: a token per generation, renewed on request when the
/// caller holds the current one (so that readers refused at once renew it once).
struct Rotating {
    generation: Mutex<u32>,
    /// The highest generation it hands out; a renewal past it gives the last one again.
    last: u32,
}

impl HrefSigner for Rotating {
    fn sign(&self, href: &str, renew: bool) -> Result<String, String> {
        let mut g = self.generation.lock().map_err(|e| e.to_string())?;
        if renew && href.ends_with(&format!("sig=t{g}")) && *g < self.last {
            *g += 1;
        }
        let base = href.split('?').next().unwrap_or(href);
        Ok(format!("{base}?sig=t{g}"))
    }
}

/// A signer whose token endpoint fails once asked to renew.
struct Failing;

impl HrefSigner for Failing {
    fn sign(&self, href: &str, renew: bool) -> Result<String, String> {
        if renew {
            return Err("token endpoint http://127.0.0.1:9/token answered 503".into());
        }
        Ok(format!("{}?sig=t1", href.split('?').next().unwrap_or(href)))
    }
}

#[test]
fn a_signature_that_expires_mid_read_is_renewed_and_the_read_retried() {
    // The same bands read from disk.
    let local = clear_item(
        |rel| {
            scene()
                .parent()
                .unwrap()
                .join(rel)
                .to_string_lossy()
                .into_owned()
        },
        serde_json::json!({}),
    );
    let (reference, _) = stack(local).unwrap();

    // t1 expires after a few requests, inside the first asset's read.
    let server = expiring_server(4);
    signer::register(
        "test:rotating",
        Arc::new(Rotating {
            generation: Mutex::new(1),
            last: 2,
        }),
    );
    let base = server.base.clone();
    let items = clear_item(
        |rel| format!("{base}/{rel}?sig=t1"),
        serde_json::json!({"flow:signer": "test:rotating"}),
    );
    let (got, sources) = stack(items).unwrap();
    assert!(server.count("sig=t1") > 4, "t1 was refused mid-run");
    assert!(server.count("sig=t2") > 0, "the reads went on with t2");
    assert_eq!(got.data.shape(), reference.data.shape());
    assert!(
        bits(&got) == bits(&reference),
        "the signed read equals the disk read"
    );
    // The versions read, without any token; asked about again, signed again.
    assert_eq!(sources.len(), 3);
    let node = StackKind.build(&params(&stack_params())).unwrap();
    for s in &sources {
        assert!(!s.local && s.location.starts_with(&server.base), "{s:?}");
        assert!(!s.location.contains("sig="), "{s:?}");
        assert!(
            s.size.is_some() && s.version.as_deref().is_some_and(|v| v.starts_with('"')),
            "{s:?}"
        );
        assert_eq!(s.credentials.as_deref(), Some("signer:test:rotating"));
        assert_eq!(node.source_changed(s), Some(false), "{s:?}");
        // Read with a token that no signer renews, it cannot be asked about without one.
        let tokened = Source {
            credentials: Some("query".into()),
            ..s.clone()
        };
        assert_eq!(node.source_changed(&tokened), None, "{s:?}");
    }
}

#[test]
fn a_signature_that_cannot_be_renewed_fails_as_a_403_without_the_token() {
    for (id, signer) in [
        (
            "test:stuck",
            Arc::new(Rotating {
                generation: Mutex::new(1),
                last: 1,
            }) as Arc<dyn HrefSigner>,
        ),
        ("test:failing", Arc::new(Failing)),
    ] {
        let server = expiring_server(2);
        signer::register(id, signer);
        let base = server.base.clone();
        let items = clear_item(
            |rel| format!("{base}/{rel}?sig=t1"),
            serde_json::json!({"flow:signer": id}),
        );
        let err = stack(items).unwrap_err();
        assert!(matches!(err, NodeError::InvalidData(_)), "{id}: {err:?}");
        let message = err.to_string();
        for needle in [CLEAR_ITEM, "asset `B02`", "403"] {
            assert!(message.contains(needle), "{id}: `{needle}` in {message}");
        }
        if id == "test:failing" {
            assert!(message.contains("signing it again failed"), "{message}");
        }
        assert_eq!(err.exit_code(), flow_core::ExitCode::BadData);
    }
}

#[test]
fn items_of_a_remote_catalog_cannot_name_local_files() {
    let dir = scene().parent().unwrap().to_path_buf();
    let cog = dir.join(CLEAR_ITEM).join("B04.tif");
    let server = serve(&dir, |_| None);
    for (href, why) in [
        (cog.to_string_lossy().into_owned(), "a local path"),
        (format!("file://{}", cog.display()), "file://"),
        (
            format!("/vsicurl/{}/{CLEAR_ITEM}/B04.tif", server.base),
            "/vsi",
        ),
    ] {
        let mut items = clear_item(|_| href.clone(), serde_json::json!({}));
        let mut value = Items {
            collection: items.take(),
        };
        value.set_catalog("http://127.0.0.1:9/api/stac/v1");
        let tmp = tempfile::tempdir().unwrap();
        let ctx = ctx(tmp.path());
        let err = run(
            &StackKind,
            &stack_params(),
            vec![("input", Value::Items(value))],
            &ctx,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, NodeError::InvalidData(_)), "{href}: {err:?}");
        for needle in [
            CLEAR_ITEM,
            "asset `B02`",
            href.as_str(),
            "remote catalog",
            why,
        ] {
            assert!(message.contains(needle), "`{needle}` in {message}");
        }
    }
    assert_eq!(server.count("B04"), 0, "nothing was read");

    // A recipe that opts into VRT cannot stack remote items.
    let mut value = Items {
        collection: clear_item(
            |rel| format!("{}/{rel}", server.base),
            serde_json::json!({}),
        ),
    };
    value.set_catalog("https://example.invalid/api");
    let tmp = tempfile::tempdir().unwrap();
    let err = run(
        &StackKind,
        &format!("{}\ndrivers = [\"VRT\"]", stack_params()),
        vec![("input", Value::Items(value))],
        &ctx(tmp.path()),
    )
    .unwrap_err();
    assert!(
        matches!(&err, NodeError::InvalidData(m) if m.contains("VRT") && m.contains("remote catalog")),
        "{err:?}"
    );
}

#[test]
fn a_remote_file_that_changes_is_seen_by_the_source_check() {
    let dir = tempfile::tempdir().unwrap();
    let src = scene().parent().unwrap().join(CLEAR_ITEM);
    std::fs::create_dir_all(dir.path().join(CLEAR_ITEM)).unwrap();
    for band in ["B02", "B04", "B05"] {
        let name = format!("{CLEAR_ITEM}/{band}.tif");
        std::fs::copy(src.join(format!("{band}.tif")), dir.path().join(&name)).unwrap();
    }
    let refusing = Arc::new(Mutex::new(false));
    let gate = refusing.clone();
    let server = serve(dir.path(), move |_| {
        (*gate.lock().unwrap()).then(|| Reply::status("403 Forbidden"))
    });
    let base = server.base.clone();
    let (_, sources) = stack(clear_item(
        |rel| format!("{base}/{rel}"),
        serde_json::json!({}),
    ))
    .unwrap();
    assert_eq!(sources.len(), 3);
    let node = StackKind.build(&params(&stack_params())).unwrap();
    let changed = |node: &dyn Node| -> Vec<Option<bool>> {
        sources.iter().map(|s| node.source_changed(s)).collect()
    };
    assert_eq!(changed(node.as_ref()), [Some(false); 3]);
    // Another band's content behind B04: a new ETag and size.
    std::fs::copy(
        src.join("B03.tif"),
        dir.path().join(CLEAR_ITEM).join("B04.tif"),
    )
    .unwrap();
    assert_eq!(
        changed(node.as_ref()),
        [Some(false), Some(true), Some(false)]
    );
    // A server that refuses the question cannot tell; a file that is gone has changed.
    *refusing.lock().unwrap() = true;
    assert_eq!(changed(node.as_ref()), [None; 3]);
    *refusing.lock().unwrap() = false;
    std::fs::remove_file(dir.path().join(CLEAR_ITEM).join("B05.tif")).unwrap();
    assert_eq!(changed(node.as_ref())[2], Some(true));
}
