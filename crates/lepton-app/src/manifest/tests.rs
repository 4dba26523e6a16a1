//! Manifest conversion tests: inline TOML against real files in a temp dir. Redis and cron
//! triggers are in [`triggers`].

mod triggers;

use std::path::{Path, PathBuf};

use serde_json::json;

use super::from_toml_str;
use crate::{AppError, LockedApp};

struct App {
    dir: tempfile::TempDir,
}

impl App {
    fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
        let stat = dir.path().join("static/sub");
        std::fs::create_dir_all(&stat).unwrap();
        std::fs::write(dir.path().join("static/index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::write(stat.join("deep.txt"), b"deep").unwrap();
        std::fs::write(dir.path().join("static/skip.bak"), b"skip").unwrap();
        App { dir }
    }
    fn manifest(&self) -> PathBuf {
        self.dir.path().join("spin.toml")
    }
    fn load(&self, toml: &str) -> Result<LockedApp, AppError> {
        from_toml_str(toml, &self.manifest())
    }
    fn url(&self, rel: &str) -> String {
        crate::file_url::from_path(&self.dir.path().join(rel))
    }
}

const HEADER: &str = r#"
spin_manifest_version = 2
[application]
name = "hello"
version = "0.1.0"
description = ""
authors = ["Jane Doe <jane@example.com>"]
"#;

fn with_header(rest: &str) -> String {
    format!("{HEADER}\n{rest}")
}

#[test]
fn full_app_converts_like_spin() {
    let app = App::new();
    let toml = with_header(
        r#"
[application.trigger.http]
base = "/"

[variables]
greeting = { default = "Hello" }
token = { required = true, secret = true }

[[trigger.http]]
route = "/..."
component = "hello"

[[trigger.http]]
id = "internal"
route = { private = true }
component = "hello"
executor = { type = "wagi" }

[component.hello]
source = "./hello.wasm"
description = "says hello"
files = ["static/*.html", { source = "static/sub", destination = "/assets" }]
exclude_files = ["**/*.bak"]
environment = { RUST_LOG = "info" }
allowed_outbound_hosts = ["https://api.example.com"]
key_value_stores = ["default"]
sqlite_databases = ["default"]
variables = { greeting = "{{ greeting }}" }
[component.hello.build]
command = "cargo build"
"#,
    );
    let locked = app.load(&toml).unwrap();
    assert_eq!(locked.spin_lock_version, 0);
    let meta = serde_json::Value::Object(locked.metadata.clone());
    assert_eq!(meta["name"], "hello");
    assert_eq!(meta["version"], "0.1.0");
    assert!(
        meta.get("description").is_none(),
        "empty description omitted"
    );
    assert_eq!(meta["authors"], json!(["Jane Doe <jane@example.com>"]));
    assert_eq!(meta["trigger"], json!({"type": "http", "base": "/"}));
    assert_eq!(meta["triggers"], json!({"http": {"base": "/"}}));
    assert_eq!(
        meta["origin"],
        json!(crate::file_url::from_path(&app.manifest()))
    );

    assert_eq!(
        locked.variables["greeting"].default.as_deref(),
        Some("Hello")
    );
    assert!(locked.variables["token"].secret);
    assert!(locked.variables["token"].default.is_none());

    assert_eq!(locked.triggers.len(), 2);
    assert_eq!(locked.triggers[0].id, "hello-http-trigger");
    assert_eq!(
        locked.triggers[0].trigger_config,
        json!({"route": "/...", "component": "hello"})
    );
    assert_eq!(locked.triggers[1].id, "internal");
    assert_eq!(
        locked.triggers[1].trigger_config,
        json!({"route": {"private": true}, "component": "hello", "executor": {"type": "wagi"}})
    );

    let c = &locked.components[0];
    assert_eq!(c.id, "hello");
    assert_eq!(c.source.content_type, "application/wasm");
    assert_eq!(c.source.content.source, Some(app.url("hello.wasm")));
    let files: Vec<(String, String)> = c
        .files
        .iter()
        .map(|f| (f.path.clone(), f.content.source.clone().unwrap()))
        .collect();
    assert_eq!(
        files,
        vec![
            (
                "assets/deep.txt".to_string(),
                app.url("static/sub/deep.txt")
            ),
            (
                "static/index.html".to_string(),
                app.url("static/index.html")
            ),
        ]
    );
    assert_eq!(c.env["RUST_LOG"], "info");
    assert_eq!(c.config["greeting"], "{{ greeting }}");
    let cmeta = serde_json::Value::Object(c.metadata.clone());
    assert_eq!(cmeta["databases"], json!(["default"]));
    assert!(cmeta.get("sqlite_databases").is_none());
    assert_eq!(cmeta["key_value_stores"], json!(["default"]));
    assert_eq!(cmeta["description"], "says hello");
    // `build` is kept in metadata (Spin serializes ComponentBuildConfig there; it is pushed).
    assert_eq!(cmeta["build"], json!({"command": "cargo build"}));

    // The local lock is itself valid LockedApp JSON.
    let again = LockedApp::from_json(&locked.to_json_vec().unwrap()).unwrap();
    assert_eq!(again, locked);
}

#[test]
fn service_chaining_sets_host_requirements() {
    let app = App::new();
    let toml = with_header(
        r#"
[[trigger.http]]
route = "/"
component = "a"
[component.a]
source = "hello.wasm"
allowed_outbound_hosts = ["http://*.spin.internal"]
"#,
    );
    let locked = app.load(&toml).unwrap();
    assert_eq!(locked.spin_lock_version, 1);
    assert_eq!(
        locked.host_requirements["local_service_chaining"],
        "required"
    );
    assert!(
        locked
            .must_understand
            .contains(&"host_requirements".to_string())
    );
    LockedApp::from_json(&locked.to_json_vec().unwrap()).unwrap();
}

fn err(app: &App, rest: &str) -> String {
    app.load(&with_header(rest)).unwrap_err().to_string()
}

fn assert_err(msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} should contain {n:?}");
    }
    assert!(
        msg.contains("spin.toml"),
        "error {msg:?} should name the manifest"
    );
}

