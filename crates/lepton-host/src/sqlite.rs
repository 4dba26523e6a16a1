//! SQLite databases for Spin's `sqlite` interfaces: the configured databases of an app (the
//! `default` one at `<state_dir>/sqlite_db.db`), one SQLite connection per guest `open` as in
//! Spin (a shared one for in-memory databases), statements run on tokio's blocking pool, and the
//! per-instance connection handle the bindings hand to guests.
//!
//! Values cross the boundary as a backend-neutral [`SqlValue`]; the bindings convert to and from
//! each WIT version's own `value` type.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A database operation failed (maps to the WIT `io(string)` case).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(pub String);

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// `integer(s64)`.
    Integer(i64),
    /// `real(f64)`.
    Real(f64),
    /// `text(string)`.
    Text(String),
    /// `blob(list<u8>)`.
    Blob(Vec<u8>),
    /// `null`.
    Null,
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(r) => ValueRef::Real(*r),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
            SqlValue::Null => ValueRef::Null,
        }))
    }
}

impl From<rusqlite::types::ValueRef<'_>> for SqlValue {
    fn from(v: rusqlite::types::ValueRef<'_>) -> Self {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Integer(i) => SqlValue::Integer(i),
            ValueRef::Real(r) => SqlValue::Real(r),
            ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            ValueRef::Null => SqlValue::Null,
        }
    }
}

/// The outcome of one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutcome {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue>>,
}

/// One configured database of an app: a file every guest connection opens for itself (as
/// Spin does, so `last-insert-rowid` and `changes` are per guest connection), or one shared
/// in-memory database.
pub struct Database {
    label: String,
    location: Location,
}

enum Location {
    File(PathBuf),
    Memory(SqlConn),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

fn open_conn(path: Option<&Path>) -> Result<rusqlite::Connection, String> {
    let conn = match path {
        Some(path) => rusqlite::Connection::open(path),
        None => rusqlite::Connection::open_in_memory(),
    }
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

impl Database {
    /// Check (creating it if needed) the database file at `path`, or create an in-memory
    /// database. Blocking.
    pub(crate) fn open(label: &str, path: Option<&Path>) -> Result<Self, String> {
        let location = match path {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                drop(open_conn(Some(path))?);
                Location::File(path.to_path_buf())
            }
            None => Location::Memory(SqlConn::new(open_conn(None)?)),
        };
        Ok(Self {
            label: label.to_string(),
            location,
        })
    }

    /// The database label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A connection for one guest `open`, made on the blocking pool.
    pub async fn connect(&self) -> Result<SqlConn, SqlError> {
        match &self.location {
            Location::Memory(conn) => Ok(conn.clone()),
            Location::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || open_conn(Some(&path)))
                    .await
                    .map_err(|e| SqlError(e.to_string()))?
                    .map(SqlConn::new)
                    .map_err(SqlError)
            }
        }
    }
}

/// One SQLite connection, with the `last-insert-rowid` / `changes` of its most recently
/// completed statement kept outside the lock so reading them never waits for a running query.
#[derive(Clone)]
pub struct SqlConn(Arc<ConnInner>);

struct ConnInner {
    conn: Mutex<rusqlite::Connection>,
    last_insert_rowid: AtomicI64,
    changes: AtomicU64,
}

impl SqlConn {
    fn new(conn: rusqlite::Connection) -> Self {
        Self(Arc::new(ConnInner {
            conn: Mutex::new(conn),
            last_insert_rowid: AtomicI64::new(0),
            changes: AtomicU64::new(0),
        }))
    }

    /// Run `f` with the connection locked, then record its counters.
    fn with<R>(&self, f: impl FnOnce(&rusqlite::Connection) -> R) -> Result<R, SqlError> {
        let conn = self
            .0
            .conn
            .lock()
            .map_err(|_| SqlError("database lock poisoned".into()))?;
        let out = f(&conn);
        self.0
            .last_insert_rowid
            .store(conn.last_insert_rowid(), Ordering::Relaxed);
        self.0.changes.store(conn.changes(), Ordering::Relaxed);
        Ok(out)
    }

