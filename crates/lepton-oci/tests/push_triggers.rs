//! `lepton push` publishes apps with non-HTTP triggers as `spin registry push` does: the
//! `[[trigger.redis]]` / `[[trigger.cron]]` entries and the app-level Redis address travel in the
//! locked-app layer verbatim (templates unresolved), for the guest apps `apps/redis-rs` and
//! `apps/cron-rs`.

mod common;

use std::path::Path;

use common::*;
use lepton_oci::{PushOptions, RegistryOptions, push_with_options};
use lepton_testkit::TestRegistry;
use serde_json::{Value, json};

/// Push `apps/<app>/spin.toml` (a stand-in Wasm when the guest is not built: the lock is what
/// is checked) and return the published locked app.
async fn push_and_read_lock(reg: &TestRegistry, app: &str) -> Value {
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps");
    let dir = tempfile::tempdir().expect("dir");
    let manifest = std::fs::read_to_string(apps.join(app).join("spin.toml")).expect("spin.toml");
    let wasm = dir.path().join("app.wasm");
    std::fs::write(&wasm, wasm_bytes()).expect("wasm");
    let manifest: String = manifest
        .lines()
        .map(|line| {
            if line.starts_with("source = ") {
                format!("source = {:?}", wasm.display().to_string())
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("spin.toml"), manifest).expect("write");
    let repo = format!("test/{app}");
    let outcome = push_with_options(
        &dir.path().join("spin.toml"),
        &format!("{}/{repo}:v1", reg.addr()),
        &RegistryOptions::default(),
        &PushOptions::default(),
    )
    .await
    .expect("push");
    serde_json::from_slice(&get_blob(reg, &repo, &outcome.locked_app_digest)).expect("lock")
}

#[tokio::test]
async fn redis_and_cron_triggers_are_published_verbatim() {
    let reg = TestRegistry::start().expect("registry");

    let redis = push_and_read_lock(&reg, "redis-rs").await;
    assert_eq!(
        redis["triggers"],
        json!([{"id": "recorder-redis-trigger", "trigger_type": "redis",
                "trigger_config": {"channel": "{{ channel }}", "component": "recorder"}}])
    );
    assert_eq!(
        redis["metadata"]["triggers"],
        json!({"redis": {"address": "{{ redis_url }}"}})
    );
    assert_eq!(
        redis["metadata"]["trigger"],
        json!({"type": "redis", "address": "{{ redis_url }}"})
    );

    let cron = push_and_read_lock(&reg, "cron-rs").await;
    assert_eq!(
        cron["triggers"],
        json!([{"id": "ticker-cron-trigger", "trigger_type": "cron",
                "trigger_config": {"component": "ticker", "cron_expression": "* * * * * *"}}])
    );
    assert_eq!(cron["metadata"]["trigger"], json!({"type": "cron"}));
}
