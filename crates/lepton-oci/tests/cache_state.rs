//! Cache state survives interrupted and failed pulls: an incomplete manifest dir is "not
//! cached" (never "tampered"), a failed pull keeps the last good version of a tag, and
//! digest-pinned references load from the cache without touching the registry.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use lepton_oci::{
    AppLoader, LoadSource, OciCache, OciError, PushOptions, RegistryOptions, push_with_options,
};
use lepton_testkit::TestRegistry;

const REPO: &str = "test/state";

async fn push(reg: &TestRegistry, app: &TestApp) -> String {
    push_with_options(
        &app.manifest(),
        &format!("{}/{REPO}:v1", reg.addr()),
        &RegistryOptions::default(),
        &PushOptions::default(),
    )
    .await
    .unwrap()
    .manifest_digest
}

fn loader(dir: &tempfile::TempDir) -> AppLoader {
    AppLoader::new(
        OciCache::new(dir.path().to_path_buf()),
        RegistryOptions::default(),
    )
}

fn tag_dir(cache: &tempfile::TempDir, reg: &TestRegistry) -> PathBuf {
    cache
        .path()
        .join("registry/manifests")
        .join(reg.addr())
        .join(REPO)
        .join("v1")
}

/// Damages a cached manifest dir the way an interrupted pull could.
type Breakage = fn(&std::path::Path);

fn assert_not_cached(err: OciError, reference: &str) {
    let msg = err.to_string();
    assert!(matches!(err, OciError::Offline { .. }), "{err:?}");
    assert!(
        msg.contains("not in the cache") && msg.contains(reference),
        "{msg}"
    );
    assert!(!msg.contains("refusing"), "{msg}");
}

#[tokio::test]
async fn incomplete_manifest_dirs_are_not_cached() {
    let mut reg = TestRegistry::start().unwrap();
    let app = TestApp::new();
    push(&reg, &app).await;
    let reference = format!("{}/{REPO}:v1", reg.addr());
    let cache = tempfile::tempdir().unwrap();
    let loader = loader(&cache);
    let dir = tag_dir(&cache, &reg);

    let breakages: [(&str, Breakage); 4] = [
        ("digest missing", |d| {
            std::fs::remove_file(d.join("digest")).unwrap()
        }),
        ("manifest missing", |d| {
            std::fs::remove_file(d.join("manifest.json")).unwrap()
        }),
        ("config missing", |d| {
            std::fs::remove_file(d.join("config.json")).unwrap()
        }),
        ("manifest torn", |d| {
            std::fs::write(d.join("manifest.json"), b"{\"schemaVer").unwrap()
        }),
    ];
    for (what, breakage) in breakages {
        reg.restart().unwrap();
        assert_eq!(
            loader.load(&reference).await.unwrap().source,
            LoadSource::Registry,
            "{what}"
        );
        breakage(&dir);
        reg.stop();
        let err = loader.load(&reference).await.unwrap_err();
        println!("{what}: {err}");
        assert_not_cached(err, &reference);
    }
}

#[tokio::test]
async fn failed_pull_keeps_the_last_good_version() {
    let mut reg = TestRegistry::start().unwrap();
    let app = TestApp::new();
    let v1 = push(&reg, &app).await;
    let reference = format!("{}/{REPO}:v1", reg.addr());
    let cache = tempfile::tempdir().unwrap();
    let loader = loader(&cache);
    assert_eq!(loader.load(&reference).await.unwrap().manifest_digest, v1);

    // Move the tag to a new version whose file layer the registry can no longer serve.
    let changed = b"changed big file ".repeat(20);
    std::fs::write(app.dir.path().join("static/big.txt"), &changed).unwrap();
    let v2 = push(&reg, &app).await;
    assert_ne!(v1, v2);
    let hex = sha256(&changed).trim_start_matches("sha256:").to_string();
    let blob = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    std::fs::remove_file(&blob).unwrap_or_else(|e| panic!("{}: {e}", blob.display()));
    // Refused (404) or served from the cache (5xx counts as unreachable): never v2.
    match loader.load(&reference).await {
        Ok(loaded) => {
            assert_eq!(loaded.source, LoadSource::CacheOnly);
            assert_eq!(loaded.manifest_digest, v1);
        }
        Err(e) => println!("pull of v2 failed as expected: {e}"),
    }
    reg.stop();
    let offline = loader.load(&reference).await.unwrap();
    assert_eq!(offline.source, LoadSource::CacheOnly);
    assert_eq!(offline.manifest_digest, v1, "the last good version is kept");
}

#[tokio::test]
async fn pinned_references_are_cache_first() {
    let mut reg = TestRegistry::start().unwrap();
    let app = TestApp::new();
    let digest = push(&reg, &app).await;
    let pinned = format!("{}/{REPO}@{digest}", reg.addr());
    let cache = tempfile::tempdir().unwrap();
    let loader = loader(&cache);
    assert_eq!(
        loader.load(&pinned).await.unwrap().source,
        LoadSource::Registry
    );

    // Nothing listening at the registry's address.
    reg.stop();
    let started = Instant::now();
    let loaded = loader.load(&pinned).await.unwrap();
    assert_eq!(loaded.source, LoadSource::CacheOnly);
    assert_eq!(loaded.manifest_digest, digest);

    // Something listening that never answers: any registry request would hang until the read
    // timeout, so a prompt load proves the registry was not contacted at all.
    let silent = std::net::TcpListener::bind(reg.addr()).unwrap();
    let loaded = tokio::time::timeout(Duration::from_secs(5), loader.load(&pinned))
        .await
        .expect("a cached pinned reference loads without contacting the registry")
        .unwrap();
    assert_eq!(loaded.source, LoadSource::CacheOnly);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);

    // A tampered cached blob is not used: with the registry back, it is re-fetched.
    let wasm_blob = cache
        .path()
        .join("registry/wasm")
        .join(sha256(&wasm_bytes()));
    std::fs::write(&wasm_blob, b"\0asm evil").unwrap();
    reg.restart().unwrap();
    let healed = loader.load(&pinned).await.unwrap();
    assert_eq!(healed.source, LoadSource::Registry);
    assert_eq!(read(&wasm_blob), wasm_bytes());
}
