//! Spin apps written in Python and JavaScript, built from source with the real SDKs
//! (`scripts/build-polyglot.sh`): `py-p2` (spin-sdk 3.4.1, componentize-py 0.17.2,
//! `wasi:http@0.2`), `py-p3` (spin-sdk 5.0.0, componentize-py 0.25.1, `wasi:http@0.3`) and `js`
//! (j2w from `@spinframework/build-tools` 1.0.7). Each is pushed to a real registry with
//! `lepton push`, served by the `lepton` binary with a lepton.json that sets one of its variables,
//! and checked with exact response bodies: hello, variables (one set in lepton.json, one left to
//! its default), key-value set/get/delete/exists/list on `default`, a store not in
//! `key_value_stores` (the SDK's error text), and SQLite create/insert/select on `default`. A
//! second lepton on the same `state_dir` then finds the data where Spin keeps it.
//!
//! Python components import every interface of their SDK world (llm, mqtt, mysql, postgres,
//! redis, wasi:keyvalue, wasi:config, ...), so these apps load only once lepton provides them all;
//! until then a test fails with lepton's load error, which names the missing import.

mod support;

use std::path::Path;

use support::*;

/// Where scripts/build-polyglot.sh writes the component of `app`.
fn polyglot_wasm(app: &str) -> std::path::PathBuf {
    repo_root()
        .join("apps/target/polyglot")
        .join(format!("{}.wasm", app.replace('-', "_")))
}

/// One request with its exact expected status and body.
struct Case {
    method: &'static str,
    path: &'static str,
    body: &'static [u8],
    status: u16,
    expected: Vec<u8>,
}

fn case(
    method: &'static str,
    path: &'static str,
    body: &'static [u8],
    status: u16,
    expected: impl AsRef<[u8]>,
) -> Case {
    Case {
        method,
        path,
        body,
        status,
        expected: expected.as_ref().to_vec(),
    }
}

fn check(addr: &str, app: &str, cases: &[Case]) {
    for c in cases {
        let res = request(addr, c.method, c.path, &[], c.body)
            .unwrap_or_else(|e| panic!("{app}: {} {}: {e}", c.method, c.path));
        assert_eq!(
            (res.status, String::from_utf8_lossy(&res.body)),
            (c.status, String::from_utf8_lossy(&c.expected)),
            "{app}: {} {} (status, body)",
            c.method,
            c.path
        );
        assert_eq!(
            res.body, c.expected,
            "{app}: {} {}: exact body bytes",
            c.method, c.path
        );
    }
}

