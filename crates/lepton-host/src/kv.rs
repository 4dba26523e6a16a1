//! Key-value stores: the backends behind every key-value interface (Spin 2.0/3.0 and
//! `wasi:keyvalue`), and the per-instance handle types the bindings hand to guests.
//!
//! Backends: `spin` (a SQLite file using Spin's table layout
//! `spin_key_value(store TEXT, key TEXT, value BLOB, PRIMARY KEY(store, key))`, rows keyed by the
//! store label so several labels can share one file; in memory when no path is given) and
//! `redis` (one multiplexed connection per store, opened on first use). SQLite calls are
//! blocking and run on tokio's blocking pool. Values and key lists larger than
//! [`MAX_HOST_BUFFERED_BYTES`] are refused, as Spin does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use rusqlite::{OptionalExtension, params};
use tokio::sync::OnceCell;

/// The largest value or key list the host buffers (Spin's `MAX_HOST_BUFFERED_BYTES`).
pub const MAX_HOST_BUFFERED_BYTES: usize = 128 << 20;

/// A key-value operation failed inside a backend (maps to the WIT `other(string)` case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KvError(pub String);

fn other(e: impl std::fmt::Display) -> KvError {
    KvError(e.to_string())
}

/// A SQLite connection shared by every store label that lives in the same file.
pub(crate) type SharedConn = Arc<Mutex<rusqlite::Connection>>;

/// Open (creating if needed) a key-value SQLite file, or an in-memory database.
pub(crate) fn open_sqlite_kv(path: Option<&Path>) -> Result<SharedConn, String> {
    let conn = match path {
        Some(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            rusqlite::Connection::open(path)
        }
        None => rusqlite::Connection::open_in_memory(),
    }
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
            store TEXT NOT NULL,
            key   TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (store, key)
        );",
    )
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(Mutex::new(conn)))
}

/// One configured key-value store of an app.
pub struct KvStore {
    label: String,
    backend: Backend,
}

enum Backend {
    Sqlite(SharedConn),
    Redis {
        client: redis::Client,
        conn: OnceCell<redis::aio::MultiplexedConnection>,
    },
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl KvStore {
    /// A store in a SQLite file (shared with other labels in the same file).
    pub(crate) fn sqlite(label: &str, conn: SharedConn) -> Self {
        Self {
            label: label.to_string(),
            backend: Backend::Sqlite(conn),
        }
    }

    /// A store on a Redis server; the URL is checked now, the connection made on first use.
    pub(crate) fn redis(label: &str, url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(Self {
            label: label.to_string(),
            backend: Backend::Redis {
                client,
                conn: OnceCell::new(),
            },
        })
    }

    /// The store's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    async fn redis_conn(
        client: &redis::Client,
        cell: &OnceCell<redis::aio::MultiplexedConnection>,
    ) -> Result<redis::aio::MultiplexedConnection, KvError> {
        cell.get_or_try_init(|| client.get_multiplexed_async_connection())
            .await
            .cloned()
            .map_err(other)
    }

