//! A pulled locked app turned runnable (`resolve::runnable`, through `lepton_oci::fuzzing`):
//! component ids and file paths from the registry become directories and files under the cache's
//! `assets/`. The cache holds one Wasm blob and one data blob that inputs may reference.
//! Checks: no panic; nothing is ever written outside the cache's `assets/`, and the blobs stay
//! intact; a runnable app's sources and file mounts point inside the cache.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use lepton_app::file_url;
use lepton_fuzz::{is_within, put, scratch, walk};
use libfuzzer_sys::fuzz_target;

/// `sha256:` of [`WASM_BLOB`] and [`DATA_BLOB`] (the seeds reference them).
const WASM_BLOB: &[u8] = b"\0asm\x01\0\0\0";
const WASM_DIGEST: &str = "sha256:93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";
const DATA_BLOB: &[u8] = b"hello from a data layer\n";
const DATA_DIGEST: &str = "sha256:bc534bf7a6b454745fef5af5e133c3cf0fa3443b869e7d49a22e8c62c1426a06";

/// `<scratch>/sentinel/cache`: anything but `cache` appearing in `sentinel/` is an escape.
static DIRS: LazyLock<(PathBuf, PathBuf)> = LazyLock::new(|| {
    let sentinel = scratch("oci-resolve").join("sentinel");
    let cache = sentinel.join("cache");
    put(&cache, &format!("registry/wasm/{WASM_DIGEST}"), WASM_BLOB);
    put(&cache, &format!("registry/data/{DATA_DIGEST}"), DATA_BLOB);
    (sentinel, cache)
});

fuzz_target!(|data: &[u8]| {
    let (sentinel, cache) = &*DIRS;
    let result = lepton_oci::fuzzing::runnable(cache, "registry.invalid/fuzz/app:v1", data);
    // Only `assets/` may gain anything; the blobs stay as they were.
    let assets = cache.join("assets");
    let blobs = [
        (
            cache.join(format!("registry/wasm/{WASM_DIGEST}")),
            WASM_BLOB,
        ),
        (
            cache.join(format!("registry/data/{DATA_DIGEST}")),
            DATA_BLOB,
        ),
    ];
    for path in walk(sentinel) {
        let fixture = blobs.iter().any(|(blob, _)| blob.starts_with(&path));
        assert!(
            fixture || is_within(&path, &assets),
            "resolving wrote outside the cache's assets: {}",
            path.display()
        );
    }
    for (blob, bytes) in &blobs {
        assert!(
            std::fs::read(blob).is_ok_and(|b| b == *bytes),
            "blob {} was changed",
            blob.display()
        );
    }
    if let Ok(app) = result {
        for c in &app.components {
            let sources = c
                .source
                .content
                .source
                .iter()
                .chain(c.files.iter().filter_map(|f| f.content.source.as_ref()));
            for source in sources {
                let path = file_url::to_path(source).expect("file:// source");
                assert!(
                    is_within(&path, cache),
                    "component {} uses {}",
                    c.id,
                    path.display()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&assets);
});
