//! `stac-search` against a real STAC API: stac-fastapi-pgstac 7.2.0 on pgstac 0.10.0 (the server
//! software Planetary Computer runs), on 127.0.0.1.
//!
//! scripts/test starts the server with `scripts/stac-api start` and puts its root URL in
//! FLOW_TEST_STAC_API. It loads the two items of `flow fixture timberlea` and the eight of
//! `scripts/stac-api extra-items` (see that script for what each extra item is there to exclude).
//! Without the variable these tests print a line and pass, unless FLOW_REQUIRE_STAC_API=1.

use serde_json::Value;

use crate::support::{flow, output};

/// The notebook's Timberlea AOI as a TOML inline table.
const AOI: &str = "{ type = \"Polygon\", coordinates = [[[-73.8847303, 45.4294192], [-73.883357, 45.4445361], \
                   [-73.9108229, 45.4442049], [-73.9120245, 45.4263471], [-73.8847303, 45.4294192]]] }";

/// The fixture's clear item (eo:cloud_cover about 1.2).
const AUG_03: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";
/// The fixture's cloudy item (eo:cloud_cover about 38).
const JUL_14: &str = "S2A_MSIL2A_20210714T154911_R054_T18TWR_20210715T034718";

/// What the AOI + July-August 2021 + eo:cloud_cover < 5 search finds, in the node's order
/// (datetime, then id): 2021-07-05, 07-20, 08-03, 08-10.
const CLEAR_IN_AOI: [&str; 4] = ["extra-01", "extra-02", AUG_03, "extra-03"];

/// Every item of collection sentinel-2-l2a on the server, in the node's order (datetime, then id).
/// extra-08, the ninth item that is in the AOI, in range and clear, is in landsat-c2-l2.
const ALL_S2: [&str; 9] = [
    "extra-05", // 2021-06-20
    "extra-01", // 2021-07-05
    JUL_14,     // 2021-07-14
    "extra-02", // 2021-07-20
    "extra-07", // 2021-07-25, just east of the AOI
    AUG_03,     // 2021-08-03
    "extra-03", // 2021-08-10
    "extra-04", // 2021-08-25, eo:cloud_cover exactly 5
    "extra-06", // 2021-09-05
];

/// The API root URL, or None (after saying so) when the tests run without a server.
fn api() -> Option<String> {
    match std::env::var("FLOW_TEST_STAC_API") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_string()),
        _ => {
            if std::env::var("FLOW_REQUIRE_STAC_API").as_deref() == Ok("1") {
                panic!("FLOW_REQUIRE_STAC_API=1 but FLOW_TEST_STAC_API is not set (scripts/test sets it)");
            }
            println!("skipped: FLOW_TEST_STAC_API is not set (scripts/test sets it)");
            None
        }
    }
}

/// Runs a recipe whose only node, `search`, is a stac-search of `url` with the extra TOML lines
/// `params`, and returns the ids that run.json reports for it.
fn search(url: &str, params: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("api_search.toml");
    let text = format!(
        "name = \"api-search\"\n\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"{url}\"\n\
         collections = [\"sentinel-2-l2a\"]\n{params}\n"
    );
    std::fs::write(&recipe, &text).unwrap();
    let out = dir.path().join("out");
    let (code, stdout, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(&recipe)
            .arg("--out")
            .arg(&out),
    );
    assert_eq!(
        code, 0,
        "flow run failed\n--- recipe\n{text}--- stdout\n{stdout}--- stderr\n{stderr}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let node = report["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == "search"))
        .unwrap_or_else(|| panic!("no node `search` in run.json:\n{report:#}"));
    assert_eq!(node["status"], "computed", "{node:#}");
    let summary = &node["output"];
    assert_eq!(summary["type"], "Items", "{node:#}");
    let ids: Vec<String> = summary["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids in {node:#}"))
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    assert_eq!(summary["count"], ids.len(), "{node:#}");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ids.len(),
        "an item came back twice (paging?): {ids:?}"
    );
    ids
}

#[test]
fn query_search_pages_through_the_api() {
    let Some(url) = api() else { return };
    let ids = search(
        &url,
        &format!(
            "intersects = {AOI}\ndatetime = \"2021-07-01/2021-08-30\"\n\
             query = {{ \"eo:cloud_cover\" = {{ lt = 5 }} }}\nlimit = 2"
        ),
    );
    // Four matches at two per page: the node followed `next` (a POST link whose body carries a
    // pgstac token) past the first page, and stopped at the last, which has no `next`.
    assert!(ids.len() > 2, "no more than one page of results: {ids:?}");
    assert_eq!(ids, CLEAR_IN_AOI);
}

#[test]
fn cql2_filter_finds_what_query_finds() {
    let Some(url) = api() else { return };
    let filter = format!(
        "filter = {{ op = \"and\", args = [\
         {{ op = \"s_intersects\", args = [{{ property = \"geometry\" }}, {AOI}] }}, \
         {{ op = \"t_intersects\", args = [{{ property = \"datetime\" }}, \
         {{ interval = [\"2021-07-01T00:00:00Z\", \"2021-08-30T23:59:59Z\"] }}] }}, \
         {{ op = \"<\", args = [{{ property = \"eo:cloud_cover\" }}, 5] }}] }}\nlimit = 2"
    );
    let ids = search(&url, &filter);
    assert!(ids.len() > 2, "no more than one page of results: {ids:?}");
    assert_eq!(ids, CLEAR_IN_AOI);
}

#[test]
fn max_items_stops_mid_page() {
    let Some(url) = api() else { return };
    // Pages of 2: the third item is the first of the second page.
    let ids = search(&url, "max_items = 3\nlimit = 2");
    assert_eq!(ids.len(), 3, "{ids:?}");
    for id in &ids {
        assert!(
            ALL_S2.contains(&id.as_str()),
            "{id} is not in sentinel-2-l2a: {ids:?}"
        );
    }
}

#[test]
fn unfiltered_search_reads_every_page() {
    let Some(url) = api() else { return };
    // Nine items at two per page: five pages, the last one short.
    let ids = search(&url, "limit = 2");
    assert_eq!(ids, ALL_S2);
}
