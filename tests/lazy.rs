//! Lazy loading and eviction through the real `lepton serve` binary: apps are routable before
//! they are loaded, load on their first request (concurrent first requests share one load),
//! are evicted under a memory budget and after an idle timeout, and come back on their next
//! request — without a failed request while loads and evictions race with traffic. `preload`
//! loads at once; a version whose load fails answers 503 and says why in its status.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use support::serve::{Serve, converge, hello_registry};
use support::*;

fn metric(serve: &Serve, name: &str) -> f64 {
    let (status, _) = serve.api("GET", "/v1/apps", "");
    assert_eq!(status, 200);
    let res = request(
        &serve.admin,
        "GET",
        "/metrics",
        &[(
            "authorization",
            &format!("Bearer {}", support::serve::TOKEN),
        )],
        b"",
    )
    .expect("metrics");
    let text = res.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// One request to app `name`, counted as served (its hello answer) or failed.
fn ask(serve: &Serve, name: &str, generation: &str, served: &AtomicUsize, failures: &AtomicUsize) {
    let res = serve.via(&format!("{name}.example.com"), "/");
    if (res.status, res.text()) == (200, format!("Hello from hello ({generation})\n")) {
        served.fetch_add(1, Ordering::Relaxed);
    } else {
        eprintln!("{name}: {} {}", res.status, res.text());
        failures.fetch_add(1, Ordering::Relaxed);
    }
}

fn load_state(serve: &Serve, app: &str) -> Value {
    let (status, json) = serve.api("GET", &format!("/v1/apps/{app}"), "");
    assert_eq!(status, 200, "{json}");
    json["status"]["load"].clone()
}

#[test]
fn apps_load_on_first_request_are_evicted_under_a_budget_and_come_back_without_a_failure() {
    let (_registry, p2, p3) = hello_registry();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (admin, ingress) = (free_addr(), free_addr());
    // A budget smaller than one app's compiled code: each load evicts every other idle app.
    let serve = Serve::start_with_args(
        tmp.path(),
        "lepton.db",
        "node-a",
        &admin,
        &ingress,
        &["--app-memory-budget", "1"],
    );
    let apps = [("a", &p2, "p2"), ("b", &p2, "p2"), ("c", &p3, "p3")];
    for (name, reference, _) in apps {
        let body = format!(r#"{{"reference":"{reference}","hosts":["{name}.example.com"]}}"#);
        let (status, json) = serve.api("PUT", &format!("/v1/apps/{name}"), &body);
        assert_eq!(status, 200, "{json}\n{}", serve.log());
        // Routable at once, not loaded: no digest yet.
        assert_eq!(json["status"]["state"], "serving", "{json}");
    }
    assert_eq!(load_state(&serve, "a")["state"], "idle");
    assert_eq!(metric(&serve, "lepton_apps_loaded"), 0.0);

    // Health checks do not load an app.
    let health = serve.via("a.example.com", "/.well-known/spin/health");
    assert_eq!((health.status, health.text()), (200, "OK".to_string()));
    assert_eq!(load_state(&serve, "a")["state"], "idle");

    // Traffic to all three from four clients at once: loads and evictions race with requests.
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..4 {
            let (failures, served, serve) = (failures.clone(), served.clone(), &serve);
            s.spawn(move || {
                for i in 0..40 {
                    let (name, _, generation) = apps[(t + i) % apps.len()];
                    ask(serve, name, generation, &served, &failures);
                }
            });
        }
    });
    assert_eq!(failures.load(Ordering::Relaxed), 0, "{}", serve.log());
    assert_eq!(served.load(Ordering::Relaxed), 160);
    let (loads, evictions) = (
        metric(&serve, "lepton_app_loads_total"),
        metric(&serve, "lepton_app_evictions_total"),
    );
    eprintln!("160 requests: {loads} loads, {evictions} evictions");
    assert!(evictions >= 1.0, "nothing was evicted under a 1 MiB budget");
    assert!(
        loads > 3.0,
        "evicted apps were never loaded again ({loads} loads)"
    );
    // Never more than one app loaded past the budget at rest.
    converge("one app loaded at most", &[&serve], || {
        metric(&serve, "lepton_apps_loaded") <= 1.0
    });

    // A loaded app reports its digest, routes and trigger types.
    serve.says("c.example.com", "p3");
    let (_, c) = serve.api("GET", "/v1/apps/c", "");
    assert_eq!(c["status"]["load"]["state"], "loaded", "{c}");
    assert!(
        c["status"]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{c}"
    );
    assert_eq!(c["status"]["routes"], serde_json::json!(["/..."]), "{c}");
    assert_eq!(c["status"]["triggers"], serde_json::json!(["http"]), "{c}");
}

