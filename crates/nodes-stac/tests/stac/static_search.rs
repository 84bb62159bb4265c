//! stac-search over local ItemCollections, static catalogs and builtin datasets.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flow_core::node::DatasetProvider;
use flow_core::{Caching, Inputs, NodeError, Value};
use flow_nodes_stac::StacSearchKind;
use serde_json::json;

use crate::support::{build, ctx, ids, item};

/// Four items in `dir/items.json`:
/// - `a` 2021-07-05, cloud 2, square (0,0)-(1,1), proj:epsg on the item
/// - `b` 2021-07-20, cloud 30, square (2,2)-(3,3), proj:code on the item and proj:epsg on its asset
/// - `c` datetime null, 2021-08-01..2021-08-31, cloud 4, square (0.5,0.5)-(2.5,2.5)
/// - `d` 2021-06-01, cloud 1, square (10,10)-(11,11), collection `l8`
fn item_collection(dir: &Path) -> PathBuf {
    let mut a = item("a", "2021-07-05T10:00:00Z", 2.0, [0.0, 0.0, 1.0, 1.0]);
    a["properties"]["proj:epsg"] = json!(32618);
    let mut b = item("b", "2021-07-20T10:00:00Z", 30.0, [2.0, 2.0, 3.0, 3.0]);
    b["properties"]["proj:code"] = json!("EPSG:32619");
    b["assets"]["B04"]["proj:epsg"] = json!(32619);
    let mut c = item("c", "2021-08-10T10:00:00Z", 4.0, [0.5, 0.5, 2.5, 2.5]);
    c["properties"]["datetime"] = json!(null);
    c["properties"]["start_datetime"] = json!("2021-08-01T00:00:00Z");
    c["properties"]["end_datetime"] = json!("2021-08-31T23:59:59Z");
    let mut d = item("d", "2021-06-01T10:00:00Z", 1.0, [10.0, 10.0, 11.0, 11.0]);
    d["collection"] = json!("l8");
    d["assets"]["B04"]["href"] = json!("https://example.com/d/B04.tif");
    let path = dir.join("items.json");
    std::fs::write(
        &path,
        json!({"type": "FeatureCollection", "features": [b, d, c, a]}).to_string(),
    )
    .unwrap();
    path
}

fn search(dir: &Path, params: &str) -> Vec<String> {
    let node = build(
        &StacSearchKind,
        &format!("catalog = 'items.json'\n{params}"),
    )
    .unwrap();
    let c = ctx(dir);
    node.key_material(&c).unwrap();
    ids(&node.run(&c, &Inputs::default()).unwrap())
}

#[test]
fn item_collection_filters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    item_collection(d);
    assert_eq!(
        search(d, ""),
        ["d", "a", "b", "c"],
        "ordered by datetime then id"
    );
    assert_eq!(search(d, "bbox = [0, 0, 0.7, 0.7]"), ["a", "c"]);
    assert_eq!(search(d, "bbox = [0, 0, 0.2, 0.2]"), ["a"]);
    assert_eq!(
        search(d, "intersects = { type = 'Polygon', coordinates = [[[2.2, 2.2], [2.8, 2.2], [2.8, 2.4], [2.2, 2.4], [2.2, 2.2]]] }"),
        ["b", "c"]
    );
    // a triangle whose envelope touches `a` but whose shape does not
    let tri = "intersects = { type = 'Polygon', coordinates = [[[1.5, -1], [-1, 1.5], [-1, -1], [1.5, -1]]] }";
    assert_eq!(search(d, tri), ["a"]);
    let tri2 =
        "intersects = { type = 'Polygon', coordinates = [[[3, 3], [3, 0.5], [0.5, 3], [3, 3]]] }";
    assert_eq!(search(d, tri2), ["b", "c"]);
    assert_eq!(
        search(d, &format!("{tri2}\nenvelope = true")),
        ["a", "b", "c"]
    );
    assert_eq!(search(d, "datetime = '2021-07-01/2021-07-31'"), ["a", "b"]);
    assert_eq!(
        search(d, "datetime = '2021-08-15'"),
        ["c"],
        "start/end_datetime items"
    );
    assert_eq!(
        search(d, "datetime = '../2021-07-05T10:00:00Z'"),
        ["d", "a"]
    );
    assert_eq!(
        search(d, "datetime = '2021-07-20T10:00:00Z/..'"),
        ["b", "c"]
    );
    assert_eq!(
        search(d, "query = { 'eo:cloud_cover' = { lt = 5 } }"),
        ["d", "a", "c"]
    );
    assert_eq!(
        search(
            d,
            "query = { 'eo:cloud_cover' = { lt = 5 } }\ncollections = ['s2']"
        ),
        ["a", "c"]
    );
    assert_eq!(
        search(d, "query = { 'eo:cloud_cover' = { gte = 2, lte = 4 } }"),
        ["a", "c"]
    );
    assert_eq!(
        search(d, "query = { 'proj:epsg' = { in = [32619, 4326] } }"),
        ["b"]
    );
    assert_eq!(
        search(d, "query = { 'proj:code' = { eq = 'EPSG:32618' } }"),
        ["a"],
        "normalized before filtering"
    );
    assert_eq!(search(d, "ids = ['c', 'b', 'zz']"), ["b", "c"]);
    assert_eq!(search(d, "max_items = 2"), ["d", "a"]);
    assert_eq!(
        search(d, "sortby = ['-eo:cloud_cover']"),
        ["b", "c", "a", "d"]
    );
}

