//! The shared cache on S3 (`--cache s3://bucket/prefix`) against moto's S3 server on 127.0.0.1.
//!
//! scripts/test starts the server and puts its URL in FLOW_TEST_S3_ENDPOINT (with
//! AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION). Without the variable these tests
//! print a line and pass, unless FLOW_REQUIRE_S3=1. Each test makes its own bucket; the bucket
//! is read and written behind flow's back with curl's own SigV4 signing.
//!
//! The runs read one scene written by `flow fixture` into a shared directory (as runs on a
//! cluster read shared inputs): with the builtin scene, each run would materialize it into its
//! own cache directory, and the search node, which records the files it read, would be
//! recomputed by a run whose files are elsewhere.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{flow, node_statuses, output, run_report, write_scene};

const RECIPE: &str = "recipes/timberlea_kmeans.toml";

/// The endpoint, or None (after saying so) when the tests run without a server.
pub fn endpoint() -> Option<String> {
    match std::env::var("FLOW_TEST_S3_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_string()),
        _ => {
            if std::env::var("FLOW_REQUIRE_S3").as_deref() == Ok("1") {
                panic!(
                    "FLOW_REQUIRE_S3=1 but FLOW_TEST_S3_ENDPOINT is not set (scripts/test sets it)"
                );
            }
            println!("skipped: FLOW_TEST_S3_ENDPOINT is not set (scripts/test sets it)");
            None
        }
    }
}

/// A bucket on the test server.
pub struct Bucket {
    pub endpoint: String,
    name: String,
}

impl Bucket {
    /// A new, empty bucket with a name no other test uses.
    pub fn create(endpoint: &str) -> Bucket {
        let bucket = Bucket::unique(endpoint);
        let status = curl(&["-X", "PUT", &bucket.http("")]);
        assert!(status.0.starts_with('2'), "creating a bucket: {status:?}");
        bucket
    }

    /// A bucket name that does not exist.
    fn unique(endpoint: &str) -> Bucket {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Bucket {
            endpoint: endpoint.to_string(),
            name: format!(
                "flow-test-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    fn http(&self, key: &str) -> String {
        if key.is_empty() {
            format!("{}/{}", self.endpoint, self.name)
        } else {
            format!("{}/{}/{key}", self.endpoint, self.name)
        }
    }

    /// The `--cache` URL for prefix `p`.
    pub fn url(&self) -> String {
        format!("s3://{}/p", self.name)
    }

    /// Every key in the bucket.
    pub fn keys(&self) -> Vec<String> {
        let (status, body) = curl(&[&format!("{}?list-type=2&max-keys=1000", self.http(""))]);
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(status.starts_with('2'), "listing: {status} {body}");
        assert!(
            !body.contains("<IsTruncated>true"),
            "one page holds every key"
        );
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(String::from)
            .collect()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        let (status, body) = curl(&[&self.http(key)]);
        assert!(status.starts_with('2'), "GET {key}: {status}");
        body
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("body");
        std::fs::write(&file, bytes).unwrap();
        let (status, _) = curl(&[
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", file.display()),
            &self.http(key),
        ]);
        assert!(status.starts_with('2'), "PUT {key}: {status}");
    }
}

/// Runs curl with `args`, signing the request with the AWS_* credentials of the environment
/// (SigV4, as S3 clients do); returns the HTTP status and the body.
fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let region = var("AWS_REGION", "us-east-1");
    let user = format!(
        "{}:{}",
        var("AWS_ACCESS_KEY_ID", "test"),
        var("AWS_SECRET_ACCESS_KEY", "test")
    );
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args([
            "--aws-sigv4",
            &format!("aws:amz:{region}:s3"),
            "--user",
            &user,
        ])
        .args(args)
        .output()
        .expect("curl runs");
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[split..]).trim().to_string();
    body.truncate(split);
    (status, body)
}

