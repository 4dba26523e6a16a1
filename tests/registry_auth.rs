//! Registry credentials come from docker's `config.json` (`$DOCKER_CONFIG`): against a real
//! `docker-registry` behind htpasswd (HTTP Basic) auth, `lepton push` and `lepton` pulling
//! succeed with inline `auths` credentials or a `credHelpers` credential helper, and fail with
//! an error naming the reference when there are no credentials or the wrong ones.

mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use lepton_testkit::DockerConfig;
use support::*;

const USER: &str = "lepton-tester";
const PASS: &str = "correct horse battery staple";

fn hello_toml() -> PathBuf {
    repo_root().join("apps/hello-p2/spin.toml")
}

fn docker_env(config: &DockerConfig) -> Vec<(&'static str, &OsStr)> {
    vec![("DOCKER_CONFIG", config.dir().as_os_str())]
}

/// `lepton push` hello-p2 with `envs`; asserts success and returns stdout.
fn push_ok(reference: &str, envs: &[(&str, &OsStr)], registry: &TestRegistry) -> String {
    let out = push_output(&hello_toml(), reference, envs);
    assert!(
        out.status.success(),
        "lepton push {reference} failed:\nstderr: {}\nregistry log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        registry.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `lepton push` hello-p2 with `envs`; asserts a clean failure and returns stderr.
fn push_refused(reference: &str, envs: &[(&str, &OsStr)]) -> String {
    let out = push_output(&hello_toml(), reference, envs);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("lepton push {reference}: {stderr}");
    assert!(
        !out.status.success(),
        "lepton push {reference} must be refused:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    stderr
}

fn write_manifest(dir: &Path, reference: &str, address: &str) -> PathBuf {
    let manifest = dir.join("lepton.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec_pretty(&serde_json::json!({ "apps": [
            { "reference": reference, "address": address, "state_dir": "state/hello" },
        ]}))
        .expect("json"),
    )
    .expect("write manifest");
    manifest
}

/// Runs `lepton` on one app with `envs` and a fresh cache; asserts it serves hello-p2.
fn serves_with(reference: &str, envs: &[(&str, &OsStr)]) {
    let work = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let manifest = write_manifest(work.path(), reference, &addr);
    let mut lepton = Lepton::start_with_env(
        &manifest,
        &work.path().join("cache"),
        &work.path().join("logs"),
        envs,
    );
    lepton.wait_healthy(&[&addr]);
    assert_eq!(
        get(&addr, "/").expect("get").text(),
        "Hello from hello (p2)\n",
        "the app pulled with credentials serves"
    );
    assert!(lepton.terminate().success());
}

#[test]
fn credentials_from_docker_config_json() {
    require_guest_builds();
    let registry = TestRegistry::start_with_htpasswd(USER, PASS).expect("start docker-registry");
    let reg = registry.addr();
    let reference = format!("{reg}/hello-p2:v1");

    // No credentials at all: the registry's 401 is reported against the reference.
    let empty = DockerConfig::empty().expect("docker config");
    let stderr = push_refused(&reference, &docker_env(&empty));
    assert!(
        stderr.contains(&format!("registry error for {reference}")),
        "names the reference: {stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("unauthorized") || stderr.contains("401"),
        "says the registry refused the credentials: {stderr}"
    );

    // Wrong credentials: refused the same way.
    let wrong = DockerConfig::with_auth(&reg, USER, "not the password").expect("docker config");
    let stderr = push_refused(&reference, &docker_env(&wrong));
    assert!(
        stderr.contains(&format!("registry error for {reference}")),
        "names the reference: {stderr}"
    );

    // `auths` in config.json: push, then serve what lepton pulls with the same credentials.
    let good = DockerConfig::with_auth(&reg, USER, PASS).expect("docker config");
    let out = push_ok(&reference, &docker_env(&good), &registry);
    assert!(out.contains("digest: sha256:"), "{out}");
    serves_with(&reference, &docker_env(&good));

    // Pulling without credentials is refused: lepton names the app's reference and, with no
    // app able to start, exits non-zero.
    let work = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let manifest = write_manifest(work.path(), &reference, &addr);
    let mut anonymous = Lepton::start_with_env(
        &manifest,
        &work.path().join("cache"),
        &work.path().join("logs"),
        &docker_env(&empty),
    );
    let status = anonymous.wait_exit(std::time::Duration::from_secs(120));
    assert!(!status.success(), "no app could start → non-zero exit");
    let stderr = anonymous.stderr();
    println!("lepton without credentials: {stderr}");
    assert!(
        stderr.contains(&format!(
            "error: app `hello-p2` ({reference}) failed to start"
        )) && stderr.contains("none of the 1 apps"),
        "names the app and its reference:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(std::net::TcpStream::connect(&addr).is_err());
}

#[test]
fn credentials_from_a_docker_credential_helper() {
    require_guest_builds();
    let registry = TestRegistry::start_with_htpasswd(USER, PASS).expect("start docker-registry");
    let reg = registry.addr();
    let reference = format!("{reg}/hello-p2:helper");

    let config = DockerConfig::with_credential_helper(&reg, "lepton-test", USER, PASS)
        .expect("docker config");
    let path = config.path_with_helpers().expect("PATH");
    let envs = [
        ("DOCKER_CONFIG", config.dir().as_os_str()),
        ("PATH", path.as_os_str()),
    ];
    let out = push_ok(&reference, &envs, &registry);
    assert!(out.contains("digest: sha256:"), "{out}");
    let calls = config.helper_calls();
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c == &reg),
        "the helper was asked for {reg} (and only it): {calls:?}"
    );

    let before = calls.len();
    serves_with(&reference, &envs);
    assert!(
        config.helper_calls().len() > before,
        "the pull asked the helper too: {:?}",
        config.helper_calls()
    );

    // The same config without the helper on PATH: the lookup fails, and so does the push.
    let stderr = push_refused(&reference, &docker_env(&config));
    assert!(
        stderr.contains(&format!("registry error for {reference}")),
        "names the reference: {stderr}"
    );
}
