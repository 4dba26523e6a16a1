//! The PostgreSQL backend: one query connection and one `LISTEN` connection per
//! [`Store`](crate::Store).
//!
//! - Queries go through one `tokio-postgres` client behind an async mutex (one statement or
//!   transaction at a time per store; desired state is written a few times a minute). A client
//!   found closed is reconnected before the next call.
//! - Every put and delete first bumps the `revision` row (`UPDATE … RETURNING`), which takes that
//!   row's lock: writers from every node queue there, so under READ COMMITTED the claim check of
//!   the second writer runs after the first committed and sees its claims — of two nodes putting
//!   apps with one host, exactly one wins and the other gets [`StoreError::Conflict`]. The
//!   `claims` primary key `(kind, value)` holds the invariant regardless. Taking this lock first
//!   in every write also gives all writers one lock order, so they cannot deadlock.
//! - The same transaction runs `pg_notify('lepton_apps', <revision>)`; PostgreSQL delivers it on
//!   commit (never for a rolled-back write) to every `LISTEN`ing store, which bumps its change
//!   counter ([`connection::follow_notifications`]).

mod connection;

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::changes::Changes;
use crate::error::{Context, ResultExt};
use crate::migrations::{self, Step};
use crate::{BackendError, Claim, ObservedStatus, StoreError, StoredApp, WrittenAfter};
use connection::{CHANNEL, Connected, Connector, Role};

/// The advisory lock key that serialises schema migrations across nodes ("lepton" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c65_7074_6f6e;

/// Bumps the revision, taking the lock every writer takes first.
const BUMP_REVISION: &str =
    "UPDATE revision SET revision = revision + 1 WHERE id = 1 RETURNING revision";

/// A PostgreSQL store; clones share the connections.
#[derive(Clone)]
pub(crate) struct PostgresBackend {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Connector,
    client: Mutex<Client>,
    /// The query connection's backend pid: notifications from it are this store's own writes.
    own_pid: Arc<AtomicI32>,
    location: Arc<str>,
}

impl PostgresBackend {
    /// Connects, migrates, and opens the `LISTEN` connection (returned, for
    /// [`PostgresBackend::follow`]), so no write after `open` returns goes unnoticed.
    pub(crate) async fn open(
        url: &str,
        location: &str,
    ) -> Result<(PostgresBackend, Connected), StoreError> {
        let failed = |source: BackendError| StoreError::Open {
            location: location.to_string(),
            source,
        };
        let connector = Connector::new(url).map_err(failed)?;
        let mut client = connector
            .connect(Role::Queries)
            .await
            .map_err(|e| failed(e.into()))?
            .client;
        migrate(&mut client, location).await?;
        let own_pid = backend_pid(&client).await.map_err(|e| failed(e.into()))?;
        let listening = connector.listen().await.map_err(|e| failed(e.into()))?;
        let backend = PostgresBackend {
            shared: Arc::new(Shared {
                connector,
                client: Mutex::new(client),
                own_pid: Arc::new(AtomicI32::new(own_pid)),
                location: location.into(),
            }),
        };
        Ok((backend, listening))
    }

