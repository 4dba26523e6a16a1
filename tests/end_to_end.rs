//! End to end: a real registry, real components built from `apps/`, `lepton push`, and the
//! `lepton` binary serving three apps on three ports from one lepton.json; then the same manifest
//! served from the cache with the registry down, and a tampered cache blob refused.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

struct Deployment {
    hello: String,
    routes: String,
    statics: String,
    p3: String,
}

fn write_manifest(dir: &Path, registry: &str, d: &Deployment) -> std::path::PathBuf {
    let manifest = serde_json::json!({
        "apps": [
            { "reference": format!("{registry}/hello-p2:v1"), "address": d.hello, "state_dir": "state/hello" },
            { "reference": format!("{registry}/routes:v1"), "address": d.routes, "state_dir": "state/routes" },
            { "reference": format!("{registry}/static:v1"), "address": d.statics, "state_dir": "state/static" },
            { "reference": format!("{registry}/hello-p3:v1"), "address": d.p3, "state_dir": "state/p3" },
        ]
    });
    let path = dir.join("lepton.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("json"))
        .expect("write manifest");
    path
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn push_pull_cache_compile_serve() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let mut registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    let mut hello_digest = String::new();
    for app in ["hello-p2", "hello-p3", "routes", "static"] {
        let out = push(app, &format!("{reg}/{app}:v1"));
        let digest = out
            .lines()
            .find_map(|l| l.strip_prefix("digest: "))
            .unwrap_or_else(|| panic!("push output names the digest: {out}"))
            .to_string();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        if app == "hello-p2" {
            hello_digest = digest;
        }
    }

    let d = Deployment {
        hello: free_addr(),
        routes: free_addr(),
        statics: free_addr(),
        p3: free_addr(),
    };
    let manifest = write_manifest(work.path(), &reg, &d);
    let cache = work.path().join("cache");
    let logs = work.path().join("logs");
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    lepton.wait_healthy(&[&d.hello, &d.routes, &d.statics, &d.p3]);

    // Pulls report progress (per layer, when stderr is not a terminal).
    let first_log = lepton.stderr();
    assert!(
        first_log.contains("pulled layer") && first_log.contains("pull complete"),
        "pull progress is reported:\n{first_log}"
    );

    check_hello_apps(&d);
    check_spin_headers(&d);
    check_routes(&d);
    check_static_files(&d);
    check_traps_then_recovers(&d);
    check_component_logs(work.path(), &d);

    let status = lepton.terminate();
    assert!(
        status.success(),
        "SIGTERM → exit 0, got {status}:\n{}",
        lepton.stderr()
    );

    // Second start with the registry down: everything comes from the cache.
    registry.stop();
    let mut offline = Lepton::start(&manifest, &cache, &logs);
    offline.wait_healthy(&[&d.hello, &d.routes, &d.statics, &d.p3]);
    assert_eq!(
        get(&d.hello, "/").expect("get").text(),
        "Hello from hello (p2)\n"
    );
    assert_eq!(
        get(&d.statics, "/static/large.txt").expect("get").body,
        asset("large.txt")
    );
    assert_eq!(
        get(&d.routes, "/wild/deeper/x").expect("get").text(),
        "Hello from deeper (p2)\n"
    );
    assert!(
        offline.stderr().contains("cache"),
        "the offline start says it used the cache:\n{}",
        offline.stderr()
    );
    assert!(offline.terminate().success());

    // A digest-pinned reference starts from the cache with the registry down.
    let pinned_addr = free_addr();
    let pinned = work.path().join("pinned.json");
    std::fs::write(
        &pinned,
        serde_json::to_vec(&serde_json::json!({ "apps": [
            { "reference": format!("{reg}/hello-p2@{hello_digest}"), "address": pinned_addr, "state_dir": "state/pinned" }
        ]}))
        .expect("json"),
    )
    .expect("write pinned manifest");
    let mut pinned_run = Lepton::start(&pinned, &cache, &logs);
    pinned_run.wait_healthy(&[&pinned_addr]);
    assert_eq!(
        get(&pinned_addr, "/").expect("get").text(),
        "Hello from hello (p2)\n"
    );
    assert!(
        pinned_run.stdout().contains(&hello_digest),
        "the serving line names the digest:\n{}",
        pinned_run.stdout()
    );
    assert!(pinned_run.terminate().success());

    // Tamper with the static app's fileserver wasm (a blob no other app uses).
    let tampered = tamper_wasm_blob(&cache, "static", "hello-p2");
    // Registry down: the tampered app is refused (never run); the others keep serving.
    let mut refused = Lepton::start(&manifest, &cache, &logs);
    refused.wait_healthy(&[&d.hello, &d.routes, &d.p3]);
    assert!(
        get(&d.statics, "/static/small.txt").is_err(),
        "the tampered app must not be serving"
    );
    let stderr = refused.stderr();
    assert!(
        stderr.contains(&tampered) && stderr.to_lowercase().contains("digest"),
        "the refusal names the blob:\n{stderr}"
    );
    assert!(refused.terminate().success());

    // Registry back: the blob is re-fetched, verified, and the app serves again.
    registry.restart().expect("restart registry");
    let mut refetched = Lepton::start(&manifest, &cache, &logs);
    refetched.wait_healthy(&[&d.hello, &d.routes, &d.statics, &d.p3]);
    assert_eq!(
        get(&d.statics, "/static/large.txt").expect("get").body,
        asset("large.txt")
    );
    assert!(refetched.terminate().success());
}

fn check_hello_apps(d: &Deployment) {
    let res = get(&d.hello, "/").expect("get");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "Hello from hello (p2)\n");
    assert_eq!(res.header("content-type"), Some("text/plain"));
    assert_eq!(
        get(&d.p3, "/anything").expect("get").text(),
        "Hello from hello (p3)\n"
    );
    assert_eq!(
        get(&d.hello, "/env").expect("get").text(),
        "GREETING=hi from p2\n"
    );
    assert_eq!(
        get(&d.p3, "/env").expect("get").text(),
        "GREETING=hi from p3\n"
    );
    for addr in [&d.hello, &d.p3] {
        let echo = request(
            addr,
            "POST",
            "/echo",
            &[("content-type", "application/x-test")],
            b"round trip \x00\xff bytes",
        )
        .expect("post");
        assert_eq!(echo.status, 200);
        assert_eq!(echo.body, b"round trip \x00\xff bytes");
        assert_eq!(echo.header("content-type"), Some("application/x-test"));
    }
    // HTTP/2 (h2c with prior knowledge) is served too.
    let h2 = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
        ])
        .arg(format!("http://{}/", d.hello))
        .output()
        .expect("run curl");
    assert!(
        h2.status.success(),
        "curl --http2-prior-knowledge failed: {h2:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&h2.stdout),
        "Hello from hello (p2)\n\n2"
    );

    let health = get(&d.hello, "/.well-known/spin/health").expect("health");
    assert_eq!((health.status, health.text().as_str()), (200, "OK"));
    let info = get(&d.hello, "/.well-known/spin/info").expect("info");
    assert_eq!(info.header("content-type"), Some("application/json"));
    let info: serde_json::Value = serde_json::from_slice(&info.body).expect("info json");
    assert_eq!(info["name"], "hello-p2");
    assert_eq!(info["version"], "0.1.0");
    let other = get(&d.hello, "/.well-known/spin/other").expect("other");
    assert_eq!((other.status, other.body.len()), (404, 0));
}

