//! A component importing an interface lepton will never provide (`example:nope/thing`, a small
//! component built from WAT here) is refused when lepton loads it, with an error naming the app
//! and the interface, never at request time; the apps next to it in the same lepton.json serve as
//! usual — including `kv-p2`, whose Spin key-value and variables imports lepton now provides.

mod support;

use support::*;

/// A wasi:http-shaped app whose only import is one no host provides.
const NOPE_WAT: &str = r#"(component
  (import "example:nope/thing" (instance
    (export "ping" (func))
  ))
)"#;

#[test]
fn unsupported_imports_fail_at_load_naming_the_interface() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    for app in ["hello-p2", "kv-p2"] {
        let out = push(app, &format!("{reg}/{app}:v1"));
        assert!(out.contains("sha256:"), "push names the digest: {out}");
    }
    let nope_dir = work.path().join("nope");
    std::fs::create_dir_all(&nope_dir).expect("mkdir");
    std::fs::write(
        nope_dir.join("nope.wasm"),
        wat::parse_str(NOPE_WAT).expect("WAT"),
    )
    .expect("write wasm");
    std::fs::write(
        nope_dir.join("spin.toml"),
        "spin_manifest_version = 2\n\n[application]\nname = \"nope\"\nversion = \"0.1.0\"\n\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"nope\"\n\n\
         [component.nope]\nsource = \"nope.wasm\"\n",
    )
    .expect("write spin.toml");
    let out = push_output(&nope_dir.join("spin.toml"), &format!("{reg}/nope:v1"), &[]);
    assert!(
        out.status.success(),
        "push nope: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let hello = free_addr();
    let kv = free_addr();
    let nope = free_addr();
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "apps": [
            { "reference": format!("{reg}/hello-p2:v1"), "address": hello, "state_dir": "state/hello" },
            { "reference": format!("{reg}/kv-p2:v1"), "address": kv, "state_dir": "state/kv" },
            { "reference": format!("{reg}/nope:v1"), "address": nope, "state_dir": "state/nope" },
        ]}))
        .expect("json"),
    )
    .expect("write manifest");

    let mut lepton = Lepton::start(
        &manifest,
        &work.path().join("cache"),
        &work.path().join("logs"),
    );
    lepton.wait_healthy(&[&hello, &kv]);
    // Failures are reported before the summary line, so once it is printed the outcome is final.
    lepton.wait_stdout_contains("2 of 3 apps serving");

    assert_eq!(
        get(&hello, "/").expect("get hello-p2").text(),
        "Hello from hello (p2)\n"
    );
    // kv-p2 uses fermyon:spin/variables and key-value@2.0.0: its hit counter persists.
    assert_eq!(
        get(&kv, "/a").expect("get kv-p2").text(),
        "hello from kv-p2 /a (hit 1)\n"
    );
    assert_eq!(
        get(&kv, "/b").expect("get kv-p2").text(),
        "hello from kv-p2 /b (hit 2)\n"
    );
    assert!(
        std::net::TcpStream::connect(&nope).is_err(),
        "nope must not be listening on {nope}"
    );
    let stdout = lepton.stdout();
    assert!(
        stdout.contains(&format!("Serving http://{hello} (hello-p2"))
            && !stdout.contains(&format!("Serving http://{nope}")),
        "hello-p2 is reported as serving, nope is not:\n{stdout}"
    );

    let stderr = lepton.stderr();
    let failure = stderr
        .lines()
        .find(|l| l.starts_with("error: app `nope`"))
        .unwrap_or_else(|| panic!("no `error: app `nope`` line in lepton's stderr:\n{stderr}"));
    println!("nope's load failure: {failure}");
    for needle in [
        format!("{reg}/nope:v1"),
        "component `nope`".to_string(),
        "imports `example:nope/thing`, which lepton does not provide".to_string(),
    ] {
        assert!(failure.contains(&needle), "names {needle}: {failure}");
    }
    for app in ["hello-p2", "kv-p2"] {
        assert!(
            !stderr.contains(&format!("error: app `{app}`")),
            "{app} must not fail:\n{stderr}"
        );
    }

    // Still serving after the refusal; a clean shutdown.
    assert_eq!(
        get(&hello, "/again").expect("get hello-p2").status,
        200,
        "hello-p2 keeps serving"
    );
    let status = lepton.terminate();
    assert!(status.success(), "SIGTERM → exit 0, got {status}");
}
