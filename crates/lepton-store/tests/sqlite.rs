//! The SQLite backend on real temp files: the shared scenarios, reopening, migrations, change
//! following across stores, and error context.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use lepton_store::{Store, StoreError, StoreLocation, migrations, sqlite};

/// A temp dir (kept alive by the caller) and a database path in it.
fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lepton.db");
    (dir, path)
}

async fn open(path: &Path) -> Store {
    Store::open(&StoreLocation::Sqlite(path.to_path_buf()))
        .await
        .unwrap()
}

/// `(version, applied_at)` rows of `schema_migrations`, read with a separate connection.
fn applied_migrations(path: &Path) -> Vec<(i64, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        .unwrap();
    stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A test per shared scenario, each on its own file.
macro_rules! shared_scenarios {
    ($($scenario:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $scenario() {
            let (_dir, path) = temp_db();
            common::$scenario(&open(&path).await).await;
        }
    )*};
}

shared_scenarios!(
    round_trip,
    claims_are_exclusive,
    statuses_follow_their_app,
    own_writes_move_changes,
    written_after_lists_what_changed,
    an_abandoned_put_completes_and_is_announced,
);

#[tokio::test]
async fn a_second_store_on_the_file_sees_writes_within_two_seconds() {
    let (_dir, path) = temp_db();
    let (writer, reader) = (open(&path).await, open(&path).await);
    let latency = other_store_sees_writes(&writer, &reader, Duration::from_secs(2)).await;
    eprintln!("SQLite: another store noticed a put after {latency:?}");
}

#[tokio::test]
async fn concurrent_conflicting_puts_from_two_stores_conflict_exactly_once() {
    let (_dir, path) = temp_db();
    let (a, b) = (open(&path).await, open(&path).await);
    concurrent_puts_conflict_exactly_once(&a, &b, 20).await;
}

#[tokio::test]
async fn opening_creates_the_file_and_its_directory_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/nested/lepton.db");
    let store = Store::open(&StoreLocation::parse(path.to_str().unwrap()))
        .await
        .unwrap();
    assert!(path.is_file());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(store.revision().await.unwrap(), 0);
}

#[tokio::test]
async fn what_was_written_after_a_revision_is_read_through_the_generation_index() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    for i in 0..50 {
        store
            .put(
                &format!("app{i}"),
                &spec(1),
                &[host(&format!("a{i}.example.com"))],
            )
            .await
            .unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT name, spec, generation, updated_at FROM apps \
             WHERE generation > 45",
        )
        .unwrap()
        .query_map([], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|step| step.contains("apps_by_generation")),
        "{plan:?}"
    );
    let written = store.written_after(45).await.unwrap();
    let names: Vec<&str> = written.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["app45", "app46", "app47", "app48", "app49"]);
}

#[tokio::test]
async fn reopening_keeps_the_data_and_applies_no_migration_again() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let shop = store
        .put("shop", &spec(1), &[host("shop.example.com")])
        .await
        .unwrap();
    store
        .record_status("n1", "shop", &status("serving", None))
        .await
        .unwrap();
    drop(store);
    let applied = applied_migrations(&path);
    assert_eq!(applied.len(), migrations::SQLITE.len());

    let store = open(&path).await;
    assert_eq!(applied_migrations(&path), applied, "a migration ran again");
    assert_eq!(store.get("shop").await.unwrap(), Some(shop));
    assert_eq!(store.revision().await.unwrap(), 1);
    assert_eq!(store.statuses("shop").await.unwrap().len(), 1);
    conflict(
        store
            .put("other", &spec(1), &[host("shop.example.com")])
            .await,
    );
}

#[tokio::test]
async fn a_database_from_a_newer_lepton_is_refused() {
    let (_dir, path) = temp_db();
    drop(open(&path).await);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(&StoreLocation::Sqlite(path.clone()))
        .await
        .err()
        .unwrap();
    let known = migrations::SQLITE.len() as i64;
    assert!(
        matches!(&err, StoreError::SchemaTooNew { found: 99, known: k, .. } if *k == known),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(path.to_str().unwrap()) && message.contains("99"),
        "{message}"
    );
}

#[tokio::test]
async fn errors_name_the_location_and_the_operation() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    store.put("shop", &spec(1), &[]).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE apps SET spec = 'not json'", [])
        .unwrap();
    let err = store.get("shop").await.unwrap_err();
    assert!(matches!(err, StoreError::Json { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(path.to_str().unwrap()), "{message}");
    assert!(message.contains("get app \"shop\""), "{message}");

    let not_a_db = path.with_file_name("garbage.db");
    std::fs::write(&not_a_db, vec![7u8; 4096]).unwrap();
    let err = Store::open(&StoreLocation::Sqlite(not_a_db.clone()))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(not_a_db.to_str().unwrap()),
        "{err}"
    );
}

/// The poller reads the revision at its interval: another store's write is noticed at the first
/// tick after it, not before; this store's own writes are not counted twice.
#[tokio::test(start_paused = true)]
async fn other_writes_are_noticed_at_the_poll_interval() {
    assert_eq!(sqlite::POLL_INTERVAL, Duration::from_secs(1));
    let (_dir, path) = temp_db();
    let (writer, reader) = (open(&path).await, open(&path).await);
    let (mut theirs, mut own) = (reader.changes(), writer.changes());
    let start = tokio::time::Instant::now();
    writer.put("shop", &spec(1), &[]).await.unwrap();
    assert_eq!(*own.borrow_and_update(), 1);

    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        !theirs.has_changed().unwrap(),
        "noticed before the first poll"
    );
    theirs.changed().await.unwrap();
    let noticed = start.elapsed();
    assert!(
        (Duration::from_secs(1)..Duration::from_millis(1100)).contains(&noticed),
        "noticed after {noticed:?}"
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !own.has_changed().unwrap(),
        "the poller counted the store's own write"
    );
    assert!(
        !theirs.has_changed().unwrap(),
        "the poller counted one write twice"
    );
}

#[tokio::test]
async fn dropping_the_last_clone_stops_following_changes() {
    let (_dir, path) = temp_db();
    let store = open(&path).await;
    let clone = store.clone();
    let mut changes = store.changes();
    drop(store);
    clone.put("still-open", &spec(1), &[]).await.unwrap();
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    drop(clone);
    let closed = tokio::time::timeout(Duration::from_secs(2), changes.changed()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "the change counter outlived the store: {closed:?}"
    );
}