#[test]
fn unsupported_and_unknown_fields_are_named() {
    let app = App::new();
    let trig = "[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n";

    let e = err(
        &app,
        &format!(
            "{trig}[component.a]\nsource = {{ url = \"https://x/y.wasm\", digest = \"sha256:00\" }}\n"
        ),
    );
    assert_err(
        &e,
        &["unsupported field component.a.source (url/registry sources)"],
    );

    let e = err(
        &app,
        &format!(
            "{trig}[component.a]\nsource = \"hello.wasm\"\n[component.a.dependencies]\n\"foo:bar\" = \"1.0\"\n"
        ),
    );
    assert_err(
        &e,
        &[
            "component.a.dependencies",
            "composition",
            "not supported yet",
        ],
    );

    let e = err(
        &app,
        &format!("{trig}[component.a]\nsource = \"hello.wasm\"\nfrobnicate = true\n"),
    );
    assert_err(&e, &["unknown field component.a.frobnicate"]);

    let e = err(
        &app,
        "[[trigger.http]]\nroute = \"/\"\ncomponent = { source = \"hello.wasm\" }\n",
    );
    assert_err(&e, &["trigger.http[0].component", "inline component"]);

    let e = err(
        &app,
        "[[trigger.http]]\nroute = \"/\"\ncomponent = \"nope\"\n",
    );
    assert_err(&e, &["trigger.http[0].component", "nope"]);

    let e = err(
        &app,
        &format!(
            "{trig}[component.a]\nsource = \"hello.wasm\"\n[[trigger.sqs]]\nqueue = \"x\"\ncomponent = \"a\"\n"
        ),
    );
    assert_err(
        &e,
        &[
            "unsupported field trigger.sqs",
            "trigger type `sqs` is not supported",
        ],
    );

    let e = err(
        &app,
        &format!(
            "[application.trigger.http]\nbase = \"/api\"\n{trig}[component.a]\nsource = \"hello.wasm\"\n"
        ),
    );
    assert_err(&e, &["application.trigger.http.base", "/api"]);

    let e = err(
        &app,
        &format!(
            "[variables]\nv = {{ default = \"x\", required = true }}\n{trig}[component.a]\nsource = \"hello.wasm\"\n"
        ),
    );
    assert_err(&e, &["variables.v", "both"]);

    let e = err(
        &app,
        &format!("{trig}[component.a]\nsource = \"missing.wasm\"\n"),
    );
    assert_err(&e, &["component.a.source", "missing.wasm"]);

    let e = err(
        &app,
        &format!("{trig}[component.a]\nsource = \"hello.wasm\"\nfiles = [\"../etc/*\"]\n"),
    );
    assert_err(&e, &["component.a.files[0]"]);

    let e = err(
        &app,
        &format!(
            "{trig}[component.a]\nsource = \"hello.wasm\"\nfiles = [{{ source = \"static\", destination = \"rel\" }}]\n"
        ),
    );
    assert_err(&e, &["component.a.files[0].destination"]);

    let e = err(
        &app,
        "[[trigger.http]]\nroute = { private = false }\ncomponent = \"a\"\n[component.a]\nsource = \"hello.wasm\"\n",
    );
    assert_err(&e, &["trigger.http[0].route"]);

    let e = err(&app, "[extra]\nx = 1\n");
    assert_err(&e, &["unknown field extra"]);
}

