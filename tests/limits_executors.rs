//! The request deadline beyond wasi:http (tests/limits.rs covers 0.2 and 0.3): the Spin 1.x
//! `fermyon:spin/inbound-http` executor (apps/legacy-http), the WAGI executor (apps/wagi) and
//! service chaining (`http://hostile.spin.internal/...` from apps/hostile-p2), served by the real
//! `lepton` binary from a real registry. A guest that loops forever is answered with 504 at
//! `request_timeout_ms` and then stopped (the process goes quiet), and the app keeps serving;
//! chained requests pass the app's concurrency gate without ever queueing.

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;

/// Every app's request deadline here.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// The tests measure the CPU of their own `lepton`; run one at a time so that one test's loops
/// or compilation do not starve the other's guests on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Push the apps of `entries` (`(name, app under apps/, limits JSON)`), write a manifest of them,
/// start `lepton` and wait until every app serves. Returns the registry (keep it alive), the process, the apps'
/// addresses in order, and the temporary directory.
fn serve(entries: &[(&str, &str, &str)]) -> (TestRegistry, Lepton, Vec<String>, tempfile::TempDir) {
    require_guest_builds();
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    let mut pushed = Vec::new();
    for (_, app, _) in entries {
        if !pushed.contains(app) {
            push(app, &format!("{reg}/{app}:v1"));
            pushed.push(app);
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let addrs: Vec<String> = entries.iter().map(|_| free_addr()).collect();
    let apps: Vec<String> = entries
        .iter()
        .zip(&addrs)
        .map(|((name, app, limits), addr)| {
            format!(
                r#"{{ "name": "{name}", "reference": "{reg}/{app}:v1", "address": "{addr}", "state_dir": "state/{name}", "limits": {limits} }}"#
            )
        })
        .collect();
    let manifest = tmp.path().join("lepton.json");
    std::fs::write(
        &manifest,
        format!(r#"{{ "apps": [ {} ] }}"#, apps.join(",\n")),
    )
    .expect("manifest");
    let mut lepton = Lepton::start(
        &manifest,
        &tmp.path().join("cache"),
        &tmp.path().join("logs"),
    );
    let n = entries.len();
    lepton.wait_stdout_contains(&format!("{n} of {n} apps serving"));
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    lepton.wait_healthy(&refs);
    (registry, lepton, addrs, tmp)
}

/// `GET path` on `addr`, with how long the answer took and the CPU `pid` used meanwhile.
fn timed_get(pid: u32, addr: &str, path: &str) -> (HttpResponse, Duration, f64) {
    let cpu = cpu_seconds(pid);
    let start = Instant::now();
    let res = get(addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    (res, start.elapsed(), cpu_seconds(pid) - cpu)
}

/// A loop cut off by the deadline: a 504 with an empty body, no sooner than the deadline (the
/// client's clock starts before the server's) and well within a generous bound, while the guest
/// really computed: the process used CPU for it (a request that does not loop uses about none;
/// the bound is low because this machine may be shared and busy).
fn assert_timed_out(what: &str, (res, took, cpu): &(HttpResponse, Duration, f64), log: &str) {
    assert_eq!(
        (res.status, res.text()),
        (504, String::new()),
        "{what}: {took:?}\n{log}"
    );
    assert!(
        *took >= TIMEOUT && *took < Duration::from_secs(30),
        "{what}: 504 after {took:?}"
    );
    assert!(
        *cpu >= 0.1,
        "{what}: the guest used only {cpu:.2} s of CPU before its 504; did it loop?"
    );
}

/// The loops were stopped, not just answered: a second after the last 504, `pid` uses (almost)
/// no CPU. A loop still running would use up to one core (2 s in the 2 s window; well over the
/// bound even on a busy machine), an idle `lepton` a few hundredths of a second.
fn assert_goes_quiet(pid: u32, log: impl Fn() -> String) -> f64 {
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 0.3,
        "lepton used {used:.2} s of CPU in 2 s after its looping requests timed out:\n{}",
        log()
    );
    used
}

/// The log lines of `app` containing `needle`.
fn log_lines<'a>(log: &'a str, app: &str, needle: &str) -> Vec<&'a str> {
    let of_app = |line: &str| {
        line.split_whitespace()
            .any(|field| field == format!("app={app}") || field == format!("app=\"{app}\""))
    };
    log.lines()
        .filter(|l| l.contains(needle) && of_app(l))
        .collect()
}

#[test]
fn spin_1x_and_wagi_loops_get_504_are_stopped_and_the_apps_keep_serving() {
    let _serial = serial();
    let limits = r#"{ "request_timeout_ms": 1500 }"#;
    let (_registry, lepton, addrs, _tmp) =
        serve(&[("legacy", "legacy-http", limits), ("wagi", "wagi", limits)]);
    let (legacy, wagi) = (&addrs[0], &addrs[1]);
    let pid = lepton.pid();

    // Spin 1.x inbound-http: the loop is cut off at the deadline, then the app answers as before.
    for round in 0..2 {
        let looped = timed_get(pid, legacy, "/legacy/loop");
        assert_timed_out(
            &format!("Spin 1.x /loop #{round}"),
            &looped,
            &lepton.stderr(),
        );
        eprintln!(
            "Spin 1.x /loop: 504 after {:?} ({:.2} s CPU)",
            looped.1, looped.2
        );
        let res = get(legacy, "/legacy/x?status=201").expect("legacy");
        assert_eq!(res.status, 201, "{}", res.text());
        assert_eq!(res.header("x-legacy"), Some("1"));
        assert!(
            res.text()
                .starts_with("method: GET\nuri: /legacy/x?status=201\n"),
            "{}",
            res.text()
        );
    }

    // WAGI: the same for a command looping in `_start`.
    for round in 0..2 {
        let looped = timed_get(pid, wagi, "/cgi/loop");
        assert_timed_out(&format!("WAGI /loop #{round}"), &looped, &lepton.stderr());
        eprintln!(
            "WAGI /loop: 504 after {:?} ({:.2} s CPU)",
            looped.1, looped.2
        );
        let res = get(wagi, "/cgi/report?a=1").expect("wagi");
        assert_eq!(res.status, 200, "{}", res.text());
        assert!(
            res.text().starts_with(r#"argv: ["/cgi/report", "a=1"]"#),
            "{}",
            res.text()
        );
    }

    // Both executors at once: each loop is cut off on its own app's deadline.
    let threads: Vec<_> = [
        (legacy.clone(), "/legacy/loop"),
        (wagi.clone(), "/cgi/loop"),
    ]
    .into_iter()
    .map(|(addr, path)| std::thread::spawn(move || get(&addr, path).expect("loop")))
    .collect();
    for t in threads {
        assert_eq!(t.join().expect("looper").status, 504, "{}", lepton.stderr());
    }

    let used = assert_goes_quiet(pid, || lepton.stderr());
    eprintln!("after the loops: {used:.2} s CPU in 2 s");
    let log = lepton.stderr();
    for app in ["legacy", "wagi"] {
        let timed_out = log_lines(&log, app, "request timed out");
        assert!(
            timed_out.len() >= 3 && timed_out.iter().all(|l| l.contains("request_timeout_ms")),
            "{app}: {timed_out:?}\n{log}"
        );
    }
    assert_eq!(get(legacy, "/legacy/x").expect("legacy").status, 200);
    assert_eq!(get(wagi, "/cgi/report").expect("wagi").status, 200);
}

#[test]
fn chained_requests_keep_the_deadline_and_pass_the_concurrency_gate() {
    let _serial = serial();
    // `hostile`: two slots and no queue, so a request beyond two running ones is refused at
    // once. `single`: one slot and room in the queue, which chained requests must not use.
    let (_registry, lepton, addrs, _tmp) = serve(&[
        (
            "hostile",
            "hostile-p2",
            r#"{ "request_timeout_ms": 1500, "max_concurrent_requests": 2, "max_queued_requests": 0 }"#,
        ),
        (
            "single",
            "hostile-p2",
            r#"{ "request_timeout_ms": 1500, "max_concurrent_requests": 1, "max_queued_requests": 10 }"#,
        ),
    ]);
    let (hostile, single) = (&addrs[0], &addrs[1]);
    let pid = lepton.pid();

    // Chaining works: the component calls itself and relays what it got.
    let res = get(hostile, "/chain?to=/ok").expect("chain");
    assert_eq!(
        (res.status, res.text()),
        (200, "relayed 200 retry-after=-".to_string()),
        "{}",
        lepton.stderr()
    );

    // The caller holds the app's only slot: its chained request is refused with the gate's 503
    // (Retry-After: 1) at once, not queued (it would wait on its own caller until the deadline:
    // a 504), and the caller relays that 503.
    let (res, took, _) = timed_get(pid, single, "/chain?to=/ok");
    assert_eq!(
        (res.status, res.text()),
        (503, "relayed 503 retry-after=1".to_string()),
        "{}",
        lepton.stderr()
    );
    eprintln!("chained request at the concurrency limit: relayed 503 after {took:?}");
    let log = lepton.stderr();
    let refused = log_lines(&log, "single", "chained request refused");
    assert_eq!(refused.len(), 1, "{log}");
    assert!(
        refused[0].contains("max_concurrent_requests"),
        "{refused:?}"
    );
    // Both slots were released: the app serves again.
    assert_eq!(get(single, "/ok").expect("ok").text(), "ok");

    // A running chained request holds a slot of its own: while `/chain` (one slot) waits on a
    // chained `/spin` (the other, 800 ms by the clock), a third request is refused at the gate.
    let cpu = cpu_seconds(pid);
    let chain = std::thread::spawn({
        let addr = hostile.clone();
        move || get(&addr, "/chain?to=/spin?ms=800").expect("chain spin")
    });
    // The chained guest is spinning once the process has used 0.05 s of CPU (answering the
    // `/chain` request itself up to its outbound call takes a few milliseconds).
    let start = Instant::now();
    while cpu_seconds(pid) - cpu < 0.05 {
        assert!(
            !chain.is_finished() && start.elapsed() < Duration::from_secs(10),
            "the chained /spin never started: {}",
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let third = get(hostile, "/ok").expect("third");
    assert_eq!(third.status, 503, "{}", third.text());
    assert_eq!(third.header("retry-after"), Some("1"));
    let res = chain.join().expect("chain thread");
    assert_eq!(
        (res.status, res.text()),
        (200, "relayed 200 retry-after=-".to_string()),
        "{}",
        lepton.stderr()
    );

    // The deadline: a chained loop keeps the caller waiting; the client gets the caller's 504
    // at the caller's deadline (empty, not a relayed `relayed 504`), and the chained guest is
    // stopped at that same deadline, not at its own: the caller waits 1 s before chaining, so
    // the chained request's own deadline would be 1 s after the caller's. 300 ms after the 504
    // the process must be quiet (a chained loop left to its own deadline would still use up to
    // a core for 700 ms more).
    for round in 0..2 {
        let looped = timed_get(pid, hostile, "/chain?wait=1000&to=/loop");
        assert_timed_out(
            &format!("chained /loop #{round}"),
            &looped,
            &lepton.stderr(),
        );
        std::thread::sleep(Duration::from_millis(300));
        let before = cpu_seconds(pid);
        std::thread::sleep(Duration::from_millis(500));
        let used = cpu_seconds(pid) - before;
        eprintln!(
            "chained /loop: 504 after {:?} ({:.2} s CPU); {used:.2} s CPU 300-800 ms later",
            looped.1, looped.2
        );
        assert!(
            used < 0.2,
            "the chained loop outlived its caller's deadline: {used:.2} s of CPU in 500 ms\n{}",
            lepton.stderr()
        );
    }
    let log = lepton.stderr();
    assert!(
        log_lines(&log, "hostile", "request timed out").len() >= 2,
        "{log}"
    );
    assert!(
        log_lines(&log, "hostile", "guest stopped").len() >= 2,
        "{log}"
    );

    // No slot leaked: two requests run side by side again (a third would still be refused).
    let start = Instant::now();
    loop {
        let both: Vec<_> = (0..2)
            .map(|_| {
                let addr = hostile.clone();
                std::thread::spawn(move || get(&addr, "/sleep?ms=500").expect("sleep"))
            })
            .collect();
        let statuses: Vec<u16> = both
            .into_iter()
            .map(|t| t.join().expect("sleeper").status)
            .collect();
        if statuses == [200, 200] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "slots still taken after the chained loops: {statuses:?}\n{}",
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        get(hostile, "/chain?to=/ok").expect("chain").text(),
        "relayed 200 retry-after=-"
    );
}

#[test]
fn a_client_that_goes_away_does_not_free_its_slot_while_its_guest_runs() {
    let _serial = serial();
    let (_registry, lepton, addrs, _tmp) = serve(&[(
        "single",
        "hostile-p2",
        r#"{ "request_timeout_ms": 1500, "max_concurrent_requests": 1, "max_queued_requests": 0 }"#,
    )]);
    let addr = &addrs[0];
    let pid = lepton.pid();
    // A client starts a loop and hangs up once it is running.
    let cpu = cpu_seconds(pid);
    let start = Instant::now();
    let mut client = std::net::TcpStream::connect(addr.as_str()).expect("connect");
    std::io::Write::write_all(
        &mut client,
        format!("GET /loop HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes(),
    )
    .expect("send");
    while cpu_seconds(pid) - cpu < 0.1 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the loop never started: {}",
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(client);
    std::thread::sleep(Duration::from_millis(100));
    // Its guest still runs, so it still holds the app's only slot: refused at the gate.
    let res = get(addr, "/ok").expect("ok while the loop runs");
    assert!(
        start.elapsed() < TIMEOUT,
        "too slow to check before the deadline: {:?}",
        start.elapsed()
    );
    assert_eq!(
        (res.status, res.header("retry-after")),
        (503, Some("1")),
        "a request got the slot of a guest still running: {}",
        lepton.stderr()
    );
    // At the deadline the guest is stopped and the slot is free again.
    let freed = loop {
        let res = get(addr, "/ok").expect("ok after the deadline");
        if res.status == 200 {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the slot was never released: {}",
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("slot of the abandoned loop released {freed:?} after it started");
    assert!(
        freed >= TIMEOUT,
        "released after {freed:?}, before the deadline"
    );
    let used = assert_goes_quiet(pid, || lepton.stderr());
    eprintln!("after the abandoned loop: {used:.2} s CPU in 2 s");
}