fn check_spin_headers(d: &Deployment) {
    let res = get(&d.hello, "/some/path/headers?x=1&y=2").expect("get");
    assert_eq!(res.status, 200);
    let got = lines(&res.text());
    let spin: Vec<&String> = got.iter().filter(|l| l.starts_with("spin-")).collect();
    assert_eq!(spin.len(), 7, "exactly the seven spin-* headers: {got:?}");
    let expect = [
        "spin-base-path: /".to_string(),
        "spin-component-route: ".to_string(),
        format!(
            "spin-full-url: http://{}/some/path/headers?x=1&y=2",
            d.hello
        ),
        "spin-matched-route: /...".to_string(),
        "spin-path-info: /some/path/headers".to_string(),
        "spin-raw-component-route: /...".to_string(),
    ];
    for e in &expect {
        assert!(got.contains(e), "missing `{e}` in {got:?}");
    }
    let client = got
        .iter()
        .find(|l| l.starts_with("spin-client-addr: 127.0.0.1:"))
        .expect("client addr");
    assert!(
        client["spin-client-addr: 127.0.0.1:".len()..]
            .parse::<u16>()
            .is_ok(),
        "{client}"
    );
    assert!(got.contains(&"method: GET".to_string()), "{got:?}");

    // A client-supplied spin-* header is overwritten, not duplicated.
    let forged = request(
        &d.hello,
        "GET",
        "/x/headers",
        &[("spin-path-info", "/forged")],
        b"",
    )
    .expect("get");
    assert!(
        lines(&forged.text()).contains(&"spin-path-info: /x/headers".to_string()),
        "{}",
        forged.text()
    );

    // Named segments under a wildcard: spin-path-match-* and the component route.
    let named = get(&d.routes, "/files/images/a/b/headers").expect("get");
    let got = lines(&named.text());
    for e in [
        "spin-path-match-kind: images",
        "spin-path-info: /a/b/headers",
        "spin-matched-route: /files/:kind/...",
        "spin-raw-component-route: /files/:kind/...",
        "spin-component-route: /files/:kind",
    ] {
        assert!(got.contains(&e.to_string()), "missing `{e}` in {got:?}");
    }
    // The same on a wasi:http 0.3 component.
    let p3 = lines(&get(&d.p3, "/q/headers?k=v").expect("get").text());
    assert!(
        p3.contains(&format!("spin-full-url: http://{}/q/headers?k=v", d.p3)),
        "{p3:?}"
    );
    assert!(
        p3.contains(&"spin-path-info: /q/headers".to_string()),
        "{p3:?}"
    );
}

