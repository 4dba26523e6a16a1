//! Several nodes: three `lepton serve` processes on one real PostgreSQL desired state, each on its
//! own ports, serve every app; one node killed with `kill -9` under load costs only the requests
//! sent to it, the others keep answering, and a change through any surviving node reaches the
//! rest.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lepton_testkit::{TestPostgres, http_request_to_host};
use support::serve::{Serve, converge};
use support::*;

/// Keeps requesting `shop.example.com` on one ingress; counts successes and failures.
struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(ingress: String) -> Self {
        let (ok, failed, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = std::thread::spawn({
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match http_request_to_host(&ingress, "shop.example.com", "GET", "/", &[], b"") {
                        Ok(res) if res.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }
        });
        Self {
            ok,
            failed,
            stop,
            thread,
        }
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn three_nodes_serve_every_app_and_survive_one_killed() {
    require_guest_builds();
    let pg = TestPostgres::start().expect("PostgreSQL");
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    let (p2, p3) = (format!("{reg}/hello:p2"), format!("{reg}/hello:p3"));
    push("hello-p2", &p2);
    push("hello-p3", &p3);
    let url = format!("{}?sslmode=disable", pg.url());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Serve> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Serve::start(
                d.path(),
                &url,
                &format!("node-{i}"),
                &free_addr(),
                &free_addr(),
            )
        })
        .collect();
    let body = |r: &str| format!(r#"{{"reference":"{r}","hosts":["shop.example.com"]}}"#);
    let (status, json) = nodes[0].api("PUT", "/v1/apps/shop", &body(&p2));
    assert_eq!(status, 200, "{json}");
    let serves = |node: &Serve, generation: &str| {
        http_request_to_host(&node.ingress, "shop.example.com", "GET", "/", &[], b"")
            .is_ok_and(|r| r.text() == format!("Hello from hello ({generation})\n"))
    };
    let all: Vec<&Serve> = nodes.iter().collect();
    for node in &nodes {
        converge("every node serves the app", &all, || serves(node, "p2"));
    }

    // Load on every node, then kill -9 the last one.
    let loads: Vec<Load> = nodes
        .iter()
        .map(|n| Load::start(n.ingress.clone()))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before_kill: Vec<(u64, u64)> = loads.iter().map(Load::counts).collect();
    let killed = std::process::Command::new("kill")
        .args(["-9", &nodes[2].pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(500));

    // A change through a surviving node reaches the other survivor.
    let (status, json) = nodes[1].api("PUT", "/v1/apps/shop", &body(&p3));
    assert_eq!(status, 200, "{json}");
    converge("replace through node 1 reaches node 0", &all, || {
        serves(&nodes[0], "p3")
    });
    std::thread::sleep(Duration::from_millis(300));

    let results: Vec<(u64, u64)> = loads.into_iter().map(Load::finish).collect();
    eprintln!(
        "requests per node (ok, failed) before the kill: {before_kill:?}; at the end: {results:?}"
    );
    for (i, (ok, failed)) in results.iter().enumerate().take(2) {
        assert_eq!(
            *failed, 0,
            "node {i} failed requests while node 2 died and the app was replaced"
        );
        assert!(*ok > before_kill[i].0, "node {i} kept serving");
    }
    assert_eq!(
        before_kill[2].1, 0,
        "node 2 served cleanly before it was killed"
    );
    assert!(results[2].1 > 0, "requests to the killed node fail");
}
