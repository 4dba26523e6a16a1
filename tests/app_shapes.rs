//! End to end: the Spin app shapes beyond wasi:http components, each built from source in
//! `apps/`, pushed to a real registry and served by the `lepton` binary:
//!
//! - `core-p1`: a `wasm32-wasip1` core module (spin-sdk 5.2, wit-bindgen `component-type`
//!   section) that lepton componentizes at load, once (a restart loads the cached artifact);
//!   it also calls `fermyon:spin/llm@2.0.0`, which lepton links but cannot serve;
//! - `legacy-http`: a component exporting the unversioned `fermyon:spin/inbound-http`;
//! - `wagi`: a `wasm32-wasip1` `_start` command behind `executor = { type = "wagi" }`.

mod support;

use std::path::Path;

use support::*;

struct Addrs {
    core: String,
    legacy: String,
    wagi: String,
}

fn write_manifest(dir: &Path, registry: &str, a: &Addrs) -> std::path::PathBuf {
    let manifest = serde_json::json!({
        "apps": [
            { "reference": format!("{registry}/core-p1:v1"), "address": a.core, "state_dir": "state/core" },
            { "reference": format!("{registry}/legacy-http:v1"), "address": a.legacy, "state_dir": "state/legacy" },
            { "reference": format!("{registry}/wagi:v1"), "address": a.wagi, "state_dir": "state/wagi" },
        ]
    });
    let path = dir.join("lepton.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("json"))
        .expect("write manifest");
    path
}

fn require_shape_builds() {
    let root = repo_root().join("apps/target");
    for path in [
        "wasm32-wasip1/release/core_p1.wasm",
        "wasm32-wasip1/release/wagi.wasm",
        "wasm32-wasip2/release/legacy_http.wasm",
    ] {
        assert!(
            root.join(path).is_file(),
            "{} is missing: run scripts/build-apps.sh before cargo test",
            root.join(path).display()
        );
    }
}

/// The body's lines, with the one starting with `prefix` (a value holding the client's
/// ephemeral port) checked to be `prefix` + a port and then dropped.
fn lines_without_port(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = false;
    for line in text.lines() {
        if let Some(port) = line.strip_prefix(prefix) {
            assert!(port.parse::<u16>().is_ok(), "`{line}` ends with a port");
            seen = true;
        } else {
            out.push(line.to_string());
        }
    }
    assert!(seen, "no `{prefix}<port>` line in:\n{text}");
    out
}

#[test]
fn core_modules_legacy_spin_http_and_wagi_are_served() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    require_shape_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let mut registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    for app in ["core-p1", "legacy-http", "wagi"] {
        push(app, &format!("{reg}/{app}:v1"));
    }
    let addrs = Addrs {
        core: free_addr(),
        legacy: free_addr(),
        wagi: free_addr(),
    };
    let manifest = write_manifest(work.path(), &reg, &addrs);
    let cache = work.path().join("cache");
    let logs = work.path().join("logs");

    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    lepton.wait_healthy(&[&addrs.core, &addrs.legacy, &addrs.wagi]);
    let first = lepton.stderr();
    assert_eq!(
        first.matches("componentized core module").count(),
        2,
        "the two core modules (core-p1, wagi) are componentized at load:\n{first}"
    );

    // Load timings, for `--nocapture` readers.
    for line in first
        .lines()
        .filter(|l| l.contains("componentized core module") || l.contains("compiled component"))
    {
        eprintln!("{line}");
    }

    check_core_module(&addrs.core);
    check_legacy_http(&addrs.legacy);
    check_wagi(&addrs.wagi);

    // A restart loads the componentized, compiled artifacts from the cache.
    assert!(lepton.terminate().success());
    drop(lepton);
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    lepton.wait_healthy(&[&addrs.core, &addrs.legacy, &addrs.wagi]);
    let second = lepton.stderr();
    assert!(
        !second.contains("componentized core module") && !second.contains("compiled component"),
        "nothing is componentized or compiled again:\n{second}"
    );
    check_core_module(&addrs.core);
    registry.stop();
}

fn check_core_module(addr: &str) {
    let res = get(addr, "/some/path?x=1").expect("get");
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("text/plain"));
    assert_eq!(
        res.text(),
        format!("Hello from a core module (p1) GET http://{addr}/some/path?x=1\n")
    );

    // An allowed model: the call reaches lepton's LLM host, which has no backend.
    let res = get(addr, "/llm").expect("get");
    assert_eq!(res.status, 200);
    assert_eq!(
        res.text(),
        "llm error: Error::RuntimeError(\"LLM operations are not supported by lepton.\")\n"
    );
    // A model not in `ai_models`: Spin's access-denied error.
    let res = get(addr, "/embed").expect("get");
    assert_eq!(
        res.text(),
        "llm error: Error::InvalidInput(\"The component does not have access to use 'all-minilm-l6-v2'. \
         To give the component access, add 'all-minilm-l6-v2' to the 'ai_models' key for the \
         component in your spin.toml manifest\")\n"
    );
}

