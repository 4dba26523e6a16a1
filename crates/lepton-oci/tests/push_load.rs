//! End-to-end: push a real app to a real registry, inspect the artifact over HTTP, load it into
//! a fresh cache, then exercise offline loads and tamper detection.

mod common;

use common::*;
use lepton_oci::{
    AppLoader, LoadSource, OciCache, OciError, PushOptions, RegistryOptions, push_with_options,
};
use lepton_testkit::TestRegistry;
use serde_json::{Value, json};

const REPO: &str = "test/hello";

async fn push_app(reg: &TestRegistry, app: &TestApp, tag: &str) -> lepton_oci::PushOutcome {
    push_with_options(
        &app.manifest(),
        &format!("{}/{REPO}:{tag}", reg.addr()),
        &RegistryOptions::default(),
        &PushOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn pushed_artifact_matches_spin_layout() {
    let reg = TestRegistry::start().unwrap();
    let app = TestApp::new();
    let outcome = push_app(&reg, &app, "v1").await;

    let (manifest, raw) = get_manifest(&reg, REPO, "v1");
    assert_eq!(sha256(&raw), outcome.manifest_digest);
    assert!(
        manifest.get("mediaType").is_none(),
        "no top-level mediaType: {manifest}"
    );
    assert_eq!(manifest["schemaVersion"], 2);

    let layers = manifest["layers"].as_array().unwrap();
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.wasm.content.layer.v1+wasm",
            "application/vnd.wasm.content.layer.v1+data",
            "application/vnd.fermyon.spin.application.v1+config",
        ]
    );
    assert!(layers.iter().all(|l| l.get("annotations").is_none()));
    let digests: Vec<&str> = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests[0], sha256(&wasm_bytes()));
    assert_eq!(digests[1], sha256(&big_bytes()));
    assert!(
        !digests.contains(&sha256(SMALL).as_str()),
        "small file is inlined, not a layer"
    );
    assert_eq!(digests[2], outcome.locked_app_digest);

    // Config blob: Spin's image config with the locked-app label.
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config: Value = serde_json::from_slice(&get_blob(
        &reg,
        REPO,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(
        config,
        json!({
            "architecture": "wasm",
            "os": "Wasip1",
            "config": {"Labels": {"com.fermyon.spin.lockedAppDigest": outcome.locked_app_digest}},
            "rootfs": {"type": "layers", "diff_ids": []}
        })
    );

    let ann = &manifest["annotations"];
    assert_eq!(ann["org.opencontainers.image.title"], "hello");
    assert_eq!(ann["org.opencontainers.image.version"], "0.1.0");
    assert_eq!(
        ann["org.opencontainers.image.authors"],
        "Jane Doe <jane@example.com>, Joe"
    );
    assert!(ann.get("org.opencontainers.image.description").is_none());
    let created = ann["org.opencontainers.image.created"].as_str().unwrap();
    assert!(
        created.len() >= 20 && created.contains('T'),
        "RFC 3339: {created}"
    );

    // The locked-app layer references content by digest only.
    let locked_bytes = get_blob(&reg, REPO, digests[2]);
    let locked = lepton_app::LockedApp::from_json(&locked_bytes).unwrap();
    assert!(locked.metadata.get("origin").is_none());
    let c = &locked.components[0];
    assert_eq!(c.source.content.digest.as_deref(), Some(digests[0]));
    assert!(c.source.content.source.is_none());
    assert!(
        c.source.content.inline.is_none(),
        "300-byte wasm is not inlined"
    );
    let files: Vec<(&str, bool)> = c
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.content.inline.is_some()))
        .collect();
    assert_eq!(
        files,
        [("static/big.txt", false), ("static/small.txt", true)]
    );
    let small = &c.files[1];
    assert_eq!(small.content.inline.as_deref(), Some(SMALL));
    assert_eq!(
        small.content.digest.as_deref(),
        Some(sha256(SMALL).as_str())
    );
    let raw: Value = serde_json::from_slice(&locked_bytes).unwrap();
    let inline = raw["components"][0]["files"][1]["inline"].as_str().unwrap();
    assert!(
        !inline.ends_with('='),
        "inline is unpadded base64: {inline}"
    );
}

