//! Instance reuse for wasi:http 0.3 components, as Spin does it, served by the real `lepton`
//! binary from a real registry: apps/hostile-p3's `/seen` answers its instance's random id, how
//! many requests the instance has taken and how many it was running at once, so reuse is
//! observed from inside the guest. Sequential requests share an instance up to 128, then a new
//! one serves; concurrent ones share it up to 16 at once; an idle instance is dropped after 1 s;
//! a trap retires the instance (the next request sees fresh state); a request past its deadline
//! on a shared instance gets its 504, its instance is retired (its guest stopped) and the app
//! keeps serving. No assertion depends on timing: waits poll with generous bounds.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;

/// One `/seen` answer: the instance's id, its request count and how many it was running.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    count: u64,
    running: u64,
}

fn seen(addr: &str, path: &str, log: &impl Fn() -> String) -> Seen {
    let res = get(addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    assert_eq!(res.status, 200, "GET {path}: {}\n{}", res.text(), log());
    let text = res.text();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let number = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: unexpected answer {text:?}"))
    };
    Seen {
        id: fields.first().copied().unwrap_or_default().to_string(),
        count: number(1),
        running: number(2),
    }
}

/// Poll `read` until `found` holds for it (up to 30 s; panics with `read`'s text otherwise).
fn wait_for(what: &str, read: impl Fn() -> String, found: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = read();
        if found(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// lepton's log lines about app `app` containing every one of `needles`.
fn lines_of<'a>(log: &'a str, app: &str, needles: &[&str]) -> Vec<&'a str> {
    let field = format!("app={app}");
    log.lines()
        .filter(|l| l.split_whitespace().any(|f| f == field))
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// The guest's stderr log of app `app` (its component is `hostile`).
fn guest_stderr(root: &Path, app: &str) -> PathBuf {
    root.join("state")
        .join(app)
        .join("logs")
        .join("hostile_stderr.txt")
}

#[test]
fn wasi_http_0_3_instances_are_reused_as_spin_does() {
    // Reuse is per loaded app: keep one (no reload on optimized code mid-test).
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    require_guest_builds();
    let wasm = repo_root().join("apps/target/wasm32-wasip2/release/hostile_p3.wasm");
    assert!(
        wasm.is_file(),
        "{} missing: run scripts/build-apps.sh",
        wasm.display()
    );
    let registry = TestRegistry::start().expect("registry");
    let reference = format!("{}/hostile-p3:v1", registry.addr());
    push("hostile-p3", &reference);
    let tmp = tempfile::tempdir().expect("tempdir");
    let (reuse, deadline) = (free_addr(), free_addr());
    let manifest = tmp.path().join("lepton.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{ "apps": [
  {{ "name": "reuse", "reference": "{reference}", "address": "{reuse}", "state_dir": "state/reuse" }},
  {{ "name": "deadline", "reference": "{reference}", "address": "{deadline}", "state_dir": "state/deadline",
     "limits": {{ "request_timeout_ms": 2000 }} }}
] }}"#
        ),
    )
    .expect("manifest");
    let mut lepton = Lepton::start_with_env(
        &manifest,
        &tmp.path().join("cache"),
        &tmp.path().join("logs"),
        &[(
            "LEPTON_LOG",
            std::ffi::OsStr::new("info,lepton_trigger_http::reuse=debug"),
        )],
    );
    lepton.wait_stdout_contains("2 of 2 apps serving");
    lepton.wait_healthy(&[&reuse, &deadline]);
    let stderr_path = lepton.stderr_path.clone();
    let log = move || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    // The deadline on a shared instance runs beside the rest (another app, its own instances).
    let deadline_check = {
        let (root, log) = (tmp.path().to_path_buf(), log.clone());
        std::thread::spawn(move || a_timeout_on_a_shared_instance(&deadline, &root, &log))
    };

    // Sequential requests: every instance numbers its requests 1, 2, 3… and serves at most 128;
    // one serves exactly 128 before the next takes over.
    let mut by_instance: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..300 {
        let s = seen(&reuse, "/seen", &log);
        by_instance.entry(s.id).or_default().push(s.count);
    }
    let served: Vec<usize> = by_instance.values().map(Vec::len).collect();
    for counts in by_instance.values() {
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, &expected, "each instance keeps its own state");
    }
    assert!(served.iter().all(|&n| n <= 128), "{served:?}");
    assert!(served.contains(&128), "no instance served 128: {served:?}");
    eprintln!("300 sequential requests: instances served {served:?}");
    assert!(
        wait_for("the instances that served 128 retired", &log, |text| {
            lines_of(
                text,
                "reuse",
                &["instance retired", "requests=128", "reason=Served"],
            )
            .len()
                >= served.iter().filter(|&&n| n == 128).count()
        })
        .contains("requests=128")
    );

    // Idle: with no requests, the last instance is dropped after 1 s; the next request gets a
    // fresh one.
    wait_for("an idle instance dropped", &log, |text| {
        !lines_of(text, "reuse", &["instance retired", "reason=Idle"]).is_empty()
    });
    let fresh = seen(&reuse, "/seen", &log);
    assert_eq!(fresh.count, 1, "after the idle drop: {fresh:?}");
    assert!(!by_instance.contains_key(&fresh.id), "{fresh:?}");

    // A trap retires the instance it happened in: it served one request before and is reused
    // for the trap; the next request sees fresh state.
    let again = seen(&reuse, "/seen", &log);
    assert_eq!(
        (&again.id, again.count),
        (&fresh.id, 2),
        "reused: {again:?}"
    );
    let res = get(&reuse, "/trap").expect("trap");
    assert_eq!(res.status, 500, "{}", res.text());
    let guest_log = guest_stderr(tmp.path(), "reuse");
    let read_guest = || std::fs::read_to_string(&guest_log).unwrap_or_default();
    let text = wait_for("the trap's log line", read_guest, |t| {
        t.contains("trap in ")
    });
    assert!(
        text.contains(&format!("trap in {} after 2 requests", fresh.id)),
        "the trap ran on the reused instance:\n{text}"
    );
    let after = seen(&reuse, "/seen", &log);
    assert_ne!(after.id, fresh.id, "the trapped instance served again");
    assert_eq!(after.count, 1, "fresh state after the trap: {after:?}");
    assert!(!lines_of(&log(), "reuse", &["instance retired", "reason=\"failed\""]).is_empty());

    // Concurrent requests (each sleeping 1 s in the guest) share instances, at most 16 at once.
    let sleepers: Vec<_> = (0..40)
        .map(|_| {
            let (addr, log) = (reuse.clone(), log.clone());
            std::thread::spawn(move || seen(&addr, "/seen?ms=1000", &log))
        })
        .collect();
    let answers: Vec<Seen> = sleepers
        .into_iter()
        .map(|t| t.join().expect("sleeper"))
        .collect();
    let most = answers.iter().map(|s| s.running).max().unwrap_or(0);
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &answers {
        *per_instance.entry(&s.id).or_default() += 1;
    }
    eprintln!(
        "40 concurrent requests: at most {most} at once on one instance, spread {per_instance:?}"
    );
    assert!(most <= 16, "an instance ran {most} requests at once");
    assert!(
        most >= 2,
        "concurrent requests never shared an instance: {answers:?}"
    );

    deadline_check.join().expect("the deadline check");
}