/// `flow run` of the recipe on the shared scene, with local cache `cache`, the remote `bucket`
/// and output directory `out`.
fn run(cache: &Path, bucket: &Bucket, scene: &Path, out: &Path) -> Command {
    let mut c = flow(cache);
    c.env("AWS_ENDPOINT_URL", &bucket.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .args(["run", RECIPE, "--profile", "offline", "--quiet", "--set"])
        .arg(format!("catalog={}", scene.join("items.json").display()))
        .args(["--cache", &bucket.url(), "--out"])
        .arg(out);
    c
}

/// The scene, written once per test into its own directory.
fn scene() -> tempfile::TempDir {
    let (cache, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_scene(cache.path(), dir.path());
    dir
}

fn classes(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("timberlea_classes.tif")).unwrap()
}

/// Checks that the bucket holds only whole entries under `p/objects/ab/<key>/`: no other
/// names, every manifest's files present and matching it, every file listed by a manifest.
/// Returns the number of entries.
fn assert_whole_entries(bucket: &Bucket) -> usize {
    let mut entries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in bucket.keys() {
        let parts: Vec<&str> = key.split('/').collect();
        let [p, objects, shard, hex, file] = parts[..] else {
            panic!("unexpected object {key}");
        };
        assert!(
            p == "p"
                && objects == "objects"
                && hex.len() == 64
                && hex.chars().all(|c| c.is_ascii_hexdigit())
                && hex.starts_with(shard)
                && shard.len() == 2
                && (file == "value.json" || file == "manifest.json" || file.ends_with(".npy")),
            "unexpected object {key}"
        );
        entries
            .entry(format!("p/objects/{shard}/{hex}"))
            .or_default()
            .push(file.to_string());
    }
    for (dir, files) in &entries {
        let manifest: serde_json::Value =
            serde_json::from_slice(&bucket.get(&format!("{dir}/manifest.json"))).unwrap();
        let listed: Vec<&serde_json::Value> =
            manifest["files"].as_array().unwrap().iter().collect();
        assert_eq!(files.len(), listed.len() + 1, "{dir}: {files:?}");
        for f in listed {
            let name = f["name"].as_str().unwrap();
            let bytes = bucket.get(&format!("{dir}/{name}"));
            assert_eq!(
                blake3::hash(&bytes).to_hex().as_str(),
                f["blake3"].as_str().unwrap(),
                "{dir}/{name}"
            );
            assert_eq!(
                bytes.len() as u64,
                f["size"].as_u64().unwrap(),
                "{dir}/{name}"
            );
        }
    }
    entries.len()
}

#[test]
fn a_second_machine_loads_everything_from_the_bucket() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let bucket = Bucket::create(&endpoint);
    let scene = scene();
    let (first_cache, first_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, _, stderr) = output(&mut run(
        first_cache.path(),
        &bucket,
        scene.path(),
        first_out.path(),
    ));
    assert_eq!(code, 0, "{stderr}");
    let entries = assert_whole_entries(&bucket);
    assert!(entries >= 8, "{entries} entries");

    // Another empty cache directory, another output directory: only the writes run (their
    // files are not in the new directory yet), every other node comes from the bucket.
    let (cache, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, _, stderr) = output(&mut run(cache.path(), &bucket, scene.path(), out.path()));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let report = run_report(out.path());
    for node in report["nodes"].as_array().unwrap() {
        let status = node["status"].as_str().unwrap();
        if node["kind"] == "write" {
            assert_eq!(status, "computed", "{node}");
        } else {
            assert!(status == "cached" || status == "skipped", "{node}");
        }
    }
    assert!(
        node_statuses(out.path())
            .iter()
            .any(|(id, s)| id == "classes" && s == "cached"),
        "the labels were loaded"
    );
    for file in [
        "timberlea_classes.tif",
        "timberlea_classes.png",
        "timberlea_model.json",
    ] {
        assert!(
            std::fs::read(first_out.path().join(file)).unwrap()
                == std::fs::read(out.path().join(file)).unwrap(),
            "{file} differs"
        );
    }
    // What was loaded is now in the local copy too.
    assert!(
        std::fs::read_dir(cache.path().join("objects"))
            .unwrap()
            .count()
            > 0
    );
    assert_eq!(assert_whole_entries(&bucket), entries);
}

#[test]
fn concurrent_runs_sharing_a_bucket_leave_one_object_per_file() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let bucket = Bucket::create(&endpoint);
    let scene = scene();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let children: Vec<_> = [(0, 1), (2, 3)]
        .into_iter()
        .map(|(c, o)| {
            run(dirs[c].path(), &bucket, scene.path(), dirs[o].path())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        crate::support::assert_no_crash("flow run", out.status, &stderr);
        assert!(out.status.success(), "{stderr}");
    }
    assert!(classes(dirs[1].path()) == classes(dirs[3].path()));
    assert!(assert_whole_entries(&bucket) >= 8);
}

#[test]
fn a_corrupted_object_is_reported_recomputed_and_rewritten() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let bucket = Bucket::create(&endpoint);
    let scene = scene();
    let (first_cache, first_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, _, stderr) = output(&mut run(
        first_cache.path(),
        &bucket,
        scene.path(),
        first_out.path(),
    ));
    assert_eq!(code, 0, "{stderr}");

    // The class labels, which the writes of a new output directory read.
    let report = run_report(first_out.path());
    let key = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "classes")
        .and_then(|n| n["key"].as_str())
        .unwrap()
        .to_string();
    let object = format!("p/objects/{}/{key}/data.npy", &key[..2]);
    let good = bucket.get(&object);
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x5a;
    bucket.put(&object, &bad);

    let (cache, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, _, stderr) = output(&mut run(cache.path(), &bucket, scene.path(), out.path()));
    assert_eq!(code, 0, "{stderr}");
    let url = format!("s3://{}/{object}", bucket.name);
    assert!(
        stderr.contains("warning") && stderr.contains(&url) && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    assert!(
        node_statuses(out.path())
            .iter()
            .any(|(id, s)| id == "classes" && s == "computed"),
        "{:?}",
        node_statuses(out.path())
    );
    assert!(classes(out.path()) == classes(first_out.path()));
    // The bucket holds the right bytes again, and every entry verifies.
    assert!(bucket.get(&object) == good);
    assert_whole_entries(&bucket);
}

#[test]
fn a_missing_bucket_is_exit_5_naming_the_url() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let bucket = Bucket::unique(&endpoint);
    let (cache, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, _, stderr) = output(&mut run(
        cache.path(),
        &bucket,
        Path::new("/nonexistent"),
        out.path(),
    ));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains(&bucket.url()), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn an_unreachable_endpoint_is_exit_5_naming_the_url() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bucket = Bucket {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..Bucket::create(&endpoint)
    };
    let (cache, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, _, stderr) = output(&mut run(
        cache.path(),
        &bucket,
        Path::new("/nonexistent"),
        out.path(),
    ));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains(&bucket.url()), "{stderr}");
}