    /// The task that turns other nodes' notifications on `listening` into `changes` bumps.
    pub(crate) fn follow(
        &self,
        listening: Connected,
        changes: Changes,
    ) -> impl Future<Output = ()> + Send + 'static {
        connection::follow_notifications(
            listening,
            self.shared.connector.clone(),
            self.shared.own_pid.clone(),
            changes,
            self.shared.location.clone(),
        )
    }

    /// The context of `operation`.
    fn ctx(&self, operation: impl Into<String>) -> Context {
        Context::new(&self.shared.location, operation)
    }

    /// The query client, reconnected first if its connection was lost.
    async fn client(&self, ctx: &Context) -> Result<MutexGuard<'_, Client>, StoreError> {
        let mut client = self.shared.client.lock().await;
        if client.is_closed() {
            tracing::warn!(location = %self.shared.location, "lost the PostgreSQL connection; reconnecting");
            let fresh = self
                .shared
                .connector
                .connect(Role::Queries)
                .await
                .ctx(ctx)?;
            let pid = backend_pid(&fresh.client).await.ctx(ctx)?;
            self.shared.own_pid.store(pid, Ordering::Relaxed);
            *client = fresh.client;
        }
        Ok(client)
    }

    /// Runs the query `sql` for `ctx` on the query client.
    async fn query(
        &self,
        ctx: &Context,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client(ctx).await?;
        client.query(sql, params).await.ctx(ctx)
    }

    /// Every app, by name (byte order, as SQLite sorts).
    pub(crate) async fn list(&self) -> Result<Vec<StoredApp>, StoreError> {
        let ctx = self.ctx("list apps");
        let sql = "SELECT name, spec, generation, updated_at FROM apps ORDER BY name COLLATE \"C\"";
        let rows = self.query(&ctx, sql, &[]).await?;
        rows.iter().map(|row| app_from_row(row).ctx(&ctx)).collect()
    }

    /// The apps written after `revision` and the number stored (read after them).
    pub(crate) async fn written_after(&self, revision: i64) -> Result<WrittenAfter, StoreError> {
        let ctx = self.ctx(format!("list apps written after revision {revision}"));
        let sql = "SELECT name, spec, generation, updated_at FROM apps WHERE generation > $1 \
                   ORDER BY name COLLATE \"C\"";
        let rows = self.query(&ctx, sql, &[&revision]).await?;
        let apps = rows
            .iter()
            .map(|row| app_from_row(row).ctx(&ctx))
            .collect::<Result<_, _>>()?;
        let rows = self.query(&ctx, "SELECT COUNT(*) FROM apps", &[]).await?;
        let stored = match rows.first() {
            Some(row) => row.try_get(0).ctx(&ctx)?,
            None => 0,
        };
        Ok(WrittenAfter { apps, stored })
    }

    /// The app `name`, if stored.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<StoredApp>, StoreError> {
        let ctx = self.ctx(format!("get app {name:?}"));
        let sql = "SELECT name, spec, generation, updated_at FROM apps WHERE name = $1";
        let rows = self.query(&ctx, sql, &[&name]).await?;
        rows.first()
            .map(|row| app_from_row(row).ctx(&ctx))
            .transpose()
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
        let ctx = self.ctx(format!("put app {name:?}"));
        let mut client = self.client(&ctx).await?;
        let tx = client.transaction().await.ctx(&ctx)?;
        let revision = bump_revision(&tx, &ctx).await?;
        for claim in &claims {
            let holder = tx
                .query_opt(
                    "SELECT app FROM claims WHERE kind = $1 AND value = $2 AND app <> $3",
                    &[&claim.kind(), &claim.value(), &name],
                )
                .await
                .ctx(&ctx)?;
            if let Some(row) = holder {
                // Dropping `tx` rolls back: nothing is written, nothing notified.
                return Err(StoreError::Conflict {
                    app: row.try_get(0).ctx(&ctx)?,
                    claim: claim.clone(),
                });
            }
        }
        tx.execute(
            "INSERT INTO apps (name, spec, generation, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
             generation = excluded.generation, updated_at = excluded.updated_at",
            &[&name, spec, &revision, &now],
        )
        .await
        .ctx(&ctx)?;
        tx.execute("DELETE FROM claims WHERE app = $1", &[&name])
            .await
            .ctx(&ctx)?;
        for claim in &claims {
            tx.execute(
                "INSERT INTO claims (kind, value, app) VALUES ($1, $2, $3)",
                &[&claim.kind(), &claim.value(), &name],
            )
            .await
            .ctx(&ctx)?;
        }
        notify(&tx, revision).await.ctx(&ctx)?;
        tx.commit().await.ctx(&ctx)?;
        Ok(StoredApp {
            name: name.to_string(),
            spec: spec.clone(),
            generation: revision,
            updated_at_unix_ms: now,
        })
    }

    /// Deletes `name`, its claims and statuses; false if it was not stored.
    pub(crate) async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let ctx = self.ctx(format!("delete app {name:?}"));
        let mut client = self.client(&ctx).await?;
        let tx = client.transaction().await.ctx(&ctx)?;
        let revision = bump_revision(&tx, &ctx).await?;
        tx.execute("DELETE FROM claims WHERE app = $1", &[&name])
            .await
            .ctx(&ctx)?;
        tx.execute("DELETE FROM app_status WHERE app = $1", &[&name])
            .await
            .ctx(&ctx)?;
        let deleted = tx
            .execute("DELETE FROM apps WHERE name = $1", &[&name])
            .await
            .ctx(&ctx)?;
        if deleted == 0 {
            // Dropping `tx` rolls the revision bump back.
            return Ok(false);
        }
        notify(&tx, revision).await.ctx(&ctx)?;
        tx.commit().await.ctx(&ctx)?;
        Ok(true)
    }

    /// Upserts `node`'s status of `name` (nothing if `name` is not stored, also when it is
    /// deleted concurrently: the foreign key then refuses the row).
    pub(crate) async fn record_status(
        &self,
        node: &str,
        name: &str,
        status: &ObservedStatus,
        now: i64,
    ) -> Result<(), StoreError> {
        let ctx = self.ctx(format!("record node {node:?}'s status of app {name:?}"));
        let json = serde_json::to_value(status).map_err(|e| ctx.json(e))?;
        let client = self.client(&ctx).await?;
        let result = client
            .execute(
                "INSERT INTO app_status (node, app, status, updated_at) \
                 SELECT $1::text, $2::text, $3::jsonb, $4::bigint \
                 WHERE EXISTS (SELECT 1 FROM apps WHERE name = $2::text) \
                 ON CONFLICT (node, app) DO UPDATE SET status = excluded.status, \
                 updated_at = excluded.updated_at",
                &[&node, &name, &json, &now],
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                tracing::debug!(
                    app = name,
                    node,
                    "status of an app deleted meanwhile dropped"
                );
                Ok(())
            }
            Err(error) => Err(ctx.backend(error)),
        }
    }

    /// Every node's status of `name`, by node.
    pub(crate) async fn statuses(
        &self,
        name: &str,
    ) -> Result<Vec<(String, ObservedStatus)>, StoreError> {
        let ctx = self.ctx(format!("read the statuses of app {name:?}"));
        let sql = "SELECT node, status FROM app_status WHERE app = $1 ORDER BY node COLLATE \"C\"";
        let rows = self.query(&ctx, sql, &[&name]).await?;
        rows.iter()
            .map(|row| {
                let node: String = row.try_get(0).ctx(&ctx)?;
                let json: serde_json::Value = row.try_get(1).ctx(&ctx)?;
                let status = serde_json::from_value(json).map_err(|e| ctx.json(e))?;
                Ok((node, status))
            })
            .collect()
    }

    /// The desired state's revision.
    pub(crate) async fn revision(&self) -> Result<i64, StoreError> {
        let ctx = self.ctx("read the revision");
        let sql = "SELECT revision FROM revision WHERE id = 1";
        let rows = self.query(&ctx, sql, &[]).await?;
        match rows.first() {
            Some(row) => row.try_get(0).ctx(&ctx),
            None => Err(ctx.backend(BackendError::MissingRevision)),
        }
    }
}

