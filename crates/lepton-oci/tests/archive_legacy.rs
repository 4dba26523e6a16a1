//! Archive-mode pushes and Spin 1.x artifacts (locked app as the config blob) load correctly;
//! a lock with an escaping file path is refused.

mod common;

use common::*;
use lepton_oci::{
    AppLoader, LoadSource, OciCache, OciError, PushOptions, RegistryOptions, push_with_options,
};
use lepton_testkit::TestRegistry;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::json;

fn loader(dir: &tempfile::TempDir) -> AppLoader {
    AppLoader::new(
        OciCache::new(dir.path().to_path_buf()),
        RegistryOptions::default(),
    )
}

#[tokio::test]
async fn archive_mode_push_and_pull() {
    let reg = TestRegistry::start().unwrap();
    let app = TestApp::new();
    let reference = format!("{}/test/archived:v1", reg.addr());
    push_with_options(
        &app.manifest(),
        &reference,
        &RegistryOptions::default(),
        &PushOptions {
            archive_layers: true,
        },
    )
    .await
    .unwrap();

    let (manifest, _) = get_manifest(&reg, "test/archived", "v1");
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.wasm.content.layer.v1+wasm",
            "application/vnd.wasm.content.bundle.v1.tar+gzip",
            "application/vnd.fermyon.spin.application.v1+config",
        ]
    );

    let cache_dir = tempfile::tempdir().unwrap();
    let loaded = loader(&cache_dir).load(&reference).await.unwrap();
    assert_eq!(loaded.source, LoadSource::Registry);
    let c = &loaded.locked.components[0];
    let dir = url_path(c.files[0].content.source.as_deref().unwrap());
    assert_eq!(read(&dir.join("static/big.txt")), big_bytes());
    assert_eq!(read(&dir.join("static/small.txt")), SMALL);
    // Archive files are re-indexed by their own digest.
    assert!(
        cache_dir
            .path()
            .join("registry/data")
            .join(sha256(&big_bytes()))
            .is_file()
    );
}

async fn push_legacy(reg: &TestRegistry, repo_tag: &str, file_path: &str) -> String {
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let reference: Reference = format!("{}/{repo_tag}", reg.addr()).parse().unwrap();
    let locked = json!({
        "spin_lock_version": 0,
        "metadata": {"name": "legacy", "trigger": {"type": "http", "base": "/"}},
        "triggers": [{"id": "trigger-legacy", "trigger_type": "http",
                      "trigger_config": {"component": "legacy", "route": "/..."}}],
        "components": [{
            "id": "legacy",
            "source": {"content_type": "application/wasm", "digest": sha256(&wasm_bytes())},
            "files": [{"digest": sha256(&big_bytes()), "path": file_path}]
        }]
    });
    let layers = vec![
        ImageLayer::new(
            wasm_bytes(),
            "application/vnd.wasm.content.layer.v1+wasm".into(),
            None,
        ),
        ImageLayer::new(
            big_bytes(),
            "application/vnd.wasm.content.layer.v1+data".into(),
            None,
        ),
    ];
    let config = Config::new(
        serde_json::to_vec(&locked).unwrap(),
        "application/vnd.fermyon.spin.application.v1+config".into(),
        None,
    );
    client
        .push(&reference, &layers, config, &RegistryAuth::Anonymous, None)
        .await
        .unwrap();
    reference.whole()
}

#[tokio::test]
async fn spin1_layout_loads() {
    let reg = TestRegistry::start().unwrap();
    let reference = push_legacy(&reg, "test/legacy:v1", "assets/big.txt").await;
    let cache_dir = tempfile::tempdir().unwrap();
    let loaded = loader(&cache_dir).load(&reference).await.unwrap();
    let c = &loaded.locked.components[0];
    assert_eq!(
        read(&url_path(c.source.content.source.as_deref().unwrap())),
        wasm_bytes()
    );
    let dir = url_path(c.files[0].content.source.as_deref().unwrap());
    assert_eq!(read(&dir.join("assets/big.txt")), big_bytes());
    assert_eq!(loaded.locked.triggers[0].id, "trigger-legacy");
}

#[tokio::test]
async fn escaping_file_paths_are_refused() {
    let reg = TestRegistry::start().unwrap();
    let reference = push_legacy(&reg, "test/evil:v1", "../../evil.txt").await;
    let cache_dir = tempfile::tempdir().unwrap();
    let err = loader(&cache_dir).load(&reference).await.unwrap_err();
    assert!(matches!(err, OciError::InvalidFilePath { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("legacy") && msg.contains("../../evil.txt"),
        "{msg}"
    );
}
