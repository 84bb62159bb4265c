//! STAC over HTTP end to end, and Planetary Computer signing through the binary.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::{flow, output};

const AUG_03: &str = "S2B_MSIL2A_20210803T154909_R054_T18TWR_20210804T003227";

/// `(api url, scene dir)` from scripts/test, or None (after saying so).
fn served_scene() -> Option<(String, String)> {
    match (
        std::env::var("FLOW_TEST_STAC_API"),
        std::env::var("FLOW_TEST_SCENE_DIR"),
    ) {
        (Ok(api), Ok(dir)) => Some((api.trim_end_matches('/').to_string(), dir)),
        _ => {
            if std::env::var("FLOW_REQUIRE_STAC_API").as_deref() == Ok("1") {
                panic!("FLOW_REQUIRE_STAC_API=1 but FLOW_TEST_STAC_API / FLOW_TEST_SCENE_DIR are not set");
            }
            println!("skipped: FLOW_TEST_STAC_API is not set (scripts/test sets it)");
            None
        }
    }
}

fn read_f32(path: &Path) -> (Vec<u32>, [f64; 6], usize) {
    let ds = gdal::Dataset::open(path).unwrap();
    let (w, h) = ds.raster_size();
    let mut bits = Vec::new();
    for b in 1..=ds.raster_count() {
        let buf = ds
            .rasterband(b)
            .unwrap()
            .read_as::<f32>((0, 0), (w, h), (w, h), None)
            .unwrap();
        bits.extend(buf.data().iter().map(|v| v.to_bits()));
    }
    (bits, ds.geo_transform().unwrap(), ds.raster_count())
}

fn stack_recipe(catalog: &str) -> String {
    format!(
        r#"name = "http-stack"
[nodes.search]
kind = "stac-search"
catalog = "{catalog}"
collections = ["sentinel-2-l2a"]
ids = ["{AUG_03}"]

[nodes.sign]
kind = "sign"
input = "search"
provider = "none"

[nodes.stack]
kind = "stack"
input = "sign"
assets = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A"]
resolution = 10
bounds_latlon = [-73.9120245, 45.4263471, -73.883357, 45.4445361]

[nodes.save]
kind = "write"
input = "stack"
path = "stack.tif"
"#
    )
}

/// The offline scene's COGs served by a Range-capable HTTP server and found through the STAC API
/// stack to exactly the array that reading them from disk gives.
#[test]
fn cogs_over_http_through_the_stac_api_equal_the_disk_read() {
    let Some((api, scene)) = served_scene() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rasters = Vec::new();
    for (name, catalog) in [
        ("http", api.clone()),
        ("disk", format!("{scene}/items.json")),
    ] {
        let recipe = dir.path().join(format!("{name}.toml"));
        std::fs::write(&recipe, stack_recipe(&catalog)).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let cache = tempfile::tempdir().unwrap();
        let (code, _, stderr) = output(
            flow(cache.path())
                .arg("run")
                .arg(&recipe)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(code, 0, "{name}: {stderr}");
        rasters.push(read_f32(&out.join("stack.tif")));
    }
    assert_eq!(rasters[0].2, 12);
    assert_eq!(rasters[0].1, [585080.0, 10.0, 0.0, 5032950.0, 0.0, -10.0]);
    assert!(
        rasters[0] == rasters[1],
        "the HTTP read differs from the disk read"
    );
}

/// A token server shaped like Planetary Computer's SAS endpoint, answering token `n` to its n-th
/// request and counting requests and subscription-key headers.
struct TokenServer {
    url: String,
    requests: Arc<AtomicUsize>,
    keyed: Arc<AtomicUsize>,
}

fn token_server() -> TokenServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/sas/v1/token", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let keyed = Arc::new(AtomicUsize::new(0));
    let (r, k) = (requests.clone(), keyed.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|b| b > 0).unwrap_or(false) {
                if line
                    .to_ascii_lowercase()
                    .starts_with("ocp-apim-subscription-key:")
                {
                    k.fetch_add(1, Ordering::SeqCst);
                }
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let body = format!(
                r#"{{"msft:expiry": "2099-01-01T00:00:00Z", "token": "st=2021&se=2099&sp=rl&sv=2021&sr=c&skoid=x&sig=SECRET{n}"}}"#
            );
            let mut s = stream;
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
        }
    });
    TokenServer {
        url,
        requests,
        keyed,
    }
}

