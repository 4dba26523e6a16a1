//! The SQLite backend: one file, one connection per [`Store`](crate::Store).
//!
//! - The connection sits behind a `std::sync::Mutex` and every call runs on
//!   `tokio::task::spawn_blocking`, so the async runtime never blocks on SQLite. One connection
//!   serialises this process's calls, which is plenty for desired state (a few writes a minute).
//! - WAL mode (readers do not block the writer, other processes can read while one writes),
//!   `busy_timeout` [`BUSY_TIMEOUT`] (a writer waits for another process's write instead of
//!   failing), `foreign_keys` on (claims and statuses go with their app), `synchronous=NORMAL`
//!   (durable at each WAL checkpoint; a power cut may lose the last commits, never corrupt).
//! - Every write is `BEGIN IMMEDIATE`: it takes the database's write lock before it reads the
//!   claims, so two processes claiming one host are serialised and the second sees the first's
//!   claim.
//! - SQLite cannot notify other processes, so the store's follower task reads the
//!   `revision` row every [`POLL_INTERVAL`] and bumps the change counter when another process
//!   moved it (one indexed single-row read; nothing else is polled).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::changes::Changes;
use crate::error::{Context, ResultExt};
use crate::migrations::{self, Step};
use crate::{Claim, ObservedStatus, StoreError, StoredApp, WrittenAfter};

/// How long a write waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the `revision` row is read to notice writes by other processes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The connection and what this process last saw of the revision.
struct Db {
    conn: Connection,
    /// The newest revision this process has seen (its own writes and the poller's reads), so the
    /// poller bumps the counter only for other processes' writes.
    seen_revision: i64,
}

/// A SQLite store; clones share the connection.
#[derive(Clone)]
pub(crate) struct SqliteBackend {
    db: Arc<Mutex<Db>>,
    location: Arc<str>,
}

impl SqliteBackend {
    /// Opens (creating the file and its directory if absent) and migrates `path`.
    pub(crate) async fn open(path: &Path, location: &str) -> Result<SqliteBackend, StoreError> {
        let path = path.to_path_buf();
        let shown = location.to_string();
        let db = tokio::task::spawn_blocking(move || open_blocking(&path, &shown))
            .await
            .map_err(|e| StoreError::Open {
                location: location.to_string(),
                source: e.into(),
            })??;
        Ok(SqliteBackend {
            db: Arc::new(Mutex::new(db)),
            location: location.into(),
        })
    }

