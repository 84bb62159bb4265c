//! A scripted HTTP/1.1 server on 127.0.0.1 that records every request, plus helpers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_core::{schema, Node, NodeKind, ParamError, Params, RunContext};
use serde_json::{json, Value};

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    /// The decoded query parameters.
    pub fn query(&self) -> Vec<(String, String)> {
        let url = url::Url::parse(&format!("http://x{}", self.target)).unwrap();
        url.query_pairs()
            .map(|(a, b)| (a.into_owned(), b.into_owned()))
            .collect()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub stall: Option<Duration>,
    /// Announce the full length but send only this many bytes, then close.
    pub cut_at: Option<usize>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/geo+json".into())],
            body: body.to_string().into_bytes(),
            stall: None,
            cut_at: None,
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
            stall: None,
            cut_at: None,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn stall(mut self, d: Duration) -> Reply {
        self.stall = Some(d);
        self
    }

    pub fn cut_at(mut self, n: usize) -> Reply {
        self.cut_at = Some(n);
        self
    }
}

type Handler = dyn Fn(&Recorded, usize) -> Reply + Send + Sync;

/// The server; it runs until the test process ends.
pub struct Server {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Answers request number `n` (0-based) with `handler(request, n)`.
    pub fn start(handler: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let recs = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (recs, handler) = (recs.clone(), handler.clone());
                std::thread::spawn(move || serve(stream, &recs, handler.as_ref()));
            }
        });
        Server { url, requests }
    }

    /// Answers the n-th request with `replies[n]`, repeating the last one.
    pub fn scripted(replies: Vec<Reply>) -> Server {
        Server::start(move |_, n| replies[n.min(replies.len() - 1)].clone())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, recs: &Mutex<Vec<Recorded>>, handler: &Handler) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let rec = Recorded {
        method,
        target,
        headers,
        body,
    };
    let n = {
        let mut r = recs.lock().unwrap();
        r.push(rec.clone());
        r.len() - 1
    };
    let reply = handler(&rec, n);
    if let Some(d) = reply.stall {
        std::thread::sleep(d);
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    let body_len = reply
        .cut_at
        .unwrap_or(reply.body.len())
        .min(reply.body.len());
    bytes.extend_from_slice(&reply.body[..body_len]);
    let _ = stream.write_all(&bytes);
    let _ = stream.flush();
}

/// A STAC item with a square footprint `[x0, y0]..[x1, y1]`.
pub fn item(id: &str, datetime: &str, cloud: f64, sq: [f64; 4]) -> Value {
    let [x0, y0, x1, y1] = sq;
    json!({
        "type": "Feature", "stac_version": "1.0.0", "id": id, "collection": "s2",
        "bbox": [x0, y0, x1, y1],
        "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "properties": {"datetime": datetime, "eo:cloud_cover": cloud},
        "assets": {"B04": {"href": format!("./{id}/B04.tif"), "type": "image/tiff"}},
        "links": []
    })
}

/// An ItemCollection page with an optional next link.
pub fn page(items: &[Value], next: Option<Value>) -> Value {
    let mut links = vec![];
    if let Some(n) = next {
        links.push(n);
    }
    json!({"type": "FeatureCollection", "features": items, "links": links})
}

/// Builds a node of `kind` from TOML, as the engine would (schema check, defaults, build).
pub fn build(kind: &dyn NodeKind, toml_src: &str) -> Result<Box<dyn Node>, ParamError> {
    let mut params: Params = toml::from_str(toml_src).expect("test TOML");
    let issues = schema::check(&kind.params(), &params);
    assert!(issues.is_empty(), "{issues:?}");
    schema::apply_defaults(&kind.params(), &mut params);
    kind.build(&params)
}

/// A context rooted in `dir`.
pub fn ctx(dir: &std::path::Path) -> RunContext {
    RunContext::new(
        "search",
        dir.join("out"),
        dir.to_path_buf(),
        dir.join("data"),
    )
}

/// The ids of an Items value.
pub fn ids(v: &flow_core::Value) -> Vec<String> {
    match v {
        flow_core::Value::Items(items) => items
            .features()
            .iter()
            .map(|f| f["id"].as_str().unwrap_or("?").to_string())
            .collect(),
        other => panic!("not items: {other:?}"),
    }
}
