//! A component importing Spin host interfaces lepton does not provide yet (`kv-p2`:
//! `fermyon:spin/key-value@2.0.0` and `fermyon:spin/variables@2.0.0`) is refused when lepton
//! loads it, with an error naming the app and the interface, never at request time; the app next
//! to it in the same lepton.json serves as usual.

mod support;

use support::*;

/// The Spin interfaces kv-p2 imports (checked with `wasm-tools component wit`).
const KV_P2_SPIN_IMPORTS: [&str; 2] = [
    "fermyon:spin/key-value@2.0.0",
    "fermyon:spin/variables@2.0.0",
];

#[test]
fn unsupported_spin_imports_fail_at_load_naming_the_interface() {
    require_guest_builds();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let reg = registry.addr();
    // kv-p2's spin.toml (key_value_stores, variables) is accepted by push: the refusal comes
    // from its imports at load, not from its manifest.
    for app in ["hello-p2", "kv-p2"] {
        let out = push(app, &format!("{reg}/{app}:v1"));
        assert!(out.contains("sha256:"), "push names the digest: {out}");
    }

    let hello = free_addr();
    let kv = free_addr();
    let manifest = work.path().join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "apps": [
            { "reference": format!("{reg}/hello-p2:v1"), "address": hello, "state_dir": "state/hello" },
            { "reference": format!("{reg}/kv-p2:v1"), "address": kv, "state_dir": "state/kv" },
        ]}))
        .expect("json"),
    )
    .expect("write manifest");

    let mut lepton = Lepton::start(
        &manifest,
        &work.path().join("cache"),
        &work.path().join("logs"),
    );
    lepton.wait_healthy(&[&hello]);
    // Failures are reported before the summary line, so once it is printed the outcome is final.
    lepton.wait_stdout_contains("1 of 2 apps serving");

    assert_eq!(
        get(&hello, "/").expect("get hello-p2").text(),
        "Hello from hello (p2)\n"
    );
    assert!(
        std::net::TcpStream::connect(&kv).is_err(),
        "kv-p2 must not be listening on {kv}"
    );
    let stdout = lepton.stdout();
    assert!(
        stdout.contains(&format!("Serving http://{hello} (hello-p2"))
            && !stdout.contains(&format!("Serving http://{kv}")),
        "only hello-p2 is reported as serving:\n{stdout}"
    );

    let stderr = lepton.stderr();
    let failure = stderr
        .lines()
        .find(|l| l.starts_with("error: app `kv-p2`"))
        .unwrap_or_else(|| panic!("no `error: app `kv-p2`` line in lepton's stderr:\n{stderr}"));
    println!("kv-p2's load failure: {failure}");
    assert!(
        failure.contains(&format!("{reg}/kv-p2:v1")),
        "the failure names the reference: {failure}"
    );
    assert!(
        failure.contains("component `kv`"),
        "the failure names the component: {failure}"
    );
    assert!(
        failure.contains("which lepton does not provide"),
        "the failure says lepton does not provide the import: {failure}"
    );
    let named: Vec<&str> = KV_P2_SPIN_IMPORTS
        .into_iter()
        .filter(|iface| failure.contains(&format!("imports `{iface}`")))
        .collect();
    assert_eq!(
        named.len(),
        1,
        "the failure names exactly one of kv-p2's Spin imports, {KV_P2_SPIN_IMPORTS:?}: {failure}"
    );
    assert!(
        !stderr.contains("error: app `hello-p2`"),
        "hello-p2 must not fail:\n{stderr}"
    );

    // Still serving after the refusal; a clean shutdown.
    assert_eq!(
        get(&hello, "/again").expect("get hello-p2").status,
        200,
        "hello-p2 keeps serving"
    );
    let status = lepton.terminate();
    assert!(status.success(), "SIGTERM → exit 0, got {status}");
}
