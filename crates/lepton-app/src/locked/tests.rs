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

/// A minimal runnable app with one component `a` and one trigger `a-http-trigger`, with `patch`
/// merged into the component (`"component"`), trigger (`"trigger"`) or app (`"app"`).
fn app_with(patch: Value) -> LockedApp {
    let mut app = serde_json::json!({
        "spin_lock_version": 1,
        "triggers": [{"id": "a-http-trigger", "trigger_type": "http",
                      "trigger_config": {"component": "a", "route": "/..."}}],
        "components": [{"id": "a", "source": {"content_type": "application/wasm",
                        "source": "file:///a.wasm"}}]
    });
    for (target, fields) in patch.as_object().unwrap() {
        let obj = match target.as_str() {
            "component" => &mut app["components"][0],
            "trigger" => &mut app["triggers"][0],
            _ => &mut app,
        };
        for (k, v) in fields.as_object().unwrap() {
            obj[k] = v.clone();
        }
    }
    LockedApp::from_json(&serde_json::to_vec(&app).unwrap()).unwrap()
}

fn dep() -> Value {
    serde_json::json!({"source": {"content_type": "application/wasm", "digest": "sha256:00"},
                       "export": null})
}

#[test]
fn plain_and_service_chaining_apps_are_runnable() {
    app_with(serde_json::json!({})).ensure_runnable().unwrap();
    app_with(serde_json::json!({
        "app": {"must_understand": ["host_requirements", "component_host_requirements"],
                "host_requirements": {"local_service_chaining": "required", "middleware": "optional"}},
        "component": {"host_requirements": {"local_service_chaining": "required"}}
    }))
    .ensure_runnable()
    .unwrap();
}

#[test]
fn component_dependencies_are_refused() {
    let app = app_with(serde_json::json!({
        "component": {"dependencies": {"pkg:name": dep(), "aux:lib/iface@1.0.0": dep()}}
    }));
    let err = app.ensure_runnable().unwrap_err();
    assert!(matches!(err, AppError::UncomposedDependencies { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with("component `a` has uncomposed dependencies (")
            && msg.contains("`pkg:name`")
            && msg.contains("`aux:lib/iface@1.0.0`")
            && msg.ends_with("); lepton cannot compose components yet"),
        "{msg}"
    );
    // The dependencies survive a round trip (they are refused, not dropped).
    let again = LockedApp::from_json(&app.to_json_vec().unwrap()).unwrap();
    assert_eq!(again.components[0].dependencies.len(), 2);
}

#[test]
fn trigger_middleware_is_refused() {
    let app = app_with(serde_json::json!({
        "trigger": {"trigger_dependencies": {"middleware": [dep()]}}
    }));
    assert_eq!(
        app.ensure_runnable().unwrap_err().to_string(),
        "trigger `a-http-trigger` has middleware (trigger_dependencies) that lepton cannot \
         apply yet; refusing to serve it without its middleware"
    );
}

#[test]
fn component_trigger_dependencies_are_kept_and_refused() {
    let app = app_with(serde_json::json!({
        "component": {"trigger_dependencies": {"middleware": [dep()]}}
    }));
    assert_eq!(app.components[0].trigger_dependencies.len(), 1);
    let text = String::from_utf8(app.to_json_vec().unwrap()).unwrap();
    assert!(text.contains("trigger_dependencies"), "{text}");
    let msg = app.ensure_runnable().unwrap_err().to_string();
    assert!(
        msg.contains("component `a` has middleware (trigger_dependencies)"),
        "{msg}"
    );
}

#[test]
fn middleware_host_requirement_is_refused() {
    let app = app_with(serde_json::json!({
        "app": {"must_understand": ["host_requirements"],
                "host_requirements": {"middleware": "required"}}
    }));
    let msg = app.ensure_runnable().unwrap_err().to_string();
    assert!(
        msg.starts_with("host_requirements requires `middleware`"),
        "{msg}"
    );

    let app = app_with(serde_json::json!({
        "app": {"must_understand": ["component_host_requirements"]},
        "component": {"host_requirements": {"middleware": "required"}}
    }));
    let msg = app.ensure_runnable().unwrap_err().to_string();
    assert!(
        msg.starts_with("component `a` host_requirements requires `middleware`"),
        "{msg}"
    );
}

#[test]
fn errors_do_not_repeat_their_source() {
    use std::error::Error as _;
    let err = LockedApp::from_json(b"{").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("invalid locked app JSON: "), "{msg}");
    if let Some(source) = err.source() {
        assert!(!msg.contains(&source.to_string()), "{msg}");
    }
    let io = AppError::Io {
        path: "/x/spin.toml".into(),
        source: std::io::Error::other("disk on fire"),
    };
    assert_eq!(io.to_string(), "cannot access /x/spin.toml");
    assert_eq!(io.source().unwrap().to_string(), "disk on fire");
}
