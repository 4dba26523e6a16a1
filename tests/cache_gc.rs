//! One cache dir shared by two real `lepton` processes, against a real registry: the cache
//! collector of one never removes what the other's apps use (loaded, evicted and loaded again),
//! an app removed from both is collected, and two processes pulling and compiling the same new
//! app at once end with one copy of everything.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::serve::{Serve, converge};
use support::*;

/// Keep-alive and collection every second, removing what nobody used for 3 s.
const FAST_GC: [&str; 6] = [
    "--app-idle-timeout",
    "1",
    "--cache-gc-interval",
    "1",
    "--cache-gc-grace",
    "3",
];
const GRACE: Duration = Duration::from_secs(3);
/// The log line of a collection round that ran (not skipped).
const GC_ROUND: &str = "cache gc: removed what no app has used";

fn put(serve: &Serve, name: &str, reference: &str, host: &str) {
    let body = format!(r#"{{"reference":"{reference}","hosts":["{host}"]}}"#);
    let (status, json) = serve.api("PUT", &format!("/v1/apps/{name}"), &body);
    assert_eq!(status, 200, "{json}\n{}", serve.log());
}

fn load_state(serve: &Serve, app: &str) -> Value {
    let (status, json) = serve.api("GET", &format!("/v1/apps/{app}"), "");
    assert_eq!(status, 200, "{json}");
    json["status"]["load"]["state"].clone()
}

/// The static app behind `host` serves its mounted file and its hello component.
fn static_serves(serve: &Serve, host: &str) {
    let file = serve.via(host, "/static/small.txt");
    let expected = std::fs::read(repo_root().join("apps/static/assets/small.txt")).expect("asset");
    assert_eq!(
        (file.status, &file.body),
        (200, &expected),
        "{}",
        serve.log()
    );
    let hello = serve.via(host, "/hello");
    assert_eq!(hello.status, 200, "{}\n{}", hello.text(), serve.log());
}

/// The Wasm layer digests of `repo:v1` as its cached manifest lists them.
fn wasm_digests(cache: &Path, reg: &str, repo: &str) -> Vec<String> {
    let path = cache.join(format!("registry/manifests/{reg}/{repo}/v1/manifest.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: Value = serde_json::from_str(&text).expect("manifest json");
    let digests: Vec<String> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.wasm.content.layer.v1+wasm")
        .filter_map(|l| l["digest"].as_str().map(str::to_string))
        .collect();
    assert!(!digests.is_empty(), "{text}");
    digests
}

/// The entries of `dir` (sorted), or none if it does not exist.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    all.sort();
    all
}

/// The compiled artifacts and sidecars of the component whose Wasm has `digest`.
fn artifacts(cache: &Path, digest: &str) -> Vec<PathBuf> {
    let hex = digest.trim_start_matches("sha256:");
    entries(&cache.join("compiled"))
        .iter()
        .flat_map(|engine| entries(engine))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{hex}-")))
        })
        .collect()
}

/// Makes `path` look last used a day ago.
fn age(path: &Path) {
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(day_ago))
        .unwrap_or_else(|e| panic!("aging {}: {e}", path.display()));
}