/// App `deadline` (request_timeout_ms 2000): a request sleeping past its deadline on an
/// instance that serves others meanwhile gets 504 at the deadline; its instance is retired (its
/// guest stopped), and the app keeps serving from a fresh instance.
fn a_timeout_on_a_shared_instance(addr: &str, root: &Path, log: &impl Fn() -> String) {
    let first = seen(addr, "/seen", log);
    let sleeper = {
        let addr = addr.to_string();
        std::thread::spawn(move || get(&addr, "/seen?ms=20000").expect("sleeper"))
    };
    let guest_log = guest_stderr(root, "deadline");
    let read_guest = || std::fs::read_to_string(&guest_log).unwrap_or_default();
    let text = wait_for("the sleeper start", read_guest, |t| {
        t.contains("sleeping 20000 ms")
    });
    let sleeper_id = text
        .lines()
        .find(|l| l.contains("sleeping 20000 ms"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    assert_eq!(sleeper_id, first.id, "the sleeper reused the idle instance");
    // While it sleeps, its instance serves another request.
    let beside = seen(addr, "/seen", log);
    assert_eq!((&beside.id, beside.count), (&first.id, 3), "{beside:?}");
    let res = sleeper.join().expect("sleeper thread");
    assert_eq!(res.status, 504, "{}\n{}", res.text(), log());
    wait_for("the instance retired at the deadline", log, |text| {
        !lines_of(text, "deadline", &["instance retired", "reason=Deadline"]).is_empty()
    });
    assert!(!lines_of(&log(), "deadline", &["guest stopped"]).is_empty());
    let after = seen(addr, "/seen", log);
    assert_ne!(after.id, first.id, "the timed-out instance served again");
    assert_eq!(after.count, 1, "{after:?}");
}
