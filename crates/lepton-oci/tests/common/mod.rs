//! Shared helpers for lepton-oci integration tests: tiny Spin apps on disk and registry probes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lepton_testkit::{TestRegistry, http_get};
use serde_json::Value;

/// 300 bytes that start with the Wasm header (the OCI layer doesn't care that it isn't valid).
pub fn wasm_bytes() -> Vec<u8> {
    let mut b = b"\0asm\x0d\0\x01\0".to_vec();
    b.extend((0..292u32).map(|i| (i % 251) as u8));
    b
}

pub const SMALL: &[u8] = b"tiny file, well under 128 bytes";

pub fn big_bytes() -> Vec<u8> {
    (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A test app in a temp dir.
pub struct TestApp {
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// spin.toml + hello.wasm + static/small.txt (<128 B) + static/big.txt (>128 B).
    pub fn new() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("hello.wasm"), wasm_bytes()).unwrap();
        std::fs::create_dir_all(root.join("static")).unwrap();
        std::fs::write(root.join("static/small.txt"), SMALL).unwrap();
        std::fs::write(root.join("static/big.txt"), big_bytes()).unwrap();
        std::fs::write(
            root.join("spin.toml"),
            r#"spin_manifest_version = 2

[application]
name = "hello"
version = "0.1.0"
authors = ["Jane Doe <jane@example.com>", "Joe"]

[[trigger.http]]
route = "/..."
component = "hello"

[component.hello]
source = "hello.wasm"
files = [{ source = "static", destination = "/static" }]
allowed_outbound_hosts = ["https://api.example.com"]
"#,
        )
        .unwrap();
        TestApp { dir }
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join("spin.toml")
    }
}

/// GET a manifest from the registry as JSON (plus raw bytes).
pub fn get_manifest(reg: &TestRegistry, repo: &str, tag: &str) -> (Value, Vec<u8>) {
    let resp = http_get(
        &reg.addr(),
        &format!("/v2/{repo}/manifests/{tag}"),
        Some("application/vnd.oci.image.manifest.v1+json"),
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    (serde_json::from_slice(&resp.body).unwrap(), resp.body)
}

/// GET a blob's bytes.
pub fn get_blob(reg: &TestRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let resp = http_get(&reg.addr(), &format!("/v2/{repo}/blobs/{digest}"), None).unwrap();
    assert_eq!(resp.status, 200, "blob {digest}");
    resp.body
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Path of a `file://` URL.
pub fn url_path(url: &str) -> PathBuf {
    lepton_app::file_url::to_path(url).expect("file:// URL")
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