/// 100 assets on blob storage, in one container.
fn blob_catalog(path: &Path) {
    let assets: serde_json::Map<String, serde_json::Value> = (0..100)
        .map(|i| {
            let href = format!("https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/18/T/WR/2021/08/03/B{i:02}.tif");
            (format!("B{i:02}"), serde_json::json!({"href": href, "type": "image/tiff; application=geotiff"}))
        })
        .collect();
    let item = serde_json::json!({
        "type": "Feature", "stac_version": "1.0.0", "id": AUG_03, "collection": "sentinel-2-l2a",
        "geometry": {"type": "Point", "coordinates": [-73.9, 45.43]}, "bbox": [-73.9, 45.43, -73.9, 45.43],
        "properties": {"datetime": "2021-08-03T15:49:09Z"}, "links": [], "assets": assets,
    });
    std::fs::write(
        path,
        serde_json::json!({"type": "FeatureCollection", "features": [item]}).to_string(),
    )
    .unwrap();
}

#[test]
fn new_tokens_still_hit_the_cache_and_never_reach_logs_or_the_report() {
    let server = token_server();
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    blob_catalog(&dir.path().join("items.json"));
    let recipe = dir.path().join("sign.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"sign\"\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"items.json\"\n\
             [nodes.sign]\nkind = \"sign\"\ninput = \"search\"\nprovider = \"planetary-computer\"\nsas_url = \"{}\"\n\
             [nodes.save]\nkind = \"write\"\ninput = \"sign\"\npath = \"signed.json\"\n",
            server.url.trim_end_matches("/token").to_string() + "/token"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = || {
        output(
            flow(cache.path())
                .env("RUST_LOG", "debug")
                .env("PC_SDK_SUBSCRIPTION_KEY", "test-key")
                .arg("run")
                .arg(&recipe)
                .arg("--out")
                .arg(&out),
        )
    };

    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "100 assets in one container cost one token"
    );
    assert_eq!(
        server.keyed.load(Ordering::SeqCst),
        1,
        "the subscription key is sent"
    );
    let signed = std::fs::read_to_string(out.join("signed.json")).unwrap();
    assert_eq!(
        signed.matches("sig=SECRET1").count(),
        100,
        "every asset is signed"
    );
    let report = std::fs::read_to_string(out.join("run.json")).unwrap();
    for text in [&stdout, &stderr, &report] {
        assert!(!text.contains("sig="), "a token leaked:\n{text}");
    }

    // Tomorrow: the token server would hand out a new token, but nothing downstream of sign
    // recomputes, so no token is even asked for.
    let (code, stdout, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let status = |id: &str| {
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("save"), "cached");
    assert_eq!(status("sign"), "skipped");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert!(
        !stdout.contains("sig=")
            && !stderr.contains("sig=")
            && !report.to_string().contains("sig=")
    );

    // With the output gone, sign runs again with a new token and the cache key of `save` is
    // unchanged: it is recomputed only because its file is missing.
    std::fs::remove_file(out.join("signed.json")).unwrap();
    let (code, _, stderr) = run();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert!(std::fs::read_to_string(out.join("signed.json"))
        .unwrap()
        .contains("sig=SECRET2"));
    assert!(!stderr.contains("sig="), "{stderr}");
}

/// Live searches are cached for `ttl` seconds; `--refresh` asks the API again.
#[test]
fn live_search_is_cached_until_refresh_or_ttl() {
    let Some((api, _)) = served_scene() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("live.toml");
    let write = |ttl: u64| {
        std::fs::write(
            &recipe,
            format!("name = \"live\"\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"{api}\"\ncollections = [\"sentinel-2-l2a\"]\nids = [\"{AUG_03}\"]\nttl = {ttl}\n"),
        )
        .unwrap()
    };
    let status = |extra: &[&str]| {
        let out = dir.path().join("out");
        let (code, _, stderr) = output(
            flow(cache.path())
                .arg("run")
                .arg(&recipe)
                .args(extra)
                .arg("--out")
                .arg(&out),
        );
        assert_eq!(code, 0, "{stderr}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
        report["nodes"][0]["status"].as_str().unwrap().to_string()
    };
    write(3600);
    assert_eq!(status(&[]), "computed");
    assert_eq!(status(&[]), "cached");
    assert_eq!(status(&["--refresh"]), "computed");
    assert_eq!(status(&[]), "cached");
    // `ttl` is not part of the key: a shorter one reuses the entry until it has expired.
    write(0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(status(&[]), "computed");
}

/// A loopback server that reads each request's head and hands the connection to `answer`, with
/// the connection's index (0-based). Returns its URL.
fn raw_server(answer: impl Fn(std::net::TcpStream, usize) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let mut length = 0usize;
                while reader.read_line(&mut line).map(|b| b > 0).unwrap_or(false) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let mut body = vec![0u8; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                answer(stream, n);
            });
        }
    });
    url
}

