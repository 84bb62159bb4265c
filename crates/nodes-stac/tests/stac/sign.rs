//! sign against a token server shaped like Planetary Computer's SAS endpoint.

use std::sync::Arc;

use flow_core::signer::{self, HrefSigner, SIGNER_FIELD};
use flow_core::{Caching, Inputs, Items, NodeError, Value};
use flow_nodes_stac::SignKind;
use serde_json::json;

use crate::support::{build, ctx, Reply, Server};

const TOKEN: &str = "st=2021-01-01T00%3A00%3A00Z&se=2021-01-02T00%3A00%3A00Z&sp=rl&sv=2021-06-08&sr=c&skoid=x&sig=SECRETSIGNATURE%3D";

/// The token a token server hands out to its `n`-th request (0-based): [`TOKEN`] first, then
/// the same with the signature `SECRETSIGNATURE{n}%3D`.
fn token(n: usize) -> String {
    if n == 0 {
        TOKEN.to_string()
    } else {
        TOKEN.replace("SECRETSIGNATURE%3D", &format!("SECRETSIGNATURE{n}%3D"))
    }
}

/// A SAS endpoint whose tokens live `life_secs` seconds; its n-th answer is `token(n)`.
fn token_server(life_secs: i64) -> Server {
    Server::start(move |r, n| {
        if !r.path().starts_with("/api/sas/v1/token/") {
            return Reply::text(404, "not found");
        }
        let expiry = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(life_secs);
        let expiry = expiry.to_string();
        Reply::json(200, &json!({"msft:expiry": expiry, "token": token(n)}))
    })
}

fn sas(s: &Server) -> String {
    format!("{}/api/sas/v1/token", s.url)
}

/// `n` items of `per_item` assets each on account/container, plus one non-blob asset each.
fn items(n: usize, per_item: usize, container: &str) -> Items {
    Items::from_features(
        (0..n)
            .map(|i| {
                let mut assets = serde_json::Map::new();
                for b in 0..per_item {
                    assets.insert(
                        format!("B{b:02}"),
                        json!({"href": format!("https://sentinel2l2a01.blob.core.windows.net/{container}/tile{i}/B{b:02}.tif"), "type": "image/tiff; application=geotiff"}),
                    );
                }
                assets.insert("preview".into(), json!({"href": "https://planetarycomputer.microsoft.com/api/data/v1/item/preview.png?x=1"}));
                json!({"type": "Feature", "id": format!("it{i}"), "properties": {"datetime": "2021-07-01T00:00:00Z"}, "assets": assets})
            })
            .collect(),
    )
}

fn inputs(items: Items) -> Inputs {
    Inputs::new([("input".to_string(), Arc::new(Value::Items(items)))])
}

