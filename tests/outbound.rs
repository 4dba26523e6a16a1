//! Outbound networking end to end: the `outbound-p2` (spin-sdk 5.2, wasi:http 0.2) and
//! `outbound-p3` (spin-sdk 7, wasi:http 0.3) guests, pushed to a real registry and served by the
//! `lepton` binary, make outbound HTTP requests under different
//! `allowed_outbound_hosts`, to real HTTP servers this test runs on loopback, to the app itself,
//! and to another component by service chaining. Every case asserts the exact body the guest
//! relays or the exact error it sees.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// A plain HTTP/1.1 server on a free loopback port that answers every request with
/// `upstream <port>: <method> <path>\n` and records the paths it saw.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve_one(stream, port, &log));
            }
        });
        Self { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn serve_one(stream: TcpStream, port: u16, log: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("?").to_string();
    let path = parts.next().unwrap_or("?").to_string();
    if let Ok(mut seen) = log.lock() {
        seen.push(path.clone());
    }
    let body = format!("upstream {port}: {method} {path}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = &stream;
    let _ = stream.write_all(response.as_bytes());
}

/// Ask component route `prefix` of the app at `addr` to GET `url`; returns (status, body).
fn fetch(addr: &str, prefix: &str, url: &str) -> (u16, String) {
    let res = request(
        addr,
        "GET",
        &format!("{prefix}/fetch"),
        &[("x-url", url)],
        b"",
    )
    .unwrap_or_else(|e| panic!("GET {prefix}/fetch ({url}): {e}"));
    (res.status, res.text())
}

const DENIED: (u16, &str) = (502, "error: ErrorCode::HttpRequestDenied\n");

fn denied() -> (u16, String) {
    (DENIED.0, DENIED.1.to_string())
}

/// A raw HTTP request with a chosen `Host` header; returns the whole response text.
fn raw_request_with_host(addr: &str, path: &str, host: &str, extra: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    // HTTP/1.0, so the response body is delimited by the close rather than chunked.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{extra}\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out
}

/// A spin.toml (in `dir`) for one component using the built guest with `hosts` as its
/// `allowed_outbound_hosts`.
fn single_component_toml(dir: &Path, name: &str, hosts: &str) -> std::path::PathBuf {
    let wasm = repo_root().join("apps/target/wasm32-wasip2/release/outbound_p2.wasm");
    let app_dir = dir.join(name);
    std::fs::create_dir_all(&app_dir).expect("app dir");
    let toml = format!(
        r#"spin_manifest_version = 2
[application]
name = "{name}"
[[trigger.http]]
route = "/..."
component = "web"
[component.web]
source = "{}"
allowed_outbound_hosts = {hosts}
"#,
        wasm.display()
    );
    let path = app_dir.join("spin.toml");
    std::fs::write(&path, toml).expect("write spin.toml");
    path
}

#[test]
fn outbound_http_policy_self_requests_and_chaining() {
    require_guest_builds();
    for name in [
        "outbound_p2.wasm",
        "outbound_p3.wasm",
        "outbound_legacy.wasm",
    ] {
        let wasm = repo_root()
            .join("apps/target/wasm32-wasip2/release")
            .join(name);
        assert!(
            wasm.is_file(),
            "{} is missing: run scripts/build-apps.sh",
            wasm.display()
        );
    }
    let work = tempfile::tempdir().expect("tempdir");
    let mut registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    push("outbound-p2", &format!("{reg}/outbound-p2:v1"));
    push("outbound-p3", &format!("{reg}/outbound-p3:v1"));
    push("outbound-legacy", &format!("{reg}/outbound-legacy:v1"));
    let bad = single_component_toml(work.path(), "bad-hosts", r#"["https://example.com/api"]"#);
    let out = push_output(&bad, &format!("{reg}/bad-hosts:v1"), &[]);
    assert!(out.status.success(), "push bad-hosts: {out:?}");

    let upstream = Upstream::start();
    let other = Upstream::start();
    let app = free_addr();
    let app3 = free_addr();
    let legacy = free_addr();
    let blocked_app = free_addr();
    std::fs::write(
        work.path().join("runtime-config.toml"),
        "[outbound_networking]\nblock_networks = [\"127.0.0.0/8\"]\n",
    )
    .expect("write runtime config");
    let manifest = serde_json::json!({
        "apps": [
            {
                "reference": format!("{reg}/outbound-p2:v1"),
                "address": app,
                "state_dir": "state/outbound",
                "variables": { "upstream_port": upstream.port.to_string() },
            },
            {
                "reference": format!("{reg}/outbound-p3:v1"),
                "address": app3,
                "state_dir": "state/outbound-p3",
                "variables": { "upstream_port": upstream.port.to_string() },
            },
            {
                "reference": format!("{reg}/outbound-p2:v1"),
                "address": blocked_app,
                "state_dir": "state/outbound-blocked",
                "variables": { "upstream_port": upstream.port.to_string() },
                "runtime_config": "runtime-config.toml",
            },
            {
                "reference": format!("{reg}/outbound-legacy:v1"),
                "address": legacy,
                "state_dir": "state/outbound-legacy",
                "variables": { "upstream_port": upstream.port.to_string() },
            },
            {
                "reference": format!("{reg}/bad-hosts:v1"),
                "address": free_addr(),
                "state_dir": "state/bad",
            },
        ]
    });
    let manifest_path = work.path().join("lepton.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("write manifest");
    let mut lepton = Lepton::start(
        &manifest_path,
        &work.path().join("cache"),
        &work.path().join("logs"),
    );
    let started = lepton.wait_started();
    lepton.wait_healthy(&[&app, &app3, &blocked_app, &legacy]);
    let stdout = started.expect("lepton starts with one app failing");
    assert!(stdout.contains("4 of 5 apps serving"), "{stdout}");

    // An invalid entry refuses the app at load, naming app, component and entry.
    let stderr = lepton.stderr();
    assert!(
        stderr.contains("app `bad-hosts`, component `web`: allowed_outbound_hosts entry \"https://example.com/api\""),
        "load error names app, component and entry:\n{stderr}"
    );

    let u = upstream.port;
    let o = other.port;
    let up = |path: &str| format!("http://127.0.0.1:{u}{path}");

    // Allowed: an exact host with its port from the `{{ upstream_port }}` template; the body is
    // relayed exactly.
    assert_eq!(
        fetch(&app, "/front", &up("/hello?x=1")),
        (200, format!("200\nupstream {u}: GET /hello?x=1\n"))
    );
    assert_eq!(upstream.seen(), vec!["/hello?x=1".to_string()]);

    // Denied: another host name for the same server, the wrong port, the wrong scheme, and a
    // component without allowed_outbound_hosts. None of them reaches a server.
    assert_eq!(
        fetch(&app, "/front", &format!("http://localhost:{u}/x")),
        denied()
    );
    assert_eq!(
        fetch(&app, "/front", &format!("http://127.0.0.1:{o}/x")),
        denied()
    );
    assert_eq!(
        fetch(&app, "/front", &format!("https://127.0.0.1:{u}/x")),
        denied()
    );
    assert_eq!(fetch(&app, "/front", "http://example.invalid/x"), denied());
    assert_eq!(fetch(&app, "/none", &up("/x")), denied());
    assert_eq!(
        upstream.seen().len(),
        1,
        "denied requests never reach the upstream"
    );
    assert!(other.seen().is_empty());

    // Wildcard `http://*:*`: any host, any port.
    assert_eq!(
        fetch(&app, "/wild", &format!("http://127.0.0.1:{o}/w")),
        (200, format!("200\nupstream {o}: GET /w\n"))
    );
    assert_eq!(
        fetch(&app, "/wild", &format!("http://localhost:{u}/named")),
        (200, format!("200\nupstream {u}: GET /named\n"))
    );
    assert_eq!(
        fetch(&app, "/wild", &format!("https://127.0.0.1:{u}/x")),
        denied()
    );

    // Self requests go to the app's own address: a relative URL and `self.alt`.
    let front_whoami = "200\nI am front\npath-info: /whoami\nmatched-route: /front/...\n";
    assert_eq!(
        fetch(&app, "/front", "/front/whoami"),
        (200, front_whoami.into())
    );
    assert_eq!(
        fetch(&app, "/front", "http://self.alt/front/whoami"),
        (200, front_whoami.into())
    );
    assert_eq!(
        fetch(&app, "/wild", "/selfonly/whoami"),
        (
            200,
            "200\nI am selfonly\npath-info: /whoami\nmatched-route: /selfonly/...\n".into()
        ),
        "`*` allows self requests"
    );
    assert_eq!(fetch(&app, "/none", "/front/whoami"), denied());
    // An `http::Request` built from a relative URI has no authority at all: still a self request.
    let res = request(
        &app,
        "GET",
        "/front/fetch",
        &[("x-url", "/front/whoami"), ("x-builder", "http")],
        b"",
    )
    .expect("GET /front/fetch");
    assert_eq!((res.status, res.text()), (200, front_whoami.to_string()));
    let res = request(
        &app,
        "GET",
        "/none/fetch",
        &[("x-url", "/front/whoami"), ("x-builder", "http")],
        b"",
    )
    .expect("GET /none/fetch");
    assert_eq!((res.status, res.text()), denied());

    // Service chaining: served in-process by `back` (which has no public route), the path being
    // the trailing wildcard.
    let back_whoami = "200\nI am back\npath-info: /whoami\nmatched-route: /...\n";
    assert_eq!(
        fetch(&app, "/front", "http://back.spin.internal/whoami"),
        (200, back_whoami.into())
    );
    assert_eq!(
        fetch(&app, "/wild", "http://back.spin.internal/whoami"),
        (200, back_whoami.into()),
        "`*` allows chaining"
    );
    assert_eq!(
        fetch(&app, "/selfonly", "http://back.spin.internal/whoami"),
        denied()
    );
    assert_eq!(
        fetch(&app, "/front", "http://wild.spin.internal/whoami"),
        denied()
    );
    assert_eq!(
        fetch(&app, "/wild", "http://nosuch.spin.internal/"),
        (502, "error: ErrorCode::DestinationNotFound\n".into())
    );
    let private = get(&app, "/whoami").expect("GET /whoami");
    assert_eq!(private.status, 404, "`back` has no public route");

    // CVE-2024-32980: a component allowed only `self` cannot reach another host by sending its
    // request with a forged Host header: the self request still goes to the app itself.
    let before = upstream.seen().len();
    let response = raw_request_with_host(
        &app,
        "/selfonly/fetch",
        &format!("127.0.0.1:{u}"),
        "x-url: /selfonly/whoami\r\n",
    );
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "self request with a forged Host header:\n{response}"
    );
    assert!(
        response
            .ends_with("200\nI am selfonly\npath-info: /whoami\nmatched-route: /selfonly/...\n"),
        "the self request reached the app, not the Host header's server:\n{response}"
    );
    assert_eq!(fetch(&app, "/selfonly", &up("/x")), denied());
    assert_eq!(
        upstream.seen().len(),
        before,
        "the upstream was never contacted"
    );

    // The wasi:http@0.3 client (spin-sdk 7) obeys the same policy.
    let before = upstream.seen().len();
    assert_eq!(
        fetch(&app3, "", &up("/p3?q=1")),
        (200, format!("200\nupstream {u}: GET /p3?q=1\n"))
    );
    assert_eq!(
        fetch(&app3, "", &format!("http://127.0.0.1:{o}/x")),
        denied()
    );
    assert_eq!(
        fetch(&app3, "", &format!("http://localhost:{u}/x")),
        denied()
    );
    assert_eq!(
        fetch(&app3, "", "http://self.alt/whoami"),
        (200, "200\nI am front3 (p3)\n".into())
    );
    assert_eq!(
        fetch(&app3, "", "http://back.spin.internal/whoami"),
        denied()
    );
    // Relative URLs over wasi:http 0.3 are self requests too: no authority at all (`/whoami`),
    // or an empty host with a port; only a component allowed `self` may send them.
    let front3_whoami = (200, "200\nI am front3 (p3)\n".to_string());
    assert_eq!(fetch(&app3, "", "/whoami"), front3_whoami);
    assert_eq!(fetch(&app3, "", "/whoami?x=1"), front3_whoami);
    assert_eq!(fetch(&app3, "", "http://:80/whoami"), front3_whoami);
    assert_eq!(fetch(&app3, "/none3", "/whoami"), denied());
    assert_eq!(fetch(&app3, "/none3", "http://:80/whoami"), denied());
    assert_eq!(upstream.seen().len(), before + 1);

    // wasi:sockets TCP is checked as `tcp://<ip>:<port>`: only the one allowed port connects;
    // a component without allowed hosts has no network at all.
    let tcp = |prefix: &str, addr: &str| {
        let res = request(
            &app,
            "GET",
            &format!("{prefix}/tcp"),
            &[("x-addr", addr)],
            b"",
        )
        .unwrap_or_else(|e| panic!("GET {prefix}/tcp ({addr}): {e}"));
        (res.status, res.text())
    };
    let before = upstream.seen().len();
    let other_before = other.seen().len();
    let (status, raw) = tcp("/sock", &format!("127.0.0.1:{u}"));
    assert_eq!(status, 200, "{raw}");
    assert!(
        raw.starts_with("HTTP/1.1 200 OK\r\n")
            && raw.ends_with(&format!("\r\n\r\nupstream {u}: GET /tcp\n")),
        "raw TCP exchange relayed:\n{raw}"
    );
    assert_eq!(upstream.seen().len(), before + 1);
    let access_denied = (502, "tcp error: access-denied\n".to_string());
    assert_eq!(tcp("/sock", &format!("127.0.0.1:{o}")), access_denied);
    assert_eq!(
        tcp("/front", &format!("127.0.0.1:{u}")),
        access_denied,
        "http:// entries do not allow tcp"
    );
    assert_eq!(tcp("/none", &format!("127.0.0.1:{u}")), access_denied);
    assert_eq!(upstream.seen().len(), before + 1);
    assert_eq!(
        other.seen().len(),
        other_before,
        "the denied port was never connected"
    );

    // Spin 1.x's `fermyon:spin/http` send-request: same policy, Spin's `http-error` values.
    let before = upstream.seen().len();
    assert_eq!(
        fetch(&legacy, "", &up("/legacy?a=b")),
        (200, format!("200\nupstream {u}: GET /legacy?a=b\n"))
    );
    let not_allowed = (502, "error: destination-not-allowed\n".to_string());
    assert_eq!(
        fetch(&legacy, "", &format!("http://127.0.0.1:{o}/x")),
        not_allowed
    );
    assert_eq!(
        fetch(&legacy, "", "http://back.spin.internal/whoami"),
        not_allowed
    );
    assert_eq!(
        fetch(&legacy, "", "not a url"),
        (502, "error: invalid-url\n".to_string())
    );
    assert_eq!(upstream.seen().len(), before + 1);

    // Runtime-config `block_networks` applies after the allow check: allowed, but 127.0.0.0/8 is
    // blocked, by IP literal and by a name resolving into it. Self requests and chaining stay
    // in-app and are unaffected.
    let before = upstream.seen().len();
    let prohibited = (
        502,
        "error: ErrorCode::DestinationIpProhibited\n".to_string(),
    );
    assert_eq!(fetch(&blocked_app, "/front", &up("/b")), prohibited);
    assert_eq!(
        fetch(&blocked_app, "/wild", &format!("http://localhost:{u}/b")),
        prohibited
    );
    assert_eq!(
        fetch(&blocked_app, "/front", "http://example.invalid/"),
        denied()
    );
    assert_eq!(
        fetch(&blocked_app, "/front", "http://back.spin.internal/whoami"),
        (200, back_whoami.into())
    );
    assert_eq!(
        upstream.seen().len(),
        before,
        "blocked requests never reach the upstream"
    );

    drop(lepton);
    registry.stop();
}
