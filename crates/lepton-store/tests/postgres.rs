//! The PostgreSQL backend against a real server (Debian's PostgreSQL, started once for this
//! binary by `lepton_testkit::TestPostgres`): the shared scenarios, LISTEN/NOTIFY between stores,
//! races between nodes, migrations, reconnection and error context. Every scenario gets its own
//! database; they run in one test so the server starts once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lepton_store::{Store, StoreError, StoreLocation, migrations};
use lepton_testkit::TestPostgres;

/// The server and a fresh database per scenario.
struct Server {
    pg: TestPostgres,
}

impl Server {
    /// Creates the database `name` owned by the application user; its URL.
    fn fresh_db(&self, name: &str) -> String {
        self.pg
            .psql(&format!("CREATE DATABASE {name} OWNER {}", self.pg.user()))
            .unwrap();
        format!(
            "postgres://{}:{}@{}/{name}",
            self.pg.user(),
            self.pg.password(),
            self.pg.addr()
        )
    }

    /// How many connections named `application_name` are open to `db`.
    fn connections(&self, db: &str, application_name: &str) -> usize {
        self.pg
            .psql(&format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND application_name = '{application_name}'"
            ))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Ends the server processes of `db`'s connections named `application_name`; there must be
    /// `expected` of them.
    fn terminate(&self, db: &str, application_name: &str, expected: usize) {
        let ended = self
            .pg
            .psql(&format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND application_name = '{application_name}'"
            ))
            .unwrap();
        assert_eq!(
            ended,
            expected.to_string(),
            "terminate {application_name} on {db}"
        );
    }
}