/// Start lepton on `manifest` and wait until it has reported its apps; panic with lepton's load
/// error for the app if it is not serving.
fn start_serving(manifest: &Path, work: &Path, app: &str, addr: &str) -> Lepton {
    let mut lepton = Lepton::start(manifest, &work.join("cache"), &work.join("logs"));
    match lepton.wait_started() {
        Ok(stdout) if stdout.contains("1 of 1 apps serving") => {}
        Ok(stdout) => panic!(
            "{app} did not load:\n{}\n\nstdout:\n{stdout}",
            lepton
                .stderr()
                .lines()
                .filter(|l| l.starts_with("error"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Err(failure) => panic!("{app} did not load: {failure}"),
    }
    lepton.wait_healthy(&[addr]);
    lepton
}

/// lepton's `compiled component` log lines (component, cache_key, elapsed_ms).
fn compile_log(lepton: &Lepton) -> Vec<String> {
    lepton
        .stderr()
        .lines()
        .filter(|l| l.contains("compiled component"))
        .map(str::to_string)
        .collect()
}

fn run_app(app: &str, forbidden_text: &str) {
    let wasm = polyglot_wasm(app);
    assert!(
        wasm.is_file(),
        "{} is missing: run scripts/build-apps.sh (scripts/test.sh does) before cargo test",
        wasm.display()
    );
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reference = format!("{}/{app}:v1", registry.addr());
    let out = push(app, &reference);
    assert!(out.contains("sha256:"), "push names the digest: {out}");

    let addr = free_addr();
    let target = format!("lepton-{app}");
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "apps": [{
            "reference": reference,
            "address": addr,
            "state_dir": "state",
            "variables": { "target": target },
        }]}))
        .expect("json"),
    )
    .expect("write manifest");

    let mut lepton = start_serving(&manifest, work.path(), app, &addr);
    let compiled = compile_log(&lepton);
    println!(
        "{app}: {} bytes; lepton's first load: {compiled:?}",
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0)
    );
    assert!(
        !compiled.is_empty(),
        "{app}: the first load compiles the component:\n{}",
        lepton.stderr()
    );

    let hello = format!("Hello from {app}\n");
    let vars = format!("greeting=Hello\ntarget={target}\n");
    check(
        &addr,
        app,
        &[
            case("GET", "/", b"", 200, &hello),
            case("GET", "/vars", b"", 200, &vars),
            // Key-value on `default`, empty at first.
            case("GET", "/kv-keys", b"", 200, ""),
            case("GET", "/kv/a", b"", 404, "no such key\n"),
            case("GET", "/kv-exists/a", b"", 200, "false\n"),
            case("PUT", "/kv/a", b"1", 200, "stored a\n"),
            case("PUT", "/kv/b", b"two", 200, "stored b\n"),
            case("PUT", "/kv/c", b"\x00\xff\n", 200, "stored c\n"),
            case("PUT", "/kv/a", b"one", 200, "stored a\n"),
            case("GET", "/kv/a", b"", 200, "one"),
            case("GET", "/kv/c", b"", 200, b"\x00\xff\n"),
            case("GET", "/kv-exists/a", b"", 200, "true\n"),
            case("GET", "/kv-exists/zz", b"", 200, "false\n"),
            case("GET", "/kv-keys", b"", 200, "a\nb\nc\n"),
            case("DELETE", "/kv/a", b"", 200, "deleted a\n"),
            case("DELETE", "/kv/never-set", b"", 200, "deleted never-set\n"),
            case("GET", "/kv/a", b"", 404, "no such key\n"),
            case("GET", "/kv-exists/a", b"", 200, "false\n"),
            case("GET", "/kv-keys", b"", 200, "b\nc\n"),
            // A store the component may not open: Spin answers access-denied.
            case("GET", "/kv-forbidden", b"", 403, forbidden_text),
            // SQLite on `default`.
            case("POST", "/sql/init", b"", 200, "created\n"),
            case("POST", "/sql/notes", b"first", 200, "inserted\n"),
            case("POST", "/sql/notes", b"second note", 200, "inserted\n"),
            case(
                "GET",
                "/sql/notes",
                b"",
                200,
                "id|body\n1|first\n2|second note\n",
            ),
            case(
                "GET",
                "/sql/types",
                b"",
                200,
                "i,r,t,b,n\ninteger:-7,real:2.5,text:h\u{e9}llo,blob:00ff10,null\n",
            ),
        ],
    );
    let status = lepton.terminate();
    assert!(status.success(), "{app}: lepton exits cleanly: {status}");

    // Spin keeps both stores as SQLite files in the state dir.
    let state = work.path().join("state");
    for file in ["sqlite_key_value.db", "sqlite_db.db"] {
        assert!(
            state.join(file).is_file(),
            "{app}: {} exists",
            state.join(file).display()
        );
    }

    // A second lepton on the same state_dir sees the data; the table exists already.
    let mut again = start_serving(&manifest, work.path(), app, &addr);
    check(
        &addr,
        app,
        &[
            case("GET", "/kv-keys", b"", 200, "b\nc\n"),
            case("GET", "/kv/b", b"", 200, "two"),
            case("POST", "/sql/init", b"", 200, "created\n"),
            case("POST", "/sql/notes", b"third", 200, "inserted\n"),
            case(
                "GET",
                "/sql/notes",
                b"",
                200,
                "id|body\n1|first\n2|second note\n3|third\n",
            ),
        ],
    );
    assert!(
        again.terminate().success(),
        "{app}: second lepton exits cleanly"
    );
}

/// Python's `Err` is a frozen dataclass: its repr is the SDK's error text.
const PY_ACCESS_DENIED: &str = "Err(value=Error_AccessDenied())\n";

#[test]
fn python_spin_sdk_3_wasi_http_p2() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    run_app("py-p2", PY_ACCESS_DENIED);
}

#[test]
fn python_spin_sdk_5_wasi_http_p3() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    run_app("py-p3", PY_ACCESS_DENIED);
}

#[test]
fn javascript_j2w() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    // componentize-js throws a `ComponentError` whose payload is the WIT error variant.
    run_app(
        "js",
        "Error: [object Object] (see error.payload) {\"tag\":\"access-denied\"}\n",
    );
}
