//! The HTTP client's cap on response bodies, against servers that send too much.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flow_core::NodeError;
use flow_nodes_stac::http::{HttpClient, HttpConfig, Request, DEFAULT_MAX_RESPONSE_BYTES};
use flow_nodes_stac::StacError;

/// A server on 127.0.0.1 that reads each request's head and hands the connection to `answer`.
/// Returns its URL and a count of requests.
fn raw_server(answer: impl Fn(TcpStream) + Send + Sync + 'static) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let (c, answer) = (count.clone(), Arc::new(answer));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                answer(stream);
            });
        }
    });
    (url, count)
}

/// An endless chunked JSON body; `closed` is set once the client hangs up.
fn endless(mut s: TcpStream, closed: &AtomicBool) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/geo+json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    let mut ok = s.write_all(head.as_bytes()).is_ok() && s.write_all(b"5\r\n{\"a\":\r\n").is_ok();
    while ok {
        ok = s.write_all(chunk.as_bytes()).is_ok();
    }
    closed.store(true, Ordering::SeqCst);
}

fn client(cap: u64) -> HttpClient {
    HttpClient::new(HttpConfig {
        retries: 2,
        timeout: Duration::from_secs(20),
        max_response_bytes: cap,
    })
    .unwrap()
}

/// Waits up to 10 s for `flag`.
fn eventually(flag: &AtomicBool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn an_endless_body_stops_at_the_cap_and_is_not_retried() {
    let closed = Arc::new(AtomicBool::new(false));
    let c = closed.clone();
    let (url, count) = raw_server(move |s| endless(s, &c));
    let e = client(1 << 20)
        .send(&Request::get(format!("{url}/search")), &|| false)
        .unwrap_err();
    assert!(
        matches!(
            e,
            StacError::TooLarge {
                limit: 1_048_576,
                announced: None,
                ..
            }
        ),
        "{e:?}"
    );
    let e = NodeError::from(e);
    assert_eq!(e.exit_code().code(), 4);
    let m = e.to_string();
    assert!(
        m.contains(&format!("{url}/search")) && m.contains("larger than the 1 MiB limit"),
        "{m}"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "an oversized body is not retried"
    );
    assert!(
        eventually(&closed),
        "the client hung up instead of reading on"
    );
}

#[test]
fn an_announced_length_over_the_cap_fails_before_reading() {
    // announces a terabyte, sends a few bytes, then stalls longer than the client's timeout
    let (url, count) = raw_server(|mut s| {
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{\"a\":",
        );
        std::thread::sleep(Duration::from_secs(60));
    });
    let e = client(DEFAULT_MAX_RESPONSE_BYTES)
        .send(&Request::get(format!("{url}/search")), &|| false)
        .unwrap_err();
    let m = NodeError::from(e).to_string();
    assert!(
        m.contains("larger than the 64 MiB limit") && m.contains("Content-Length: 1000000000000"),
        "{m}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[test]
fn a_body_at_the_cap_is_read_whole() {
    let body = format!("\"{}\"", "x".repeat(998));
    assert_eq!(body.len(), 1000);
    let (url, _) = raw_server(move |mut s| {
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let r = client(1000)
        .send(&Request::get(format!("{url}/x")), &|| false)
        .unwrap();
    assert_eq!(r.body.len(), 1000);
    let e = client(999)
        .send(&Request::get(format!("{url}/x")), &|| false)
        .unwrap_err();
    assert!(e.to_string().contains("999-byte limit"), "{e}");
}