/// Applies pending migrations, each in its own transaction holding [`MIGRATION_LOCK`].
async fn migrate(client: &mut Client, location: &str) -> Result<(), StoreError> {
    let failed = |source: tokio_postgres::Error| StoreError::Open {
        location: location.to_string(),
        source: source.into(),
    };
    loop {
        let tx = client.transaction().await.map_err(failed)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(failed)?;
        tx.batch_execute(migrations::CREATE_SCHEMA_MIGRATIONS)
            .await
            .map_err(failed)?;
        let current: i64 = tx
            .query_one(migrations::CURRENT_VERSION, &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(failed)?;
        let Step::Apply { version, sql } =
            migrations::next_step(current, migrations::POSTGRES, location)?
        else {
            return tx.commit().await.map_err(failed);
        };
        let applied = async {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &crate::model::now_unix_ms()],
            )
            .await?;
            tx.commit().await
        };
        applied.await.map_err(|e| StoreError::Migrate {
            location: location.to_string(),
            version,
            source: e.into(),
        })?;
        tracing::info!(location, version, "applied a store schema migration");
    }
}

/// Bumps the revision in `tx` (taking the writers' lock); the new revision.
async fn bump_revision(
    tx: &tokio_postgres::Transaction<'_>,
    ctx: &Context,
) -> Result<i64, StoreError> {
    let row = tx.query_one(BUMP_REVISION, &[]).await.ctx(ctx)?;
    row.try_get(0).ctx(ctx)
}

/// Notifies [`CHANNEL`] of `revision` when `tx` commits.
async fn notify(
    tx: &tokio_postgres::Transaction<'_>,
    revision: i64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &revision.to_string()],
    )
    .await
    .map(drop)
}

/// The connection's server process id.
async fn backend_pid(client: &Client) -> Result<i32, tokio_postgres::Error> {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .try_get(0)
}

/// An `apps` row.
fn app_from_row(row: &tokio_postgres::Row) -> Result<StoredApp, tokio_postgres::Error> {
    Ok(StoredApp {
        name: row.try_get(0)?,
        spec: row.try_get(1)?,
        generation: row.try_get(2)?,
        updated_at_unix_ms: row.try_get(3)?,
    })
}
