//! tauon end to end: the real `tauon` binary watching a directory, a real registry, real
//! components built from `apps/`, checked over HTTP on loopback.
//!
//! `hello-p2` is pushed as `app:v1` and `hello-p3` as `app:v2`: both answer `/` with
//! `Hello from hello (p2|p3)`, so every response says which version served it.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

const V1_BODY: &str = "Hello from hello (p2)\n";
const V2_BODY: &str = "Hello from hello (p3)\n";
/// Bytes echoed back in the streamed-response check: more than loopback socket buffers hold.
const STREAM_LEN: usize = 24 << 20;

fn app_json(reference: &str, address: &str, state_dir: &str) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "reference": reference,
        "address": address,
        "state_dir": state_dir,
    }))
    .expect("json")
}

fn body(addr: &str) -> String {
    let res = get(addr, "/").unwrap_or_else(|e| panic!("GET http://{addr}/: {e}"));
    assert_eq!(res.status, 200, "GET http://{addr}/: {}", res.text());
    res.text()
}

/// Wait (bounded) until nothing accepts connections on `addr`.
fn wait_refused(addr: &str, tauon: &Tauon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections:\n{}",
            tauon.stderr()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn tauon_follows_the_directory() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let mut registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    let v1 = format!("{reg}/app:v1");
    let v2 = format!("{reg}/app:v2");
    let d1 = push_digest("hello-p2", &v1);
    let d2 = push_digest("hello-p3", &v2);
    let live = format!("{reg}/app:live");
    let live_p3 = push_digest("hello-p3", &live);

    let dir = work.path().join("apps");
    std::fs::create_dir_all(&dir).expect("dir");
    let cache = work.path().join("cache");
    let logs = work.path().join("logs");
    let (a_addr, b_addr, b2_addr, d_addr, h_addr) = (
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
        free_addr(),
    );

    // What is in the directory at start runs.
    std::fs::write(dir.join("a.json"), app_json(&v1, &a_addr, "state/a")).expect("write");
    let mut tauon = Tauon::start(&dir, &cache, &logs, &[]);
    tauon.wait_status("a.json on v1", |s| {
        status_digest(s, "a.json").as_deref() == Some(&d1)
    });
    assert_eq!(body(&a_addr), V1_BODY);
    assert!(
        dir.join("state/a").is_dir(),
        "state_dir is relative to the directory"
    );
    let log = tauon.stderr();
    assert!(
        log.contains("app started") && log.contains(&d1) && log.contains(&v1),
        "the start is logged with reference and digest:\n{log}"
    );

    // Hidden, temp and non-JSON files are not apps.
    for name in [".hidden.json", "notes.txt", "b.json~", "b.json.swp"] {
        std::fs::write(dir.join(name), app_json(&v1, &h_addr, "state/h")).expect("write");
    }

    // Add: a new file (written atomically) starts its app.
    write_atomically(&dir.join("b.json"), &app_json(&live, &b_addr, "state/b"));
    let status = tauon.wait_status("b.json on app:live (p3)", |s| {
        status_digest(s, "b.json").as_deref() == Some(&live_p3)
    });
    assert_eq!(body(&b_addr), V2_BODY);
    assert_eq!(status["apps"].as_array().map(Vec::len), Some(2), "{status}");
    assert!(
        TcpStream::connect(&h_addr).is_err(),
        "hidden/temp files started an app"
    );

    // Edit: v1 → v2 on the same address.
    write_atomically(&dir.join("a.json"), &app_json(&v2, &a_addr, "state/a"));
    tauon.wait_status("a.json on v2", |s| {
        status_digest(s, "a.json").as_deref() == Some(&d2)
    });
    assert_eq!(body(&a_addr), V2_BODY);
    assert!(tauon.stderr().contains("app replaced"));

    // An invalid file is reported with file and line; the app keeps its last good version.
    std::fs::write(dir.join("a.json"), "{\n  \"reference\": \"x\",\n  oops\n}").expect("write");
    let status = tauon.wait_status("a.json's parse error", |s| {
        status_error(s, "a.json").is_some()
    });
    let err = status_error(&status, "a.json").unwrap_or_default();
    assert!(
        err.contains("a.json: line 3"),
        "the error names the file and line: {err}"
    );
    assert_eq!(
        status_digest(&status, "a.json").as_deref(),
        Some(d2.as_str())
    );
    assert_eq!(body(&a_addr), V2_BODY);

    // A file written in two halves (truncate, write, pause, write): nothing acts on the half
    // file; the whole one is applied.
    let full = app_json(&v1, &a_addr, "state/a");
    let (first, second) = full.split_at(full.len() / 2);
    {
        let mut f = std::fs::File::create(dir.join("a.json")).expect("truncate");
        f.write_all(first.as_bytes()).expect("first half");
        f.flush().expect("flush");
        let previous = err.clone();
        tauon.wait_status("the half-written file reported", |s| {
            status_error(s, "a.json").is_some_and(|e| e != previous)
        });
        assert_eq!(body(&a_addr), V2_BODY, "the half file changed nothing");
        f.write_all(second.as_bytes()).expect("second half");
        f.flush().expect("flush");
    }
    tauon.wait_status("a.json back on v1", |s| {
        status_digest(s, "a.json").as_deref() == Some(&d1) && status_error(s, "a.json").is_none()
    });
    assert_eq!(body(&a_addr), V1_BODY);

    // Two files on one port: the later one is refused naming both files; the first serves.
    write_atomically(&dir.join("c.json"), &app_json(&v2, &a_addr, "state/c"));
    let status = tauon.wait_status("c.json refused", |s| status_error(s, "c.json").is_some());
    let err = status_error(&status, "c.json").unwrap_or_default();
    assert!(
        err.contains("c.json") && err.contains("a.json") && err.contains(&a_addr),
        "the refusal names both files and the address: {err}"
    );
    assert!(status_app(&status, "c.json").is_none());
    assert_eq!(body(&a_addr), V1_BODY);

    // Two files sharing a state_dir: refused too.
    write_atomically(&dir.join("s.json"), &app_json(&v2, &h_addr, "state/b"));
    let status = tauon.wait_status("s.json refused", |s| status_error(s, "s.json").is_some());
    let err = status_error(&status, "s.json").unwrap_or_default();
    assert!(err.contains("state_dir") && err.contains("b.json"), "{err}");
    std::fs::remove_file(dir.join("s.json")).expect("rm s.json");

    // A reference that does not exist: reported; nothing listens; the others serve.
    write_atomically(
        &dir.join("d.json"),
        &app_json(&format!("{reg}/app:nope"), &d_addr, "state/d"),
    );
    let status = tauon.wait_status("d.json failed", |s| status_error(s, "d.json").is_some());
    let err = status_error(&status, "d.json").unwrap_or_default();
    assert!(err.contains("app:nope"), "{err}");
    assert!(TcpStream::connect(&d_addr).is_err());
    assert_eq!(body(&a_addr), V1_BODY);
    assert_eq!(body(&b_addr), V2_BODY);

    // Rename: the app keeps serving under its new file.
    std::fs::rename(dir.join("a.json"), dir.join("e.json")).expect("rename");
    tauon.wait_status("a.json renamed to e.json", |s| {
        status_app(s, "a.json").is_none()
            && status_app(s, "e.json").is_some_and(|a| a["name"] == "e" && a["digest"] == d1)
    });
    assert_eq!(body(&a_addr), V1_BODY);

    // Delete: only its app stops. c.json, refused while e.json held the address, now starts.
    std::fs::remove_file(dir.join("e.json")).expect("rm e.json");
    let status = tauon.wait_status("c.json started in e.json's place", |s| {
        status_app(s, "e.json").is_none() && status_digest(s, "c.json").as_deref() == Some(&d2)
    });
    assert!(status_error(&status, "c.json").is_none(), "{status}");
    assert_eq!(body(&a_addr), V2_BODY);
    assert_eq!(body(&b_addr), V2_BODY);
    std::fs::remove_file(dir.join("c.json")).expect("rm c.json");
    wait_refused(&a_addr, &tauon);
    assert_eq!(body(&b_addr), V2_BODY);

    // The same tag re-pushed: rewriting the file re-resolves it (new digest = replace) ...
    let live_p2 = push_digest("hello-p2", &live);
    assert_ne!(live_p2, live_p3);
    write_atomically(&dir.join("b.json"), &app_json(&live, &b_addr, "state/b"));
    tauon.wait_status("b.json re-resolved to p2", |s| {
        status_digest(s, "b.json").as_deref() == Some(&live_p2)
    });
    assert_eq!(body(&b_addr), V1_BODY);
    // ... and the same digest with the same settings is a no-op.
    write_atomically(&dir.join("b.json"), &app_json(&live, &b_addr, "state/b"));
    tauon.wait_log("app unchanged");

    // Changing the address: the new one is bound, then the old one released.
    write_atomically(&dir.join("b.json"), &app_json(&live, &b2_addr, "state/b"));
    tauon.wait_status("b.json moved", |s| {
        status_app(s, "b.json").is_some_and(|a| a["address"] == b2_addr.as_str())
    });
    assert_eq!(body(&b2_addr), V1_BODY);
    wait_refused(&b_addr, &tauon);

    // A registry outage leaves running apps untouched: the failed update is reported.
    // (A tag tauon has never pulled: a cached tag would be served from the cache.)
    let v3 = format!("{reg}/app:v3");
    push_digest("hello-p3", &v3);
    registry.stop();
    write_atomically(&dir.join("b.json"), &app_json(&v3, &b2_addr, "state/b"));
    let status = tauon.wait_status("b.json's update failed", |s| {
        status_error(s, "b.json").is_some()
    });
    assert_eq!(
        status_digest(&status, "b.json").as_deref(),
        Some(live_p2.as_str())
    );
    let err = status_error(&status, "b.json").unwrap_or_default();
    assert!(err.contains("app:v3"), "{err}");
    assert_eq!(body(&b2_addr), V1_BODY);
    // When the registry is back, the failed load is retried without touching the file.
    registry.restart().expect("restart the registry");
    tauon.wait_status("b.json on v3 once the registry is back", |s| {
        status_digest(s, "b.json").is_some_and(|d| d != live_p2)
            && status_error(s, "b.json").is_none()
    });
    assert_eq!(body(&b2_addr), V2_BODY);

    // SIGTERM: exit 0, with a final status listing nothing running.
    tauon.signal_term();
    let exit = tauon.wait_exit(Duration::from_secs(60));
    assert!(
        exit.success(),
        "tauon exited with {exit}:\n{}",
        tauon.stderr()
    );
    let status = tauon.status().expect("final status");
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(status["apps"].as_array().map(Vec::len), Some(0), "{status}");
}

