//! Redis and cron apps end to end, through the real `tauon` and `lepton` binaries: a real
//! `redis-server`, a real registry, the guests `apps/redis-rs` (spin-sdk 5.2) and `apps/cron-rs`
//! (the spin-trigger-cron plugin's WIT) built from source.
//!
//! - an app whose triggers are all Redis or cron needs no `address`; one that has an address and
//!   loads on demand (`--load lazy`) is found to have a Redis trigger and loaded anyway;
//! - a live replace (a new `tag` variable) neither loses nor doubles a message or a cron run;
//! - a looping Redis handler and a cron run that sleeps are stopped at `request_timeout_ms`; the
//!   messages and ticks after them are handled;
//! - removing the app file unsubscribes and stops the schedule;
//! - an app with HTTP triggers and no address is refused, naming `address`.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lepton_testkit::TestRedis;
use support::*;

/// A bound on waiting for something that should take well under a second (a failure, not a
/// measurement).
const PATIENCE: Duration = Duration::from_secs(60);

fn require_trigger_guests() {
    require_guest_builds();
    let out = repo_root().join("apps/target/wasm32-wasip2/release");
    for name in ["redis_rs.wasm", "cron_rs.wasm"] {
        assert!(
            out.join(name).is_file(),
            "{name} is missing: run scripts/build-apps.sh"
        );
    }
}

fn list(redis: &TestRedis, key: &str) -> Vec<String> {
    let out = redis.cli(&["LRANGE", key, "0", "-1"]).expect("LRANGE");
    out.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn numsub(redis: &TestRedis, channel: &str) -> i64 {
    let out = redis
        .cli(&["PUBSUB", "NUMSUB", channel])
        .expect("PUBSUB NUMSUB");
    out.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(-1)
}

fn publish(redis: &TestRedis, channel: &str, payload: &str) -> i64 {
    redis
        .cli(&["PUBLISH", channel, payload])
        .expect("PUBLISH")
        .trim()
        .parse()
        .unwrap_or(-1)
}

/// Wait (bounded) until `done` holds, naming `what` and showing tauon's log if it never does.
fn wait_until(tauon: &Tauon, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "never saw {what}; tauon log:\n{}",
            tauon.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cron guest's runs so far: `(tag, "start"|"end", tick)`.
fn cron_runs(state: &Path) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(state.join("logs/ticker_stdout.txt")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (tag, what, ts) = (parts.next()?, parts.next()?, parts.next()?);
            Some((tag.to_string(), what.to_string(), ts.parse().ok()?))
        })
        .collect()
}

fn ends(state: &Path, tag: &str) -> usize {
    cron_runs(state)
        .iter()
        .filter(|(t, e, _)| t == tag && e == "end")
        .count()
}

fn redis_app(reference: &str, address: &str, url: &str, tag: &str) -> String {
    serde_json::json!({
        "reference": reference,
        "address": address,
        "state_dir": "state/rec",
        "variables": { "redis_url": url, "tag": tag },
        "limits": { "request_timeout_ms": 400 },
    })
    .to_string()
}

fn cron_app(reference: &str, tag: &str, sleep_ms: u64) -> String {
    serde_json::json!({
        "reference": reference,
        "state_dir": "state/tick",
        "variables": { "tag": tag, "sleep_ms": sleep_ms.to_string() },
        "limits": { "request_timeout_ms": 400 },
    })
    .to_string()
}