/// Runs `sql` on `url` with a plain `tokio-postgres` client; the first row's columns joined by `|`.
async fn query(url: &str, sql: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let messages = client.simple_query(sql).await.unwrap();
    let row = messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    row.map(|row| {
        (0..row.len())
            .map(|i| row.get(i).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("|")
    })
    .unwrap_or_default()
}

async fn open(url: &str) -> Store {
    Store::open(&StoreLocation::parse(url)).await.unwrap()
}

/// Waits up to `bound` for `condition`.
async fn eventually(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    condition()
}

#[test]
fn postgres_store() {
    let server = Server {
        pg: TestPostgres::start().expect("start PostgreSQL (scripts/install-deps.sh installs it)"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Shared scenarios get a fresh database named after them; the others take the server.
    macro_rules! run {
        (shared $scenario:ident) => {{
            eprintln!("scenario: {}", stringify!($scenario));
            let store = open(&server.fresh_db(stringify!($scenario))).await;
            common::$scenario(&store).await;
        }};
        ($scenario:ident) => {{
            eprintln!("scenario: {}", stringify!($scenario));
            $scenario(&server).await;
        }};
    }
    runtime.block_on(async {
        run!(shared round_trip);
        run!(shared claims_are_exclusive);
        run!(shared statuses_follow_their_app);
        run!(shared own_writes_move_changes);
        run!(shared written_after_lists_what_changed);
        run!(shared an_abandoned_put_completes_and_is_announced);
        run!(another_stores_writes_are_notified);
        run!(concurrent_conflicting_puts);
        run!(migrations_apply_once);
        run!(a_newer_schema_is_refused);
        run!(lost_connections_are_reestablished);
        run!(errors_name_the_location);
        run!(dropping_the_stores_closes_their_connections);
    });
}

async fn another_stores_writes_are_notified(server: &Server) {
    let url = server.fresh_db("notify");
    let (writer, reader) = (open(&url).await, open(&url).await);
    let mut latencies = Vec::new();
    for _ in 0..5 {
        latencies.push(other_store_sees_writes(&writer, &reader, Duration::from_secs(2)).await);
    }
    eprintln!("PostgreSQL: another store noticed a put (LISTEN/NOTIFY) after {latencies:?}");
    // The writer's own notification is not counted again by its listener.
    let mut own = writer.changes();
    own.borrow_and_update();
    writer.put("once", &spec(1), &[]).await.unwrap();
    assert!(own.has_changed().unwrap());
    own.borrow_and_update();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !own.has_changed().unwrap(),
        "the store's own NOTIFY moved its counter again"
    );
}

async fn concurrent_conflicting_puts(server: &Server) {
    let url = server.fresh_db("race");
    // One store over TLS-if-offered (rustls; this server has no TLS, so plain), one plain.
    let (a, b) = (
        open(&url).await,
        open(&format!("{url}?sslmode=disable")).await,
    );
    concurrent_puts_conflict_exactly_once(&a, &b, 20).await;
}

async fn migrations_apply_once(server: &Server) {
    let url = server.fresh_db("migrations");
    let (a, b, c) = tokio::join!(open(&url), open(&url), open(&url));
    let applied_sql = "SELECT count(*), max(version), max(applied_at) FROM schema_migrations";
    let applied = query(&url, applied_sql).await;
    let known = migrations::POSTGRES.len();
    assert!(
        applied.starts_with(&format!("{known}|{known}|")),
        "{applied}"
    );
    let shop = a
        .put("shop", &spec(1), &[host("shop.example.com")])
        .await
        .unwrap();
    drop((a, b, c));

    let store = open(&url).await;
    assert_eq!(
        query(&url, applied_sql).await,
        applied,
        "a migration ran again"
    );
    assert_eq!(store.get("shop").await.unwrap(), Some(shop));
    assert_eq!(store.revision().await.unwrap(), 1);
}

async fn a_newer_schema_is_refused(server: &Server) {
    let url = server.fresh_db("newer");
    drop(open(&url).await);
    query(
        &url,
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
    )
    .await;
    let err = Store::open(&StoreLocation::parse(&url))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("/newer"), "{err}");
}

async fn lost_connections_are_reestablished(server: &Server) {
    let url = server.fresh_db("reconnect");
    let (writer, reader) = (open(&url).await, open(&url).await);
    let mut changes = reader.changes();
    changes.borrow_and_update();

    // Both stores' LISTEN connections end; the reader reconnects and, having perhaps missed a
    // notification, moves its counter.
    server.terminate("reconnect", "lepton-store-listen", 2);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("no change signalled after the LISTEN connection was re-established")
        .unwrap();
    eprintln!(
        "PostgreSQL: LISTEN re-established after {:?}",
        start.elapsed()
    );
    assert!(
        eventually(Duration::from_secs(5), || server
            .connections("reconnect", "lepton-store-listen")
            == 2)
        .await
    );
    changes.borrow_and_update();
    writer.put("after", &spec(1), &[]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("a write after the reconnect was not notified")
        .unwrap();

    // The query connection is re-established on the next call.
    server.terminate("reconnect", "lepton-store", 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reader.list().await.unwrap().len(), 1);
    assert!(writer.delete("after").await.unwrap());
}

async fn errors_name_the_location(server: &Server) {
    let url = format!(
        "postgres://{}:wrong-password@{}/{}",
        server.pg.user(),
        server.pg.addr(),
        server.pg.database()
    );
    let err = Store::open(&StoreLocation::parse(&url))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{}:***@{}", server.pg.user(), server.pg.addr())),
        "{message}"
    );
    assert!(!message.contains("wrong-password"), "{message}");
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
}

async fn dropping_the_stores_closes_their_connections(server: &Server) {
    let url = server.fresh_db("dropped");
    let store = open(&url).await;
    let mut changes = store.changes();
    assert_eq!(server.connections("dropped", "lepton-store-listen"), 1);
    assert_eq!(server.connections("dropped", "lepton-store"), 1);
    drop(store);
    let closed = tokio::time::timeout(Duration::from_secs(2), changes.changed()).await;
    assert!(
        matches!(closed, Ok(Err(_))),
        "the change counter outlived the store: {closed:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || server
            .connections("dropped", "lepton-store-listen")
            + server.connections("dropped", "lepton-store")
            == 0)
        .await,
        "connections outlived the store"
    );
}
