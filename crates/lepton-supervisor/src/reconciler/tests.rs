//! Unit tests of the reconciler: outcomes, superseding, and the status it publishes per key.

use super::*;
use crate::supervisor::tests::supervisor;
use crate::{RunningAppStatus, SupervisorConfig};

fn reconciler(dir: &std::path::Path) -> Reconciler {
    Reconciler::spawn(supervisor(dir))
}

fn spec(dir: &std::path::Path, name: &str) -> AppSpec {
    crate::supervisor::tests::spec(dir, name, "127.0.0.1:0")
}

/// A reconciler over a supervisor whose apps load on their first request: an app on a host
/// starts at once (nothing is pulled), so many can start without a registry.
fn lazy_reconciler(dir: &std::path::Path) -> Reconciler {
    use lepton_oci::{AppLoader, OciCache, RegistryOptions};
    use lepton_runtime::{CompileCache, RuntimeEngine, RuntimeEngineConfig};
    let engine = Arc::new(RuntimeEngine::new(&RuntimeEngineConfig::default()).expect("engine"));
    let compile_cache = CompileCache::new(dir, engine.engine());
    let loader = Arc::new(AppLoader::new(
        OciCache::new(dir.join("cache")),
        RegistryOptions::default(),
    ));
    let config = SupervisorConfig {
        preload_by_default: false,
        gc: None,
        ..SupervisorConfig::default()
    };
    Reconciler::spawn(AppSupervisor::new(engine, loader, compile_cache, config))
}

/// App `name` on host `<name>.test`, without an address of its own.
fn hosted(dir: &std::path::Path, name: &str) -> AppSpec {
    let mut spec = spec(dir, name);
    spec.address = None;
    spec.hosts = vec![format!("{name}.test")];
    spec
}

#[tokio::test]
async fn a_failed_load_is_answered_published_and_settles_readiness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = reconciler(dir.path());
    let err = r
        .set("shop", Desired::App(spec(dir.path(), "shop")))
        .await
        .expect_err("no registry on port 1");
    let err = err.to_string();
    assert!(
        err.starts_with("shop: app `shop` (127.0.0.1:1/shop:v1) refused: "),
        "{err}"
    );
    let status = r.board().snapshot();
    let key = &status.keys["shop"];
    assert_eq!(key.state, KeyState::Failed);
    assert_eq!(key.error.as_deref(), Some(err.as_str()));
    assert!(key.tried && status.settled() && r.board().settled());
    assert!(status.running.is_empty());
}

#[tokio::test]
async fn an_invalid_entry_is_refused_at_once_and_absent_removes_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = reconciler(dir.path());
    let mut status = r.status();
    let err = r
        .set("a.json", Desired::Invalid("a.json: line 1: oops".into()))
        .await
        .expect_err("invalid");
    assert_eq!(err.to_string(), "a.json: line 1: oops");
    status
        .wait_for(|b| {
            b.key("a.json")
                .is_some_and(|k| k.state == KeyState::Invalid)
        })
        .await
        .expect("published");
    let gone = r.set("a.json", Desired::Absent).await.expect("absent");
    assert!(matches!(gone, Transition::NotRunning), "{gone:?}");
    status
        .wait_for(StatusBoard::is_empty)
        .await
        .expect("published");
}

#[tokio::test]
async fn a_newer_desire_supersedes_the_one_waiting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = reconciler(dir.path());
    let first = r.set("shop", Desired::App(spec(dir.path(), "shop")));
    let mut newer_spec = spec(dir.path(), "shop");
    newer_spec.reference = "127.0.0.1:1/shop:v2".into();
    let second = r.set("shop", Desired::App(newer_spec));
    let (first, second) = tokio::join!(first, second);
    // The first either ran before the second arrived or was skipped; the second ran.
    assert!(
        matches!(first, Ok(Transition::Superseded)) || first.is_err(),
        "{first:?}"
    );
    let err = second.expect_err("no registry");
    assert_eq!(err.reference, "127.0.0.1:1/shop:v2");
    let key = r.board().key("shop").expect("published");
    assert_eq!(
        key.spec.as_ref().map(|s| s.reference.as_str()),
        Some("127.0.0.1:1/shop:v2")
    );
}

#[tokio::test]
async fn the_stream_names_each_changed_key_and_a_consumer_sees_the_end_of_a_burst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = lazy_reconciler(dir.path());
    let mut stream = r.status();
    assert_eq!(stream.changed().await, Some(StatusChanges::All));

    // One change: exactly that key, serving, with what runs under it.
    let started = r.set("k0", Desired::App(hosted(dir.path(), "k0"))).await;
    assert!(matches!(started, Ok(Transition::Started(_))), "{started:?}");
    let mut seen = std::collections::BTreeSet::new();
    while r
        .board()
        .key("k0")
        .is_none_or(|k| k.state != KeyState::Serving)
        || seen.is_empty()
    {
        let changes = stream.changed().await.expect("running");
        seen.extend(stream.keys(changes));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["k0"]);
    stream.take();

    // A burst: 200 starts, then half of them stopped, all set without waiting. A consumer that
    // reads only the keys it is told about ends with the reconciler's final picture.
    let n = 200;
    let mut outcomes = Vec::new();
    for i in 1..=n {
        let key = format!("k{i}");
        outcomes.push(r.set(key.clone(), Desired::App(hosted(dir.path(), &key))));
    }
    for i in (1..=n).step_by(2) {
        outcomes.push(r.set(format!("k{i}"), Desired::Absent));
    }
    let mut mirror: BTreeMap<String, (Option<KeyStatus>, Option<RunningAppStatus>)> =
        BTreeMap::new();
    let mut changed = std::collections::BTreeSet::new();
    let outcomes = futures::future::join_all(outcomes);
    tokio::pin!(outcomes);
    let mut read = |stream: &StatusStream, changes: StatusChanges| {
        for key in stream.keys(changes) {
            let board = stream.board();
            mirror.insert(key.clone(), (board.key(&key), board.running_app(&key)));
            changed.insert(key);
        }
    };
    loop {
        tokio::select! {
            results = &mut outcomes => {
                assert!(results.iter().all(Result::is_ok), "{results:?}");
                break;
            }
            changes = stream.changed() => read(&stream, changes.expect("running")),
        }
    }
    // Outcomes are answered once the status that reflects them is published: what is left
    // to read is there now.
    let rest = stream.take();
    read(&stream, rest);
    // Every key that serves was delivered (one started and stopped within one publication may
    // never have shown), and no key outside the burst.
    for i in (2..=n).step_by(2) {
        assert!(changed.contains(&format!("k{i}")), "k{i}");
    }
    assert!(!changed.contains("k0"));
    let snapshot = r.board().snapshot();
    for i in 1..=n {
        let key = format!("k{i}");
        let (status, running) = mirror.get(&key).cloned().unwrap_or((None, None));
        let (status, running) = (&status, &running);
        assert_eq!(status.as_ref(), snapshot.keys.get(&key), "{key}");
        assert_eq!(running.as_ref(), snapshot.running_app(&key), "{key}");
        if i % 2 == 1 {
            assert!(status.is_none() && running.is_none(), "{key}: stopped");
        } else {
            let status = status.as_ref().expect("set");
            assert_eq!(status.state, KeyState::Serving, "{key}");
            let running = running.as_ref().expect("running");
            assert_eq!(running.hosts, [format!("{key}.test")]);
        }
    }
    assert_eq!(snapshot.keys.len(), n / 2 + 1);
    assert_eq!(snapshot.running.len(), n / 2 + 1);
}