#[test]
fn gc_never_removes_what_another_process_runs_and_collects_what_nobody_runs() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    require_guest_builds();
    let started = Instant::now();
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    let (x, y, z) = (
        format!("{reg}/x:v1"),
        format!("{reg}/y:v1"),
        format!("{reg}/z:v1"),
    );
    push("hello-p2", &x);
    // The static app: a file server with mounted files (an assets dir) and the hello-p2
    // component, whose Wasm and compiled code it shares with x.
    push("static", &y);
    push("hello-p3", &z);

    // Two services on one cache dir (`<tmp>/cache`), each with its own database.
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let (admin_a, ingress_a, admin_b, ingress_b) =
        (free_addr(), free_addr(), free_addr(), free_addr());
    let a = Serve::start_with_args(tmp.path(), "a.db", "node-a", &admin_a, &ingress_a, &FAST_GC);
    let b = Serve::start_with_args(tmp.path(), "b.db", "node-b", &admin_b, &ingress_b, &FAST_GC);
    put(&a, "x", &x, "x.example.com");
    put(&a, "za", &z, "z.example.com");
    put(&b, "y", &y, "y.example.com");
    put(&b, "zb", &z, "z.example.com");
    // First requests load every app (pull, compile) into the shared cache.
    a.says("x.example.com", "p2");
    a.says("z.example.com", "p3");
    static_serves(&b, "y.example.com");
    b.says("z.example.com", "p3");
    let loaded = Instant::now();

    let y_dir = cache.join(format!("registry/manifests/{reg}/y/v1"));
    let y_wasm = wasm_digests(&cache, &reg, "y");
    let y_blobs: Vec<PathBuf> = y_wasm
        .iter()
        .map(|d| cache.join("registry/wasm").join(d))
        .collect();
    let y_artifacts: Vec<PathBuf> = y_wasm.iter().flat_map(|d| artifacts(&cache, d)).collect();
    // Only y mounts files: the one assets dir is y's.
    let y_assets = entries(&cache.join("assets"));
    assert_eq!(y_assets.len(), 1, "{y_assets:?}");
    assert_eq!(y_artifacts.len(), 2 * y_wasm.len(), "{y_artifacts:?}");
    let y_entries: Vec<PathBuf> = [y_dir.join("digest")]
        .into_iter()
        .chain(y_blobs)
        .chain(y_assets)
        .chain(y_artifacts)
        .collect();

    // z goes from both services: nobody keeps its entries alive any more. Aged past the
    // grace, they go at the next collection of either process.
    let z_dir = cache.join(format!("registry/manifests/{reg}/z/v1"));
    let z_wasm = wasm_digests(&cache, &reg, "z");
    for (serve, name) in [(&a, "za"), (&b, "zb")] {
        let (status, json) = serve.api("DELETE", &format!("/v1/apps/{name}"), "");
        assert!(status < 300, "{status} {json}");
    }
    let mut z_entries: Vec<PathBuf> = entries(&z_dir);
    z_entries.extend(z_wasm.iter().map(|d| cache.join("registry/wasm").join(d)));
    z_entries.extend(z_wasm.iter().flat_map(|d| artifacts(&cache, d)));
    assert_eq!(z_entries.len(), 3 + 3, "{z_entries:?}");
    for path in &z_entries {
        age(path);
    }
    converge(
        "z's manifest, Wasm and compiled code collected",
        &[&a, &b],
        || z_entries.iter().all(|p| !p.exists()),
    );
    assert!(!z_dir.exists(), "the emptied manifest dir stays");

    // Let y's entries get older than the grace while b runs y (evicted after 1 s idle), then
    // wait for two more collections in a, which does not run y: only b's keep-alive saves them.
    std::thread::sleep(
        (loaded + GRACE + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    let rounds = a.log().matches(GC_ROUND).count();
    converge("two more collections in a", &[&a], || {
        a.log().matches(GC_ROUND).count() >= rounds + 2
    });
    for path in &y_entries {
        assert!(
            path.exists(),
            "{} was collected while b runs y\n{}",
            path.display(),
            a.log()
        );
    }
    converge("y evicted after a second idle", &[&b], || {
        load_state(&b, "y") == "idle"
    });
    // Loaded again from what b holds in memory: the cached Wasm, assets and compiled code.
    static_serves(&b, "y.example.com");
    assert_eq!(load_state(&b, "y"), "loaded");
    a.says("x.example.com", "p2");
    eprintln!("cache gc across two processes: {:?}", started.elapsed());
}

#[test]
fn two_processes_pulling_and_compiling_the_same_new_app_at_once_share_one_copy() {
    // This test's subject is the compiled-code cache: one compile per component.
    support::QUICK_COMPILE.store(false, std::sync::atomic::Ordering::Relaxed);
    require_guest_builds();
    let started = Instant::now();
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    let reference = format!("{reg}/shared:v1");
    push("static", &reference);

    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let mut running = Vec::new();
    for name in ["a", "b"] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let addr = free_addr();
        let manifest = one_app_manifest(&dir, "shared", &reference, &addr);
        running.push((Lepton::start(&manifest, &cache, &dir.join("logs")), addr));
    }
    for (lepton, addr) in &mut running {
        lepton.wait_started().expect("started");
        let file = get(addr, "/static/small.txt").expect("get");
        let expected =
            std::fs::read(repo_root().join("apps/static/assets/small.txt")).expect("asset");
        assert_eq!(
            (file.status, &file.body),
            (200, &expected),
            "{}",
            lepton.stderr()
        );
        assert_eq!(get(addr, "/hello").expect("get").status, 200);
    }

    // One manifest dir, complete, nothing half-written anywhere.
    let repo = cache.join(format!("registry/manifests/{reg}/shared"));
    assert_eq!(entries(&repo), vec![repo.join("v1")]);
    let names = |dir: &Path| -> Vec<String> {
        entries(dir)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        names(&repo.join("v1")),
        ["config.json", "digest", "manifest.json"]
    );
    let wasm = wasm_digests(&cache, &reg, "shared");
    let mut blobs = wasm.clone();
    blobs.sort();
    assert_eq!(names(&cache.join("registry/wasm")), blobs);
    assert_eq!(entries(&cache.join("assets")).len(), 1);
    // One engine dir with one artifact (and its sidecar) per component.
    let engines = entries(&cache.join("compiled"));
    assert_eq!(engines.len(), 1, "{engines:?}");
    let compiled = names(&engines[0]);
    assert_eq!(compiled.len(), 2 * wasm.len(), "{compiled:?}");
    for digest in &wasm {
        let found = artifacts(&cache, digest);
        assert_eq!(found.len(), 2, "{digest}: {found:?}");
    }
    for name in names(&cache.join("registry/data"))
        .iter()
        .chain(&names(&cache.join("assets")))
    {
        assert!(!name.starts_with('.'), "left behind: {name}");
    }
    eprintln!("two processes on one empty cache: {:?}", started.elapsed());
}
