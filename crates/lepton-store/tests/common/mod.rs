//! Scenarios both backends must pass, each against real databases the caller opened: the SQLite
//! tests run them on temp files, the PostgreSQL test on a real server.

use std::time::{Duration, Instant};

use lepton_store::{Claim, ObservedStatus, Store, StoreError};
use serde_json::json;

/// A host claim.
pub fn host(name: &str) -> Claim {
    Claim::Host(name.to_string())
}

/// An address claim.
pub fn address(addr: &str) -> Claim {
    Claim::Address(addr.to_string())
}

/// A spec with a version marker.
pub fn spec(version: u32) -> serde_json::Value {
    json!({ "reference": format!("127.0.0.1:5050/shop:v{version}"), "limits": { "max_concurrency": version } })
}

/// A status in `state`.
pub fn status(state: &str, error: Option<&str>) -> ObservedStatus {
    ObservedStatus {
        state: state.to_string(),
        digest: Some("sha256:0123".to_string()),
        error: error.map(str::to_string),
        addresses: vec!["127.0.0.1:4001".to_string()],
        updated_at_unix_ms: 1_700_000_000_000,
    }
}

/// The (app, claim) of a conflict, or a panic naming what came instead.
pub fn conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) -> (String, Claim) {
    match result {
        Err(StoreError::Conflict { app, claim }) => (app, claim),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// put/get/list/delete, generations and the revision.
pub async fn round_trip(store: &Store) {
    assert!(store.list().await.unwrap().is_empty());
    assert_eq!(store.get("shop").await.unwrap(), None);
    let r0 = store.revision().await.unwrap();

    let shop = store
        .put(
            "shop",
            &spec(1),
            &[host("shop.example.com"), address("127.0.0.1:4001")],
        )
        .await
        .unwrap();
    assert_eq!((shop.name.as_str(), &shop.spec), ("shop", &spec(1)));
    assert!(shop.updated_at_unix_ms > 1_700_000_000_000);
    assert_eq!(store.get("shop").await.unwrap(), Some(shop.clone()));
    assert_eq!(store.revision().await.unwrap(), r0 + 1);

    let blog = store
        .put("blog", &json!({ "x": [1, 2] }), &[])
        .await
        .unwrap();
    assert!(blog.generation > shop.generation);
    let names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["blog", "shop"]);

    let shop2 = store
        .put("shop", &spec(2), &[host("shop.example.com")])
        .await
        .unwrap();
    assert!(
        shop2.generation > shop.generation,
        "{shop2:?} after {shop:?}"
    );
    assert_eq!(store.get("shop").await.unwrap(), Some(shop2.clone()));
    assert_eq!(
        store.list().await.unwrap(),
        vec![blog.clone(), shop2.clone()]
    );

    assert!(store.delete("shop").await.unwrap());
    assert_eq!(store.get("shop").await.unwrap(), None);
    let after_delete = store.revision().await.unwrap();
    assert_eq!(after_delete, r0 + 4);
    assert!(!store.delete("shop").await.unwrap());
    assert_eq!(
        store.revision().await.unwrap(),
        after_delete,
        "a no-op delete bumped"
    );
    assert_eq!(store.list().await.unwrap(), vec![blog]);

    // A re-created app never reuses a generation.
    let shop3 = store.put("shop", &spec(3), &[]).await.unwrap();
    assert!(shop3.generation > shop2.generation);
}

/// Claims are exclusive, re-claimable by their owner, released on re-put and delete.
pub async fn claims_are_exclusive(store: &Store) {
    let a_claims = [host("a.example"), address("127.0.0.1:4001")];
    let a = store.put("a", &spec(1), &a_claims).await.unwrap();
    let revision = store.revision().await.unwrap();

    let (app, claim) = conflict(
        store
            .put("b", &spec(1), &[host("b.example"), host("a.example")])
            .await,
    );
    assert_eq!((app.as_str(), claim), ("a", host("a.example")));
    let (app, claim) = conflict(store.put("b", &spec(1), &[address("127.0.0.1:4001")]).await);
    assert_eq!((app.as_str(), claim), ("a", address("127.0.0.1:4001")));
    let message = store
        .put("b", &spec(1), &[address("127.0.0.1:4001")])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "address 127.0.0.1:4001 is already claimed by app \"a\""
    );
    assert_eq!(
        store.get("b").await.unwrap(),
        None,
        "a conflicting put wrote"
    );
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "a conflicting put bumped"
    );

    // An existing app whose update conflicts keeps its old spec and claims.
    let b = store
        .put("b", &spec(1), &[host("b.example")])
        .await
        .unwrap();
    conflict(store.put("b", &spec(2), &[host("a.example")]).await);
    assert_eq!(store.get("b").await.unwrap(), Some(b.clone()));
    conflict(store.put("c", &spec(1), &[host("b.example")]).await);

    // Re-claiming its own claims (even twice in one put) is fine.
    let a2 = store
        .put(
            "a",
            &spec(2),
            &[
                a_claims[0].clone(),
                a_claims[1].clone(),
                a_claims[0].clone(),
            ],
        )
        .await
        .unwrap();
    assert!(a2.generation > a.generation);

    // Claims left out of a re-put are released.
    store
        .put("a", &spec(3), &[host("a2.example")])
        .await
        .unwrap();
    store
        .put(
            "b",
            &spec(2),
            &[
                host("b.example"),
                host("a.example"),
                address("127.0.0.1:4001"),
            ],
        )
        .await
        .unwrap();
    conflict(store.put("c", &spec(1), &[host("a2.example")]).await);

    // A deleted app's claims are released.
    assert!(store.delete("b").await.unwrap());
    store
        .put("c", &spec(1), &[host("a.example"), host("b.example")])
        .await
        .unwrap();
    // Kinds are separate: a host and an address with one value do not clash.
    store
        .put("d", &spec(1), &[address("a2.example")])
        .await
        .unwrap();
}