#[test]
fn manifest_version_must_be_2() {
    let app = App::new();
    let e = app
        .load("spin_manifest_version = \"1\"\nname = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spin_manifest_version") || e.contains("unknown field name"),
        "{e}"
    );
    let e = app
        .load("spin_manifest_version = 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("spin_manifest_version"), "{e}");
}

#[test]
fn load_manifest_reads_from_disk() {
    let app = App::new();
    std::fs::write(
        app.manifest(),
        with_header("[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n[component.a]\nsource = \"hello.wasm\"\n"),
    )
    .unwrap();
    let locked = super::load_manifest(&app.manifest()).unwrap();
    assert_eq!(locked.components[0].id, "a");
    let missing = super::load_manifest(Path::new("/nonexistent/spin.toml")).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/spin.toml"));
}

fn trigger_ids(locked: &LockedApp) -> Vec<&str> {
    locked.triggers.iter().map(|t| t.id.as_str()).collect()
}

#[test]
fn two_routes_to_one_component_get_spin_ids() {
    let app = App::new();
    let locked = app
        .load(&with_header(
            r#"
[[trigger.http]]
route = "/api/..."
component = "c"
[[trigger.http]]
route = "/v1/api/..."
component = "c"
[component.c]
source = "hello.wasm"
"#,
        ))
        .unwrap();
    assert_eq!(trigger_ids(&locked), ["c-http-trigger", "http-trigger1"]);
    assert_eq!(locked.triggers[1].trigger_config["route"], "/v1/api/...");
}

#[test]
fn static_response_and_explicit_ids_follow_spin_normalisation() {
    let app = App::new();
    // Explicit ids are reserved first: `http-trigger1` and `c-http-trigger` are taken, so the
    // static response gets `http-trigger2` and the second route to `c` gets `http-trigger3`.
    // An empty `id` counts as no id, as in Spin.
    let locked = app
        .load(&with_header(
            r#"
[[trigger.http]]
route = "/static"
static_response = { status_code = 200, body = "hi" }
[[trigger.http]]
route = "/a"
component = "c"
id = ""
[[trigger.http]]
id = "http-trigger1"
route = "/b"
component = "d"
[[trigger.http]]
id = "c-http-trigger"
route = "/c"
component = "d"
[component.c]
source = "hello.wasm"
[component.d]
source = "hello.wasm"
"#,
        ))
        .unwrap();
    assert_eq!(
        trigger_ids(&locked),
        [
            "http-trigger2",
            "http-trigger3",
            "http-trigger1",
            "c-http-trigger"
        ]
    );

    // Without collisions a static response simply gets `http-trigger1`.
    let locked = app
        .load(&with_header(
            r#"
[[trigger.http]]
route = "/"
component = "c"
[[trigger.http]]
route = "/health"
static_response = { status_code = 204 }
[component.c]
source = "hello.wasm"
"#,
        ))
        .unwrap();
    assert_eq!(trigger_ids(&locked), ["c-http-trigger", "http-trigger1"]);
}