fn signed(v: &Value) -> &Items {
    match v {
        Value::Items(i) => i,
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_token_for_a_hundred_assets_of_one_container() {
    let s = token_server(3600);
    let kind = SignKind::with_subscription_key(None);
    let node = build(
        &kind,
        &format!("provider = 'planetary-computer'\nsas_url = '{}'", sas(&s)),
    )
    .unwrap();
    assert_eq!(node.caching(), Caching::Never);
    let dir = tempfile::tempdir().unwrap();
    let out = node
        .run(&ctx(dir.path()), &inputs(items(10, 10, "sentinel2-l2")))
        .unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].path(),
        "/api/sas/v1/token/sentinel2l2a01/sentinel2-l2"
    );
    assert_eq!(reqs[0].header("Ocp-Apim-Subscription-Key"), None);
    let out = signed(&out);
    assert_eq!(out.features().len(), 10);
    for f in out.features() {
        for (k, a) in f["assets"].as_object().unwrap() {
            let href = a["href"].as_str().unwrap();
            if k == "preview" {
                assert_eq!(
                    href,
                    "https://planetarycomputer.microsoft.com/api/data/v1/item/preview.png?x=1"
                );
            } else {
                assert!(href.ends_with(&format!(".tif?{TOKEN}")), "{href}");
            }
        }
        assert!(f["properties"]["msft:expiry"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
    }
    // a second container needs a second token; the first is reused
    node.run(&ctx(dir.path()), &inputs(items(2, 3, "other")))
        .unwrap();
    node.run(&ctx(dir.path()), &inputs(items(2, 3, "sentinel2-l2")))
        .unwrap();
    assert_eq!(s.requests().len(), 2);
}

#[test]
fn a_token_about_to_expire_is_refreshed() {
    let s = token_server(30);
    let node = build(
        &SignKind::with_subscription_key(None),
        &format!("provider = 'planetary-computer'\nsas_url = '{}/'", sas(&s)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    node.run(&ctx(dir.path()), &inputs(items(1, 2, "c")))
        .unwrap();
    assert_eq!(
        s.requests().len(),
        1,
        "one token per container within a run"
    );
    node.run(&ctx(dir.path()), &inputs(items(1, 1, "c")))
        .unwrap();
    assert_eq!(
        s.requests().len(),
        2,
        "30 s left is less than the 60 s margin"
    );
}

#[test]
fn the_subscription_key_is_sent_when_set() {
    let s = token_server(3600);
    let kind = SignKind::with_subscription_key(Some("my-key".into()));
    let node = build(
        &kind,
        &format!("provider = 'planetary-computer'\nsas_url = '{}'", sas(&s)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    node.run(&ctx(dir.path()), &inputs(items(1, 1, "c")))
        .unwrap();
    assert_eq!(
        s.requests()[0].header("Ocp-Apim-Subscription-Key"),
        Some("my-key")
    );
}

#[test]
fn provider_none_passes_items_through() {
    let s = token_server(3600);
    let node = build(
        &SignKind::new(),
        &format!("provider = 'none'\nsas_url = '{}'", sas(&s)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = items(3, 3, "c");
    let out = node.run(&ctx(dir.path()), &inputs(input.clone())).unwrap();
    assert_eq!(signed(&out), &input);
    assert!(s.requests().is_empty());
}

#[test]
fn token_failures_never_show_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let run = |reply: Reply| -> NodeError {
        let s = Server::scripted(vec![reply]);
        let node = build(
            &SignKind::with_subscription_key(Some("KEYSECRET".into())),
            &format!("provider = 'planetary-computer'\nsas_url = '{}'", sas(&s)),
        )
        .unwrap();
        node.run(&ctx(dir.path()), &inputs(items(1, 1, "c")))
            .unwrap_err()
    };
    let leaks = |e: &NodeError| {
        let t = format!("{e} {e:?}");
        t.contains("SECRETSIGNATURE") || t.contains("KEYSECRET") || t.contains("sp=rl")
    };
    let e = run(Reply::text(403, &format!("denied for https://a.blob.core.windows.net/c/x.tif?{TOKEN} and {{\"token\": \"{TOKEN}\"}}")));
    assert!(
        matches!(e, NodeError::Remote { .. }) && e.to_string().contains("HTTP 403"),
        "{e}"
    );
    assert!(!leaks(&e), "{e}");
    let body = json!({"msft:expiry": "2099-01-01T00:00:00Z", "token": TOKEN}).to_string();
    let e = run(Reply::text(200, &body[..body.len() - 3]));
    assert!(matches!(e, NodeError::Remote { .. }), "{e}");
    assert!(!leaks(&e), "{e}");
    let e = run(Reply::json(
        200,
        &json!({"msft:expiry": "soon", "token": TOKEN}),
    ));
    assert!(e.to_string().contains("msft:expiry"), "{e}");
    assert!(!leaks(&e), "{e}");
}

#[test]
fn bad_params() {
    assert_eq!(
        build(&SignKind::new(), "provider = 'none'\nsas_url = 'ftp://x'")
            .err()
            .unwrap()
            .param
            .as_deref(),
        Some("sas_url")
    );
}

/// The signer named by the asset `key` of the first item, and that asset's href.
fn signer_of(items: &Items, key: &str) -> (Arc<dyn HrefSigner>, String) {
    let asset = &items.features()[0]["assets"][key];
    let id = asset[SIGNER_FIELD]
        .as_str()
        .expect("a signed asset names its signer");
    let signer = signer::lookup(id).expect("the sign node registered its signer");
    (signer, asset["href"].as_str().unwrap().to_string())
}

#[test]
fn signed_assets_name_a_registered_signer() {
    let s = token_server(3600);
    let node = build(
        &SignKind::with_subscription_key(None),
        &format!("provider = 'planetary-computer'\nsas_url = '{}'", sas(&s)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = node
        .run(&ctx(dir.path()), &inputs(items(3, 2, "c")))
        .unwrap();
    let id = format!("sas:{}", sas(&s));
    for f in signed(&out).features() {
        for (k, a) in f["assets"].as_object().unwrap() {
            if k == "preview" {
                assert!(
                    a.get(SIGNER_FIELD).is_none(),
                    "unsigned assets name no signer"
                );
            } else {
                assert_eq!(a[SIGNER_FIELD], id.as_str(), "{a}");
            }
        }
    }
    assert!(signer::lookup(&id).is_some());

    // provider = none signs nothing and names no signer
    let node = build(&SignKind::new(), "provider = 'none'").unwrap();
    let out = node
        .run(&ctx(dir.path()), &inputs(items(1, 1, "c")))
        .unwrap();
    assert!(signed(&out).features()[0]["assets"]["B00"]
        .get(SIGNER_FIELD)
        .is_none());
}

#[test]
fn the_registered_signer_renews_on_request_and_keeps_the_href_own_query() {
    let s = token_server(3600);
    let node = build(
        &SignKind::with_subscription_key(Some("my-key".into())),
        &format!("provider = 'planetary-computer'\nsas_url = '{}'", sas(&s)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut input = items(1, 1, "c");
    let own = "https://sentinel2l2a01.blob.core.windows.net/c/tile0/B00.tif?version=3";
    input.features_mut().unwrap()[0]["assets"]["B00"]["href"] = json!(own);
    let out = node.run(&ctx(dir.path()), &inputs(input)).unwrap();
    let (signer, href) = signer_of(signed(&out), "B00");
    assert_eq!(href, format!("{own}&{}", token(0)));
    assert_eq!(s.requests().len(), 1);

    // a held token with time left is reused
    assert_eq!(signer.sign(&href, false).unwrap(), href);
    assert_eq!(s.requests().len(), 1);

    // the server refused it: a new token replaces the old one, the href's own query stays
    let renewed = signer.sign(&href, true).unwrap();
    assert_eq!(s.requests().len(), 2, "the token server is asked again");
    assert_eq!(renewed, format!("{own}&{}", token(1)));
    assert!(
        !renewed.contains("SECRETSIGNATURE%3D"),
        "the old token is gone: {renewed}"
    );
    assert_eq!(
        s.requests()[1].header("Ocp-Apim-Subscription-Key"),
        Some("my-key"),
        "the node's subscription key is shared"
    );

    // another reader refused with the old token gets the renewed one, without a third fetch
    assert_eq!(signer.sign(&href, true).unwrap(), renewed);
    assert_eq!(s.requests().len(), 2);
    // and an unsigned href of the same container is signed with it
    assert_eq!(signer.sign(own, false).unwrap(), renewed);
    // hrefs that need no signing come back as they were
    let public = "https://example.com/x.tif?a=1";
    assert_eq!(signer.sign(public, true).unwrap(), public);
    assert_eq!(s.requests().len(), 2);
}

#[test]
fn the_registered_signer_refreshes_a_token_about_to_expire() {
    let s = token_server(30);
    let node = build(
        &SignKind::with_subscription_key(None),
        &format!("provider = 'planetary-computer'\nsas_url = '{}'", sas(&s)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = node
        .run(&ctx(dir.path()), &inputs(items(1, 1, "c")))
        .unwrap();
    let (signer, href) = signer_of(signed(&out), "B00");
    assert!(href.ends_with(&token(0)), "{href}");
    assert_eq!(s.requests().len(), 1);
    let fresh = signer.sign(&href, false).unwrap();
    assert_eq!(
        s.requests().len(),
        2,
        "30 s left is less than the 60 s margin: a new token without being asked to renew"
    );
    assert_eq!(
        fresh,
        "https://sentinel2l2a01.blob.core.windows.net/c/tile0/B00.tif?".to_string() + &token(1)
    );
}

#[test]
fn a_signer_that_cannot_renew_says_why_without_the_token() {
    // the first token is granted, every later request refused
    let s = Server::start(|r, n| {
        if n == 0 && r.path().starts_with("/api/sas/v1/token/") {
            Reply::json(
                200,
                &json!({"msft:expiry": "2099-01-01T00:00:00Z", "token": TOKEN}),
            )
        } else {
            Reply::text(403, &format!("denied: {{\"token\": \"{TOKEN}\"}}"))
        }
    });
    let node = build(
        &SignKind::with_subscription_key(None),
        &format!("provider = 'planetary-computer'\nsas_url = '{}'", sas(&s)),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = node
        .run(&ctx(dir.path()), &inputs(items(1, 1, "c")))
        .unwrap();
    let (signer, href) = signer_of(signed(&out), "B00");
    let e = signer.sign(&href, true).unwrap_err();
    assert!(
        e.contains("HTTP 403") && e.contains(&sas(&s)) && e.contains("sentinel2l2a01/c"),
        "{e}"
    );
    assert!(
        !e.contains("SECRETSIGNATURE") && !e.contains("sp=rl"),
        "{e}"
    );
}
