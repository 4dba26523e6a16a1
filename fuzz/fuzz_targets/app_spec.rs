//! `lepton.json` ([`Manifest::parse`]) and tauon's per-app files ([`parse_app_file`]): the same
//! text is tried as both. Checks: no panic; every accepted app has a non-empty name, absolute
//! paths, and a reference whose OCI cache directory stays inside the cache root.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use lepton_fuzz::{is_within, put, scratch};
use lepton_spec::{AppSpec, Manifest, parse_app_file};
use libfuzzer_sys::fuzz_target;

/// `<scratch>/lepton.json`'s directory: `rc.toml` (a runtime config), `state/` (a directory) and
/// `file` (a file where a directory is expected), so relative paths resolve both ways.
static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = scratch("supervisor");
    put(&dir, "rc.toml", b"");
    put(&dir, "apps/rc.toml", b"");
    put(&dir, "file", b"");
    std::fs::create_dir_all(dir.join("state")).expect("state dir");
    dir
});

fn check(app: &AppSpec, dir: &Path) {
    assert!(
        !app.name.is_empty(),
        "accepted an app with an empty name: {app:?}"
    );
    assert!(app.state_dir.is_absolute(), "relative state_dir: {app:?}");
    if let Some(rc) = &app.runtime_config {
        assert!(rc.is_absolute(), "relative runtime_config: {app:?}");
    }
    let cache = dir.join("cache");
    let manifest_dir = lepton_oci::fuzzing::manifest_dir(&cache, &app.reference)
        .unwrap_or_else(|e| panic!("accepted reference {:?} does not parse: {e}", app.reference));
    assert!(
        is_within(&manifest_dir, &cache),
        "reference {:?} leads outside the cache: {}",
        app.reference,
        manifest_dir.display()
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = &*DIR;
    if let Ok(manifest) = Manifest::parse(&dir.join("lepton.json"), text) {
        for app in &manifest.apps {
            check(app, dir);
        }
    }
    if let Ok(app) = parse_app_file(&dir.join("apps/app.json"), text) {
        check(&app, dir);
    }
});
