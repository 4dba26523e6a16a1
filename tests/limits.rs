//! Every tenant contained: a misbehaving app (apps/hostile-p2, apps/hostile-p3) next to a
//! well-behaved one, served by the real `lepton` binary from a real registry. Each behaviour —
//! looping, sleeping past the deadline, streaming past it, allocating, recursing, flooding with
//! requests, huge bodies and headers, slow or idle connections — is contained with the status
//! the README promises, the neighbour answers 200 throughout, and SIGTERM exits in time while
//! guests loop.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// A `lepton` child started with extra command-line options; killed on drop.
struct Host {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Host {
    fn start(manifest: &Path, cache: &Path, logs: &Path, args: &[&str]) -> Self {
        std::fs::create_dir_all(logs).expect("log dir");
        let stdout = logs.join("lepton.stdout");
        let stderr = logs.join("lepton.stderr");
        let child = Command::new(lepton_bin())
            .arg(manifest)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env("LEPTON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout"))
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("spawn lepton");
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_serving(&mut self, apps: usize) {
        let deadline = Instant::now() + Duration::from_secs(600);
        let line = format!("{apps} of {apps} apps serving");
        while !self.stdout().contains(&line) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lepton exited ({status}):\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "lepton never served:\n{}\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seconds of CPU the process has used (user + system).
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps requesting the neighbour's `/` until stopped; counts answers that are not 200.
struct Neighbour {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    bad: Arc<std::sync::Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Neighbour {
    fn watch(addr: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = std::thread::spawn({
            let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
            move || {
                // Bounded: at most 200,000 requests.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match get(&addr, "/") {
                        Ok(res) if res.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(res) => bad
                            .lock()
                            .expect("lock")
                            .push(format!("status {}", res.status)),
                        Err(err) => bad.lock().expect("lock").push(err.to_string()),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Self {
            stop,
            ok,
            bad,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("neighbour thread");
        }
        let bad = self.bad.lock().expect("lock").clone();
        (self.ok.load(Ordering::Relaxed), bad)
    }
}

/// Send raw bytes and read until the server closes (or `within` passes: an error then).
fn raw_exchange(addr: &str, bytes: &[u8], within: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(within))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(raw);
    text.lines().next()?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn every_tenant_is_contained_and_the_neighbour_keeps_answering() {
    require_guest_builds();
    let out = lepton_testkit::repo_root().join("apps/target/wasm32-wasip2/release");
    for name in ["hostile_p2.wasm", "hostile_p3.wasm"] {
        assert!(
            out.join(name).is_file(),
            "{name} missing: run scripts/build-apps.sh"
        );
    }
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    push("hostile-p2", &format!("{reg}/hostile-p2:v1"));
    push("hostile-p3", &format!("{reg}/hostile-p3:v1"));
    push("hello-p2", &format!("{reg}/hello-p2:v1"));

    let tmp = tempfile::tempdir().expect("tempdir");
    let (hostile, hostile3, sticky, neighbour) =
        (free_addr(), free_addr(), free_addr(), free_addr());
    let tight = r#"{ "request_timeout_ms": 1500, "memory_mib": 64, "max_concurrent_requests": 2,
                     "max_queued_requests": 1, "max_request_body_bytes": 1024 }"#;
    let manifest = tmp.path().join("lepton.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{ "apps": [
  {{ "name": "hostile", "reference": "{reg}/hostile-p2:v1", "address": "{hostile}", "state_dir": "s1", "limits": {tight} }},
  {{ "name": "hostile3", "reference": "{reg}/hostile-p3:v1", "address": "{hostile3}", "state_dir": "s2", "limits": {tight} }},
  {{ "name": "sticky", "reference": "{reg}/hostile-p3:v1", "address": "{sticky}", "state_dir": "s3",
     "limits": {{ "request_timeout_ms": 600000 }} }},
  {{ "name": "neighbour", "reference": "{reg}/hello-p2:v1", "address": "{neighbour}", "state_dir": "s4" }}
] }}"#
        ),
    )
    .expect("manifest");
    let mut host = Host::start(
        &manifest,
        &tmp.path().join("cache"),
        &tmp.path().join("logs"),
        &[
            "--drain-timeout",
            "2",
            "--header-read-timeout-ms",
            "1000",
            "--idle-timeout-ms",
            "1000",
            "--max-header-bytes",
            "8192",
        ],
    );
    host.wait_serving(4);
    // Status output: each app's effective limits, its own over the defaults.
    let stdout = host.stdout();
    assert!(
        stdout.contains("limits: request_timeout_ms=1500 memory_mib=64 max_concurrent_requests=2 max_queued_requests=1 max_request_body_bytes=1024"),
        "{stdout}"
    );
    assert!(
        stdout.contains("limits: request_timeout_ms=600000 memory_mib=128 max_concurrent_requests=100 max_queued_requests=100 max_request_body_bytes=10485760"),
        "{stdout}"
    );

    let watcher = Neighbour::watch(neighbour.clone());

    // Deadline, wasi:http 0.2 and 0.3: a loop, a sleep and a stream past request_timeout_ms.
    for addr in [&hostile, &hostile3] {
        let res = get(addr, "/loop").expect("loop");
        assert_eq!(res.status, 504, "/loop on {addr}: {}", host.stderr());
        let res = get(addr, "/sleep?ms=20000").expect("sleep");
        assert_eq!(res.status, 504, "/sleep on {addr}: {}", host.stderr());
        assert_eq!(get(addr, "/ok").expect("ok").text(), "ok");
        // A response already streaming is aborted: the head arrived, the body never ends.
        let raw = raw_exchange(
            addr,
            format!("GET /stream?chunks=100&ms=100 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(30),
        )
        .expect("stream");
        assert_eq!(status_of(&raw), Some(200));
        assert!(
            !raw.ends_with(b"0\r\n\r\n"),
            "the stream was not aborted: {} bytes",
            raw.len()
        );
        let chunks = String::from_utf8_lossy(&raw).matches("chunk").count();
        assert!(
            (1..100).contains(&chunks),
            "{chunks} chunks before the abort"
        );
    }
    // The loops were stopped, not just answered: the process goes quiet.
    std::thread::sleep(Duration::from_millis(500));
    let before = host.cpu_seconds();
    std::thread::sleep(Duration::from_secs(2));
    let used = host.cpu_seconds() - before;
    assert!(
        used < 1.0,
        "lepton used {used:.2} s of CPU in 2 s after its looping requests timed out"
    );
    let log = host.stderr();
    assert!(log.contains("request_timeout_ms"), "{log}");
    assert!(log.contains("guest stopped"), "{log}");

    // Memory: the budget is refused to the guest (it sees allocation failure), not the host.
    let res = get(&hostile, "/alloc?mib=200").expect("alloc");
    assert_eq!(res.status, 507, "{}", res.text());
    assert!(
        res.text().starts_with("alloc failed after"),
        "{}",
        res.text()
    );
    let res = get(&hostile, "/alloc?mib=16").expect("alloc");
    assert_eq!((res.status, res.text()), (200, "allocated 16".to_string()));
    let res = get(&hostile3, "/alloc?mib=200").expect("alloc p3");
    assert_eq!(res.status, 507, "{}", res.text());

    // Recursion: a stack overflow traps that request only.
    let res = get(&hostile, "/recurse?depth=100000000").expect("recurse");
    assert_eq!(res.status, 500);
    assert_eq!(
        get(&hostile, "/recurse?depth=100").expect("recurse").text(),
        "depth 100"
    );

    // Concurrency: two run, one waits, the fourth is refused with 503 + Retry-After.
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let addr = hostile.clone();
            std::thread::spawn(move || get(&addr, "/sleep?ms=1000").expect("sleep"))
        })
        .collect();
    let answers: Vec<_> = sleepers
        .into_iter()
        .map(|t| t.join().expect("sleeper"))
        .collect();
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    let served = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        (served, refused.len()),
        (3, 1),
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused[0].header("retry-after"), Some("1"));

