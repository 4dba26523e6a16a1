//! Crash safety of lepton's caches, end to end: the `lepton` binary is SIGKILLed (`kill -9`: no
//! destructors, no cleanup, as an OOM kill or a power-cycled container would stop it) at the
//! moments a start writes its caches, and the next start with the same `--cache-dir` must use or
//! repair what it finds and serve the app with exact responses.
//!
//! The app is the Python component `apps/py-p2` (~37 MB of Wasm, ~20 s to compile), so the pull
//! and compile windows are wide. Every kill is aimed by polling observable state — bytes the
//! registry has sent through a throttling proxy, temp files appearing in the cache, lepton's log
//! and CPU time — never by sleeping, and each kill is checked afterwards to have landed where it
//! was aimed; a kill that came too late is retried from a reset state.
//!
//! - `sigkill_during_a_pull`: a tag cached at v1 (hello-p2) is re-pushed as py-p2; lepton is
//!   killed mid-download of the new Wasm layer (the registry throttled behind a proxy) → the
//!   tag's committed version is still v1 and serves offline; then killed while the downloaded
//!   blob is being written into `registry/wasm/` → the next start fetches it again and serves v2.
//! - `sigkill_during_a_compile`: killed while compiling (the pull committed) and while storing the
//!   compiled artifact (checksum sidecar written, artifact not yet renamed into place) → the next
//!   start recompiles and serves, and the start after it loads the stored artifact; then a torn
//!   artifact and sidecar, and a truncated artifact whose sidecar matches it, are recompiled.

#[path = "crash_safety/proxy.rs"]
mod proxy;
mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use proxy::RegistryProxy;
use support::*;

const PY: &str = "py-p2";
const PY_HELLO: &str = "Hello from py-p2\n";
const PY_VARS: &str = "greeting=Hello\ntarget=world\n";
const HELLO_P2: &str = "Hello from hello (p2)\n";
/// Bounds every wait: big components compile slowly on 2 cores (and tests run in parallel).
const WAIT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// A registry proxy that can throttle, count and go down.
// ---------------------------------------------------------------------------------------------

fn require_py_build() {
    require_guest_builds();
    let wasm = repo_root().join("apps/target/polyglot/py_p2.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing: run scripts/build-apps.sh (scripts/test.sh does) before cargo test",
        wasm.display()
    );
}

fn write_manifest(dir: &Path, reference: &str, addr: &str) -> PathBuf {
    let path = dir.join("lepton.json");
    let manifest = serde_json::json!({ "apps": [
        { "reference": reference, "address": addr, "state_dir": "state" }
    ]});
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).expect("json"))
        .expect("write manifest");
    path
}

/// The `digest: sha256:…` line of `lepton push`'s output.
fn pushed_digest(push_output: &str) -> String {
    push_output
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("push output names the digest: {push_output}"))
        .trim()
        .to_string()
}

/// The (digest, size) of the Wasm layer of `repo:tag` in the registry at `registry`.
fn wasm_layer(registry: &str, repo: &str, tag: &str) -> (String, u64) {
    let res = lepton_testkit::http_get(
        registry,
        &format!("/v2/{repo}/manifests/{tag}"),
        Some("application/vnd.oci.image.manifest.v1+json"),
    )
    .expect("GET manifest");
    assert_eq!(res.status, 200, "manifest of {repo}:{tag}: {}", res.text());
    let manifest: serde_json::Value = serde_json::from_slice(&res.body).expect("manifest json");
    let wasm: Vec<_> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.wasm.content.layer.v1+wasm")
        .collect();
    assert_eq!(wasm.len(), 1, "one Wasm layer: {manifest}");
    (
        wasm[0]["digest"].as_str().expect("digest").to_string(),
        wasm[0]["size"].as_u64().expect("size"),
    )
}

/// `sha256:<hex>` of a file (coreutils' `sha256sum`).
fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().expect("hash"))
}

/// Names of the entries of `dir` that start with `.tmp` (a temp file of an atomic write).
fn temp_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    names.sort();
    names
}

