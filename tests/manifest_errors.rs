//! Bad input to `lepton`: the whole manifest is validated before anything listens, each problem
//! named by file, field and app; one app that cannot load does not stop the others.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

fn run_expecting_failure(manifest: &std::path::Path, cache: &std::path::Path) -> String {
    let out = Command::new(lepton_bin())
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .env("LEPTON_LOG", "warn")
        .output()
        .expect("run lepton");
    assert!(!out.status.success(), "lepton must refuse this manifest");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn invalid_manifests_are_refused_before_listening() {
    let work = tempfile::tempdir().expect("tempdir");
    let cache = work.path().join("cache");
    let shared = free_addr();
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!({ "apps": [
            { "reference": "127.0.0.1:1/a:v1", "address": shared, "state_dir": "a" },
            { "reference": "127.0.0.1:1/b:v1", "address": shared, "state_dir": "b" },
            { "reference": "NOT a reference", "address": "localhost-ish", "state_dir": "c" },
        ]}))
        .expect("json"),
    )
    .expect("write");
    let stderr = run_expecting_failure(&manifest, &cache);
    let file = manifest.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{file}: apps[1] (127.0.0.1:1/b:v1): `address`: {shared} is already used by apps[0]"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("apps[2] (NOT a reference): `reference`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apps[2] (NOT a reference): `address`"),
        "{stderr}"
    );
    // Nothing was bound.
    assert!(
        std::net::TcpListener::bind(&shared).is_ok(),
        "no listener may have been started"
    );

    // Syntax errors point at the line.
    std::fs::write(
        &manifest,
        "{ \"apps\": [\n  { \"reference\": \"r/x:1\",, } ] }",
    )
    .expect("write");
    let stderr = run_expecting_failure(&manifest, &cache);
    assert!(stderr.contains(&format!("{file}: line 2")), "{stderr}");

    // Unknown fields are named.
    std::fs::write(&manifest, r#"{"apps":[{"reference":"r/x:1","address":"127.0.0.1:1","state_dir":"a","stat_dir":"b"}]}"#).expect("write");
    let stderr = run_expecting_failure(&manifest, &cache);
    assert!(stderr.contains("stat_dir"), "{stderr}");

    // Bad limits are refused naming file, app and field; so are bad host-wide defaults.
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!({ "apps": [
            { "name": "shop", "reference": "127.0.0.1:1/a:v1", "address": free_addr(), "state_dir": "a",
              "limits": { "request_timeout_ms": 0, "memory_mib": 99999, "max_queued_requests": "many", "cpu": 1 } },
        ]}))
        .expect("json"),
    )
    .expect("write");
    let stderr = run_expecting_failure(&manifest, &cache);
    for field in [
        "`limits.request_timeout_ms`: must be a whole number from 1 to 86400000, found 0",
        "`limits.memory_mib`: must be a whole number from 1 to 4096, found 99999",
        "`limits.max_queued_requests`: must be a whole number from 0 to 1000000, found \"many\"",
        "`limits`: unknown limit `cpu`",
    ] {
        assert!(
            stderr.contains(&format!("{file}: apps[0] (shop): {field}")),
            "{field}: {stderr}"
        );
    }
    let out = Command::new(lepton_bin())
        .arg(&manifest)
        .arg("--memory-mib")
        .arg("0")
        .output()
        .expect("run lepton");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--memory-mib"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A missing file is named.
    let stderr = run_expecting_failure(&work.path().join("nope.json"), &cache);
    assert!(
        stderr.contains("nope.json") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn one_app_failing_to_load_leaves_the_others_serving() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    push("hello-p2", &format!("{reg}/hello-p2:v1"));
    let good = free_addr();
    let bad = free_addr();
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&serde_json::json!({ "apps": [
            { "reference": format!("{reg}/hello-p2:v1"), "address": good, "state_dir": "good" },
            { "reference": format!("{reg}/does-not-exist:v9"), "address": bad, "state_dir": "bad" },
        ]}))
        .expect("json"),
    )
    .expect("write");
    // A relative cache dir (resolved against lepton's working directory) works too.
    let mut lepton = Lepton::start(&manifest, Path::new("cache"), &work.path().join("logs"));
    lepton.wait_healthy(&[&good]);
    assert_eq!(
        get(&good, "/").expect("get").text(),
        "Hello from hello (p2)\n"
    );
    assert!(get(&bad, "/").is_err());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lepton.stderr().contains("does-not-exist") {
        assert!(
            std::time::Instant::now() < deadline,
            "the failure names the app:\n{}",
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        lepton.stdout().contains("1 of 2 apps serving"),
        "{}",
        lepton.stdout()
    );
    assert!(lepton.terminate().success());
}