    // Bodies: a declared length over the limit, a chunked body over it, one within it.
    let res = request(&hostile, "POST", "/count", &[], &[b'x'; 2048]).expect("post");
    assert_eq!(res.status, 413);
    let mut chunked = Vec::new();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("200\r\n{}\r\n", "y".repeat(512)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let raw = raw_exchange(
        &hostile,
        &[
            format!("POST /count HTTP/1.1\r\nHost: {hostile}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
            &chunked,
        ]
        .concat(),
        Duration::from_secs(30),
    )
    .expect("chunked post");
    assert_eq!(
        status_of(&raw),
        Some(413),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let res = request(&hostile, "POST", "/count", &[], &[b'x'; 512]).expect("post");
    assert_eq!((res.status, res.text()), (200, "512".to_string()));

    // Headers over --max-header-bytes: 431.
    let big = "a".repeat(16 << 10);
    let raw = raw_exchange(
        &hostile,
        format!("GET /ok HTTP/1.1\r\nHost: {hostile}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        Duration::from_secs(30),
    )
    .expect("big header");
    assert_eq!(status_of(&raw), Some(431));

    // Slowloris and idle connections: closed by the server within the header/idle timeouts.
    let mut idle = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(&hostile).expect("connect");
        if i % 2 == 0 {
            s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("partial head");
        }
        idle.push(s);
    }
    // A kept-alive connection after a complete request is closed once idle.
    let mut kept = TcpStream::connect(&hostile).expect("connect");
    kept.write_all(format!("GET /ok HTTP/1.1\r\nHost: {hostile}\r\n\r\n").as_bytes())
        .expect("request");
    idle.push(kept);
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut sink = Vec::new();
        match s.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a slow or idle connection stayed open: {e}"),
        }
    }

    let (ok, bad) = watcher.finish();
    assert!(bad.is_empty(), "the neighbour failed: {bad:?}");
    assert!(ok > 10, "the neighbour answered only {ok} requests");

    // SIGTERM while guests loop (with a 10-minute request timeout): exits within the drain
    // timeout (2 s) plus one second; the bound below leaves room for a loaded machine.
    let loopers: Vec<_> = (0..3)
        .map(|_| {
            let addr = sticky.clone();
            std::thread::spawn(move || get(&addr, "/loop"))
        })
        .collect();
    // Let the loops start (they never end on their own).
    let start = Instant::now();
    while host.cpu_seconds() < 1.0 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = Instant::now();
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(host.child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = sent + Duration::from_secs(8);
    let exit = loop {
        if let Some(exit) = host.child.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "lepton did not exit after SIGTERM with looping guests:\n{}",
            host.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    assert!(exit.success(), "{exit}\n{}", host.stderr());
    eprintln!("SIGTERM → exit with 3 looping guests: {took:?} (drain timeout 2 s)");
    for t in loopers {
        // Their connections were closed without a response.
        let _ = t.join();
    }
}