#[test]
fn cql2_filters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    item_collection(d);
    let cc = "{ property = 'eo:cloud_cover' }";
    assert_eq!(
        search(d, &format!("filter = {{ op = '<=', args = [{cc}, 4] }}")),
        ["d", "a", "c"]
    );
    assert_eq!(
        search(
            d,
            &format!(
                "filter = {{ op = 'and', args = [{{ op = '<=', args = [{cc}, 4] }}, {{ op = 't_intersects', args = [{{ property = 'datetime' }}, {{ interval = ['2021-07-01T00:00:00Z', '2021-12-31T00:00:00Z'] }}] }}] }}"
            )
        ),
        ["a", "c"]
    );
    assert_eq!(search(d, "filter = { op = 'or', args = [{ op = '=', args = [{ property = 'id' }, 'b'] }, { op = '=', args = [{ property = 'collection' }, 'l8'] }] }"), ["d", "b"]);
    assert_eq!(
        search(
            d,
            &format!(
                "filter = {{ op = 'not', args = [{{ op = 'between', args = [{cc}, 2, 4] }}] }}"
            )
        ),
        ["d", "b"]
    );
    assert_eq!(
        search(
            d,
            "filter = { op = 'in', args = [{ property = 'id' }, ['a', 'd']] }"
        ),
        ["d", "a"]
    );
    assert_eq!(search(d, "filter = { op = 's_intersects', args = [{ property = 'geometry' }, { type = 'Point', coordinates = [2.7, 2.7] }] }"), ["b"]);
    assert_eq!(
        search(
            d,
            "filter = { op = '<>', args = [{ property = 'proj:epsg' }, 32618] }"
        ),
        ["b"],
        "missing properties are unknown, not true"
    );
    assert_eq!(search(d, "filter = { op = '>', args = [{ property = 'datetime' }, { timestamp = '2021-07-10T00:00:00Z' }] }"), ["b", "c"]);
}

#[test]
fn proj_fields_hrefs_and_caching() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = item_collection(d);
    let node = build(&StacSearchKind, "catalog = 'items.json'").unwrap();
    assert_eq!(node.caching(), Caching::Store);
    let c = ctx(d);
    let k1 = node.key_material(&c).unwrap().unwrap();
    let Value::Items(items) = node.run(&c, &Inputs::default()).unwrap() else {
        panic!()
    };
    let by_id = |id: &str| {
        items
            .features()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()
            .clone()
    };
    let (a, b) = (by_id("a"), by_id("b"));
    assert_eq!(a["properties"]["proj:code"], "EPSG:32618");
    assert_eq!(b["properties"]["proj:epsg"], 32619);
    assert_eq!(b["assets"]["B04"]["proj:code"], "EPSG:32619");
    assert_eq!(
        a["assets"]["B04"]["href"],
        d.join("a/B04.tif").to_string_lossy().as_ref()
    );
    assert_eq!(
        by_id("d")["assets"]["B04"]["href"],
        "https://example.com/d/B04.tif"
    );
    assert_eq!(
        a["assets"]["B04"]["type"], "image/tiff",
        "other fields survive"
    );
    assert_eq!(
        items.catalog(),
        Some(path.to_string_lossy().as_ref()),
        "the output names the file it was read from"
    );

    // the key follows the file's bytes
    assert_eq!(
        build(&StacSearchKind, "catalog = 'items.json'")
            .unwrap()
            .key_material(&c)
            .unwrap()
            .unwrap(),
        k1
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("30.0", "31.0");
    std::fs::write(&path, text).unwrap();
    assert_ne!(node.key_material(&c).unwrap().unwrap(), k1);

    // file:// URLs and absolute paths
    let url = url::Url::from_file_path(&path).unwrap();
    let node = build(&StacSearchKind, &format!("catalog = '{url}'\nids = ['a']")).unwrap();
    let out = node.run(&c, &Inputs::default()).unwrap();
    assert_eq!(ids(&out), ["a"]);
    let Value::Items(items) = out else { panic!() };
    assert_eq!(items.catalog(), Some(path.to_string_lossy().as_ref()));
}

