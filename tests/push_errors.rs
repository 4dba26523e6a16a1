//! Bad input to `lepton push`: an unsupported or unknown `spin.toml` field, a missing Wasm file,
//! an unparsable reference and an unreachable registry each fail with a non-zero exit and a
//! message naming the manifest, the dotted field, the path or the reference; never a panic, and
//! nothing reaches the registry when the input is bad.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::*;

/// The built hello-p2 component, as an absolute path a manifest in a tempdir can name.
fn hello_wasm() -> PathBuf {
    repo_root().join("apps/target/wasm32-wasip2/release/hello_p2.wasm")
}

/// Writes `<dir>/spin.toml`: a one-component HTTP app whose `[component.x]` table is `component`.
fn write_spin_toml(dir: &Path, component: &str) -> PathBuf {
    let path = dir.join("spin.toml");
    let text = format!(
        "spin_manifest_version = 2\n\n\
         [application]\nname = \"bad-input\"\nversion = \"0.1.0\"\n\n\
         [[trigger.http]]\nroute = \"/...\"\ncomponent = \"x\"\n\n\
         [component.x]\n{component}\n"
    );
    std::fs::write(&path, text).expect("write spin.toml");
    path
}

fn source_line(wasm: &Path) -> String {
    // TOML literal string: no escaping of the path needed.
    format!("source = '{}'", wasm.display())
}

/// Runs `lepton push`, asserts it failed cleanly, and returns its stderr.
fn push_fails(spin_toml: &Path, reference: &str) -> String {
    let out: Output = push_output(spin_toml, reference, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("lepton push {reference}: {stderr}");
    assert!(
        !out.status.success(),
        "lepton push {} {reference} must fail:\nstdout: {}\nstderr: {stderr}",
        spin_toml.display(),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed push exits 1, not by a signal or a panic's 101: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("Pushed"),
        "nothing is reported as pushed"
    );
    stderr
}

#[test]
fn bad_manifests_and_references_are_refused_before_uploading() {
    require_guest_builds();
    let registry = TestRegistry::start().expect("start docker-registry");
    let reference = format!("{}/bad-input:v1", registry.addr());

    // A component sourced from a URL: a Spin feature lepton does not support.
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = write_spin_toml(
        dir.path(),
        "source = { url = \"https://example.invalid/app.wasm\", digest = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\" }",
    );
    let stderr = push_fails(&toml, &reference);
    assert!(
        stderr.contains(&format!(
            "{}: unsupported field component.x.source",
            toml.display()
        )),
        "names the manifest and the dotted field: {stderr}"
    );

    // A key neither Spin nor lepton knows.
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = write_spin_toml(
        dir.path(),
        &format!("{}\nbogus = 1", source_line(&hello_wasm())),
    );
    let stderr = push_fails(&toml, &reference);
    assert!(
        stderr.contains(&format!(
            "{}: unknown field component.x.bogus",
            toml.display()
        )),
        "names the manifest and the dotted field: {stderr}"
    );

    // A Wasm file that does not exist (relative to the manifest's directory).
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = write_spin_toml(dir.path(), "source = \"target/missing.wasm\"");
    let stderr = push_fails(&toml, &reference);
    let missing = dir.path().join("target/missing.wasm");
    assert!(
        stderr.contains(&format!(
            "{}: invalid field component.x.source",
            toml.display()
        )) && stderr.contains(&format!("{} does not exist", missing.display())),
        "names the manifest, the field and the missing path: {stderr}"
    );

    // A manifest that is not there at all.
    let absent = dir.path().join("nope/spin.toml");
    let stderr = push_fails(&absent, &reference);
    assert!(
        stderr.contains(&absent.display().to_string()),
        "names the missing manifest: {stderr}"
    );

    // References that cannot be parsed, or cannot be pushed to, with a valid manifest.
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = write_spin_toml(dir.path(), &source_line(&hello_wasm()));
    for bad in [
        format!("{}/Not A Reference:v1", registry.addr()),
        format!("{}/UPPER/case:v1", registry.addr()),
        "::::".to_string(),
    ] {
        let stderr = push_fails(&toml, &bad);
        assert!(
            stderr.contains(&format!("invalid OCI reference {bad:?}")),
            "names the reference: {stderr}"
        );
    }
    let by_digest = format!("{}/bad-input@sha256:{}", registry.addr(), "0".repeat(64));
    let stderr = push_fails(&toml, &by_digest);
    assert!(
        stderr.contains(&by_digest) && stderr.contains("digest reference"),
        "a digest reference cannot be pushed to: {stderr}"
    );

    // None of the above reached the registry.
    let catalog =
        lepton_testkit::http_get(&registry.addr(), "/v2/_catalog", None).expect("registry catalog");
    assert_eq!(catalog.status, 200);
    let repos: serde_json::Value = serde_json::from_slice(&catalog.body).expect("catalog json");
    assert_eq!(
        repos["repositories"],
        serde_json::json!([]),
        "bad input must not create a repository"
    );

    // The same manifest is fine: the failures above were the input, not the setup.
    let out = push_output(&toml, &reference, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pushing_to_a_registry_that_is_down_fails_cleanly() {
    require_guest_builds();
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = write_spin_toml(dir.path(), &source_line(&hello_wasm()));
    // A free port with nothing listening on it.
    let down = free_addr();
    let reference = format!("{down}/hello-p2:v1");
    let stderr = push_fails(&toml, &reference);
    assert!(
        stderr.contains(&format!("registry error for {reference}")),
        "names the reference and says the registry failed: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("connect"),
        "says the registry could not be connected to: {stderr}"
    );
    assert!(
        std::net::TcpStream::connect(&down).is_err(),
        "nothing was listening on {down}, so the failure was the registry being down"
    );
}
