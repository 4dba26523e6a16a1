//! `fermyon:spin@2.0.0` (`variables`, `key-value`, `sqlite`) and the legacy unversioned
//! `fermyon:spin/config`: synchronous to the guest, `async` on the host so blocking SQLite work
//! runs on tokio's blocking pool.

use wasmtime::component::Resource;

use crate::bindings::fermyon::spin::config as config_v1;
use crate::bindings::fermyon::spin2_0_0::{key_value, sqlite, variables};
use crate::instance::{DataHost, OpenError};
use crate::kv::KvHandle;
use crate::sqlite::{ConnHandle, SqlValue};
use crate::variables::VariableError;

impl variables::Host for DataHost {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(self
            .component
            .config
            .get(self.app.variables(), &name)
            .map_err(|e| match e {
                VariableError::InvalidName(m) => variables::Error::InvalidName(m),
                VariableError::Undefined(m) => variables::Error::Undefined(m),
                VariableError::Provider(m) => variables::Error::Provider(m),
                VariableError::InvalidTemplate(_) => variables::Error::Other(e.to_string()),
            }))
    }
}

impl config_v1::Host for DataHost {
    async fn get_config(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<String, config_v1::Error>> {
        Ok(self
            .component
            .config
            .get(self.app.variables(), &key)
            .map_err(|e| match e {
                VariableError::InvalidName(m) => config_v1::Error::InvalidKey(m),
                VariableError::Undefined(m) => config_v1::Error::Provider(m),
                e => config_v1::Error::Other(e.to_string()),
            }))
    }
}

fn kv_err(e: crate::kv::KvError) -> key_value::Error {
    key_value::Error::Other(e.0)
}

impl key_value::HostStore for DataHost {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, key_value::Error>> {
        Ok(self.open_kv(&label)?.map_err(|e| match e {
            OpenError::AccessDenied => key_value::Error::AccessDenied,
            OpenError::NoSuch => key_value::Error::NoSuchStore,
        }))
    }

    async fn get(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.kv(&store)?;
        Ok(store.get(key).await.map_err(kv_err))
    }

    async fn set(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.kv(&store)?;
        Ok(store.set(key, value).await.map_err(kv_err))
    }

    async fn delete(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.kv(&store)?;
        Ok(store.delete(key).await.map_err(kv_err))
    }

    async fn exists(
        &mut self,
        store: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let store = self.kv(&store)?;
        Ok(store.exists(key).await.map_err(kv_err))
    }

    async fn get_keys(
        &mut self,
        store: Resource<KvHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let store = self.kv(&store)?;
        Ok(store.get_keys().await.map_err(kv_err))
    }

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

impl sqlite::HostConnection for DataHost {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<ConnHandle>, sqlite::Error>> {
        let db = match self.database(&database) {
            Ok(db) => db,
            Err(OpenError::AccessDenied) => return Ok(Err(sqlite::Error::AccessDenied)),
            Err(OpenError::NoSuch) => return Ok(Err(sqlite::Error::NoSuchDatabase)),
        };
        match db.connect().await {
            Ok(conn) => Ok(Ok(self.push_conn(conn)?)),
            Err(e) => Ok(Err(sqlite::Error::Io(e.0))),
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
            rows: outcome
                .rows
                .into_iter()
                .map(|row| sqlite::RowResult {
                    values: row.into_iter().map(Into::into).collect(),
                })
                .collect(),
        }))
    }

    async fn drop(&mut self, conn: Resource<ConnHandle>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

impl sqlite::Host for DataHost {}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::app::{AppHost, AppHostConfig};

    fn instance(state_dir: &std::path::Path) -> DataHost {
        let locked = lepton_app::LockedApp::from_json(
            serde_json::json!({
                "spin_lock_version": 0,
                "triggers": [],
                "variables": { "greeting": { "default": "hi" } },
                "components": [{
                    "id": "c",
                    "metadata": { "databases": ["default"] },
                    "source": { "content_type": "application/wasm", "source": "file:///x.wasm" },
                    "config": { "message": "{{ greeting }}!" }
                }]
            })
            .to_string()
            .as_bytes(),
        )
        .expect("locked app");
        let config = AppHostConfig {
            name: "t".into(),
            state_dir: state_dir.to_path_buf(),
            ..Default::default()
        };
        Arc::new(AppHost::load_blocking(&locked, &config).expect("load")).instance("c")
    }

    #[tokio::test]
    async fn legacy_config_and_v2_variables_map_errors_like_spin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = instance(dir.path());
        let v1 = |r: wasmtime::Result<Result<String, config_v1::Error>>| {
            format!("{:?}", r.expect("no trap"))
        };
        assert_eq!(
            v1(config_v1::Host::get_config(&mut h, "message".into()).await),
            r#"Ok("hi!")"#
        );
        assert!(
            v1(config_v1::Host::get_config(&mut h, "nope".into()).await)
                .starts_with("Err(Error::Provider("),
            "undefined → provider"
        );
        assert!(
            v1(config_v1::Host::get_config(&mut h, "4bad".into()).await)
                .starts_with("Err(Error::InvalidKey("),
            "invalid name → invalid-key"
        );
        let v2 = format!(
            "{:?}",
            variables::Host::get(&mut h, "nope".into())
                .await
                .expect("no trap")
        );
        assert_eq!(
            v2,
            r#"Err(Error::Undefined("no variable for \"c\".\"nope\""))"#
        );
    }

    #[tokio::test]
    async fn v2_sqlite_permissions_and_connections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = instance(dir.path());
        let denied = sqlite::HostConnection::open(&mut h, "other".into())
            .await
            .expect("no trap");
        assert!(matches!(denied, Err(sqlite::Error::AccessDenied)));
        let conn = sqlite::HostConnection::open(&mut h, "default".into())
            .await
            .expect("no trap")
            .expect("open default");
        let rows = sqlite::HostConnection::execute(
            &mut h,
            Resource::new_borrow(conn.rep()),
            "SELECT ? + 1 AS n".into(),
            vec![sqlite::Value::Integer(41)],
        )
        .await
        .expect("no trap")
        .expect("select");
        assert_eq!(rows.columns, vec!["n"]);
        assert!(matches!(
            rows.rows[0].values[..],
            [sqlite::Value::Integer(42)]
        ));
        sqlite::HostConnection::drop(&mut h, conn)
            .await
            .expect("drop");
        assert!(dir.path().join("sqlite_db.db").is_file());
    }
}
