//! lepton's desired state in a database, for `lepton serve`: the admin API writes apps into a
//! [`Store`], a reconciler on every node reads them, follows [`Store::changes`] and records what
//! it observes with [`Store::record_status`].
//!
//! One API over two backends, chosen by [`StoreLocation`] (lepton's `--db`):
//! - [`sqlite`]: a file, for one node (or processes sharing one disk); changes by other
//!   processes are noticed by reading a revision row every second.
//! - PostgreSQL (`postgres` module): shared by many nodes; changes are pushed with
//!   `LISTEN`/`NOTIFY`.
//!
//! What the store guarantees on both:
//! - A put or delete is one transaction that also bumps a global revision ([`Store::revision`]).
//! - Claims ([`Claim`]: an app's hosts and its address) are exclusive: a put claiming what
//!   another app holds writes nothing and fails with [`StoreError::Conflict`], also when two
//!   nodes race (writes are serialised by the database's write lock).
//! - The schema is versioned ([`migrations`]); a database from a newer lepton is refused.
//!
//! Modules: [`model`] (the records), [`location`], [`error`], [`migrations`], `changes` (the
//! change counter and reconnect backoff), [`sqlite`], `postgres`.

mod changes;
pub mod error;
pub mod location;
pub mod migrations;
pub mod model;
mod postgres;
pub mod sqlite;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::AbortHandle;

use changes::Changes;
pub use error::{BackendError, StoreError};
pub use location::StoreLocation;
pub use model::{Claim, ObservedStatus, StoredApp, WrittenAfter};
use postgres::PostgresBackend;
use sqlite::SqliteBackend;

/// A handle to the desired-state database. Cheap to clone (clones share the connections and the
/// change counter); the background task following changes stops when the last clone drops.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// The database, as errors name it.
    location: String,
    changes: Changes,
    /// The task that follows other processes' writes ([`Store::changes`]).
    follower: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

enum Backend {
    Sqlite(SqliteBackend),
    Postgres(PostgresBackend),
}