fn search_recipe(dir: &Path, catalog: &str, extra: &str) -> std::path::PathBuf {
    let recipe = dir.join("search.toml");
    std::fs::write(
        &recipe,
        format!("name = \"search\"\n[nodes.search]\nkind = \"stac-search\"\ncatalog = \"{catalog}\"\n{extra}\n"),
    )
    .unwrap();
    recipe
}

fn run_search(recipe: &Path) -> (i32, String) {
    let cache = tempfile::tempdir().unwrap();
    let out = recipe.parent().unwrap().join("out");
    let (code, _, stderr) = output(
        flow(cache.path())
            .arg("run")
            .arg(recipe)
            .arg("--out")
            .arg(&out),
    );
    (code, stderr)
}

/// A STAC API whose answer never ends fails the run with exit 4 (a remote failure) once the
/// body passes the 64 MiB cap, naming the URL and the cap; the client hangs up instead of
/// reading on.
#[test]
fn an_endless_stac_response_fails_the_run_at_the_response_cap() {
    let hung_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = hung_up.clone();
    let api = raw_server(move |mut s, _| {
        let chunk = format!("{:x}\r\n{}\r\n", 256 * 1024, " ".repeat(256 * 1024));
        let mut ok = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/geo+json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n")
            .is_ok();
        while ok {
            ok = s.write_all(chunk.as_bytes()).is_ok();
        }
        h.store(true, Ordering::SeqCst);
    });
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_search(&search_recipe(dir.path(), &api, ""));
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(&format!("{api}/search"))
            && stderr.contains("larger than the 64 MiB limit"),
        "{stderr}"
    );
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !hung_up.load(Ordering::SeqCst) && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        hung_up.load(Ordering::SeqCst),
        "the server is still being read"
    );
}

fn reply(s: &mut std::net::TcpStream, status: &str, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/geo+json\r\nRetry-After: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Retries show on stderr at the default log level, each with its attempt number, the URL and
/// the status; a failure that outlasts them says how many attempts were made.
#[test]
fn retries_are_logged_and_counted() {
    let page = serde_json::json!({"type": "FeatureCollection", "features": [{
        "type": "Feature", "stac_version": "1.0.0", "id": "x", "collection": "c",
        "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}, "bbox": [0.0, 0.0, 0.0, 0.0],
        "properties": {"datetime": "2021-08-03T15:49:09Z"}, "links": [], "assets": {}
    }], "links": []})
    .to_string();
    let api = raw_server(move |mut s, n| {
        if n < 2 {
            reply(&mut s, "503 Service Unavailable", "busy");
        } else {
            reply(&mut s, "200 OK", &page);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_search(&search_recipe(dir.path(), &api, ""));
    assert_eq!(code, 0, "{stderr}");
    for n in [1, 2] {
        assert!(
            stderr.contains(&format!(
                "POST {api}/search: attempt {n} of 4 failed: HTTP 503: busy; retrying in 0.0 s"
            )),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("attempt 3 of 4"), "{stderr}");

    let api = raw_server(|mut s, _| reply(&mut s, "503 Service Unavailable", "down"));
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_search(&search_recipe(dir.path(), &api, "retries = 2"));
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("attempt 2 of 3 failed") && !stderr.contains("attempt 3 of 3 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{api}/search"))
            && stderr.contains("HTTP 503: down (gave up after 3 attempts)"),
        "{stderr}"
    );
}