#[tokio::test]
async fn load_then_offline_then_tamper() {
    let mut reg = TestRegistry::start().unwrap();
    let app = TestApp::new();
    let outcome = push_app(&reg, &app, "v1").await;
    let tag_ref = format!("{}/{REPO}:v1", reg.addr());
    let pinned_ref = format!("{}/{REPO}@{}", reg.addr(), outcome.manifest_digest);

    let cache_dir = tempfile::tempdir().unwrap();
    let loader = AppLoader::new(
        OciCache::new(cache_dir.path().to_path_buf()),
        RegistryOptions::default(),
    );
    let loaded = loader.load(&tag_ref).await.unwrap();
    assert_eq!(loaded.source, LoadSource::Registry);
    assert_eq!(loaded.reference, tag_ref);
    assert_eq!(loaded.manifest_digest, outcome.manifest_digest);
    assert_runnable(&loaded.locked, &tag_ref);

    // Spin's cache layout.
    let mdir = cache_dir
        .path()
        .join("registry/manifests")
        .join(reg.addr())
        .join("test/hello/v1");
    for f in ["manifest.json", "config.json", "digest"] {
        assert!(mdir.join(f).is_file(), "{f}");
    }
    assert_eq!(
        sha256(&read(&mdir.join("config.json"))),
        outcome.locked_app_digest
    );
    let wasm_blob = cache_dir
        .path()
        .join("registry/wasm")
        .join(sha256(&wasm_bytes()));
    assert_eq!(read(&wasm_blob), wasm_bytes());
    assert!(
        cache_dir
            .path()
            .join("registry/data")
            .join(sha256(&big_bytes()))
            .is_file()
    );

    // A digest-pinned load while online: already cached (by tag), so the registry is skipped.
    let pinned = loader.load(&pinned_ref).await.unwrap();
    assert_eq!(pinned.source, LoadSource::CacheOnly);
    assert_eq!(pinned.manifest_digest, outcome.manifest_digest);

    // Registry down: both refs load from the cache alone.
    reg.stop();
    for r in [&tag_ref, &pinned_ref] {
        let offline = loader.load(r).await.unwrap();
        assert_eq!(offline.source, LoadSource::CacheOnly, "{r}");
        assert_eq!(offline.manifest_digest, outcome.manifest_digest);
        assert_runnable(&offline.locked, r);
    }
    // A pinned ref first seen by tag still starts offline in a fresh loader.
    let fresh = AppLoader::new(
        OciCache::new(cache_dir.path().to_path_buf()),
        RegistryOptions::default(),
    );
    let pinned_dir = cache_dir
        .path()
        .join("registry/manifests")
        .join(reg.addr())
        .join("test/hello")
        .join(&outcome.manifest_digest);
    let _ = std::fs::remove_dir_all(pinned_dir);
    assert_eq!(
        fresh.load(&pinned_ref).await.unwrap().source,
        LoadSource::CacheOnly
    );

    // Tampered wasm blob + registry down → refuse to run.
    std::fs::write(&wasm_blob, b"\0asm evil").unwrap();
    let err = loader.load(&tag_ref).await.unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&sha256(&wasm_bytes())) && msg.contains(&tag_ref),
        "{msg}"
    );
    assert!(msg.contains("refusing to run"), "{msg}");

    // Tampered again + registry up → re-fetched and correct.
    std::fs::write(&wasm_blob, b"\0asm evil").unwrap();
    reg.restart().unwrap();
    let healed = loader.load(&tag_ref).await.unwrap();
    assert_eq!(healed.source, LoadSource::Registry);
    assert_eq!(read(&wasm_blob), wasm_bytes());
    assert_runnable(&healed.locked, &tag_ref);

    // A tampered asset file is rebuilt on the next load.
    let assets = url_path(
        healed.locked.components[0].files[0]
            .content
            .source
            .as_deref()
            .unwrap(),
    );
    std::fs::write(assets.join("static/big.txt"), b"defaced").unwrap();
    std::fs::write(assets.join("static/extra.txt"), b"planted").unwrap();
    let rebuilt = loader.load(&tag_ref).await.unwrap();
    assert_runnable(&rebuilt.locked, &tag_ref);
    assert!(!assets.join("static/extra.txt").exists());

    // A wrong pinned digest is rejected.
    let wrong = format!("{}/{REPO}@sha256:{}", reg.addr(), "0".repeat(64));
    assert!(loader.load(&wrong).await.is_err());
}

#[tokio::test]
async fn offline_with_empty_cache_names_the_reference() {
    let mut reg = TestRegistry::start().unwrap();
    let addr = reg.addr();
    reg.stop();
    let cache_dir = tempfile::tempdir().unwrap();
    let loader = AppLoader::new(
        OciCache::new(cache_dir.path().to_path_buf()),
        RegistryOptions::default(),
    );
    let r = format!("{addr}/{REPO}:v1");
    let err = loader.load(&r).await.unwrap_err();
    assert!(matches!(err, OciError::Offline { .. }), "{err:?}");
    assert!(err.to_string().contains(&r), "{err}");
}

#[test]
fn invalid_references_are_named() {
    let err = lepton_oci::parse_reference("Not A Ref!!").unwrap_err();
    assert!(err.to_string().contains("Not A Ref!!"), "{err}");
}

/// The runnable form: wasm from the cache, one `/` mount with both files, OCI origin.
fn assert_runnable(locked: &lepton_app::LockedApp, reference: &str) {
    assert_eq!(
        locked.metadata["origin"],
        format!("vnd.fermyon.origin-oci:{reference}")
    );
    let c = &locked.components[0];
    let wasm = url_path(c.source.content.source.as_deref().unwrap());
    assert_eq!(read(&wasm), wasm_bytes());
    assert_eq!(
        c.source.content.digest.as_deref(),
        Some(sha256(&wasm_bytes()).as_str())
    );
    assert!(c.source.content.inline.is_none());
    assert_eq!(c.files.len(), 1);
    assert_eq!(c.files[0].path, "/");
    let dir = url_path(c.files[0].content.source.as_deref().unwrap());
    assert!(dir.ends_with("hello"), "{}", dir.display());
    assert_eq!(read(&dir.join("static/small.txt")), SMALL);
    assert_eq!(read(&dir.join("static/big.txt")), big_bytes());
}