impl Store {
    /// Opens the database (creating a SQLite file and its directory if absent), runs pending
    /// migrations, each in its own transaction, and starts following changes by other processes.
    /// Must be called within a tokio runtime.
    pub async fn open(location: &StoreLocation) -> Result<Store, StoreError> {
        let shown = location.to_string();
        let changes = Changes::new();
        let (backend, follower) = match location {
            StoreLocation::Sqlite(path) => {
                let backend = SqliteBackend::open(path, &shown).await?;
                let follow = backend
                    .clone()
                    .follow_revision(changes.clone(), sqlite::POLL_INTERVAL);
                (Backend::Sqlite(backend), tokio::spawn(follow))
            }
            StoreLocation::Postgres(url) => {
                let (backend, listening) = PostgresBackend::open(url, &shown).await?;
                let follow = backend.follow(listening, changes.clone());
                (Backend::Postgres(backend), tokio::spawn(follow))
            }
        };
        tracing::info!(location = %shown, "opened the desired-state store");
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                location: shown,
                changes,
                follower: follower.abort_handle(),
            }),
        })
    }

    /// Every stored app, by name (byte order).
    pub async fn list(&self) -> Result<Vec<StoredApp>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(db) => db.list().await,
            Backend::Postgres(db) => db.list().await,
        }
    }

    /// The apps written (put) after revision `revision`, and the number of apps stored: what a
    /// follower that has seen `revision` reads instead of the whole list (see [`WrittenAfter`]).
    pub async fn written_after(&self, revision: i64) -> Result<WrittenAfter, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(db) => db.written_after(revision).await,
            Backend::Postgres(db) => db.written_after(revision).await,
        }
    }

    /// The app `name`, if stored.
    pub async fn get(&self, name: &str) -> Result<Option<StoredApp>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(db) => db.get(name).await,
            Backend::Postgres(db) => db.get(name).await,
        }
    }

    /// Inserts or replaces the app `name` in one transaction, claiming `claims` (its hosts and
    /// its address; repeats are ignored): if any claim is held by another app, nothing is written
    /// and [`StoreError::Conflict`] names that app and the claim. The app's previous claims are
    /// replaced by `claims` (re-claiming its own is fine; claims left out are released). Returns
    /// the stored app with its new `generation` (the revision this write made). Once started, the
    /// write runs to its end even if the caller stops waiting (as does [`Store::delete`]).
    pub async fn put(
        &self,
        name: &str,
        spec: &serde_json::Value,
        claims: &[Claim],
    ) -> Result<StoredApp, StoreError> {
        let inner = self.inner.clone();
        let (name, spec) = (name.to_string(), spec.clone());
        let claims = model::distinct_claims(claims);
        self.write(format!("put app {name:?}"), async move {
            let now = model::now_unix_ms();
            let app = match &inner.backend {
                Backend::Sqlite(db) => db.put(&name, &spec, claims, now).await,
                Backend::Postgres(db) => db.put(&name, &spec, claims, now).await,
            }?;
            tracing::debug!(app = name, generation = app.generation, "stored app");
            inner.changes.bump();
            Ok(app)
        })
        .await
    }

    /// Deletes the app `name` with its claims and recorded statuses; `Ok(false)` (and no change)
    /// if it was not stored.
    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let inner = self.inner.clone();
        let name = name.to_string();
        self.write(format!("delete app {name:?}"), async move {
            let deleted = match &inner.backend {
                Backend::Sqlite(db) => db.delete(&name).await,
                Backend::Postgres(db) => db.delete(&name).await,
            }?;
            if deleted {
                tracing::debug!(app = name, "deleted app");
                inner.changes.bump();
            }
            Ok(deleted)
        })
        .await
    }

    /// Runs a write (which bumps the counter when it commits) on its own task, so that once
    /// started it completes and is announced even if the caller stops waiting for it: a
    /// committed write is never left out of [`Store::changes`].
    async fn write<T: Send + 'static>(
        &self,
        operation: String,
        write: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::spawn(write)
            .await
            .map_err(|e| error::Context::new(&self.inner.location, operation).backend(e))?
    }

    /// Records what node `node` observes of app `name`, replacing that node's previous record.
    /// Statuses are not desired state: this does not move [`Store::revision`] or
    /// [`Store::changes`]. A status for an app that is not stored (deleted meanwhile) is dropped,
    /// so no status outlives its app.
    pub async fn record_status(
        &self,
        node: &str,
        name: &str,
        status: &ObservedStatus,
    ) -> Result<(), StoreError> {
        let now = model::now_unix_ms();
        match &self.inner.backend {
            Backend::Sqlite(db) => db.record_status(node, name, status, now).await,
            Backend::Postgres(db) => db.record_status(node, name, status, now).await,
        }
    }

    /// Every node's recorded status of `name`, by node name.
    pub async fn statuses(&self, name: &str) -> Result<Vec<(String, ObservedStatus)>, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(db) => db.statuses(name).await,
            Backend::Postgres(db) => db.statuses(name).await,
        }
    }

    /// A counter that changes whenever the desired state may have changed (spurious changes are
    /// possible; a reader re-reads [`Store::list`]):
    /// - after this store's own put or delete, at once;
    /// - PostgreSQL: when another store (another node) commits a put or delete, pushed by
    ///   `LISTEN lepton_apps` / `NOTIFY` (milliseconds, no polling); and after the `LISTEN`
    ///   connection was lost and re-established, since notifications may have been missed;
    /// - SQLite: when another process commits to the same file, noticed by reading the
    ///   `revision` row every [`sqlite::POLL_INTERVAL`] (1 s), since SQLite cannot notify.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The desired state's revision: it grows by one in the same transaction as every put and
    /// every delete that deleted something.
    pub async fn revision(&self) -> Result<i64, StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(db) => db.revision().await,
            Backend::Postgres(db) => db.revision().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles only while the handle and its error can cross threads and tasks.
    fn shareable<T: Send + Sync + 'static>() {}

    #[test]
    fn store_and_errors_are_send_and_sync() {
        shareable::<Store>();
        shareable::<StoreError>();
        shareable::<watch::Receiver<u64>>();
    }
}