fn check_legacy_http(addr: &str) {
    let res = request(
        addr,
        "POST",
        "/legacy/echo?x=1&status=201",
        &[("X-Custom", "yes")],
        b"ping",
    )
    .expect("post");
    assert_eq!(res.status, 201, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("text/plain"));
    assert_eq!(res.header("x-legacy"), Some("1"));
    assert_eq!(
        lines_without_port(&res.text(), "spin-client-addr: 127.0.0.1:"),
        [
            "method: POST".to_string(),
            "uri: /legacy/echo?x=1&status=201".into(),
            "params: 0".into(),
            "body: some(ping)".into(),
            "spin-base-path: /".into(),
            "spin-component-route: /legacy".into(),
            format!("spin-full-url: http://{addr}/legacy/echo?x=1&status=201"),
            "spin-matched-route: /legacy/...".into(),
            "spin-path-info: /echo".into(),
            "spin-raw-component-route: /legacy/...".into(),
            "x-custom: yes".into(),
        ]
    );

    // The body is always `some`, even when empty.
    let res = get(addr, "/legacy").expect("get");
    assert_eq!(res.status, 200);
    assert!(res.text().contains("body: some()\n"), "{}", res.text());

    // A status outside 100..=600 becomes an empty 500.
    let res = get(addr, "/legacy/x?status=700").expect("get");
    assert_eq!((res.status, res.body.len()), (500, 0));
    let res = get(addr, "/legacy/x?status=600").expect("get");
    assert_eq!(res.status, 600);

    // Methods the interface cannot express: 405, guest not called.
    for method in ["TRACE", "PROPFIND"] {
        let res = request(addr, method, "/legacy/x", &[], b"").expect(method);
        assert_eq!((res.status, res.body.len()), (405, 0), "{method}");
    }

    // The unversioned llm import links and answers with an error.
    let res = get(addr, "/legacy/llm").expect("get");
    assert_eq!(
        res.text(),
        "llm error: Error::InvalidInput(\"The component does not have access to use 'llama2-chat'. \
         To give the component access, add 'llama2-chat' to the 'ai_models' key for the \
         component in your spin.toml manifest\")\n"
    );
}

fn check_wagi(addr: &str) {
    let port = addr.rsplit(':').next().expect("port");
    let res = request(
        addr,
        "POST",
        "/cgi/run%20x/report?a=1&b=2",
        &[("X-Test", "hello"), ("Authorization", "secret")],
        b"input-data",
    )
    .expect("post");
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("content-type"), Some("text/plain"));
    assert_eq!(
        lines_without_port(&res.text(), "X_CLIENT_ADDR=127.0.0.1:"),
        [
            r#"argv: ["/cgi/run%20x/report", "a=1", "b=2"]"#.to_string(),
            "AUTH_TYPE=".into(),
            "CONTENT_LENGTH=10".into(),
            "CONTENT_TYPE=".into(),
            "GATEWAY_INTERFACE=CGI/1.1".into(),
            "GREETING=from-env".into(),
            "HTTP_CONTENT_LENGTH=10".into(),
            format!("HTTP_HOST={addr}"),
            "HTTP_X_TEST=hello".into(),
            // The Spin value (raw) overrides the decoded CGI one; PATH_TRANSLATED is decoded.
            "PATH_INFO=/run%20x/report".into(),
            "PATH_TRANSLATED=/run x/report".into(),
            "QUERY_STRING=a=1&b=2".into(),
            "REMOTE_ADDR=127.0.0.1".into(),
            "REMOTE_HOST=127.0.0.1".into(),
            "REMOTE_USER=".into(),
            "REQUEST_METHOD=POST".into(),
            "SCRIPT_NAME=/cgi".into(),
            "SERVER_NAME=127.0.0.1".into(),
            format!("SERVER_PORT={port}"),
            "SERVER_PROTOCOL=HTTP/1.1".into(),
            "SERVER_SOFTWARE=WAGI/1".into(),
            "X_BASE_PATH=/".into(),
            "X_COMPONENT_ROUTE=/cgi".into(),
            format!("X_FULL_URL=http://{addr}/cgi/run%20x/report?a=1&b=2"),
            "X_MATCHED_ROUTE=/cgi/...".into(),
            "X_RAW_COMPONENT_ROUTE=/cgi/...".into(),
            "X_RAW_PATH_INFO=/run%20x/report".into(),
            "stdin: input-data".into(),
        ]
    );

    // A trigger's own argv template, and `:name` captures.
    let res = get(addr, "/custom/bob/more?q=1").expect("get");
    assert_eq!(res.status, 200, "{}", res.text());
    let text = res.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&r#"argv: ["/custom/bob/more", "fixed", "q=1", "end"]"#)
    );
    for expected in [
        "SCRIPT_NAME=/custom/:name",
        "X_PATH_MATCH_NAME=bob",
        "PATH_INFO=/more",
        "X_MATCHED_ROUTE=/custom/:name/...",
        "stdin: ",
    ] {
        assert!(
            lines.contains(&expected),
            "missing `{expected}` in:\n{text}"
        );
    }

    let res = get(addr, "/cgi/location").expect("get");
    assert_eq!(res.status, 302);
    assert_eq!(res.header("location"), Some("/elsewhere"));
    assert!(res.body.is_empty());

    let res = get(addr, "/cgi/status").expect("get");
    assert_eq!(res.status, 418);
    assert_eq!(res.header("content-type"), Some("text/plain"));
    assert_eq!(res.header("x-wagi"), Some("yes"));
    assert_eq!(res.text(), "teapot\n");

    let res = get(addr, "/cgi/noheaders").expect("get");
    assert_eq!(res.status, 500);
    assert_eq!(
        res.text(),
        "Exactly one of 'location' or 'content-type' must be specified"
    );

    let res = get(addr, "/cgi/exit0").expect("get");
    assert_eq!((res.status, res.text().as_str()), (200, "exiting 0\n"));

    for failing in ["/cgi/exit3", "/cgi/silent"] {
        let res = get(addr, failing).expect("get");
        assert_eq!((res.status, res.body.len()), (500, 0), "{failing}");
    }
}