/// Every file under `dir` (recursively) with its size, relative to `dir`, sorted.
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((rel.display().to_string(), len));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Polls `ready` (every millisecond, bounded) and SIGKILLs lepton the moment it holds; panics if
/// lepton exits first. Checks the process really died of the SIGKILL.
fn kill_when(lepton: &mut Lepton, what: &str, mut ready: impl FnMut(&Lepton) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready(lepton) {
        if let Some(status) = lepton.try_exit() {
            panic!(
                "lepton exited ({status}) before {what}:\n{}",
                lepton.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}:\n{}",
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = lepton.kill_hard();
    assert_eq!(
        status.signal(),
        Some(9),
        "lepton died of the SIGKILL ({what}), it did not exit on its own: {status}\n{}",
        lepton.stderr()
    );
}

/// Waits (bounded) until lepton's log contains `needle`.
fn wait_log(lepton: &mut Lepton, needle: &str) {
    let deadline = Instant::now() + WAIT;
    while !lepton.stderr().contains(needle) {
        if let Some(status) = lepton.try_exit() {
            panic!(
                "lepton exited ({status}) without logging `{needle}`:\n{}",
                lepton.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "lepton never logged `{needle}`:\n{}",
            lepton.stderr()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// CPU time (user + system) lepton has used, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is the 3rd field; utime and stime the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Clock ticks per second (`getconf CLK_TCK`, normally 100).
fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// Waits until lepton reports its one app serving and it answers its health check.
fn wait_serving(lepton: &mut Lepton, addr: &str) {
    match lepton.wait_started() {
        Ok(stdout) if stdout.contains("1 of 1 apps serving") => {}
        Ok(stdout) => panic!(
            "the app did not start:\nstdout:\n{stdout}\nstderr:\n{}",
            lepton.stderr()
        ),
        Err(failure) => panic!("lepton did not start: {failure}"),
    }
    lepton.wait_healthy(&[addr]);
}

/// `GET path` answers 200 with exactly `body`.
fn assert_body(addr: &str, path: &str, body: &str) {
    let res = get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(
        (res.status, res.body.as_slice()),
        (200, body.as_bytes()),
        "GET {path} (status, exact body); got {:?}",
        res.text()
    );
}

fn serves_py(lepton: &mut Lepton, addr: &str) {
    wait_serving(lepton, addr);
    assert_body(addr, "/", PY_HELLO);
    assert_body(addr, "/vars", PY_VARS);
}

fn compiled_lines(lepton: &Lepton) -> usize {
    lepton
        .stderr()
        .lines()
        .filter(|l| l.contains("compiled component"))
        .count()
}

/// lepton's `compiled component` log lines.
fn compile_log(lepton: &Lepton) -> String {
    lepton
        .stderr()
        .lines()
        .filter(|l| l.contains("compiled component"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn terminate(mut lepton: Lepton) {
    let status = lepton.terminate();
    assert!(
        status.success(),
        "SIGTERM → exit 0, got {status}:\n{}",
        lepton.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn sigkill_during_a_pull() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    require_py_build();
    let started = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let mut proxy = RegistryProxy::start(&registry.addr());
    let repo = "crash-pull";
    // lepton pulls through the proxy; pushes go to the registry directly.
    let reference = format!("{}/{repo}:v1", proxy.addr);
    let direct = format!("{}/{repo}:v1", registry.addr());
    let addr = free_addr();
    let manifest = write_manifest(work.path(), &reference, &addr);
    let cache = work.path().join("cache");
    let logs = work.path().join("logs");
    let tag_dir = cache
        .join("registry/manifests")
        .join(&proxy.addr)
        .join(repo)
        .join("v1");
    let recorded = || std::fs::read_to_string(tag_dir.join("digest")).unwrap_or_default();

    // The tag's first version (hello-p2) is pulled, compiled and served: the cache's last good
    // version of the tag.
    let v1 = pushed_digest(&push("hello-p2", &direct));
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    wait_serving(&mut lepton, &addr);
    assert_body(&addr, "/", HELLO_P2);
    terminate(lepton);
    assert_eq!(recorded(), v1, "the tag dir records v1");

    // The tag moves to py-p2.
    let v2 = pushed_digest(&push(PY, &direct));
    let (wasm_digest, wasm_size) = wasm_layer(&registry.addr(), repo, "v1");
    let wasm_dir = cache.join("registry/wasm");
    let wasm_blob = wasm_dir.join(&wasm_digest);

    // 1. SIGKILL mid-download of the 37 MB Wasm layer (the registry sends 8 MB/s, and lepton is
    //    killed once 2 MB have gone through).
    proxy.throttle(8 << 20);
    let mut pulling = Lepton::start(&manifest, &cache, &logs);
    kill_when(&mut pulling, "2 MB of the Wasm layer sent", |_| {
        proxy.sent() >= 2 << 20
    });
    let sent = proxy.sent();
    proxy.throttle(0);
    assert!(
        sent < wasm_size,
        "killed mid-download: {sent} of the {wasm_size} bytes sent"
    );
    let log = pulling.stderr();
    assert!(!log.contains("pull complete"), "killed mid-pull:\n{log}");
    assert!(!wasm_blob.exists(), "no part of the layer is in the cache");
    assert_eq!(recorded(), v1, "the tag's committed version is still v1");
    println!(
        "pull: killed after {sent} of {wasm_size} bytes; cache: {:?}",
        files_under(&cache.join("registry"))
    );

    // 2. Registry down: the next start serves the last good version from the cache.
    proxy.stop();
    let mut offline = Lepton::start(&manifest, &cache, &logs);
    wait_serving(&mut offline, &addr);
    assert_body(&addr, "/", HELLO_P2);
    assert!(
        offline.stdout().contains(&v1),
        "serving v1 ({v1}):\n{}",
        offline.stdout()
    );
    assert!(
        offline.stderr().contains("loading the app from the cache"),
        "{}",
        offline.stderr()
    );
    terminate(offline);
    proxy.restart();

    // 3. SIGKILL while the downloaded layer is being written into `registry/wasm/` (a temp file
    //    renamed into place when complete). A kill that comes too late (the blob already in
    //    place) is retried from the same state: the blob removed, the tag dir as it was.
    let tag_files: Vec<(PathBuf, Vec<u8>)> = ["config.json", "manifest.json", "digest"]
        .iter()
        .map(|f| {
            (
                tag_dir.join(f),
                std::fs::read(tag_dir.join(f)).expect("tag file"),
            )
        })
        .collect();
    let mut landed = None;
    for attempt in 1..=5 {
        let before = temp_files(&wasm_dir);
        let mut lepton = Lepton::start(&manifest, &cache, &logs);
        kill_when(&mut lepton, "the Wasm layer being written", |l| {
            temp_files(&wasm_dir).iter().any(|f| !before.contains(f))
                || wasm_blob.exists()
                || l.stderr().contains("pull complete")
        });
        let new: Vec<String> = temp_files(&wasm_dir)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !wasm_blob.exists() && !new.is_empty() {
            let sizes: Vec<(String, u64)> = new
                .iter()
                .map(|n| {
                    let len = std::fs::metadata(wasm_dir.join(n))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    (n.clone(), len)
                })
                .collect();
            landed = Some((attempt, sizes));
            break;
        }
        println!("pull: attempt {attempt} killed too late (the blob was in place); again");
        let _ = std::fs::remove_file(&wasm_blob);
        for (path, bytes) in &tag_files {
            std::fs::write(path, bytes).expect("restore the tag dir");
        }
    }
    let (attempt, partial) = landed.expect("a SIGKILL landed while the blob was being written");
    println!("pull: killed while writing {partial:?} (of {wasm_size} bytes) on attempt {attempt}");
    assert_eq!(
        recorded(),
        v1,
        "nothing is committed before every layer is in"
    );

    // 4. Registry up: the next start fetches the layer again, commits v2, compiles and serves it.
    let mut fixed = Lepton::start(&manifest, &cache, &logs);
    serves_py(&mut fixed, &addr);
    assert!(
        fixed.stdout().contains(&v2),
        "serving v2:\n{}",
        fixed.stdout()
    );
    assert_eq!(recorded(), v2, "the tag dir records v2");
    assert_eq!(
        sha256_file(&wasm_blob),
        wasm_digest,
        "the cached layer verifies"
    );
    // The killed write's temp file is reclaimed (no other load holds the cache).
    let leftovers = temp_files(&wasm_dir);
    assert!(
        leftovers.is_empty(),
        "the killed write's temp file is removed: {leftovers:?}"
    );
    assert!(
        fixed
            .stderr()
            .contains("removed temp files of interrupted loads"),
        "{}",
        fixed.stderr()
    );
    terminate(fixed);
    println!("sigkill_during_a_pull: {:?}", started.elapsed());
}

#[test]
fn sigkill_during_a_compile() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    require_py_build();
    let started = Instant::now();
    let work = tempfile::tempdir().expect("tempdir");
    let registry = TestRegistry::start().expect("start docker-registry");
    let repo = "crash-compile";
    let reference = format!("{}/{repo}:v1", registry.addr());
    push(PY, &reference);
    let addr = free_addr();
    let manifest = write_manifest(work.path(), &reference, &addr);
    let cache = work.path().join("cache");
    let logs = work.path().join("logs");
    let compiled_root = cache.join("compiled");
    let tag_dir = cache
        .join("registry/manifests")
        .join(registry.addr())
        .join(repo)
        .join("v1");
    // `compiled/<engine key>/<hex>-<tag>.cwasm` and its `.cwasm.sha256` checksum sidecar.
    let compiled = || files_under(&compiled_root);
    let artifact = || {
        compiled()
            .into_iter()
            .find(|(n, _)| n.ends_with(".cwasm"))
            .map(|(n, _)| compiled_root.join(n))
    };
    let sidecar = || {
        compiled()
            .into_iter()
            .find(|(n, _)| n.ends_with(".cwasm.sha256"))
            .map(|(n, _)| compiled_root.join(n))
    };
    let tick = clock_ticks_per_sec();

    // 1. SIGKILL while compiling: after the pull committed ("loaded app") and once lepton has
    //    spent 3 s of CPU compiling; too late (compiled already) is retried from scratch.
    let mut landed = None;
    for attempt in 1..=3 {
        let mut lepton = Lepton::start(&manifest, &cache, &logs);
        wait_log(&mut lepton, "loaded app");
        let cpu0 = cpu_ticks(lepton.pid());
        kill_when(&mut lepton, "3 s of compiling", |l| {
            cpu_ticks(l.pid()) >= cpu0 + 3 * tick || compiled_lines(l) > 0
        });
        if compiled_lines(&lepton) == 0 && compiled().is_empty() {
            landed = Some(attempt);
            break;
        }
        println!("compile: attempt {attempt} killed too late; again");
        let _ = std::fs::remove_dir_all(&compiled_root);
    }
    let attempt = landed.expect("a SIGKILL landed during the compile");
    println!("compile: killed while compiling on attempt {attempt}");
    assert!(
        tag_dir.join("digest").is_file(),
        "the pull had committed before the compile"
    );

    // 2. The next start compiles again; SIGKILL it while it stores the artifact: the sidecar is
    //    written first, then the artifact (a temp file renamed into place).
    let mut landed = None;
    for attempt in 1..=3 {
        let mut lepton = Lepton::start(&manifest, &cache, &logs);
        kill_when(&mut lepton, "the compiled artifact being stored", |_| {
            sidecar().is_some() || artifact().is_some()
        });
        if sidecar().is_some() && artifact().is_none() {
            landed = Some((attempt, compiled()));
            break;
        }
        println!("compile: attempt {attempt} killed too late (the artifact was stored); again");
        let _ = std::fs::remove_dir_all(&compiled_root);
    }
    let (attempt, left) = landed.expect("a SIGKILL landed while the artifact was being stored");
    println!("compile: killed while storing on attempt {attempt}; compiled/: {left:?}");

    // 3. The next start finds no usable artifact: it compiles, stores and serves.
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    serves_py(&mut lepton, &addr);
    assert_eq!(
        compiled_lines(&lepton),
        1,
        "recompiled:\n{}",
        lepton.stderr()
    );
    println!("compile: {}", compile_log(&lepton));
    terminate(lepton);
    let (artifact_path, sidecar_path) = (
        artifact().expect("artifact stored"),
        sidecar().expect("sidecar stored"),
    );
    // Not asserted: the killed store's temp file (`compiled/<key>/.tmp*`) is never reclaimed
    // by the compile cache today; it is only wasted space, never loaded.
    println!("compile: after the restart, compiled/: {:?}", compiled());

    // 4. The start after it loads the stored artifact.
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    serves_py(&mut lepton, &addr);
    assert_eq!(
        compiled_lines(&lepton),
        0,
        "loaded from the cache:\n{}",
        lepton.stderr()
    );
    terminate(lepton);

    // 5. A torn artifact and sidecar (both truncated to half): refused by the checksum,
    //    recompiled.
    let full = std::fs::read(&artifact_path).expect("artifact");
    let sum = std::fs::read(&sidecar_path).expect("sidecar");
    std::fs::write(&artifact_path, &full[..full.len() / 2]).expect("truncate artifact");
    std::fs::write(&sidecar_path, &sum[..sum.len() / 2]).expect("truncate sidecar");
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    serves_py(&mut lepton, &addr);
    let log = lepton.stderr();
    assert!(log.contains("failed its checksum"), "{log}");
    assert_eq!(compiled_lines(&lepton), 1, "recompiled:\n{log}");
    terminate(lepton);
    assert_eq!(
        sha256_file(&artifact_path).trim_start_matches("sha256:"),
        std::fs::read_to_string(&sidecar_path)
            .expect("sidecar")
            .trim(),
        "a whole artifact and its checksum are stored again"
    );

    // 6. A truncated artifact whose sidecar matches it (damage the checksum cannot see): wasmtime
    //    refuses to deserialize it, and lepton recompiles instead of crashing.
    let full = std::fs::read(&artifact_path).expect("artifact");
    std::fs::write(&artifact_path, &full[..full.len() / 2]).expect("truncate artifact");
    let hex = sha256_file(&artifact_path);
    std::fs::write(&sidecar_path, hex.trim_start_matches("sha256:")).expect("sidecar");
    let mut lepton = Lepton::start(&manifest, &cache, &logs);
    serves_py(&mut lepton, &addr);
    let log = lepton.stderr();
    assert!(
        log.contains("discarding unusable compiled artifact"),
        "{log}"
    );
    assert_eq!(compiled_lines(&lepton), 1, "recompiled:\n{log}");
    terminate(lepton);
    println!("compile: compiled/ at the end: {:?}", compiled());
    println!("sigkill_during_a_compile: {:?}", started.elapsed());
}