    /// Run one statement with positional parameters on the blocking pool, collecting its rows.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> Result<QueryOutcome, SqlError> {
        let conn = self.clone();
        tokio::task::spawn_blocking(move || {
            conn.with(|c| run(c, &statement, &parameters).map_err(|e| SqlError(e.to_string())))?
        })
        .await
        .map_err(|e| SqlError(e.to_string()))?
    }

    /// Run one statement on the blocking pool, streaming its rows: the column names once the
    /// statement is prepared (a prepare error is returned directly), then the rows through a
    /// bounded channel as the reader takes them, then the statement's outcome. Dropping the row
    /// receiver stops the query.
    pub async fn execute_streaming(
        &self,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> Result<RowStream, SqlError> {
        let (columns_tx, columns_rx) = tokio::sync::oneshot::channel();
        let (rows_tx, rows) = tokio::sync::mpsc::channel(ROW_CHANNEL_CAPACITY);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let conn = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = conn.with(|c| -> rusqlite::Result<()> {
                let mut stmt = match c.prepare_cached(&statement) {
                    Ok(stmt) => stmt,
                    Err(e) => {
                        let _ = columns_tx.send(Err(SqlError(e.to_string())));
                        return Ok(());
                    }
                };
                let columns: Vec<String> =
                    stmt.column_names().into_iter().map(String::from).collect();
                let width = columns.len();
                if columns_tx.send(Ok(columns)).is_err() {
                    return Ok(());
                }
                let mut rows = stmt.query(rusqlite::params_from_iter(parameters.iter()))?;
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(width);
                    for i in 0..width {
                        values.push(SqlValue::from(row.get_ref(i)?));
                    }
                    if rows_tx.blocking_send(values).is_err() {
                        break; // the reader went away
                    }
                }
                Ok(())
            });
            let outcome = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(SqlError(e.to_string())),
                Err(e) => Err(e),
            };
            let _ = done_tx.send(outcome);
        });
        let columns = columns_rx.await.map_err(|_| {
            SqlError("the query task ended before preparing the statement".into())
        })??;
        Ok(RowStream {
            columns,
            rows,
            done,
        })
    }

    /// The rowid of the most recent successful INSERT on this connection (0 if none).
    pub fn last_insert_rowid(&self) -> i64 {
        self.0.last_insert_rowid.load(Ordering::Relaxed)
    }

    /// Rows changed by the most recent INSERT, UPDATE or DELETE on this connection.
    pub fn changes(&self) -> u64 {
        self.0.changes.load(Ordering::Relaxed)
    }
}

fn run(
    conn: &rusqlite::Connection,
    statement: &str,
    parameters: &[SqlValue],
) -> rusqlite::Result<QueryOutcome> {
    let mut stmt = conn.prepare_cached(statement)?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let mut rows_out = Vec::new();
    let mut rows = stmt.query(rusqlite::params_from_iter(parameters.iter()))?;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            values.push(SqlValue::from(row.get_ref(i)?));
        }
        rows_out.push(values);
    }
    Ok(QueryOutcome {
        columns,
        rows: rows_out,
    })
}

/// Rows buffered between the query thread and a slow reader.
const ROW_CHANNEL_CAPACITY: usize = 16;

/// A statement whose rows are still being produced.
pub struct RowStream {
    /// Column names.
    pub columns: Vec<String>,
    /// The rows, in order.
    pub rows: tokio::sync::mpsc::Receiver<Vec<SqlValue>>,
    /// The statement's outcome once every row was produced (or the reader left).
    pub done: tokio::sync::oneshot::Receiver<Result<(), SqlError>>,
}

/// A guest's open connection (the `connection` resource).
pub struct ConnHandle {
    pub(crate) conn: SqlConn,
}

/// Where the default SQLite database of an app lives.
pub(crate) fn default_db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("sqlite_db.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn statements_run_and_rows_come_back_typed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = Database::open("default", Some(&dir.path().join("db/x.db"))).expect("open");
        let db = file.connect().await.expect("connect");
        db.execute(
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)".into(),
            vec![],
        )
        .await
        .expect("create");
        let ins = db
            .execute(
                "INSERT INTO t VALUES (?, ?, ?, ?, ?)".into(),
                vec![
                    SqlValue::Integer(7),
                    SqlValue::Real(1.5),
                    SqlValue::Text("hi".into()),
                    SqlValue::Blob(vec![1, 2]),
                    SqlValue::Null,
                ],
            )
            .await
            .expect("insert");
        assert!(ins.rows.is_empty());
        assert_eq!((db.last_insert_rowid(), db.changes()), (1, 1));
        // Another guest connection has its own counters.
        let other = file.connect().await.expect("connect");
        assert_eq!((other.last_insert_rowid(), other.changes()), (0, 0));
        let out = db
            .execute("SELECT * FROM t".into(), vec![])
            .await
            .expect("select");
        assert_eq!(out.columns, vec!["i", "r", "s", "b", "n"]);
        assert_eq!(
            out.rows,
            vec![vec![
                SqlValue::Integer(7),
                SqlValue::Real(1.5),
                SqlValue::Text("hi".into()),
                SqlValue::Blob(vec![1, 2]),
                SqlValue::Null
            ]]
        );
        let mut streamed = db
            .execute_streaming("SELECT s FROM t".into(), vec![])
            .await
            .expect("stream");
        assert_eq!(streamed.columns, vec!["s"]);
        assert_eq!(
            streamed.rows.recv().await,
            Some(vec![SqlValue::Text("hi".into())])
        );
        assert_eq!(streamed.rows.recv().await, None);
        assert_eq!(streamed.done.await.expect("done"), Ok(()));
        assert!(
            db.execute_streaming("SELEC".into(), vec![]).await.is_err(),
            "prepare errors come back directly"
        );
        let err = db
            .execute("SELECT * FROM missing".into(), vec![])
            .await
            .expect_err("no table");
        assert!(err.0.contains("missing"), "{err}");
    }
}