/// A request whose body is still being sent: `POST /echo` with `Expect: 100-continue`. Returns
/// once the server asked for the body, i.e. once a guest is handling the request.
fn start_slow_echo(addr: &str, payload: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read 100 Continue");
        assert_eq!(n, 1, "connection closed before 100 Continue");
        got.push(byte[0]);
    }
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(
        got.starts_with("HTTP/1.1 100"),
        "expected 100 Continue: {got}"
    );
    stream
}

/// Send the body of a [`start_slow_echo`] request and read the whole response.
fn finish_slow_echo(mut stream: TcpStream, payload: &str) -> (String, String) {
    stream.write_all(payload.as_bytes()).expect("send body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (head.to_string(), body)
}

/// Decode a chunked body (text only; enough for these tests).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size in {rest:?}"));
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = &after[size..];
        rest = rest.strip_prefix("\r\n").unwrap_or(rest);
    }
    out
}

#[derive(Default)]
struct LoadReport {
    requests: u64,
    failures: u64,
    v1: u64,
    v2: u64,
    worst: Duration,
    errors_after_stop: u64,
    first_failure: Option<String>,
}

/// `threads` clients looping `GET /` (one connection per request) until `stop` is set or each
/// has sent `cap` requests. Errors after `server_stopping` is set are counted apart.
fn run_load(
    addr: &str,
    threads: usize,
    cap: u64,
    stop: Arc<AtomicBool>,
    server_stopping: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<LoadReport>> {
    (0..threads)
        .map(|_| {
            let addr = addr.to_string();
            let stop = stop.clone();
            let server_stopping = server_stopping.clone();
            let progress = progress.clone();
            std::thread::spawn(move || {
                let mut r = LoadReport::default();
                while !stop.load(Ordering::SeqCst) && r.requests < cap {
                    let started = Instant::now();
                    let result = get(&addr, "/");
                    r.worst = r.worst.max(started.elapsed());
                    r.requests += 1;
                    progress.fetch_add(1, Ordering::SeqCst);
                    // Only the shutdown may refuse or reset a connection.
                    let stopping = server_stopping.load(Ordering::SeqCst);
                    match result {
                        Ok(res) if res.status == 200 && res.text() == V1_BODY => r.v1 += 1,
                        Ok(res) if res.status == 200 && res.text() == V2_BODY => r.v2 += 1,
                        Err(_) if stopping => {
                            r.errors_after_stop += 1;
                            break;
                        }
                        other => {
                            r.failures += 1;
                            r.first_failure.get_or_insert_with(|| format!("{other:?}"));
                        }
                    }
                }
                r
            })
        })
        .collect()
}

fn join_load(handles: Vec<std::thread::JoinHandle<LoadReport>>) -> LoadReport {
    let mut total = LoadReport::default();
    for h in handles {
        let r = h.join().expect("load thread");
        total.requests += r.requests;
        total.failures += r.failures;
        total.v1 += r.v1;
        total.v2 += r.v2;
        total.worst = total.worst.max(r.worst);
        total.errors_after_stop += r.errors_after_stop;
        if total.first_failure.is_none() {
            total.first_failure = r.first_failure;
        }
    }
    total
}

/// One app, `app.json`, served by tauon on v1 (hello-p2), with v2 (hello-p3) pushed and ready.
struct V1App {
    _work: tempfile::TempDir,
    _registry: TestRegistry,
    addr: String,
    file: std::path::PathBuf,
    v1: String,
    d1: String,
    v2: String,
    d2: String,
    tauon: Tauon,
}

fn start_on_v1(drain_timeout: &str) -> V1App {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    let v1 = format!("{reg}/app:v1");
    let v2 = format!("{reg}/app:v2");
    let d1 = push_digest("hello-p2", &v1);
    let d2 = push_digest("hello-p3", &v2);

    let dir = work.path().join("apps");
    std::fs::create_dir_all(&dir).expect("dir");
    let addr = free_addr();
    let file = dir.join("app.json");
    std::fs::write(&file, app_json(&v1, &addr, "state")).expect("write");
    let mut tauon = Tauon::start(
        &dir,
        &work.path().join("cache"),
        &work.path().join("logs"),
        &[
            "--drain-timeout",
            drain_timeout,
            // The streamed-response check echoes 24 MiB; the upload held across 20 switches may
            // outlive the default 30 s request timeout on a slow machine.
            "--max-request-body-bytes",
            "33554432",
            "--request-timeout-ms",
            "600000",
        ],
    );
    tauon.wait_status("app on v1", |s| {
        status_digest(s, "app.json").as_deref() == Some(&d1)
    });
    V1App {
        _work: work,
        _registry: registry,
        addr,
        file,
        v1,
        d1,
        v2,
        d2,
        tauon,
    }
}

#[test]
fn tauon_switches_versions_under_load_and_drains_on_sigterm() {
    let V1App {
        _work,
        _registry,
        addr,
        file,
        v1,
        d1,
        v2,
        d2,
        mut tauon,
    } = start_on_v1("600");
    assert_eq!(body(&addr), V1_BODY);

    // A request in flight on v1 (its body not sent yet) across all the switches.
    let slow = start_slow_echo(&addr, "hello from the old version");
    // And a response still streaming from v1: a large echo whose response is not read until
    // after the switches (the guest blocks writing it once the socket buffers are full).
    let big: Vec<u8> = (0..STREAM_LEN).map(|i| b'a' + (i % 23) as u8).collect();
    let mut streaming = TcpStream::connect(&addr).expect("connect");
    streaming
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {STREAM_LEN}\r\n\r\n"
    );
    streaming.write_all(head.as_bytes()).expect("send head");
    streaming.write_all(&big).expect("send body");

    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let load = run_load(&addr, 4, 200_000, stop.clone(), stopping.clone(), progress);
    for i in 0..20 {
        let (reference, digest, expected) = if i % 2 == 0 {
            (&v2, &d2, V2_BODY)
        } else {
            (&v1, &d1, V1_BODY)
        };
        write_atomically(&file, &app_json(reference, &addr, "state"));
        tauon.wait_status(&format!("switch {i} to {reference}"), |s| {
            status_digest(s, "app.json").as_deref() == Some(digest)
        });
        // Once switched, new requests see the new version.
        assert_eq!(body(&addr), expected, "after switch {i}");
    }
    stop.store(true, Ordering::SeqCst);
    let report = join_load(load);
    println!(
        "load during 20 switches: {} requests, {} failed, {} v1, {} v2, worst latency {:?}",
        report.requests, report.failures, report.v1, report.v2, report.worst
    );
    assert_eq!(
        report.failures, 0,
        "failed requests during the switches (first: {:?})",
        report.first_failure
    );
    assert!(report.requests > 0 && report.v1 > 0 && report.v2 > 0);

    // The request that started on v1 completes after all the switches.
    let (head, echoed) = finish_slow_echo(slow, "hello from the old version");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(echoed, "hello from the old version");
    // 20 replaced versions: all released but the first, whose response is still streaming.
    let released = |t: &Tauon| t.stderr().matches("previous version released").count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while released(&tauon) < 19 {
        assert!(Instant::now() < deadline, "{}", tauon.stderr());
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        released(&tauon),
        19,
        "v1 was released while its response was still streaming"
    );
    let mut raw = Vec::new();
    streaming
        .read_to_end(&mut raw)
        .expect("read the streamed response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    assert_eq!(body.len(), STREAM_LEN, "the streamed response is complete");
    assert!(
        body.as_bytes() == big.as_slice(),
        "the streamed response is intact"
    );
    while released(&tauon) < 20 {
        assert!(Instant::now() < deadline, "{}", tauon.stderr());
        std::thread::sleep(Duration::from_millis(25));
    }

    // SIGTERM under load: in-flight requests complete, the process exits 0.
    let in_flight: Vec<TcpStream> = (0..3)
        .map(|_| start_slow_echo(&addr, "finished during the drain"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let load = run_load(
        &addr,
        4,
        200_000,
        stop.clone(),
        stopping.clone(),
        progress.clone(),
    );
    // Let the load get going: a few hundred requests served before the signal.
    while progress.load(Ordering::SeqCst) < 300 {
        std::thread::sleep(Duration::from_millis(5));
    }
    stopping.store(true, Ordering::SeqCst);
    tauon.signal_term();
    tauon.wait_log("tauon shutting down");
    for stream in in_flight {
        let (head, echoed) = finish_slow_echo(stream, "finished during the drain");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(echoed, "finished during the drain");
    }
    let exit = tauon.wait_exit(Duration::from_secs(60));
    stop.store(true, Ordering::SeqCst);
    let report = join_load(load);
    println!(
        "load during SIGTERM: {} requests, {} failed, {} refused after the signal, worst latency {:?}",
        report.requests, report.failures, report.errors_after_stop, report.worst
    );
    assert!(
        exit.success(),
        "tauon exited with {exit}:\n{}",
        tauon.stderr()
    );
    assert_eq!(
        report.failures, 0,
        "failed requests before the signal (first: {:?})",
        report.first_failure
    );
    assert!(Path::new(&tauon.status_path).is_file());
}

#[test]
fn tauon_refuses_a_missing_directory() {
    let work = tempfile::tempdir().expect("tempdir");
    let missing = work.path().join("no-such-dir");
    let out = std::process::Command::new(tauon_bin())
        .arg(&missing)
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .env("LEPTON_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tauon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("app directory"),
        "the error names the directory: {stderr}"
    );
}

#[test]
fn tauon_cuts_off_requests_that_outlive_the_drain_timeout() {
    let V1App {
        _work,
        _registry,
        addr,
        file,
        v1: _,
        d1: _,
        v2,
        d2,
        mut tauon,
    } = start_on_v1("1");

    // A request on v1 that never completes (its body is never sent)...
    let mut stuck = start_slow_echo(&addr, "never sent");
    write_atomically(&file, &app_json(&v2, &addr, "state"));
    tauon.wait_status("app on v2", |s| {
        status_digest(s, "app.json").as_deref() == Some(&d2)
    });
    assert_eq!(body(&addr), V2_BODY);
    // ...is cut off once the 1 s drain bound has passed: the connection closes without a
    // response, and v1 is released.
    tauon.wait_log("cutting off the previous version's remaining requests");
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1 200"),
        "a cut-off request must not get a response: {}",
        String::from_utf8_lossy(&rest)
    );
    tauon.wait_log("previous version released");
    assert_eq!(body(&addr), V2_BODY);
    tauon.signal_term();
    assert!(tauon.wait_exit(Duration::from_secs(30)).success());
}