#[test]
fn explicit_duplicate_trigger_ids_are_errors() {
    let app = App::new();
    let e = err(
        &app,
        r#"
[[trigger.http]]
id = "same"
route = "/a"
component = "c"
[[trigger.http]]
id = "same"
route = "/b"
component = "c"
[component.c]
source = "hello.wasm"
"#,
    );
    assert_err(&e, &["trigger.http[1].id", "duplicate trigger id \"same\""]);
}

#[test]
fn build_metadata_is_kept_like_spin() {
    let app = App::new();
    let locked = app
        .load(&with_header(
            r#"
[[trigger.http]]
route = "/"
component = "c"
[component.c]
source = "hello.wasm"
[component.c.build]
command = ["npm install", "npm run build"]
workdir = "web"
watch = ["src/**/*.ts"]
"#,
        ))
        .unwrap();
    assert_eq!(
        locked.components[0].metadata["build"],
        json!({
            "command": ["npm install", "npm run build"],
            "workdir": "web",
            "watch": ["src/**/*.ts"],
        })
    );
    // Empty `watch` is omitted, as Spin's `skip_serializing_if = "Vec::is_empty"` does.
    let locked = app
        .load(&with_header(
            "[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = \"hello.wasm\"\nbuild = { command = \"make\", watch = [] }\n",
        ))
        .unwrap();
    assert_eq!(
        locked.components[0].metadata["build"],
        json!({"command": "make"})
    );

    let trig = "[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = \"hello.wasm\"\n";
    let e = err(
        &app,
        &format!("{trig}[component.c.build]\nworkdir = \"x\"\n"),
    );
    assert_err(&e, &["component.c.build.command", "missing"]);
    let e = err(&app, &format!("{trig}[component.c.build]\ncommand = 1\n"));
    assert_err(
        &e,
        &[
            "component.c.build.command",
            "a string or an array of strings",
        ],
    );
    let e = err(
        &app,
        &format!("{trig}[component.c.build]\ncommand = \"make\"\nfrobnicate = true\n"),
    );
    assert_err(&e, &["unknown field component.c.build.frobnicate"]);
}

#[test]
fn components_keep_manifest_order() {
    let app = App::new();
    let locked = app
        .load(&with_header(
            r#"
[[trigger.http]]
route = "/z"
component = "zeta"
[[trigger.http]]
route = "/m"
component = "mu"
[[trigger.http]]
route = "/a"
component = "alpha"
[component.zeta]
source = "hello.wasm"
[component.alpha]
source = "hello.wasm"
[component.mu]
source = "hello.wasm"
"#,
        ))
        .unwrap();
    let ids: Vec<&str> = locked.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["zeta", "alpha", "mu"]);
    assert_eq!(
        trigger_ids(&locked),
        ["zeta-http-trigger", "mu-http-trigger", "alpha-http-trigger"]
    );
    // The order survives the JSON round trip too.
    let again = LockedApp::from_json(&locked.to_json_vec().unwrap()).unwrap();
    let ids: Vec<&str> = again.components.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["zeta", "alpha", "mu"]);
}

#[test]
fn io_error_names_path_once_and_chains_cause() {
    use std::error::Error as _;
    let e = super::load_manifest(Path::new("/nonexistent/spin.toml")).unwrap_err();
    let msg = e.to_string();
    assert_eq!(msg, "cannot access /nonexistent/spin.toml");
    let cause = e.source().expect("I/O cause is the source").to_string();
    assert!(!msg.contains(&cause), "{msg:?} repeats its cause {cause:?}");
}
