//! Schema tests against the registry-form example of facts §2.5 and the runnable form.

use super::*;

const EXAMPLE: &str = r#"{
  "spin_lock_version": 0,
  "metadata": {
    "authors": ["Jane Doe <jane@example.com>"],
    "name": "hello",
    "trigger": { "type": "http" },
    "triggers": {},
    "version": "0.1.0"
  },
  "variables": {
    "greeting": { "default": "Hello" }
  },
  "triggers": [
    {
      "id": "hello-http-trigger",
      "trigger_type": "http",
      "trigger_config": { "component": "hello", "route": "/..." }
    }
  ],
  "components": [
    {
      "id": "hello",
      "metadata": {
        "allowed_outbound_hosts": ["https://api.example.com"],
        "key_value_stores": ["default"]
      },
      "source": {
        "content_type": "application/wasm",
        "digest": "sha256:6f1c0d0000000000000000000000000000000000000000000000000000000000"
      },
      "env": { "RUST_LOG": "info" },
      "files": [
        { "digest": "sha256:9a3e000000000000000000000000000000000000000000000000000000000000", "path": "static/index.html" },
        { "inline": "aGk", "digest": "sha256:8f43000000000000000000000000000000000000000000000000000000000000", "path": "static/robots.txt" }
      ],
      "config": { "greeting": "{{ greeting }}" }
    }
  ]
}"#;

fn as_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn example_round_trips_exactly() {
    let app = LockedApp::from_json(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(app.spin_lock_version, 0);
    assert_eq!(app.variables["greeting"].default.as_deref(), Some("Hello"));
    let c = &app.components[0];
    assert_eq!(c.source.content_type, WASM_CONTENT_TYPE);
    assert!(c.source.content.source.is_none());
    assert_eq!(c.files[1].content.inline.as_deref(), Some(&b"hi"[..]));
    assert_eq!(c.files[1].path, "static/robots.txt");
    assert_eq!(c.config["greeting"], "{{ greeting }}");
    assert_eq!(app.triggers[0].trigger_config["route"], "/...");

    let written = app.to_json_vec().unwrap();
    assert_eq!(as_value(&written), as_value(EXAMPLE.as_bytes()));
    // Written text has no keys for empty/false things.
    let text = String::from_utf8(written).unwrap();
    for absent in [
        "must_understand",
        "host_requirements",
        "secret",
        "dependencies",
        "trigger_dependencies",
    ] {
        assert!(!text.contains(absent), "{absent} should be omitted: {text}");
    }
}

#[test]
fn runnable_form_round_trips() {
    let json = r#"{"spin_lock_version":0,"metadata":{"origin":"vnd.fermyon.origin-oci:ghcr.io/jane/hello:0.1.0"},
      "triggers":[],"components":[{"id":"hello","source":{"content_type":"application/wasm",
      "source":"file:///cache/wasm/sha256:ab","digest":"sha256:ab"},
      "files":[{"source":"file:///work/assets/hello","path":"/"}]}]}"#;
    let app = LockedApp::from_json(json.as_bytes()).unwrap();
    assert_eq!(
        as_value(&app.to_json_vec().unwrap()),
        as_value(json.as_bytes())
    );
}

#[test]
fn secret_is_emitted_only_when_true() {
    let v = LockedVariable {
        secret: true,
        ..Default::default()
    };
    assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"secret":true}"#);
}

#[test]
fn version_and_must_understand_are_enforced() {
    let v2 = r#"{"spin_lock_version":2,"triggers":[],"components":[]}"#;
    let err = LockedApp::from_json(v2.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("spin_lock_version 2"), "{err}");

    let mu = r#"{"spin_lock_version":1,"must_understand":["time_travel"],"triggers":[],"components":[]}"#;
    let err = LockedApp::from_json(mu.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("time_travel"), "{err}");

    let ok = r#"{"spin_lock_version":1,"must_understand":["host_requirements"],
      "host_requirements":{"local_service_chaining":"required","middleware":"optional"},
      "triggers":[],"components":[]}"#;
    let app = LockedApp::from_json(ok.as_bytes()).unwrap();
    assert_eq!(
        app.host_requirements.len(),
        1,
        "optional requirements are dropped"
    );

    let unknown = r#"{"spin_lock_version":1,"host_requirements":{"teleport":"required"},"triggers":[],"components":[]}"#;
    let err = LockedApp::from_json(unknown.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("teleport"), "{err}");
}

#[test]
fn missing_required_fields_are_errors() {
    let err = LockedApp::from_json(br#"{"spin_lock_version":0,"triggers":[]}"#).unwrap_err();
    assert!(err.to_string().contains("components"), "{err}");
}
