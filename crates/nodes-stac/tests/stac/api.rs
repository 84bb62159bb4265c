//! stac-search against a scripted STAC API.

use std::time::{Duration, Instant};

use flow_core::{Caching, Inputs, NodeError};
use flow_nodes_stac::StacSearchKind;
use serde_json::json;

use crate::support::{build, ctx, ids, item, page, Reply, Server};

fn five() -> Vec<serde_json::Value> {
    (1..=5)
        .map(|i| {
            item(
                &format!("i{i}"),
                &format!("2021-07-0{i}T10:00:00Z"),
                i as f64,
                [0.0, 0.0, 1.0, 1.0],
            )
        })
        .collect()
}

fn run(src: &str) -> (Result<flow_core::Value, NodeError>, flow_core::RunContext) {
    let dir = tempfile::tempdir().unwrap();
    let node = build(&StacSearchKind, src).unwrap();
    let c = ctx(dir.path());
    (node.run(&c, &Inputs::default()), c)
}

fn remote_message(r: Result<flow_core::Value, NodeError>) -> String {
    match r {
        Err(e @ NodeError::Remote { .. }) => {
            assert_eq!(e.exit_code().code(), 4);
            e.to_string()
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
}

#[test]
fn retries_503_then_429_then_succeeds() {
    let s = Server::scripted(vec![
        Reply::text(503, "busy"),
        Reply::text(429, "slow down").header("Retry-After", "1"),
        Reply::json(200, &page(&five()[..1], None)),
    ]);
    let t = Instant::now();
    let (r, _) = run(&format!("catalog = '{}'", s.url));
    assert_eq!(ids(&r.unwrap()), ["i1"]);
    assert_eq!(s.requests().len(), 3);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
}

#[test]
fn persistent_500_fails_after_the_configured_tries() {
    let s = Server::scripted(vec![Reply::text(500, "database on fire")]);
    let (r, _) = run(&format!("catalog = '{}'\nretries = 2", s.url));
    let m = remote_message(r);
    assert!(
        m.contains("HTTP 500") && m.contains("database on fire") && m.contains(&s.url),
        "{m}"
    );
    assert!(m.contains("gave up after 3 attempts"), "{m}");
    assert_eq!(s.requests().len(), 3);

    // without retries, the one attempt is counted too
    let s = Server::scripted(vec![Reply::text(503, "busy")]);
    let m = remote_message(run(&format!("catalog = '{}'\nretries = 0", s.url)).0);
    assert!(
        m.contains("HTTP 503") && m.contains("gave up after 1 attempt)"),
        "{m}"
    );
    assert_eq!(s.requests().len(), 1);
}

#[test]
fn a_4xx_answer_is_not_counted_as_attempts() {
    let s = Server::scripted(vec![Reply::text(400, "bad bbox")]);
    let m = remote_message(run(&format!("catalog = '{}'", s.url)).0);
    assert!(m.contains("HTTP 400") && !m.contains("attempt"), "{m}");
}

#[test]
fn a_404_is_not_retried() {
    let s = Server::scripted(vec![Reply::text(404, "no such API")]);
    let (r, _) = run(&format!("catalog = '{}/api'", s.url));
    let m = remote_message(r);
    assert!(
        m.contains("HTTP 404") && m.contains("no such API") && m.contains("/api/search"),
        "{m}"
    );
    assert_eq!(s.requests().len(), 1);
}

#[test]
fn error_bodies_are_cut_to_about_200_chars() {
    let s = Server::scripted(vec![Reply::text(400, &"x".repeat(5000))]);
    let (r, _) = run(&format!("catalog = '{}'", s.url));
    let m = remote_message(r);
    assert!(m.len() < 400, "{m}");
}

#[test]
fn a_stalled_server_times_out() {
    let s = Server::scripted(vec![
        Reply::json(200, &page(&[], None)).stall(Duration::from_secs(5))
    ]);
    let t = Instant::now();
    let (r, _) = run(&format!(
        "catalog = '{}'\ntimeout = 0.5\nretries = 0",
        s.url
    ));
    let m = remote_message(r);
    assert!(m.contains("timed out"), "{m}");
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_repeating_next_link_stops_with_pagination_loop() {
    let url = Server::start(|_, n| {
        let next = json!({"rel": "next", "href": "/search?page=2", "type": "application/geo+json"});
        Reply::json(
            200,
            &page(
                &[item(
                    &format!("p{n}"),
                    "2021-07-01T00:00:00Z",
                    1.0,
                    [0.0, 0.0, 1.0, 1.0],
                )],
                Some(next),
            ),
        )
    });
    let (r, c) = run(&format!("catalog = '{}'", url.url));
    assert_eq!(ids(&r.unwrap()), ["p0", "p1"]);
    assert_eq!(url.requests().len(), 2);
    let w = c.warnings();
    assert!(
        w.iter().any(|w| w.contains("pagination loop at page 3")),
        "{w:?}"
    );
}

#[test]
fn a_server_answering_every_page_with_the_same_items_stops_after_the_second_page() {
    // every page: the same two items, and a link to a page never asked before
    let s = Server::start(|r, _| {
        let p: usize = r
            .query_param("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let next = json!({"rel": "next", "href": format!("/search?page={}", p + 1)});
        Reply::json(200, &page(&five()[..2], Some(next)))
    });
    let (r, c) = run(&format!("catalog = '{}'", s.url));
    assert_eq!(ids(&r.unwrap()), ["i1", "i2"]);
    assert_eq!(
        s.requests().len(),
        2,
        "no page after the first page of duplicates"
    );
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("page 2")
            && w[0].contains(&format!("{}/search?page=2", s.url))
            && w[0].contains("no new item"),
        "{w:?}"
    );

    // a page mixing seen and new items goes on
    let s = Server::start(|r, _| {
        let p: usize = r
            .query_param("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let all = five();
        let items = &all[p.saturating_sub(2)..p.min(5)];
        let next =
            (p < 5).then(|| json!({"rel": "next", "href": format!("/search?page={}", p + 1)}));
        Reply::json(200, &page(items, next))
    });
    let (r, c) = run(&format!("catalog = '{}'", s.url));
    assert_eq!(ids(&r.unwrap()), ["i1", "i2", "i3", "i4", "i5"]);
    assert_eq!(s.requests().len(), 5);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn the_output_names_its_catalog_the_same_on_every_run() {
    let s = Server::scripted(vec![Reply::json(200, &page(&five()[..2], None))]);
    let src = format!("catalog = '{}/api/stac/v1'", s.url);
    let (first, _) = run(&src);
    let first = first.unwrap();
    let flow_core::Value::Items(items) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(
        items.catalog(),
        Some(format!("{}/api/stac/v1", s.url).as_str())
    );
    let (second, _) = run(&src);
    assert_eq!(
        second.unwrap(),
        first,
        "the same answer gives the same output, so the same content identity"
    );
}

#[test]
fn the_page_cap_and_empty_pages_stop_with_a_warning() {
    let s = Server::start(|r, _| {
        let p: usize = r
            .query_param("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1);
        let next = json!({"rel": "next", "href": format!("/search?page={}", p + 1)});
        let items = if p == 3 {
            vec![]
        } else {
            vec![item(
                &format!("p{p}"),
                "2021-07-01T00:00:00Z",
                1.0,
                [0.0, 0.0, 1.0, 1.0],
            )]
        };
        Reply::json(200, &page(&items, Some(next)))
    });
    let (r, c) = run(&format!("catalog = '{}'\nmax_pages = 2", s.url));
    assert_eq!(ids(&r.unwrap()), ["p1", "p2"]);
    assert!(
        c.warnings().iter().any(|w| w.contains("max_pages = 2")),
        "{:?}",
        c.warnings()
    );
    let (r, c) = run(&format!("catalog = '{}'", s.url));
    assert_eq!(ids(&r.unwrap()), ["p1", "p2"]);
    assert!(
        c.warnings().iter().any(|w| w.contains("page 3 was empty")),
        "{:?}",
        c.warnings()
    );
}

#[test]
fn truncated_bodies_are_errors_not_panics() {
    let body = page(&five(), None).to_string();
    let s = Server::scripted(vec![Reply::text(200, &body[..body.len() / 2])]);
    let (r, _) = run(&format!("catalog = '{}'", s.url));
    let m = remote_message(r);
    assert!(m.contains("invalid JSON"), "{m}");
    assert_eq!(s.requests().len(), 1, "a bad body is not retried");

    // the connection closes before Content-Length bytes arrived
    let s = Server::scripted(vec![Reply::json(200, &page(&five(), None)).cut_at(100)]);
    let (r, _) = run(&format!("catalog = '{}'\nretries = 1", s.url));
    remote_message(r);
    assert_eq!(s.requests().len(), 2, "a cut transfer is retried");

    let s = Server::scripted(vec![Reply::json(
        200,
        &json!({"type": "FeatureCollection"}),
    )]);
    let m = remote_message(run(&format!("catalog = '{}'", s.url)).0);
    assert!(m.contains("no `features` array"), "{m}");
}

/// A server of five items, `limit` per page, next links by GET (`?page=`) or POST (`{"page"}`).
fn paging_server(post_links: bool) -> Server {
    Server::start(move |r, _| {
        let body = r.json();
        let limit = body["limit"]
            .as_u64()
            .or_else(|| r.query_param("limit").and_then(|l| l.parse().ok()))
            .unwrap_or(10) as usize;
        let p = body["page"]
            .as_u64()
            .map(|p| p as usize)
            .or_else(|| r.query_param("page").and_then(|p| p.parse().ok()))
            .unwrap_or(1);
        let all = five();
        let start = (p - 1) * limit;
        let items: Vec<_> = all.iter().skip(start).take(limit).cloned().collect();
        let next = (start + limit < all.len()).then(|| {
            if post_links {
                json!({"rel": "next", "href": "/search", "method": "POST", "body": {"page": p + 1}, "merge": true})
            } else {
                json!({"rel": "next", "href": format!("/search?page={}&limit={limit}", p + 1), "method": "GET"})
            }
        });
        Reply::json(200, &page(&items, next))
    })
}

#[test]
fn follows_get_next_links() {
    let s = paging_server(false);
    let (r, _) = run(&format!(
        "catalog = '{}'\nlimit = 2\ncollections = ['s2']",
        s.url
    ));
    assert_eq!(ids(&r.unwrap()), ["i1", "i2", "i3", "i4", "i5"]);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[1].method.as_str()),
        ("POST", "GET")
    );
    assert_eq!(reqs[2].target, "/search?page=3&limit=2");
}

#[test]
fn follows_post_next_links_merging_the_body() {
    let s = paging_server(true);
    let (r, _) = run(&format!(
        "catalog = '{}'\nlimit = 2\ncollections = ['s2']",
        s.url
    ));
    assert_eq!(ids(&r.unwrap()), ["i1", "i2", "i3", "i4", "i5"]);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.method == "POST"));
    assert_eq!(
        reqs[2].json(),
        json!({"collections": ["s2"], "limit": 2, "page": 3})
    );
}

#[test]
fn max_items_stops_early() {
    let s = paging_server(true);
    let (r, _) = run(&format!("catalog = '{}'\nlimit = 2\nmax_items = 3", s.url));
    assert_eq!(ids(&r.unwrap()), ["i1", "i2", "i3"]);
    assert_eq!(s.requests().len(), 2);
}

#[test]
fn a_405_on_post_falls_back_to_get() {
    let s = Server::start(|r, _| {
        if r.method == "POST" {
            Reply::text(405, "Method Not Allowed")
        } else {
            Reply::json(200, &page(&five()[..2], None))
        }
    });
    let src = format!(
        "catalog = '{}/'\ncollections = ['s2', 'l8']\nbbox = [-74, 45, -73.5, 45.5]\ndatetime = '2021-07-01/2021-08-30'\nlimit = 50\nquery = {{ 'eo:cloud_cover' = {{ lt = 5 }} }}\nsortby = ['-eo:cloud_cover']",
        s.url
    );
    let (r, _) = run(&src);
    assert_eq!(ids(&r.unwrap()), ["i2", "i1"], "sorted by -eo:cloud_cover");
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    let g = &reqs[1];
    assert_eq!((g.method.as_str(), g.path()), ("GET", "/search"));
    assert_eq!(g.query_param("collections").as_deref(), Some("s2,l8"));
    assert_eq!(
        g.query_param("bbox").as_deref(),
        Some("-74.0,45.0,-73.5,45.5")
    );
    assert_eq!(
        g.query_param("datetime").as_deref(),
        Some("2021-07-01T00:00:00Z/2021-08-30T23:59:59Z")
    );
    assert_eq!(g.query_param("limit").as_deref(), Some("50"));
    assert_eq!(g.query_param("sortby").as_deref(), Some("-eo:cloud_cover"));
    let q: serde_json::Value = serde_json::from_str(&g.query_param("query").unwrap()).unwrap();
    assert_eq!(q, json!({"eo:cloud_cover": {"lt": 5}}));
}

const AOI: &str = r#"intersects = { type = "Polygon", coordinates = [[[-73.88, 45.42], [-73.88, 45.44], [-73.91, 45.44], [-73.91, 45.42], [-73.88, 45.42]]] }"#;

#[test]
fn the_post_body_carries_every_filter() {
    let s = Server::scripted(vec![Reply::json(200, &page(&[], None))]);
    let src = format!(
        r#"catalog = '{}'
collections = ['sentinel-2-l2a']
{AOI}
datetime = '2021-07-01T00:00:00Z/..'
filter = {{ op = "<", args = [{{ property = "eo:cloud_cover" }}, 5] }}
ids = ['a', 'b']
"#,
        s.url
    );
    let dir = tempfile::tempdir().unwrap();
    let node = build(&StacSearchKind, &src).unwrap();
    assert_eq!(node.caching(), Caching::Ttl(86_400));
    let c = ctx(dir.path());
    assert_eq!(node.key_material(&c).unwrap(), None);
    assert!(ids(&node.run(&c, &Inputs::default()).unwrap()).is_empty());
    let body = s.requests()[0].json();
    assert_eq!(body["collections"], json!(["sentinel-2-l2a"]));
    assert_eq!(body["intersects"]["type"], "Polygon");
    assert_eq!(body["datetime"], "2021-07-01T00:00:00Z/..");
    assert_eq!(
        body["filter"],
        json!({"op": "<", "args": [{"property": "eo:cloud_cover"}, 5]})
    );
    assert_eq!(body["filter-lang"], "cql2-json");
    assert_eq!(body["ids"], json!(["a", "b"]));
    assert!(body.get("bbox").is_none() && body.get("limit").is_none());
}

#[test]
fn envelope_searches_the_bbox_of_the_geometry() {
    let s = Server::scripted(vec![Reply::json(200, &page(&[], None))]);
    run(&format!("catalog = '{}'\n{AOI}\nenvelope = true", s.url))
        .0
        .unwrap();
    let body = s.requests()[0].json();
    assert_eq!(body["bbox"], json!([-73.91, 45.42, -73.88, 45.44]));
    assert!(body.get("intersects").is_none());
}

#[test]
fn live_results_get_both_proj_fields_and_sorted_order() {
    let mut a = item("b", "2021-07-02T00:00:00Z", 1.0, [0.0, 0.0, 1.0, 1.0]);
    a["properties"]["proj:epsg"] = json!(32618);
    let mut b = item("a", "2021-07-02T00:00:00Z", 1.0, [0.0, 0.0, 1.0, 1.0]);
    b["properties"]["proj:code"] = json!("EPSG:32619");
    let c = item("c", "2021-07-01T00:00:00Z", 1.0, [0.0, 0.0, 1.0, 1.0]);
    let s = Server::scripted(vec![Reply::json(200, &page(&[a, b, c], None))]);
    let (r, _) = run(&format!("catalog = '{}'", s.url));
    let v = r.unwrap();
    assert_eq!(ids(&v), ["c", "a", "b"]);
    let flow_core::Value::Items(items) = v else {
        unreachable!()
    };
    assert_eq!(items.features()[1]["properties"]["proj:epsg"], 32619);
    assert_eq!(items.features()[2]["properties"]["proj:code"], "EPSG:32618");
}

#[test]
fn signed_urls_never_reach_error_messages() {
    let s = Server::start(|r, _| {
        if r.method == "POST" {
            Reply::json(
                200,
                &page(
                    &five()[..1],
                    Some(json!({"rel": "next", "href": "/search?page=2&sig=SECRETSIG"})),
                ),
            )
        } else {
            Reply::text(500, "failed for /search?page=2&sig=SECRETSIG")
        }
    });
    let (r, _) = run(&format!("catalog = '{}'\nretries = 0", s.url));
    let m = remote_message(r);
    assert!(!m.contains("SECRETSIG"), "{m}");
}

#[test]
fn bad_params_name_the_param() {
    let bad = |src: &str, param: &str| {
        let e = build(&StacSearchKind, src)
            .err()
            .unwrap_or_else(|| panic!("{src} was accepted"));
        assert_eq!(e.param.as_deref(), Some(param), "{src}: {e}");
    };
    bad("catalog = 'http://h'\ndatetime = '2021-13-01'", "datetime");
    bad(
        "catalog = 'http://h'\ndatetime = '2021-08-01/2021-07-01'",
        "datetime",
    );
    bad("catalog = 'http://h'\nbbox = [1, 2, 3]", "bbox");
    bad("catalog = 'http://h'\nbbox = [0, 5, 1, 4]", "bbox");
    bad(
        "catalog = 'http://h'\nbbox = [0, 0, 1, 1]\nintersects = 'aoi.geojson'",
        "intersects",
    );
    bad(
        "catalog = 'http://h'\nintersects = { type = 'Polygon', coordinates = [[[0, 0]]] }",
        "intersects",
    );
    bad("catalog = 'http://h'\nintersects = 3", "intersects");
    bad("catalog = 'http://h'\nenvelope = true", "envelope");
    bad(
        "catalog = 'http://h'\nquery = { 'eo:cloud_cover' = { less = 5 } }",
        "query",
    );
    bad(
        "catalog = 'items.json'\nfilter = { op = 'a_contains', args = [1, 2] }",
        "filter",
    );
    bad("catalog = 'http://h'\nsortby = [3]", "sortby");
    bad("catalog = 's3://bucket/catalog.json'", "catalog");
    bad("catalog = 'builtin:../etc'", "catalog");
    bad("catalog = 'http://h'\nlimit = 0", "limit");
    bad("catalog = 'http://h'\nmax_items = -1", "max_items");
    bad("catalog = 'http://h'\ntimeout = 0", "timeout");
    bad("catalog = 'http://h'\nretries = 100", "retries");
    bad("catalog = 'http://h'\nmax_pages = 0", "max_pages");
    bad("catalog = 'http://h'\nttl = -5", "ttl");
    // a live API may know more CQL2 than we evaluate locally
    assert!(build(
        &StacSearchKind,
        "catalog = 'http://h'\nfilter = { op = 'a_contains', args = [1, 2] }"
    )
    .is_ok());
}

#[test]
fn bad_params_say_what_is_wrong() {
    let message = |src: &str| {
        build(&StacSearchKind, src)
            .err()
            .unwrap_or_else(|| panic!("{src} was accepted"))
            .to_string()
    };
    let m = message("catalog = 'items.json'\nfilter = { op = 'a_contains', args = [1, 2] }");
    assert!(
        m.contains("`a_contains`") && m.contains("not supported"),
        "{m}"
    );
    let m = message("catalog = 'items.json'\nfilter = { op = '=', args = [1] }");
    assert!(m.contains("`=` takes 2 arguments, not 1"), "{m}");
    let m = message("catalog = 'http://h'\ndatetime = '2021-13-01'");
    assert!(
        m.contains("`2021-13-01` is not an RFC 3339 date-time"),
        "{m}"
    );
    let m = message("catalog = 'http://h'\ndatetime = '2021-08-01/2021-07-01'");
    assert!(m.contains("ends before it starts"), "{m}");
    let m = message(
        "catalog = 'http://h'\nintersects = { type = 'Polygon', coordinates = [[[0, 0], [1, 1]]] }",
    );
    assert!(
        m.contains("a Polygon ring needs at least 4 positions"),
        "{m}"
    );
    let m = message(
        "catalog = 'http://h'\nintersects = { type = 'LineString', coordinates = [[0], [1, 1]] }",
    );
    assert!(m.contains("two numbers"), "{m}");
    let m = message("catalog = 'http://h'\nintersects = { type = 'Circle', coordinates = [0, 0] }");
    assert!(m.contains("Circle"), "{m}");
}