#[test]
fn intersects_from_a_geojson_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    item_collection(d);
    let fc = json!({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
        "geometry": {"type": "Point", "coordinates": [10.5, 10.5]}}]});
    std::fs::write(d.join("aoi.geojson"), fc.to_string()).unwrap();
    assert_eq!(search(d, "intersects = 'aoi.geojson'"), ["d"]);
    let node = build(
        &StacSearchKind,
        "catalog = 'items.json'\nintersects = 'missing.geojson'",
    )
    .unwrap();
    let e = node.run(&ctx(d), &Inputs::default()).unwrap_err();
    assert!(matches!(e, NodeError::Io { .. }), "{e}");
}

#[test]
fn bad_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = ctx(d);
    let node = build(&StacSearchKind, "catalog = 'items.json'").unwrap();
    assert!(matches!(
        node.run(&c, &Inputs::default()),
        Err(NodeError::Io { .. })
    ));
    std::fs::write(
        d.join("items.json"),
        "{\"type\": \"FeatureCollection\", \"features\": [",
    )
    .unwrap();
    let e = node.run(&c, &Inputs::default()).unwrap_err();
    assert_eq!(e.exit_code().code(), 3, "{e}");
    std::fs::write(
        d.join("items.json"),
        "{\"type\": \"FeatureCollection\", \"features\": [{\"id\": 3}]}",
    )
    .unwrap();
    assert_eq!(
        node.run(&c, &Inputs::default())
            .unwrap_err()
            .exit_code()
            .code(),
        3
    );
}

/// catalog.json -> s2/collection.json -> items/x{1,2}/x{n}.json, hrefs relative to each file.
fn catalog_tree(dir: &Path) {
    let write = |rel: &str, v: serde_json::Value| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v.to_string()).unwrap();
    };
    write(
        "catalog.json",
        json!({"type": "Catalog", "id": "root", "stac_version": "1.0.0", "description": "",
        "links": [{"rel": "self", "href": "./catalog.json"}, {"rel": "child", "href": "./s2/collection.json"},
                  {"rel": "child", "href": "https://example.com/remote/catalog.json"}]}),
    );
    write(
        "s2/collection.json",
        json!({"type": "Collection", "id": "s2", "stac_version": "1.0.0", "description": "",
        "license": "proprietary", "extent": {},
        "links": [{"rel": "root", "href": "../catalog.json"}, {"rel": "parent", "href": "../catalog.json"},
                  {"rel": "item", "href": "./items/x1/x1.json"}, {"rel": "item", "href": "items/x2/x2.json"}]}),
    );
    for (id, dt, sq) in [
        ("x1", "2021-07-02T00:00:00Z", [0.0, 0.0, 1.0, 1.0]),
        ("x2", "2021-07-01T00:00:00Z", [5.0, 5.0, 6.0, 6.0]),
    ] {
        let mut it = item(id, dt, 1.0, sq);
        it.as_object_mut().unwrap().remove("collection");
        it["assets"]["B04"]["href"] = json!("./B04.tif");
        it["assets"]["SCL"] = json!({"href": "../../shared/SCL.tif", "proj:code": "EPSG:32618"});
        write(&format!("s2/items/{id}/{id}.json"), it);
    }
}

