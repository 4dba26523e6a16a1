//! Concurrent loads of the same reference (allowed: one app on two addresses) must never pull
//! the assets directory out from under each other, within one loader or across loaders
//! sharing a cache (as two processes would).

mod common;

use common::*;
use lepton_oci::{AppLoader, LoadedApp, OciCache, PushOptions, RegistryOptions, push_with_options};
use lepton_testkit::TestRegistry;

const ITERATIONS: usize = 20;

fn assert_files(loaded: &LoadedApp) {
    let c = &loaded.locked.components[0];
    let dir = url_path(c.files[0].content.source.as_deref().unwrap());
    assert!(dir.is_dir(), "{}", dir.display());
    assert_eq!(read(&dir.join("static/big.txt")), big_bytes());
    assert_eq!(read(&dir.join("static/small.txt")), SMALL);
    assert_eq!(
        read(&url_path(c.source.content.source.as_deref().unwrap())),
        wasm_bytes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_loads_of_one_reference_share_a_stable_assets_dir() {
    let reg = TestRegistry::start().unwrap();
    let app = TestApp::new();
    let reference = format!("{}/test/concurrent:v1", reg.addr());
    push_with_options(
        &app.manifest(),
        &reference,
        &RegistryOptions::default(),
        &PushOptions::default(),
    )
    .await
    .unwrap();

    for i in 0..ITERATIONS {
        let cache_dir = tempfile::tempdir().unwrap();
        let root = cache_dir.path().to_path_buf();
        let one = AppLoader::new(OciCache::new(root.clone()), RegistryOptions::default());
        // Even iterations: one loader (in-process serialisation). Odd: two loaders on one
        // cache, standing in for two processes.
        let other = if i % 2 == 0 {
            one.clone()
        } else {
            AppLoader::new(OciCache::new(root), RegistryOptions::default())
        };
        let (a, b) = tokio::join!(one.load(&reference), other.load(&reference));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_files(&a);
        assert_files(&b);
        // A third load while both "run" must leave their directory intact.
        let c = one.load(&reference).await.unwrap();
        assert_files(&a);
        assert_files(&b);
        assert_files(&c);
    }
}