/// Statuses: upsert per node, read by node, gone with their app, not desired state.
pub async fn statuses_follow_their_app(store: &Store) {
    store.put("shop", &spec(1), &[]).await.unwrap();
    let revision = store.revision().await.unwrap();
    let mut changes = store.changes();
    changes.borrow_and_update();

    store
        .record_status("node-2", "shop", &status("failed", Some("boom")))
        .await
        .unwrap();
    store
        .record_status("node-1", "shop", &status("loading", None))
        .await
        .unwrap();
    store
        .record_status("node-1", "shop", &status("serving", None))
        .await
        .unwrap();
    assert_eq!(
        store.statuses("shop").await.unwrap(),
        vec![
            ("node-1".to_string(), status("serving", None)),
            ("node-2".to_string(), status("failed", Some("boom"))),
        ]
    );
    assert!(store.statuses("other").await.unwrap().is_empty());
    assert_eq!(
        store.revision().await.unwrap(),
        revision,
        "a status bumped the revision"
    );
    assert!(!changes.has_changed().unwrap(), "a status moved changes()");

    assert!(store.delete("shop").await.unwrap());
    assert!(store.statuses("shop").await.unwrap().is_empty());
    // A late status of a deleted app is dropped, and does not come back with a new app.
    store
        .record_status("node-1", "shop", &status("stopped", None))
        .await
        .unwrap();
    store.put("shop", &spec(2), &[]).await.unwrap();
    assert!(store.statuses("shop").await.unwrap().is_empty());
}

/// `changes()` moves after this store's own successful put/delete, and only then.
pub async fn own_writes_move_changes(store: &Store) {
    let mut changes = store.changes();
    changes.borrow_and_update();
    store
        .put("w", &spec(1), &[host("w.example")])
        .await
        .unwrap();
    assert!(changes.has_changed().unwrap(), "put did not move changes()");
    changes.borrow_and_update();

    store.put("x", &spec(1), &[]).await.unwrap();
    changes.borrow_and_update();
    conflict(store.put("x", &spec(2), &[host("w.example")]).await);
    assert!(!store.delete("nothing").await.unwrap());
    assert!(
        !changes.has_changed().unwrap(),
        "a failed put or no-op delete moved changes()"
    );

    assert!(store.delete("w").await.unwrap());
    assert!(
        changes.has_changed().unwrap(),
        "delete did not move changes()"
    );
}