#[test]
fn redis_and_cron_apps_run_replace_and_stop_under_tauon() {
    require_trigger_guests();
    let work = tempfile::tempdir().expect("tempdir");
    let redis = TestRedis::start().expect("redis-server");
    let url = redis.url();
    let mut registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    let rec = format!("{reg}/rec:v1");
    let tick = format!("{reg}/tick:v1");
    let rec_digest = push_digest("redis-rs", &rec);
    let tick_digest = push_digest("cron-rs", &tick);

    let dir = work.path().join("apps");
    std::fs::create_dir_all(&dir).expect("dir");
    let rec_addr = free_addr();
    write_atomically(
        &dir.join("rec.json"),
        &redis_app(&rec, &rec_addr, &url, "v1"),
    );
    write_atomically(&dir.join("tick.json"), &cron_app(&tick, "v1", 0));
    let mut tauon = Tauon::start(
        &dir,
        &work.path().join("cache"),
        &work.path().join("logs"),
        &["--load", "lazy"],
    );
    // The cron app (no address) is loaded at once; the Redis app loads on demand, but a probe
    // finds its Redis trigger and loads it without a request.
    tauon.wait_status("both apps running", |s| {
        status_app(s, "rec.json").is_some()
            && status_digest(s, "tick.json").as_deref() == Some(&tick_digest)
    });
    wait_until(&tauon, "the redis app subscribed", || {
        numsub(&redis, "messages") == 1
    });
    // The status says it is loaded (a load on demand shows within the status refresh).
    tauon.wait_status("the redis app loaded", |s| {
        status_app(s, "rec.json").is_some_and(|a| a["load"]["state"] == "loaded")
            && status_digest(s, "rec.json").as_deref() == Some(&rec_digest)
    });
    let status = tauon.status().expect("status");
    assert_eq!(
        status_app(&status, "rec.json").expect("rec")["triggers"],
        serde_json::json!(["redis"])
    );
    assert_eq!(
        status_app(&status, "tick.json").expect("tick")["triggers"],
        serde_json::json!(["cron"])
    );
    // Its address answers, with no HTTP routes.
    assert_eq!(get(&rec_addr, "/").expect("GET").status, 404);
    // Both were compiled by Cranelift from the start, although tauon compiles first with
    // Winch: these are pinned and never reloaded, so Winch's code would stay for good.
    let log = tauon.stderr();
    for component in ["recorder", "ticker"] {
        let compiles: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("compiled component") && l.contains(&format!("\"{component}\"")))
            .collect();
        assert!(
            !compiles.is_empty()
                && compiles
                    .iter()
                    .all(|l| l.contains("compiler=\"cranelift\"")),
            "{component}: {compiles:?}"
        );
    }

    // A publisher that keeps going through a live replace (v1 → v2).
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = std::thread::spawn({
        let (stop, port) = (stop.clone(), redis.port());
        move || {
            let mut receivers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let out = std::process::Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PUBLISH"])
                    .args(["messages", &receivers.len().to_string()])
                    .output()
                    .expect("redis-cli");
                let n: i64 = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or(-1);
                receivers.push(n);
                std::thread::sleep(Duration::from_millis(5));
            }
            receivers
        }
    });
    wait_until(&tauon, "10 messages handled by v1", || {
        list(&redis, "received").len() >= 10
    });
    write_atomically(
        &dir.join("rec.json"),
        &redis_app(&rec, &rec_addr, &url, "v2"),
    );
    wait_until(&tauon, "10 messages handled by v2", || {
        list(&redis, "received")
            .iter()
            .filter(|e| e.starts_with("v2:"))
            .count()
            >= 10
    });
    stop.store(true, Ordering::SeqCst);
    let receivers = publisher.join().expect("publisher");
    assert!(
        receivers.iter().all(|n| *n == 1),
        "every message had exactly one subscriber through the replace: {receivers:?}"
    );
    wait_until(&tauon, "every message handled", || {
        list(&redis, "received").len() >= receivers.len()
    });
    let received = list(&redis, "received");
    let payloads: Vec<usize> = received
        .iter()
        .filter_map(|e| e.split_once(':').and_then(|(_, p)| p.parse().ok()))
        .collect();
    assert_eq!(
        payloads,
        (0..receivers.len()).collect::<Vec<_>>(),
        "each message once, in order: {received:?}"
    );
    let switch = received
        .iter()
        .position(|e| e.starts_with("v2:"))
        .expect("v2 handled some");
    assert!(
        received[..switch].iter().all(|e| e.starts_with("v1:"))
            && received[switch..].iter().all(|e| e.starts_with("v2:")),
        "v1's messages, then v2's: {received:?}"
    );

    // Limits: a looping handler is stopped at request_timeout_ms; the next message is handled.
    assert_eq!(publish(&redis, "messages", "spin"), 1);
    assert_eq!(publish(&redis, "messages", "after"), 1);
    wait_until(&tauon, "the message after a looping one", || {
        list(&redis, "received").contains(&"v2:after".to_string())
    });
    tauon.wait_log("request_timeout_ms");

    // Cron: runs on its schedule, replaced live without a doubled run.
    let tick_state = dir.join("state/tick");
    wait_until(&tauon, "2 cron runs of v1", || ends(&tick_state, "v1") >= 2);
    write_atomically(&dir.join("tick.json"), &cron_app(&tick, "v2", 0));
    wait_until(&tauon, "2 cron runs of v2", || ends(&tick_state, "v2") >= 2);
    let runs = cron_runs(&tick_state);
    let starts: Vec<&(String, String, u64)> =
        runs.iter().filter(|(_, e, _)| e == "start").collect();
    let ticks: Vec<u64> = starts.iter().map(|(_, _, ts)| *ts).collect();
    assert!(
        ticks.windows(2).all(|w| w[0] < w[1]),
        "each tick once, in order: {runs:?}"
    );
    let tags: Vec<&str> = starts.iter().map(|(t, _, _)| t.as_str()).collect();
    let first_v2 = tags.iter().position(|t| *t == "v2").expect("v2 ran");
    assert!(
        first_v2 >= 2 && tags[first_v2..].iter().all(|t| *t == "v2"),
        "v1's runs, then v2's: {tags:?}"
    );

    // Limits: runs that would sleep 5 s are stopped at request_timeout_ms (400 ms); each tick
    // still starts, and none overlaps the next.
    write_atomically(&dir.join("tick.json"), &cron_app(&tick, "v3", 5000));
    wait_until(&tauon, "3 cron runs of v3 started", || {
        cron_runs(&tick_state)
            .iter()
            .filter(|(t, e, _)| t == "v3" && e == "start")
            .count()
            >= 3
    });
    assert_eq!(ends(&tick_state, "v3"), 0, "{:?}", cron_runs(&tick_state));
    tauon.wait_log("cron run failed");

    // Removing the files stops both: no subscriber, no more runs.
    std::fs::remove_file(dir.join("rec.json")).expect("rm");
    std::fs::remove_file(dir.join("tick.json")).expect("rm");
    wait_until(&tauon, "the redis app unsubscribed", || {
        numsub(&redis, "messages") == 0
    });
    tauon.wait_status("no apps", |s| {
        s["apps"].as_array().is_some_and(Vec::is_empty)
    });
    assert_eq!(publish(&redis, "messages", "late"), 0);
    let before = cron_runs(&tick_state).len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        cron_runs(&tick_state).len(),
        before,
        "the schedule stopped with its app"
    );
    registry.stop();
}

#[test]
fn an_http_app_without_an_address_is_refused_naming_the_field() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let mut registry = TestRegistry::start().expect("start docker-registry");
    let reference = format!("{}/hello:v1", registry.addr());
    push("hello-p2", &reference);
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::json!({ "apps": [ { "reference": reference, "state_dir": "s" } ] }).to_string(),
    )
    .expect("manifest");
    let mut lepton = Lepton::start(&manifest, &work.path().join("cache"), work.path());
    let status = lepton.wait_exit(PATIENCE);
    assert!(!status.success());
    let err = lepton.stderr();
    assert!(
        err.contains("`address`: the app has HTTP triggers but neither an `address` nor `hosts`"),
        "{err}"
    );
    registry.stop();
}
