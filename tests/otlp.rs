//! Trace export: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, `lepton` sends each request's span as
//! OTLP/HTTP protobuf to `<endpoint>/v1/traces`; received here by a minimal collector on
//! loopback that records what arrives.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// One POST the collector received: its path, content type and body.
type Export = (String, String, Vec<u8>);

/// Accept connections on `listener` forever, answering every request with 200 and recording it.
fn collect(listener: TcpListener, seen: Arc<Mutex<Vec<Export>>>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let (mut length, mut content_type) = (0usize, String::new());
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 {
                        return;
                    }
                    let header = header.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':') {
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            "content-type" => content_type = value.trim().to_string(),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                seen.lock().expect("lock").push((path, content_type, body));
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        });
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn request_spans_are_exported_over_otlp_http() {
    require_guest_builds();
    let collector = TcpListener::bind("127.0.0.1:0").expect("collector");
    let endpoint = format!("http://{}", collector.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let seen = seen.clone();
        move || collect(collector, seen)
    });

    let registry = TestRegistry::start().expect("registry");
    let reference = format!("{}/hello-p2:v1", registry.addr());
    push("hello-p2", &reference);
    let tmp = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let manifest = one_app_manifest(tmp.path(), "traced-shop", &reference, &addr);
    let endpoint_env = std::ffi::OsString::from(&endpoint);
    let delay = std::ffi::OsString::from("100");
    let mut lepton = Lepton::start_with_env(
        &manifest,
        &tmp.path().join("cache"),
        &tmp.path().join("logs"),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint_env),
            ("OTEL_BSP_SCHEDULE_DELAY", &delay),
        ],
    );
    lepton.wait_stdout_contains("1 of 1 apps serving");
    lepton.wait_healthy(&[&addr]);
    assert_eq!(get(&addr, "/traced-path").expect("request").status, 200);

    let start = Instant::now();
    let export = loop {
        let found = seen
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, _, body)| contains(body, b"/traced-path"))
            .cloned();
        if let Some(export) = found {
            break export;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no span for /traced-path reached the collector; got {} exports\n{}",
            seen.lock().expect("lock").len(),
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("span exported {:?} after the request", start.elapsed());
    let (path, content_type, body) = export;
    assert_eq!(path, "/v1/traces");
    assert_eq!(content_type, "application/x-protobuf");
    // Protobuf strings are stored as they are: the span name, the app and the status are in it.
    for needle in [
        &b"request"[..],
        b"traced-shop",
        b"http.response.status_code",
        b"lepton",
    ] {
        assert!(
            contains(&body, needle),
            "{:?} missing from the exported span",
            String::from_utf8_lossy(needle)
        );
    }
}
