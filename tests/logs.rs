//! Logs for operators: `--log-format json` writes one JSON object per stderr line, and every
//! request gets a line (`lepton::request` target) naming its app, method, path, status and time.

mod support;

use serde_json::Value;
use support::*;

#[test]
fn json_logs_carry_a_line_per_request_with_its_app() {
    require_guest_builds();
    let registry = TestRegistry::start().expect("registry");
    let reference = format!("{}/hello-p2:v1", registry.addr());
    push("hello-p2", &reference);
    let tmp = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let manifest = one_app_manifest(tmp.path(), "shop", &reference, &addr);
    let mut lepton = Lepton::start_with_args(
        &manifest,
        &tmp.path().join("cache"),
        &tmp.path().join("logs"),
        &["--log-format", "json"],
    );
    lepton.wait_stdout_contains("1 of 1 apps serving");
    lepton.wait_healthy(&[&addr]);
    assert_eq!(get(&addr, "/hello").expect("hello").status, 200);
    assert_eq!(get(&addr, "/log").expect("log").status, 200);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let lines: Vec<Value> = loop {
        let log = lepton.stderr();
        let lines: Vec<Value> = log
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect();
        let requests = lines
            .iter()
            .filter(|l| l["target"] == "lepton::request")
            .count();
        if requests >= 2 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let request = lines
        .iter()
        .find(|l| l["target"] == "lepton::request" && l["path"] == "/hello")
        .unwrap_or_else(|| panic!("no request line for /hello in {lines:#?}"));
    assert_eq!(request["app"], "shop", "{request}");
    assert_eq!(request["method"], "GET", "{request}");
    assert_eq!(request["status"], 200, "{request}");
    assert_eq!(request["level"], "INFO", "{request}");
    assert!(
        request["ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{request}"
    );
    assert!(request["timestamp"].is_string(), "{request}");
    // The guest's own output goes to the app's log files, not lepton's stderr.
    let stdout =
        std::fs::read_to_string(tmp.path().join("state/logs/hello_stdout.txt")).unwrap_or_default();
    assert!(stdout.contains("log-line-stdout"), "{stdout}");
}
