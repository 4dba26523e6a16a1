//! `spin.toml` → LockedApp ([`lepton_app::manifest::from_toml_str`]), in a fixture app directory
//! holding the Wasm files the repo's apps name and some files to mount. Checks: no panic; every
//! mounted file comes from inside the app directory and has a plain relative guest path; the
//! LockedApp round-trips through its JSON form ([`LockedApp::from_json`] accepts what lepton
//! writes, unchanged up to float last bits, see `same_json`).
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use lepton_app::{LockedApp, file_url, manifest::from_toml_str};
use lepton_fuzz::{is_plain_relative, is_within, put, same_json, scratch};
use libfuzzer_sys::fuzz_target;

/// Wasm files the apps under `apps/` reference (relative to an app directory).
const WASM: &[&str] = &[
    "app.wasm",
    "../target/wasm32-wasip2/release/hello_p2.wasm",
    "../target/wasm32-wasip2/release/hello_p3.wasm",
    "../target/wasm32-wasip2/release/outbound_p2.wasm",
    "../target/wasm32-wasip2/release/outbound_p3.wasm",
    "../target/wasm32-wasip2/release/fileserver.wasm",
    "../target/wasm32-wasip2/release/kv_p2.wasm",
    "../target/wasm32-wasip1/release/wagi.wasm",
    "../target/wasm32-wasip1/release/core_p1.wasm",
    "../target/polyglot/js.wasm",
];

/// `<scratch>/app` (the manifest's directory), with Wasm files and `assets/`, `static/` trees.
static APP_DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let app = scratch("spin-manifest").join("app");
    for wasm in WASM {
        put(&app, wasm, b"\0asm\x01\0\0\0");
    }
    put(&app, "assets/index.html", b"<h1>hi</h1>");
    put(&app, "assets/nested/deep.json", b"{}");
    put(&app, "assets/.hidden", b"");
    put(&app, "static/style.css", b"body{}");
    put(&app, "static/a b#c?.txt", b"odd name");
    app
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let app_dir = &*APP_DIR;
    let Ok(app) = from_toml_str(text, &app_dir.join("spin.toml")) else {
        return;
    };
    for c in &app.components {
        for f in &c.files {
            let source = f
                .content
                .source
                .as_deref()
                .expect("a mounted file has a source");
            let host = file_url::to_path(source).expect("a file:// source");
            assert!(
                is_within(&host, app_dir),
                "component {} mounts {} from outside the app dir",
                c.id,
                host.display()
            );
            assert!(
                is_plain_relative(&f.path),
                "component {} guest path {:?} is not plain relative",
                c.id,
                f.path
            );
        }
    }
    let _ = app.ensure_runnable();
    let json = app.to_json_vec().expect("serialize the LockedApp");
    let back = LockedApp::from_json(&json)
        .unwrap_or_else(|e| panic!("lepton cannot read the LockedApp it wrote: {e}"));
    let again = back.to_json_vec().expect("serialize again");
    assert!(
        same_json(&again, &json),
        "LockedApp JSON does not round-trip:\n{}\n{}",
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&again)
    );
});