    /// Run `f` on the store's SQLite connection on the blocking pool.
    async fn with_sqlite<R: Send + 'static>(
        conn: &SharedConn,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R, KvError> {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| KvError("key-value database lock poisoned".into()))?;
            f(&mut guard).map_err(other)
        })
        .await
        .map_err(other)?
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let value = match &self.backend {
            Backend::Sqlite(conn) => {
                let store = self.label.clone();
                Self::with_sqlite(conn, move |c| {
                    c.prepare_cached(
                        "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    )?
                    .query_row(params![store, key], |row| value_bytes(row.get_ref(0)?))
                    .optional()
                })
                .await?
            }
            Backend::Redis { client, conn } => {
                let mut c = Self::redis_conn(client, conn).await?;
                c.get::<_, Option<Vec<u8>>>(key).await.map_err(other)?
            }
        };
        if let Some(v) = &value
            && v.len() > MAX_HOST_BUFFERED_BYTES
        {
            return Err(KvError(format!(
                "value is larger than the host buffer limit of {MAX_HOST_BUFFERED_BYTES} bytes"
            )));
        }
        Ok(value)
    }

    /// Set `key` to `value`.
    pub async fn set(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let store = self.label.clone();
                Self::with_sqlite(conn, move |c| {
                    c.prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![store, key, value])
                    .map(drop)
                })
                .await
            }
            Backend::Redis { client, conn } => {
                let mut c = Self::redis_conn(client, conn).await?;
                c.set::<_, _, ()>(key, value).await.map_err(other)
            }
        }
    }

    /// Delete `key` (no error if absent).
    pub async fn delete(&self, key: String) -> Result<(), KvError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let store = self.label.clone();
                Self::with_sqlite(conn, move |c| {
                    c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                        .execute(params![store, key])
                        .map(drop)
                })
                .await
            }
            Backend::Redis { client, conn } => {
                let mut c = Self::redis_conn(client, conn).await?;
                c.del::<_, ()>(key).await.map_err(other)
            }
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: String) -> Result<bool, KvError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let store = self.label.clone();
                Self::with_sqlite(conn, move |c| {
                    c.prepare_cached(
                        "SELECT EXISTS(SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2)",
                    )?
                    .query_row(params![store, key], |row| row.get::<_, bool>(0))
                })
                .await
            }
            Backend::Redis { client, conn } => {
                let mut c = Self::redis_conn(client, conn).await?;
                c.exists::<_, bool>(key).await.map_err(other)
            }
        }
    }

    /// Every key in the store.
    pub async fn get_keys(&self) -> Result<Vec<String>, KvError> {
        let keys = match &self.backend {
            Backend::Sqlite(conn) => {
                let store = self.label.clone();
                Self::with_sqlite(conn, move |c| {
                    let mut stmt = c.prepare_cached(
                        "SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key",
                    )?;
                    let rows = stmt.query_map(params![store], |row| row.get::<_, String>(0))?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await?
            }
            Backend::Redis { client, conn } => {
                let mut c = Self::redis_conn(client, conn).await?;
                let mut keys: Vec<String> = c.keys("*").await.map_err(other)?;
                keys.sort();
                keys
            }
        };
        let total: usize = keys.iter().map(String::len).sum();
        if total > MAX_HOST_BUFFERED_BYTES {
            return Err(KvError(format!(
                "key list is larger than the host buffer limit of {MAX_HOST_BUFFERED_BYTES} bytes"
            )));
        }
        Ok(keys)
    }

    /// Atomically add `delta` to the integer stored at `key` (0 if absent); the new value.
    pub async fn increment(&self, key: String, delta: i64) -> Result<i64, KvError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let store = self.label.clone();
                Self::with_sqlite(conn, move |c| {
                    let tx = c.transaction()?;
                    let current: i64 = tx
                        .query_row(
                            "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                            params![store, key],
                            |row| value_integer(row.get_ref(0)?),
                        )
                        .optional()?
                        .unwrap_or(0);
                    let new = current.checked_add(delta).ok_or_else(|| {
                        rusqlite::Error::ToSqlConversionFailure("integer overflow".into())
                    })?;
                    tx.execute(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
                        params![store, key, new],
                    )?;
                    tx.commit()?;
                    Ok(new)
                })
                .await
            }
            Backend::Redis { client, conn } => {
                let mut c = Self::redis_conn(client, conn).await?;
                c.incr::<_, _, i64>(key, delta).await.map_err(other)
            }
        }
    }

    /// Set `key` to `new` only if its value is still `expected` (`None`: still absent).
    /// Returns whether the swap happened.
    pub async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<bool, KvError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let store = self.label.clone();
                Self::with_sqlite(conn, move |c| {
                    let tx = c.transaction()?;
                    let current = tx
                        .query_row(
                            "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                            params![store, key],
                            |row| value_bytes(row.get_ref(0)?),
                        )
                        .optional()?;
                    if current != expected {
                        return Ok(false);
                    }
                    tx.execute(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT(store, key) DO UPDATE SET value = excluded.value",
                        params![store, key, new],
                    )?;
                    tx.commit()?;
                    Ok(true)
                })
                .await
            }
            Backend::Redis { client, conn } => {
                let mut c = Self::redis_conn(client, conn).await?;
                // One server-side script, so the compare and the set are atomic.
                let script = redis::Script::new(
                    r"local cur = redis.call('GET', KEYS[1])
                      if ARGV[1] == '1' then
                        if cur then return 0 end
                      elseif cur ~= ARGV[2] then return 0 end
                      redis.call('SET', KEYS[1], ARGV[3])
                      return 1",
                );
                let (absent, exp) = match expected {
                    None => ("1", Vec::new()),
                    Some(v) => ("0", v),
                };
                let swapped: i64 = script
                    .key(key)
                    .arg(absent)
                    .arg(exp)
                    .arg(new)
                    .invoke_async(&mut c)
                    .await
                    .map_err(other)?;
                Ok(swapped == 1)
            }
        }
    }
}