/// `written_after` lists the apps put after a revision, and counts what is stored so that a
/// delete shows.
pub async fn written_after_lists_what_changed(store: &Store) {
    let a = store.put("a", &spec(1), &[]).await.unwrap();
    let before = store.revision().await.unwrap();
    assert_eq!(before, a.generation);
    let none = store.written_after(before).await.unwrap();
    assert!(none.apps.is_empty());
    assert_eq!(none.stored, 1);

    let b = store.put("b", &spec(1), &[]).await.unwrap();
    let a2 = store.put("a", &spec(2), &[]).await.unwrap();
    let written = store.written_after(before).await.unwrap();
    assert_eq!(
        written.apps,
        [a2.clone(), b.clone()],
        "by name, newest generation"
    );
    assert_eq!(written.stored, 2);
    assert_eq!(store.written_after(0).await.unwrap().apps, [a2, b]);

    // A delete leaves no row: only the count (one fewer than known) tells.
    let after = store.revision().await.unwrap();
    assert!(store.delete("b").await.unwrap());
    let written = store.written_after(after).await.unwrap();
    assert!(written.apps.is_empty());
    assert_eq!(written.stored, 1);
}

/// A put and a delete through `writer` move `reader.changes()` within `bound`; returns the put's
/// latency (from before the put to the reader waking).
pub async fn other_store_sees_writes(writer: &Store, reader: &Store, bound: Duration) -> Duration {
    let mut changes = reader.changes();
    changes.borrow_and_update();
    let start = Instant::now();
    writer
        .put("seen", &spec(1), &[host("seen.example")])
        .await
        .unwrap();
    tokio::time::timeout(bound, changes.changed())
        .await
        .unwrap_or_else(|_| panic!("the other store's put was not noticed within {bound:?}"))
        .unwrap();
    let latency = start.elapsed();
    assert_eq!(
        reader.get("seen").await.unwrap().map(|a| a.spec),
        Some(spec(1))
    );
    changes.borrow_and_update();

    assert!(writer.delete("seen").await.unwrap());
    tokio::time::timeout(bound, changes.changed())
        .await
        .unwrap_or_else(|_| panic!("the other store's delete was not noticed within {bound:?}"))
        .unwrap();
    assert_eq!(reader.get("seen").await.unwrap(), None);
    latency
}

/// Two stores race `rounds` times to claim one host for two different apps: each time exactly
/// one wins, the other's conflict names the winner, and only the winner is stored.
pub async fn concurrent_puts_conflict_exactly_once(a: &Store, b: &Store, rounds: u32) {
    for round in 0..rounds {
        let claim = [host(&format!("race-{round}.example"))];
        let (left, right) = (format!("left-{round}"), format!("right-{round}"));
        let spec = spec(round);
        let (l, r) = tokio::join!(a.put(&left, &spec, &claim), b.put(&right, &spec, &claim));
        let (winner, loser, lost) = match (l, r) {
            (Ok(_), r @ Err(_)) => (&left, &right, r),
            (l @ Err(_), Ok(_)) => (&right, &left, l),
            (l, r) => panic!("round {round}: expected exactly one conflict, got {l:?} and {r:?}"),
        };
        let (holder, contested) = conflict(lost);
        assert_eq!((&holder, &contested), (winner, &claim[0]), "round {round}");
        assert!(a.get(winner).await.unwrap().is_some(), "round {round}");
        assert_eq!(a.get(loser).await.unwrap(), None, "round {round}");
    }
}

/// A put whose caller stops waiting at once still commits and moves `changes()`.
pub async fn an_abandoned_put_completes_and_is_announced(store: &Store) {
    let mut changes = store.changes();
    changes.borrow_and_update();
    let spec1 = spec(1);
    let mut put = Box::pin(store.put("abandoned", &spec1, &[]));
    assert!(futures::poll!(put.as_mut()).is_pending());
    drop(put);
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("the abandoned put was not announced")
        .unwrap();
    assert_eq!(
        store.get("abandoned").await.unwrap().map(|a| a.spec),
        Some(spec(1))
    );
}