#[test]
fn static_catalog_trees() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    catalog_tree(d);
    let node = build(
        &StacSearchKind,
        "catalog = 'catalog.json'\ncollections = ['s2']",
    )
    .unwrap();
    let c = ctx(d);
    let Value::Items(items) = node.run(&c, &Inputs::default()).unwrap() else {
        panic!()
    };
    assert_eq!(ids(&Value::Items(items.clone())), ["x2", "x1"]);
    let x1 = &items.features()[1];
    assert_eq!(x1["collection"], "s2");
    assert_eq!(
        x1["assets"]["B04"]["href"],
        d.join("s2/items/x1/B04.tif").to_string_lossy().as_ref()
    );
    assert_eq!(
        x1["assets"]["SCL"]["href"],
        d.join("s2/shared/SCL.tif").to_string_lossy().as_ref()
    );
    assert_eq!(x1["assets"]["SCL"]["proj:epsg"], 32618);
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("https://example.com/remote/catalog.json")),
        "{:?}",
        c.warnings()
    );
    let node = build(
        &StacSearchKind,
        "catalog = 'catalog.json'\nbbox = [5.5, 5.5, 7, 7]",
    )
    .unwrap();
    assert_eq!(ids(&node.run(&c, &Inputs::default()).unwrap()), ["x2"]);
    // the key covers every file of the tree
    let k1 = node.key_material(&c).unwrap();
    let p = d.join("s2/items/x2/x2.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("2021-07-01", "2021-07-03");
    std::fs::write(&p, text).unwrap();
    assert_ne!(node.key_material(&c).unwrap(), k1);
}

/// A dataset that writes a one-item ItemCollection, slowly, counting its calls.
struct Fake {
    calls: AtomicUsize,
}

impl DatasetProvider for Fake {
    fn materialize(&self, dir: &Path) -> Result<PathBuf, NodeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        let mut it = item("scene", "2021-07-01T15:00:00Z", 0.0, [0.0, 0.0, 1.0, 1.0]);
        it["assets"]["B04"]["href"] = json!("cogs/B04.tif");
        let p = dir.join("stac").join("items.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            json!({"type": "FeatureCollection", "features": [it]}).to_string(),
        )
        .unwrap();
        Ok(p)
    }

    fn version(&self) -> &str {
        "1.2"
    }
}

#[test]
fn builtin_datasets_materialize_once() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake {
        calls: AtomicUsize::new(0),
    });
    let mut c = ctx(dir.path());
    c.datasets.add("timberlea", fake.clone());
    let node = build(&StacSearchKind, "catalog = 'builtin:timberlea'").unwrap();
    assert_eq!(node.caching(), Caching::Store);
    let key = node.key_material(&c).unwrap();
    assert!(key.is_some());
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        0,
        "the key needs no materializing"
    );

    // several runs at once: every one gets the same complete dataset
    let results: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| node.run(&c, &Inputs::default()).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let target = dir.path().join("data/timberlea-1.2");
    for r in &results {
        let Value::Items(items) = r else { panic!() };
        assert_eq!(
            items.features()[0]["assets"]["B04"]["href"],
            target.join("stac/cogs/B04.tif").to_string_lossy().as_ref()
        );
        assert_eq!(
            items.catalog(),
            Some(target.join("stac/items.json").to_string_lossy().as_ref()),
            "a builtin dataset is named by the local file it was read from"
        );
        assert!(node.is_fresh(&c, r));
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["timberlea-1.2"], "no temporary directories left");
    let calls = fake.calls.load(Ordering::SeqCst);
    node.run(&c, &Inputs::default()).unwrap();
    assert_eq!(
        fake.calls.load(Ordering::SeqCst),
        calls,
        "an existing dataset is reused"
    );
    assert_eq!(
        build(&StacSearchKind, "catalog = 'builtin:timberlea'")
            .unwrap()
            .key_material(&c)
            .unwrap(),
        key
    );

    // a removed dataset makes the cached output stale
    std::fs::remove_dir_all(&target).unwrap();
    assert!(!node.is_fresh(&c, &results[0]));

    let node = build(&StacSearchKind, "catalog = 'builtin:timberlee'").unwrap();
    let e = node.run(&c, &Inputs::default()).unwrap_err();
    assert!(
        e.to_string().contains("did you mean `builtin:timberlea`"),
        "{e}"
    );
}