#[test]
fn idle_apps_are_evicted_preloaded_ones_load_at_once_and_a_broken_one_answers_503() {
    let (registry, p2, _) = hello_registry();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (admin, ingress) = (free_addr(), free_addr());
    let serve = Serve::start_with_args(
        tmp.path(),
        "lepton.db",
        "node-a",
        &admin,
        &ingress,
        &["--app-idle-timeout", "1"],
    );
    // Preloaded: loaded (and checked) before the PUT answers.
    let body = format!(r#"{{"reference":"{p2}","hosts":["pre.example.com"],"preload":true}}"#);
    let (status, json) = serve.api("PUT", "/v1/apps/pre", &body);
    assert_eq!(status, 200, "{json}\n{}", serve.log());
    assert!(json["status"]["digest"].is_string(), "{json}");
    assert_eq!(load_state(&serve, "pre")["state"], "loaded");

    // Unused for a second: evicted; the next request loads it again.
    converge("the idle app evicted", &[&serve], || {
        load_state(&serve, "pre")["state"] == "idle"
    });
    serve.says("pre.example.com", "p2");
    assert_eq!(load_state(&serve, "pre")["state"], "loaded");

    // A reference that cannot load: routable, but its requests get 503 and its status says why.
    let missing = format!("{}/nothing:here", registry.addr());
    let body = format!(r#"{{"reference":"{missing}","hosts":["broken.example.com"]}}"#);
    let (status, json) = serve.api("PUT", "/v1/apps/broken", &body);
    assert_eq!(status, 200, "{json}");
    let res = serve.via("broken.example.com", "/");
    assert_eq!(res.status, 503, "{}", res.text());
    assert_eq!(res.header("retry-after"), Some("2"));
    let load = load_state(&serve, "broken");
    assert_eq!(load["state"], "failed", "{load}");
    assert!(
        load["error"]
            .as_str()
            .is_some_and(|e| e.contains("nothing")),
        "{load}"
    );
    // The neighbour is unaffected.
    serve.says("pre.example.com", "p2");
}

#[test]
fn a_cold_app_is_served_on_winch_code_then_moves_to_cranelift_code_without_a_failed_request() {
    let (_registry, p2, p3) = hello_registry();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (admin, ingress) = (free_addr(), free_addr());
    // A cold cache: nothing compiled yet. Quick compiles are on by default.
    let serve = Serve::start(tmp.path(), "lepton.db", "node-a", &admin, &ingress);
    assert!(
        serve.log().contains("first compiles use Winch"),
        "{}",
        serve.log()
    );
    let apps = [("a", &p2, "p2"), ("c", &p3, "p3")];
    for (name, reference, _) in apps {
        let body = format!(r#"{{"reference":"{reference}","hosts":["{name}.example.com"]}}"#);
        let (status, json) = serve.api("PUT", &format!("/v1/apps/{name}"), &body);
        assert_eq!(status, 200, "{json}");
    }
    let reloaded = |log: &str| log.matches("app reloaded on optimized code").count();
    let (failures, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|s| {
        for t in 0..3 {
            let (failures, served, done, serve) =
                (failures.clone(), served.clone(), done.clone(), &serve);
            s.spawn(move || {
                let mut i = t;
                while !done.load(Ordering::Relaxed) {
                    let (name, _, generation) = apps[i % apps.len()];
                    i += 1;
                    ask(serve, name, generation, &served, &failures);
                }
            });
        }
        // The clients stop however this ends (a failed wait must not leave them running).
        let _stop = StopOnDrop(done.clone());
        // Both apps reach Cranelift's code while the clients keep asking.
        converge("both apps reloaded on optimized code", &[&serve], || {
            reloaded(&serve.log()) >= 2
        });
        // Some traffic on the optimized code too.
        let at = served.load(Ordering::Relaxed);
        converge("requests served after the reload", &[&serve], || {
            served.load(Ordering::Relaxed) >= at + 20
        });
    });
    let log = serve.log();
    assert_eq!(failures.load(Ordering::Relaxed), 0, "{log}");
    assert_eq!(reloaded(&log), 2, "each app moves once: {log}");
    assert_eq!(log.matches("optimized code ready").count(), 2, "{log}");
    // Cranelift's artifacts are on disk, Winch's are removed once those are: the next process
    // maps Cranelift's.
    let compiled = tmp.path().join("cache").join("compiled");
    converge("only Cranelift's two artifacts left", &[&serve], || {
        walk_cwasm(&compiled) == 2
    });
    for (name, _, generation) in apps {
        serve.says(&format!("{name}.example.com"), generation);
        assert_eq!(load_state(&serve, name)["state"], "loaded");
    }
}

struct StopOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn walk_cwasm(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_cwasm(&path)
            } else {
                usize::from(path.extension().is_some_and(|x| x == "cwasm"))
            }
        })
        .sum()
}
