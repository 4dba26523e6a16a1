//! Unit tests of the supervisor: claims, superseding, failed loads.

use super::*;
use lepton_oci::{OciCache, RegistryOptions};
use lepton_runtime::RuntimeEngineConfig;

/// A supervisor with default settings whose caches live in `dir` (for unit tests here and in
/// the reconciler).
pub(crate) fn supervisor(dir: &std::path::Path) -> AppSupervisor {
    let engine = Arc::new(RuntimeEngine::new(&RuntimeEngineConfig::default()).expect("engine"));
    let compile_cache = CompileCache::new(dir, engine.engine());
    let loader = Arc::new(AppLoader::new(
        OciCache::new(dir.join("cache")),
        RegistryOptions::default(),
    ));
    AppSupervisor::new(engine, loader, compile_cache, SupervisorConfig::default())
}

/// An app named `name` whose reference cannot load (nothing listens on port 1).
pub(crate) fn spec(dir: &std::path::Path, name: &str, address: &str) -> AppSpec {
    AppSpec {
        name: name.into(),
        // Nothing listens on port 1: loads fail fast, without a registry.
        reference: format!("127.0.0.1:1/{name}:v1"),
        address: Some(address.parse().expect("address")),
        hosts: Vec::new(),
        tls: None,
        state_dir: dir.join(name),
        variables: Default::default(),
        runtime_config: None,
        limits: Default::default(),
        preload: None,
    }
}

#[tokio::test]
async fn claims_refuse_a_second_key_and_newer_desires_supersede_older_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let first = sup.apply(
        "a.json".into(),
        Some(spec(dir.path(), "a", "127.0.0.1:4999")),
    );
    let newer = sup.apply(
        "a.json".into(),
        Some(spec(dir.path(), "a", "127.0.0.1:4998")),
    );
    // Another key on an address `a.json` is about to take: refused, naming `a.json`.
    let clash = sup
        .apply(
            "b.json".into(),
            Some(spec(dir.path(), "b", "127.0.0.1:4998")),
        )
        .await
        .expect_err("conflict");
    assert!(
        matches!(&clash.error, StartError::Conflict { field: "address", other, .. } if other == "a.json"),
        "{}",
        clash.describe()
    );
    // Same state_dir under another key: refused too.
    let mut shared = spec(dir.path(), "c", "127.0.0.1:4997");
    shared.state_dir = dir.path().join("a");
    let clash = sup
        .apply("c.json".into(), Some(shared))
        .await
        .expect_err("conflict");
    assert!(matches!(
        clash.error,
        StartError::Conflict {
            field: "state_dir",
            ..
        }
    ));
    // The older desired state for a.json is skipped; the newer one runs (and fails to load,
    // leaving nothing running and nothing claimed).
    assert!(matches!(first.await, Ok(Transition::Superseded)));
    let failed = newer.await.expect_err("no registry on port 1");
    assert!(
        matches!(failed.error, StartError::Load(_)),
        "{}",
        failed.describe()
    );
    assert!(sup.status().is_empty());
    let ok_now = sup.apply(
        "b.json".into(),
        Some(spec(dir.path(), "b", "127.0.0.1:4998")),
    );
    let err = ok_now.await.expect_err("no registry");
    assert!(
        matches!(err.error, StartError::Load(_)),
        "{}",
        err.describe()
    );
}

#[tokio::test]
async fn the_host_table_follows_each_apps_hosts_through_replace_move_and_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = supervisor(dir.path());
    let lazy = |hosts: &[&str], address: Option<&str>| {
        let mut s = spec(dir.path(), "a", "127.0.0.1:0");
        s.address = address.map(|a| a.parse().expect("address"));
        s.hosts = hosts.iter().map(|h| h.to_string()).collect();
        s.preload = Some(false);
        s
    };
    let table = sup.host_table();
    let routed = |hosts: &[&str]| -> Vec<bool> {
        let t = table.borrow().clone();
        hosts.iter().map(|h| t.resolve(h).is_some()).collect()
    };
    let probe = [
        "a.example.com",
        "x.shop.example.com",
        "b.example.com",
        "c.example.com",
    ];

    sup.apply(
        "a".into(),
        Some(lazy(&["a.example.com", "*.shop.example.com"], None)),
    )
    .await
    .expect("start");
    assert_eq!(routed(&probe), [true, true, false, false]);
    // Replaced where it is (no address either way): the hosts it dropped stop routing.
    sup.apply("a".into(), Some(lazy(&["b.example.com"], None)))
        .await
        .expect("replace");
    assert_eq!(routed(&probe), [false, false, true, false]);
    // Moved to an address of its own (a new version channel): still routed by its hosts.
    sup.apply(
        "a".into(),
        Some(lazy(
            &["b.example.com", "c.example.com"],
            Some("127.0.0.1:0"),
        )),
    )
    .await
    .expect("move");
    assert_eq!(routed(&probe), [false, false, true, true]);
    assert_eq!(table.borrow().len(), 2);
    sup.apply("a".into(), None).await.expect("stop");
    assert!(table.borrow().is_empty());
}
