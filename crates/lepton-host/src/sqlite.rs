//! SQLite databases for Spin's `sqlite` interfaces: one shared connection per configured
//! database of an app (the `default` one at `<state_dir>/sqlite_db.db`), statements run on
//! tokio's blocking pool, and the per-instance connection handle the bindings hand to guests.
//!
//! Values cross the boundary as a backend-neutral [`SqlValue`]; the bindings convert to and from
//! each WIT version's own `value` type.

use std::path::{Path, PathBuf};
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
    /// `last_insert_rowid()` after the statement.
    pub last_insert_rowid: i64,
    /// `changes()` after the statement.
    pub changes: u64,
}

/// One configured database of an app.
pub struct Database {
    label: String,
    conn: Arc<Mutex<rusqlite::Connection>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Open (creating if needed) the database file at `path`, or an in-memory database.
    pub(crate) fn open(label: &str, path: Option<&Path>) -> Result<Self, String> {
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
        Ok(Self {
            label: label.to_string(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The database label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Run one statement with positional parameters on the blocking pool, collecting its rows.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<SqlValue>,
    ) -> Result<QueryOutcome, SqlError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn
                .lock()
                .map_err(|_| SqlError("database lock poisoned".into()))?;
            run(&conn, &statement, &parameters).map_err(|e| SqlError(e.to_string()))
        })
        .await
        .map_err(|e| SqlError(e.to_string()))?
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
    {
        let mut rows = stmt.query(rusqlite::params_from_iter(parameters.iter()))?;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(SqlValue::from(row.get_ref(i)?));
            }
            rows_out.push(values);
        }
    }
    Ok(QueryOutcome {
        columns,
        rows: rows_out,
        last_insert_rowid: conn.last_insert_rowid(),
        changes: conn.changes(),
    })
}

/// A guest's open connection (the `connection` resource): its database and the
/// `last-insert-rowid` / `changes` of its own most recent statement.
pub struct ConnHandle {
    pub(crate) db: Arc<Database>,
    pub(crate) last_insert_rowid: i64,
    pub(crate) changes: u64,
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
        let db = Database::open("default", None).expect("open");
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
        assert_eq!((ins.last_insert_rowid, ins.changes), (1, 1));
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
        let err = db
            .execute("SELECT * FROM missing".into(), vec![])
            .await
            .expect_err("no table");
        assert!(err.0.contains("missing"), "{err}");
    }
}