fn check_routes(d: &Deployment) {
    let cases = [
        ("/exact", "exact"),
        ("/exact/", "exact"),
        ("/exact/more", "fallback"),
        ("/wild", "wild"),
        ("/wild/a/b", "wild"),
        ("/wild/deeper", "deeper"),
        ("/wild/deeper/x/y", "deeper"),
        ("/wildly", "fallback"),
        ("/users/42/posts/7", "named"),
        ("/users/42/posts", "fallback"),
        ("/files/docs", "named-wild"),
        ("/", "fallback"),
    ];
    for (path, component) in cases {
        let res = get(&d.routes, path).expect("get");
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(
            res.text(),
            format!("Hello from {component} (p2)\n"),
            "{path}"
        );
    }
    assert_eq!(
        get(&d.routes, "/p3/x").expect("get").text(),
        "Hello from p3 (p3)\n"
    );
    // No catch-all in the static app: unmatched paths are 404 with an empty body.
    let missing = get(&d.statics, "/nope").expect("get");
    assert_eq!((missing.status, missing.body.len()), (404, 0));
    assert_eq!(
        get(&d.statics, "/hello").expect("get").text(),
        "Hello from hello (p2)\n"
    );
}

fn asset(path: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("apps/static/assets").join(path)).expect("asset")
}

fn check_static_files(d: &Deployment) {
    assert!(
        asset("small.txt").len() <= 128,
        "small.txt must be inlined by push"
    );
    assert!(asset("large.txt").len() > 128);
    for (path, file, ctype) in [
        ("/static/small.txt", "small.txt", "text/plain"),
        ("/static/large.txt", "large.txt", "text/plain"),
        (
            "/static/nested/deep.json",
            "nested/deep.json",
            "application/json",
        ),
        ("/static/", "index.html", "text/html"),
    ] {
        let res = get(&d.statics, path).expect("get");
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(res.body, asset(file), "{path}");
        assert_eq!(res.header("content-type"), Some(ctype), "{path}");
    }
    assert_eq!(
        get(&d.statics, "/static/missing.txt").expect("get").status,
        404
    );
}

fn check_traps_then_recovers(d: &Deployment) {
    for (addr, gen_) in [(&d.hello, "p2"), (&d.p3, "p3")] {
        for _ in 0..3 {
            let res = get(addr, "/trap").expect("get");
            assert_eq!(res.status, 500, "{gen_} trap → 500");
            assert!(res.body.is_empty(), "{gen_} trap → empty body");
            let ok = get(addr, "/").expect("get");
            assert_eq!(
                ok.text(),
                format!("Hello from hello ({gen_})\n"),
                "{gen_} serves after a trap"
            );
        }
    }
}

fn check_component_logs(work: &Path, d: &Deployment) {
    assert_eq!(get(&d.hello, "/log").expect("get").text(), "logged\n");
    let dir = work.join("state/hello/logs");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::fs::read_to_string(dir.join("hello_stdout.txt")).unwrap_or_default();
        let err = std::fs::read_to_string(dir.join("hello_stderr.txt")).unwrap_or_default();
        if out.contains("log-line-stdout") && err.contains("log-line-stderr") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "component output not captured in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another app's logs stay in its own state_dir.
    assert!(!work.join("state/routes/logs/hello_stdout.txt").exists());
}

fn wasm_layers(cache: &Path, repo: &str) -> Vec<String> {
    let manifests = cache.join("registry/manifests");
    let manifest_path =
        find_file(&manifests, &format!("{repo}/v1/manifest.json")).expect("cached manifest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("read")).expect("json");
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.wasm.content.layer.v1+wasm")
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect()
}

/// Corrupt a cached wasm blob of `repo` that `other` does not use; returns its digest.
fn tamper_wasm_blob(cache: &Path, repo: &str, other: &str) -> String {
    let shared = wasm_layers(cache, other);
    let digest = wasm_layers(cache, repo)
        .into_iter()
        .find(|d| !shared.contains(d))
        .expect("a wasm layer only this app uses");
    let blob = cache.join("registry/wasm").join(&digest);
    let mut bytes = std::fs::read(&blob).expect("cached blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&blob, bytes).expect("tamper");
    digest
}

fn find_file(dir: &Path, suffix: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, suffix) {
                return Some(found);
            }
        } else if path.to_string_lossy().ends_with(suffix) {
            return Some(path);
        }
    }
    None
}
