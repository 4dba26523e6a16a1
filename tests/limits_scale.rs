//! Two of the hostile cases from the "contain every tenant" issue at the scale the issue measured
//! them, against the real `lepton` binary serving apps/hostile-p2 next to a hello app:
//!
//! - 1,100 slow requests (`/sleep`, 20 s) held open at once: the app runs 100 and queues 100 (its
//!   default limits), the other 900 get 503 with `Retry-After` at once, and the neighbour keeps
//!   answering 200 (before, the shared 1,000-slot instance pool ran dry and it answered 500);
//! - 2,000 connections that never finish their request head: all are closed by the header read
//!   timeout (before, all were still open 13 s later), and the neighbour keeps answering 200.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const SLOW: usize = 1_100;
const SILENT: usize = 2_000;
const HEADER_TIMEOUT: Duration = Duration::from_millis(2_000);

/// One client connection read without blocking: what arrived so far and whether it ended.
struct Conn {
    stream: TcpStream,
    got: Vec<u8>,
    closed: Option<Instant>,
}

impl Conn {
    fn open(addr: &str, head: &str) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.write_all(head.as_bytes()).expect("send head");
        stream.set_nonblocking(true).expect("nonblocking");
        Self {
            stream,
            got: Vec::new(),
            closed: None,
        }
    }

    /// Read whatever is there; note when the server closed (EOF or reset).
    fn poll(&mut self) {
        let mut buf = [0u8; 4096];
        while self.closed.is_none() {
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = Some(Instant::now()),
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.closed = Some(Instant::now()),
            }
        }
    }

    /// The status of a complete response head received so far.
    fn status(&self) -> Option<u16> {
        let text = std::str::from_utf8(&self.got).ok()?;
        if !text.contains("\r\n\r\n") {
            return None;
        }
        text.split_whitespace().nth(1)?.parse().ok()
    }
}

/// The neighbour answers `/` with 200, `n` times in a row.
fn assert_neighbour_serves(addr: &str, n: usize, lepton: &Lepton, when: &str) {
    for i in 0..n {
        let res = get(addr, "/").unwrap_or_else(|e| panic!("neighbour {when} (#{i}): {e}"));
        assert_eq!(
            res.status,
            200,
            "neighbour {when} (#{i}): {}\n{}",
            res.text(),
            lepton.stderr()
        );
    }
}

#[test]
fn a_thousand_slow_requests_and_two_thousand_silent_connections_leave_the_neighbour_serving() {
    require_guest_builds();
    let fds = lepton_testkit::raise_fd_limit();
    assert!(
        fds >= (SILENT + SLOW + 200) as u64,
        "this test holds {} connections; the open file limit is {fds}",
        SILENT + SLOW
    );
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    push("hostile-p2", &format!("{reg}/hostile-p2:v1"));
    push("hello-p2", &format!("{reg}/hello-p2:v1"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let (hostile, neighbour) = (free_addr(), free_addr());
    let manifest = tmp.path().join("lepton.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{ "apps": [
                {{ "name": "hostile", "reference": "{reg}/hostile-p2:v1", "address": "{hostile}", "state_dir": "hostile" }},
                {{ "name": "neighbour", "reference": "{reg}/hello-p2:v1", "address": "{neighbour}", "state_dir": "neighbour" }}
            ] }}"#
        ),
    )
    .expect("manifest");
    let timeout_ms = HEADER_TIMEOUT.as_millis().to_string();
    let mut lepton = Lepton::start_with_args(
        &manifest,
        &tmp.path().join("cache"),
        &tmp.path().join("logs"),
        &["--header-read-timeout-ms", &timeout_ms],
    );
    lepton.wait_stdout_contains("2 of 2 apps serving");
    lepton.wait_healthy(&[&hostile, &neighbour]);

    // 1,100 requests that each sleep 20 s, sent at once.
    let head = format!("GET /sleep?ms=20000 HTTP/1.1\r\nhost: {hostile}\r\n\r\n");
    let start = Instant::now();
    let mut slow: Vec<Conn> = (0..SLOW).map(|_| Conn::open(&hostile, &head)).collect();
    eprintln!("{SLOW} slow requests sent in {:?}", start.elapsed());
    // 900 are refused at once (100 running, 100 queued); wait for their answers, well within
    // the 20 s the others take.
    let refused = loop {
        slow.iter_mut().for_each(Conn::poll);
        let answered: Vec<u16> = slow.iter().filter_map(Conn::status).collect();
        if answered.len() >= SLOW - 200 || start.elapsed() > Duration::from_secs(15) {
            break answered;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "{} of the slow requests answered after {:?}",
        refused.len(),
        start.elapsed()
    );
    assert_eq!(
        refused.len(),
        SLOW - 200,
        "expected 100 running, 100 queued and 900 refused\n{}",
        lepton.stderr()
    );
    assert!(refused.iter().all(|&s| s == 503), "{refused:?}");
    let retry_after = slow
        .iter()
        .filter(|c| c.status().is_some())
        .filter(|c| {
            String::from_utf8_lossy(&c.got)
                .to_ascii_lowercase()
                .contains("\r\nretry-after: 1\r\n")
        })
        .count();
    assert_eq!(retry_after, SLOW - 200, "every 503 carries Retry-After: 1");
    // The 200 admitted ones are still running or waiting, and the neighbour is served meanwhile.
    assert_neighbour_serves(&neighbour, 50, &lepton, "while 200 slow requests are held");
    slow.iter_mut().for_each(Conn::poll);
    let still_open = slow.iter().filter(|c| c.status().is_none()).count();
    assert_eq!(still_open, 200, "{}", lepton.stderr());
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "too slow to observe the held requests before they end: {:?}",
        start.elapsed()
    );
    drop(slow);

    // 2,000 connections that send part of a request head and then nothing.
    let partial = format!("GET / HTTP/1.1\r\nhost: {neighbour}\r\n");
    let start = Instant::now();
    let mut silent: Vec<Conn> = (0..SILENT)
        .map(|_| Conn::open(&neighbour, &partial))
        .collect();
    let opened = start.elapsed();
    eprintln!("{SILENT} silent connections opened in {opened:?}");
    assert_neighbour_serves(
        &neighbour,
        20,
        &lepton,
        "while 2,000 connections are silent",
    );
    let all_closed = loop {
        silent.iter_mut().for_each(Conn::poll);
        let open = silent.iter().filter(|c| c.closed.is_none()).count();
        if open == 0 {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < opened + HEADER_TIMEOUT + Duration::from_secs(10),
            "{open} of {SILENT} silent connections still open {:?} after they were opened (header timeout {HEADER_TIMEOUT:?})\n{}",
            start.elapsed(),
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let first = silent
        .iter()
        .filter_map(|c| c.closed)
        .min()
        .map(|t| t - start)
        .unwrap_or_default();
    eprintln!("silent connections: first closed after {first:?}, all after {all_closed:?}");
    assert!(
        first >= HEADER_TIMEOUT.mul_f32(0.9),
        "a silent connection was closed after only {first:?}"
    );
    // None of them got a response as if its request were complete.
    assert!(
        silent.iter().all(|c| c.status().is_none_or(|s| s == 408)),
        "a partial request head was answered"
    );
    drop(silent);
    assert_neighbour_serves(&neighbour, 20, &lepton, "after the silent connections");
}