/// A Spin app in `dir/<name>/` with one component (`wasm`, copied in) on `/...`, its trigger
/// using `executor` (a TOML inline table, or empty for the default).
fn write_app(dir: &Path, name: &str, wasm: &Path, executor: &str) -> std::path::PathBuf {
    let app = dir.join(name);
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::copy(wasm, app.join("c.wasm")).expect("copy wasm");
    let executor = if executor.is_empty() {
        String::new()
    } else {
        format!("executor = {executor}\n")
    };
    std::fs::write(
        app.join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n{executor}\n\
             [component.c]\nsource = \"c.wasm\"\n"
        ),
    )
    .expect("write spin.toml");
    app.join("spin.toml")
}

#[test]
fn executor_mismatches_are_refused_at_load_naming_the_component() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    require_shape_builds();
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    let target = repo_root().join("apps/target");
    let wagi = target.join("wasm32-wasip1/release/wagi.wasm");
    let hello = target.join("wasm32-wasip2/release/hello_p2.wasm");
    let cases = [
        (
            "wagi-entry",
            write_app(
                work.path(),
                "wagi-entry",
                &wagi,
                r#"{ type = "wagi", entrypoint = "main" }"#,
            ),
            "WAGI entrypoint `main` is not supported; only `_start` is",
        ),
        (
            "wagi-proxy",
            write_app(work.path(), "wagi-proxy", &hello, r#"{ type = "wagi" }"#),
            "component `c` is used with the WAGI executor but does not export wasi:cli/run",
        ),
        (
            "cmd-http",
            write_app(work.path(), "cmd-http", &wagi, ""),
            "component `c` exports no HTTP handler, only wasi:cli/run",
        ),
    ];
    for (name, toml, _) in &cases {
        let out = push_output(toml, &format!("{reg}/{name}:v1"), &[]);
        assert!(
            out.status.success(),
            "push {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    push("legacy-http", &format!("{reg}/legacy-http:v1"));

    let legacy = free_addr();
    let mut apps = vec![serde_json::json!({
        "reference": format!("{reg}/legacy-http:v1"), "address": legacy, "state_dir": "state/legacy"
    })];
    for (name, _, _) in &cases {
        apps.push(serde_json::json!({
            "reference": format!("{reg}/{name}:v1"), "address": free_addr(), "state_dir": format!("state/{name}")
        }));
    }
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "apps": apps })).expect("json"),
    )
    .expect("write manifest");
    let mut lepton = Lepton::start(
        &manifest,
        &work.path().join("cache"),
        &work.path().join("logs"),
    );
    lepton.wait_healthy(&[&legacy]);
    lepton.wait_stdout_contains("1 of 4 apps serving");
    let stderr = lepton.stderr();
    for (name, _, needle) in &cases {
        let failure = stderr
            .lines()
            .find(|l| l.starts_with(&format!("error: app `{name}`")))
            .unwrap_or_else(|| panic!("no load error for {name}:\n{stderr}"));
        println!("{failure}");
        assert!(failure.contains(needle), "{name}: `{needle}` in {failure}");
    }
    assert_eq!(get(&legacy, "/legacy/x").expect("get").status, 200);
}
