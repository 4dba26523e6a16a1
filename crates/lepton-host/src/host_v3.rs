//! The WASIp3 Spin interfaces: `spin:variables/variables@3.0.0`,
//! `spin:key-value/key-value@3.0.0` and `spin:sqlite/sqlite@3.1.0` (which also serves 3.0.0
//! imports through wasmtime's semver matching). Their `async` functions take an
//! [`Accessor`]: state is read from the store briefly, the blocking work is awaited without
//! holding the store, and streams (`get-keys`, `execute-async` rows) are handed back as
//! `stream`/`future` pairs.

use std::pin::Pin;
use std::task::{Context, Poll};

use wasmtime::StoreContextMut;
use wasmtime::component::{
    Accessor, Destination, FutureReader, Resource, StreamProducer, StreamReader, StreamResult,
    VecBuffer,
};

use crate::bindings::spin::key_value::key_value;
use crate::bindings::spin::sqlite::sqlite;
use crate::bindings::spin::variables::variables;
use crate::instance::{DataHost, DataHostData, OpenError};
use crate::kv::KvHandle;
use crate::sqlite::{ConnHandle, RowStream, SqlConn, SqlValue};
use crate::variables::VariableError;

impl<T: Send> variables::HostWithStore<T> for DataHostData {
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(accessor.with(|mut access| {
            let host = access.get();
            host.component
                .config
                .get(host.app.variables(), &name)
                .map_err(|e| match e {
                    VariableError::InvalidName(m) => variables::Error::InvalidName(m),
                    VariableError::Undefined(m) => variables::Error::Undefined(m),
                    VariableError::Provider(m) => variables::Error::Provider(m),
                    VariableError::InvalidTemplate(_) => variables::Error::Other(e.to_string()),
                })
        }))
    }
}

impl variables::Host for DataHost {}

fn kv_err(e: crate::kv::KvError) -> key_value::Error {
    key_value::Error::Other(e.0)
}

impl<T: Send> key_value::HostStoreWithStore<T> for DataHostData {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, key_value::Error>> {
        accessor.with(|mut access| {
            Ok(access.get().open_kv(&label)?.map_err(|e| match e {
                OpenError::AccessDenied => key_value::Error::AccessDenied,
                OpenError::NoSuch => key_value::Error::NoSuchStore,
            }))
        })
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = accessor.with(|mut access| access.get().kv(&store))?;
        Ok(store.get(key).await.map_err(kv_err))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = accessor.with(|mut access| access.get().kv(&store))?;
        Ok(store.set(key, value).await.map_err(kv_err))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = accessor.with(|mut access| access.get().kv(&store))?;
        Ok(store.delete(key).await.map_err(kv_err))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let store = accessor.with(|mut access| access.get().kv(&store))?;
        Ok(store.exists(key).await.map_err(kv_err))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<KvHandle>,
    ) -> wasmtime::Result<(
        StreamReader<String>,
        FutureReader<Result<(), key_value::Error>>,
    )> {
        let store = accessor.with(|mut access| access.get().kv(&store))?;
        let (keys, result) = match store.get_keys().await {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(kv_err(e))),
        };
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, keys)?;
            let done = FutureReader::new(
                &mut access,
                std::future::ready(Ok::<_, wasmtime::Error>(result)),
            )?;
            Ok((stream, done))
        })
    }
}