/// A value column as bytes: blobs as is, text as UTF-8, integers (written by `increment`) in
/// decimal.
fn value_bytes(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<Vec<u8>> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Blob(b) | ValueRef::Text(b) => b.to_vec(),
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        ValueRef::Real(r) => r.to_string().into_bytes(),
        ValueRef::Null => Vec::new(),
    })
}

/// A value column as an integer for `increment`: integers as is, decimal text or blobs parsed.
fn value_integer(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<i64> {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Blob(b) | ValueRef::Text(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Blob,
                    "the stored value is not an integer".into(),
                )
            }),
        ValueRef::Null => Ok(0),
        ValueRef::Real(_) => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Real,
            "the stored value is not an integer".into(),
        )),
    }
}

/// A guest's open key-value store (the `store` / `bucket` resource).
pub struct KvHandle {
    pub(crate) store: Arc<KvStore>,
}

/// A guest's `wasi:keyvalue/atomics.cas` handle: the key and the value it saw.
pub struct CasHandle {
    pub(crate) store: Arc<KvStore>,
    pub(crate) key: String,
    pub(crate) current: Option<Vec<u8>>,
}

/// Where the default key-value store of an app lives.
pub(crate) fn default_kv_path(state_dir: &Path) -> PathBuf {
    state_dir.join("sqlite_key_value.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_store_round_trips_and_labels_are_separate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kv.db");
        let conn = open_sqlite_kv(Some(&path)).expect("open");
        let a = KvStore::sqlite("a", conn.clone());
        let b = KvStore::sqlite("b", conn);
        a.set("k".into(), b"v1".to_vec()).await.expect("set");
        assert_eq!(a.get("k".into()).await.expect("get"), Some(b"v1".to_vec()));
        assert_eq!(b.get("k".into()).await.expect("get"), None);
        assert!(a.exists("k".into()).await.expect("exists"));
        a.set("j".into(), b"x".to_vec()).await.expect("set");
        assert_eq!(a.get_keys().await.expect("keys"), vec!["j", "k"]);
        a.delete("k".into()).await.expect("delete");
        assert!(!a.exists("k".into()).await.expect("exists"));
        assert_eq!(a.increment("n".into(), 5).await.expect("incr"), 5);
        assert_eq!(a.increment("n".into(), -2).await.expect("incr"), 3);
        assert!(
            !a.compare_and_swap("j".into(), Some(b"nope".to_vec()), b"y".to_vec())
                .await
                .expect("cas")
        );
        assert!(
            a.compare_and_swap("j".into(), Some(b"x".to_vec()), b"y".to_vec())
                .await
                .expect("cas")
        );
        assert!(
            a.compare_and_swap("fresh".into(), None, b"z".to_vec())
                .await
                .expect("cas")
        );
        assert_eq!(a.get("j".into()).await.expect("get"), Some(b"y".to_vec()));
        drop((a, b));

        // Spin's layout: the same file read with plain SQL.
        let raw = rusqlite::Connection::open(&path).expect("reopen");
        let value: Vec<u8> = raw
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = 'a' AND key = 'j'",
                [],
                |r| r.get(0),
            )
            .expect("row");
        assert_eq!(value, b"y");
    }
}