    /// Runs `f` on the connection in a blocking task, for `operation`.
    async fn call<T: Send + 'static>(
        &self,
        operation: String,
        f: impl FnOnce(&mut Db, &Context) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let ctx = Context::new(&self.location, operation);
        let db = self.db.clone();
        let task_ctx = ctx.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open (rusqlite rolls back
            // on drop), so a poisoned lock is still a usable connection.
            let mut db = db.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut db, &task_ctx)
        })
        .await
        .ctx(&ctx)?
    }

    /// Every app, by name.
    pub(crate) async fn list(&self) -> Result<Vec<StoredApp>, StoreError> {
        self.call("list apps".into(), |db, ctx| {
            let mut stmt = db
                .conn
                .prepare_cached("SELECT name, spec, generation, updated_at FROM apps ORDER BY name")
                .ctx(ctx)?;
            let rows = stmt
                .query_map([], app_row)
                .ctx(ctx)?
                .collect::<Result<Vec<_>, _>>()
                .ctx(ctx)?;
            rows.into_iter().map(|row| decode_app(row, ctx)).collect()
        })
        .await
    }

    /// The apps written after `revision` and the number stored, in one read transaction.
    pub(crate) async fn written_after(&self, revision: i64) -> Result<WrittenAfter, StoreError> {
        self.call(
            format!("list apps written after revision {revision}"),
            move |db, ctx| {
                let tx = db.conn.transaction().ctx(ctx)?;
                let rows = {
                    let mut stmt = tx
                        // Sorted by name below: with `ORDER BY name` in the query, SQLite walks
                        // the primary key (every row) instead of `apps_by_generation`.
                        .prepare_cached(
                            "SELECT name, spec, generation, updated_at FROM apps \
                         WHERE generation > ?1",
                        )
                        .ctx(ctx)?;
                    stmt.query_map([revision], app_row)
                        .ctx(ctx)?
                        .collect::<Result<Vec<_>, _>>()
                        .ctx(ctx)?
                };
                let stored = tx
                    .query_row("SELECT COUNT(*) FROM apps", [], |row| row.get(0))
                    .ctx(ctx)?;
                tx.commit().ctx(ctx)?;
                let mut apps = rows
                    .into_iter()
                    .map(|row| decode_app(row, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                apps.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(WrittenAfter { apps, stored })
            },
        )
        .await
    }

    /// The app `name`, if stored.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<StoredApp>, StoreError> {
        let name = name.to_string();
        self.call(format!("get app {name:?}"), move |db, ctx| {
            db.conn
                .query_row(
                    "SELECT name, spec, generation, updated_at FROM apps WHERE name = ?1",
                    [&name],
                    app_row,
                )
                .optional()
                .ctx(ctx)?
                .map(|row| decode_app(row, ctx))
                .transpose()
        })
        .await
    }

    /// Inserts or replaces `name` with its `claims` (already distinct); see
    /// [`Store::put`](crate::Store::put).
    pub(crate) async fn put(
        &self,
        name: &str,
        spec: &serde_json::Value,
        claims: Vec<Claim>,
        now: i64,
    ) -> Result<StoredApp, StoreError> {
        let name = name.to_string();
        let spec = spec.clone();
        self.call(format!("put app {name:?}"), move |db, ctx| {
            let text = serde_json::to_string(&spec).map_err(|e| ctx.json(e))?;
            let tx = db
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(ctx)?;
            for claim in &claims {
                let holder: Option<String> = tx
                    .query_row(
                        "SELECT app FROM claims WHERE kind = ?1 AND value = ?2 AND app <> ?3",
                        params![claim.kind(), claim.value(), name],
                        |row| row.get(0),
                    )
                    .optional()
                    .ctx(ctx)?;
                if let Some(app) = holder {
                    // Dropping `tx` rolls back: nothing is written.
                    return Err(StoreError::Conflict {
                        app,
                        claim: claim.clone(),
                    });
                }
            }
            let revision = bump_revision(&tx).ctx(ctx)?;
            tx.execute(
                "INSERT INTO apps (name, spec, generation, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                 generation = excluded.generation, updated_at = excluded.updated_at",
                params![name, text, revision, now],
            )
            .ctx(ctx)?;
            tx.execute("DELETE FROM claims WHERE app = ?1", [&name])
                .ctx(ctx)?;
            for claim in &claims {
                tx.execute(
                    "INSERT INTO claims (kind, value, app) VALUES (?1, ?2, ?3)",
                    params![claim.kind(), claim.value(), name],
                )
                .ctx(ctx)?;
            }
            tx.commit().ctx(ctx)?;
            db.seen_revision = revision;
            Ok(StoredApp {
                name,
                spec,
                generation: revision,
                updated_at_unix_ms: now,
            })
        })
        .await
    }

    /// Deletes `name`, its claims and statuses; false if it was not stored.
    pub(crate) async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.call(format!("delete app {name:?}"), move |db, ctx| {
            let tx = db
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx(ctx)?;
            tx.execute("DELETE FROM claims WHERE app = ?1", [&name])
                .ctx(ctx)?;
            tx.execute("DELETE FROM app_status WHERE app = ?1", [&name])
                .ctx(ctx)?;
            if tx
                .execute("DELETE FROM apps WHERE name = ?1", [&name])
                .ctx(ctx)?
                == 0
            {
                return Ok(false);
            }
            let revision = bump_revision(&tx).ctx(ctx)?;
            tx.commit().ctx(ctx)?;
            db.seen_revision = revision;
            Ok(true)
        })
        .await
    }

    /// Upserts `node`'s status of `name` (nothing if `name` is not stored).
    pub(crate) async fn record_status(
        &self,
        node: &str,
        name: &str,
        status: &ObservedStatus,
        now: i64,
    ) -> Result<(), StoreError> {
        let (node, name) = (node.to_string(), name.to_string());
        let status = status.clone();
        self.call(
            format!("record node {node:?}'s status of app {name:?}"),
            move |db, ctx| {
                let text = serde_json::to_string(&status).map_err(|e| ctx.json(e))?;
                // The WHERE also resolves SQLite's INSERT … SELECT … ON CONFLICT ambiguity.
                db.conn
                    .execute(
                        "INSERT INTO app_status (node, app, status, updated_at) \
                         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM apps WHERE name = ?2) \
                         ON CONFLICT (node, app) DO UPDATE SET status = excluded.status, \
                         updated_at = excluded.updated_at",
                        params![node, name, text, now],
                    )
                    .ctx(ctx)?;
                Ok(())
            },
        )
        .await
    }

    /// Every node's status of `name`, by node.
    pub(crate) async fn statuses(
        &self,
        name: &str,
    ) -> Result<Vec<(String, ObservedStatus)>, StoreError> {
        let name = name.to_string();
        self.call(
            format!("read the statuses of app {name:?}"),
            move |db, ctx| {
                let mut stmt = db
                    .conn
                    .prepare_cached(
                        "SELECT node, status FROM app_status WHERE app = ?1 ORDER BY node",
                    )
                    .ctx(ctx)?;
                let rows = stmt
                    .query_map([&name], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .ctx(ctx)?
                    .collect::<Result<Vec<_>, _>>()
                    .ctx(ctx)?;
                rows.into_iter()
                    .map(|(node, text)| {
                        let status = serde_json::from_str(&text).map_err(|e| ctx.json(e))?;
                        Ok((node, status))
                    })
                    .collect()
            },
        )
        .await
    }

    /// The desired state's revision.
    pub(crate) async fn revision(&self) -> Result<i64, StoreError> {
        self.call("read the revision".into(), |db, ctx| {
            read_revision(&db.conn).ctx(ctx)
        })
        .await
    }

    /// Bumps `changes` whenever another process moves the revision, checking every `period`
    /// from now; runs until aborted. Check failures are logged once per failing streak.
    pub(crate) async fn follow_revision(self, changes: Changes, period: Duration) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticker.tick().await;
            let moved = self
                .call("check the revision".into(), |db, ctx| {
                    let revision = read_revision(&db.conn).ctx(ctx)?;
                    Ok(std::mem::replace(&mut db.seen_revision, revision) != revision)
                })
                .await;
            match moved {
                Ok(moved) => {
                    if failing {
                        tracing::info!(location = %self.location, "checking the store for changes works again");
                        failing = false;
                    }
                    if moved {
                        tracing::debug!(location = %self.location, "another process changed the desired state");
                        changes.bump();
                    }
                }
                Err(error) if !failing => {
                    tracing::warn!(%error, "cannot check the store for changes by other processes");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

/// Opens `path` with the pragmas above, migrates it and reads the revision.
fn open_blocking(path: &Path, location: &str) -> Result<Db, StoreError> {
    let failed = |source: crate::BackendError| StoreError::Open {
        location: location.to_string(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| failed(e.into()))?;
    }
    let mut conn = Connection::open(path).map_err(|e| failed(e.into()))?;
    configure(&conn).map_err(|e| failed(e.into()))?;
    migrate(&mut conn, location)?;
    let seen_revision = read_revision(&conn).map_err(|e| failed(e.into()))?;
    Ok(Db {
        conn,
        seen_revision,
    })
}

/// The connection settings described in the module docs.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            mode,
            "SQLite refused WAL mode; other processes may wait on writes"
        );
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

/// Applies pending migrations, each in its own `BEGIN IMMEDIATE` transaction.
fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let failed = |source: rusqlite::Error| StoreError::Open {
        location: location.to_string(),
        source: source.into(),
    };
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(migrations::CREATE_SCHEMA_MIGRATIONS)
            .map_err(failed)?;
        let current: i64 = tx
            .query_row(migrations::CURRENT_VERSION, [], |row| row.get(0))
            .map_err(failed)?;
        let Step::Apply { version, sql } =
            migrations::next_step(current, migrations::SQLITE, location)?
        else {
            return Ok(());
        };
        let applied = tx.execute_batch(sql).and_then(|()| {
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, crate::model::now_unix_ms()],
            )
        });
        applied
            .and_then(|_| tx.commit())
            .map_err(|e| StoreError::Migrate {
                location: location.to_string(),
                version,
                source: e.into(),
            })?;
        tracing::info!(location, version, "applied a store schema migration");
    }
}

/// `revision + 1`, written in `tx`.
fn bump_revision(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<i64> {
    tx.query_row(
        "UPDATE revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        [],
        |row| row.get(0),
    )
}

/// The current revision.
fn read_revision(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT revision FROM revision WHERE id = 1", [], |row| {
        row.get(0)
    })
}

/// An `apps` row: name, spec text, generation, updated_at.
type AppRow = (String, String, i64, i64);

/// Reads an `apps` row.
fn app_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AppRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// Decodes an `apps` row's spec.
fn decode_app(
    (name, spec, generation, updated_at_unix_ms): AppRow,
    ctx: &Context,
) -> Result<StoredApp, StoreError> {
    Ok(StoredApp {
        spec: serde_json::from_str(&spec).map_err(|e| ctx.json(e))?,
        name,
        generation,
        updated_at_unix_ms,
    })
}