impl key_value::HostStore for DataHost {
    async fn drop(&mut self, store: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl key_value::Host for DataHost {}

impl From<sqlite::Value> for SqlValue {
    fn from(v: sqlite::Value) -> Self {
        match v {
            sqlite::Value::Integer(i) => SqlValue::Integer(i),
            sqlite::Value::Real(r) => SqlValue::Real(r),
            sqlite::Value::Text(t) => SqlValue::Text(t),
            sqlite::Value::Blob(b) => SqlValue::Blob(b),
            sqlite::Value::Null => SqlValue::Null,
        }
    }
}

impl From<SqlValue> for sqlite::Value {
    fn from(v: SqlValue) -> Self {
        match v {
            SqlValue::Integer(i) => sqlite::Value::Integer(i),
            SqlValue::Real(r) => sqlite::Value::Real(r),
            SqlValue::Text(t) => sqlite::Value::Text(t),
            SqlValue::Blob(b) => sqlite::Value::Blob(b),
            SqlValue::Null => sqlite::Value::Null,
        }
    }
}

fn open_err(e: OpenError) -> sqlite::Error {
    match e {
        OpenError::AccessDenied => sqlite::Error::AccessDenied,
        OpenError::NoSuch => sqlite::Error::NoSuchDatabase,
    }
}

fn rows(rows: Vec<Vec<SqlValue>>) -> Vec<sqlite::RowResult> {
    rows.into_iter()
        .map(|row| sqlite::RowResult {
            values: row.into_iter().map(Into::into).collect(),
        })
        .collect()
}

/// Permission check, then a fresh connection for this guest `open`.
async fn connect(
    db: Result<std::sync::Arc<crate::sqlite::Database>, OpenError>,
) -> Result<SqlConn, sqlite::Error> {
    db.map_err(open_err)?
        .connect()
        .await
        .map_err(|e| sqlite::Error::Io(e.0))
}

/// Hands rows to the guest as the query thread produces them.
struct RowProducer {
    rows: tokio::sync::mpsc::Receiver<Vec<SqlValue>>,
}

/// At most this many rows are handed over per guest read.
const ROWS_PER_READ: usize = 64;

impl<D> StreamProducer<D> for RowProducer {
    type Item = sqlite::RowResult;
    type Buffer = VecBuffer<sqlite::RowResult>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _store: StoreContextMut<'a, D>,
        mut dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let this = self.get_mut();
        match this.rows.poll_recv(cx) {
            Poll::Ready(Some(first)) => {
                let mut batch = vec![first];
                while batch.len() < ROWS_PER_READ {
                    match this.rows.try_recv() {
                        Ok(row) => batch.push(row),
                        Err(_) => break,
                    }
                }
                dst.set_buffer(rows(batch).into());
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Send> sqlite::HostConnectionWithStore<T> for DataHostData {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<ConnHandle>, sqlite::Error>> {
        let db = accessor.with(|mut access| access.get().database(&database));
        match connect(db).await {
            Ok(conn) => accessor.with(|mut access| Ok(Ok(access.get().push_conn(conn)?))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<ConnHandle>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<String>,
                StreamReader<sqlite::RowResult>,
                FutureReader<Result<(), sqlite::Error>>,
            ),
            sqlite::Error,
        >,
    > {
        let conn = accessor.with(|mut access| access.get().conn(&conn))?;
        let params = parameters.into_iter().map(SqlValue::from).collect();
        let streaming = match conn.execute_streaming(statement, params).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(sqlite::Error::Io(e.0))),
        };
        let RowStream {
            columns,
            rows,
            done,
        } = streaming;
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, RowProducer { rows })?;
            let done = FutureReader::new(&mut access, async move {
                Ok::<_, wasmtime::Error>(match done.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(sqlite::Error::Io(e.0)),
                    Err(_) => Err(sqlite::Error::Io(
                        "the query task ended unexpectedly".into(),
                    )),
                })
            })?;
            Ok(Ok((columns, stream, done)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<ConnHandle>,
    ) -> wasmtime::Result<i64> {
        let conn = accessor.with(|mut access| access.get().conn(&conn))?;
        Ok(conn.last_insert_rowid())
    }

    async fn changes_async(
        accessor: &Accessor<T, Self>,
        conn: Resource<ConnHandle>,
    ) -> wasmtime::Result<u64> {
        let conn = accessor.with(|mut access| access.get().conn(&conn))?;
        Ok(conn.changes())
    }
}

impl sqlite::HostConnection for DataHost {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<ConnHandle>, sqlite::Error>> {
        match connect(self.database(&database)).await {
            Ok(conn) => Ok(Ok(self.push_conn(conn)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn execute(
        &mut self,
        conn: Resource<ConnHandle>,
        statement: String,
        parameters: Vec<sqlite::Value>,
    ) -> wasmtime::Result<Result<sqlite::QueryResult, sqlite::Error>> {
        let conn = self.conn(&conn)?;
        let params = parameters.into_iter().map(SqlValue::from).collect();
        let outcome = match conn.execute(statement, params).await {
            Ok(o) => o,
            Err(e) => return Ok(Err(sqlite::Error::Io(e.0))),
        };
        Ok(Ok(sqlite::QueryResult {
            columns: outcome.columns,
            rows: rows(outcome.rows),
        }))
    }

    async fn last_insert_rowid(&mut self, conn: Resource<ConnHandle>) -> wasmtime::Result<i64> {
        Ok(self.conn(&conn)?.last_insert_rowid())
    }

    async fn changes(&mut self, conn: Resource<ConnHandle>) -> wasmtime::Result<u64> {
        Ok(self.conn(&conn)?.changes())
    }

    async fn drop(&mut self, conn: Resource<ConnHandle>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

impl sqlite::Host for DataHost {}
