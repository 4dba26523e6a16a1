//! `wasi:config/store@0.2.0-draft-2024-09-27` (component config, as Spin serves it) and
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` over the same key-value stores and
//! permissions as Spin's own key-value interfaces.

use wasmtime::component::Resource;

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};
use crate::instance::{DataHost, OpenError};
use crate::kv::{CasHandle, KvError, KvHandle};
use crate::variables::VariableError;

impl config::Host for DataHost {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config::Error>> {
        // Undefined or invalid keys are `none`, as in Spin.
        Ok(
            match self.component.config.get(self.app.variables(), &key) {
                Ok(v) => Ok(Some(v)),
                Err(VariableError::InvalidName(_) | VariableError::Undefined(_)) => Ok(None),
                Err(e) => Err(config::Error::Upstream(e.to_string())),
            },
        )
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config::Error>> {
        Ok(self
            .component
            .config
            .get_all(self.app.variables())
            .map_err(|e| config::Error::Upstream(e.to_string())))
    }
}

fn kv_err(e: KvError) -> store::Error {
    store::Error::Other(e.0)
}

impl store::Host for DataHost {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, store::Error>> {
        Ok(self.open_kv(&identifier)?.map_err(|e| match e {
            OpenError::AccessDenied => store::Error::AccessDenied,
            OpenError::NoSuch => store::Error::NoSuchStore,
        }))
    }
}

impl store::HostBucket for DataHost {
    async fn get(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let store = self.kv(&bucket)?;
        Ok(store.get(key).await.map_err(kv_err))
    }

    async fn set(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.kv(&bucket)?;
        Ok(store.set(key, value).await.map_err(kv_err))
    }

    async fn delete(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.kv(&bucket)?;
        Ok(store.delete(key).await.map_err(kv_err))
    }

    async fn exists(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let store = self.kv(&bucket)?;
        Ok(store.exists(key).await.map_err(kv_err))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<KvHandle>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let store = self.kv(&bucket)?;
        // All keys in one page; a cursor (from another host) resumes after that key.
        Ok(store.get_keys().await.map_err(kv_err).map(|keys| {
            let keys = match cursor {
                Some(after) => keys.into_iter().filter(|k| *k > after).collect(),
                None => keys,
            };
            store::KeyResponse { keys, cursor: None }
        }))
    }

    async fn drop(&mut self, bucket: Resource<KvHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for DataHost {
    async fn increment(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let store = self.kv(&bucket)?;
        Ok(store.increment(key, delta).await.map_err(kv_err))
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let handle = self.table.delete(cas)?;
        let CasHandle {
            store,
            key,
            current,
        } = handle;
        match store
            .compare_and_swap(key.clone(), current.clone(), value)
            .await
        {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // Hand the guest a fresh CAS with the value now stored, so it can retry.
                let now = match store.get(key.clone()).await {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(kv_err(e)))),
                };
                let fresh = self.table.push(CasHandle {
                    store,
                    key,
                    current: now,
                })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(kv_err(e)))),
        }
    }
}

impl atomics::HostCas for DataHost {
    async fn new(
        &mut self,
        bucket: Resource<KvHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<CasHandle>, store::Error>> {
        let store = self.kv(&bucket)?;
        let current = match store.get(key.clone()).await {
            Ok(v) => v,
            Err(e) => return Ok(Err(kv_err(e))),
        };
        Ok(Ok(self.table.push(CasHandle {
            store,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<CasHandle>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.cas(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for DataHost {
    async fn get_many(
        &mut self,
        bucket: Resource<KvHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let store = self.kv(&bucket)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match store.get(key.clone()).await {
                Ok(v) => out.push((key, v)),
                Err(e) => return Ok(Err(kv_err(e))),
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.kv(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = store.set(key, value).await {
                return Ok(Err(kv_err(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<KvHandle>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.kv(&bucket)?;
        for key in keys {
            if let Err(e) = store.delete(key).await {
                return Ok(Err(kv_err(e)));
            }
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmtime::component::Resource;

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
                    "metadata": { "key_value_stores": ["default"] },
                    "source": { "content_type": "application/wasm", "source": "file:///x.wasm" },
                    "config": { "message": "{{ greeting }} there" }
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

    fn borrow<T: 'static>(r: &Resource<T>) -> Resource<T> {
        Resource::new_borrow(r.rep())
    }

    async fn get(h: &mut DataHost, key: &str) -> Result<Option<String>, String> {
        config::Host::get(h, key.to_string())
            .await
            .expect("no trap")
            .map_err(|e| format!("{e:?}"))
    }

    #[tokio::test]
    async fn wasi_config_reads_component_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = instance(dir.path());
        assert_eq!(get(&mut h, "message").await, Ok(Some("hi there".into())));
        assert_eq!(get(&mut h, "missing").await, Ok(None));
        assert_eq!(get(&mut h, "Bad-Name").await, Ok(None));
        assert_eq!(
            config::Host::get_all(&mut h)
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(vec![("message".into(), "hi there".into())])
        );
    }

    #[tokio::test]
    async fn wasi_keyvalue_store_atomics_and_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = instance(dir.path());
        assert!(matches!(
            store::Host::open(&mut h, "other".into())
                .await
                .expect("no trap"),
            Err(store::Error::AccessDenied)
        ));
        let bucket = store::Host::open(&mut h, "default".into())
            .await
            .expect("no trap")
            .expect("open default");
        let b = || borrow(&bucket);

        store::HostBucket::set(&mut h, b(), "a".into(), b"1".to_vec())
            .await
            .expect("no trap")
            .expect("set");
        assert_eq!(
            store::HostBucket::get(&mut h, b(), "a".into())
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(Some(b"1".to_vec()))
        );
        assert_eq!(
            store::HostBucket::exists(&mut h, b(), "zz".into())
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(false)
        );

        batch::Host::set_many(
            &mut h,
            b(),
            vec![("b".into(), b"2".to_vec()), ("c".into(), b"3".to_vec())],
        )
        .await
        .expect("no trap")
        .expect("set_many");
        assert_eq!(
            batch::Host::get_many(&mut h, b(), vec!["b".into(), "nope".into()])
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(vec![
                ("b".into(), Some(b"2".to_vec())),
                ("nope".into(), None)
            ])
        );
        let keys = store::HostBucket::list_keys(&mut h, b(), None)
            .await
            .expect("no trap")
            .expect("list");
        assert_eq!(keys.keys, vec!["a", "b", "c"]);
        assert_eq!(keys.cursor, None);
        batch::Host::delete_many(&mut h, b(), vec!["b".into(), "c".into()])
            .await
            .expect("no trap")
            .expect("delete_many");

        assert_eq!(
            atomics::Host::increment(&mut h, b(), "n".into(), 5)
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(5)
        );
        assert_eq!(
            atomics::Host::increment(&mut h, b(), "n".into(), -7)
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(-2)
        );

        // CAS: succeeds on an unchanged value, fails (with a fresh handle) after a change.
        let cas = atomics::HostCas::new(&mut h, b(), "a".into())
            .await
            .expect("no trap")
            .expect("cas");
        assert_eq!(
            atomics::HostCas::current(&mut h, borrow(&cas))
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(Some(b"1".to_vec()))
        );
        atomics::Host::swap(&mut h, cas, b"10".to_vec())
            .await
            .expect("no trap")
            .expect("swap");
        let stale = atomics::HostCas::new(&mut h, b(), "a".into())
            .await
            .expect("no trap")
            .expect("cas");
        store::HostBucket::set(&mut h, b(), "a".into(), b"changed".to_vec())
            .await
            .expect("no trap")
            .expect("set");
        match atomics::Host::swap(&mut h, stale, b"lost".to_vec())
            .await
            .expect("no trap")
        {
            Err(atomics::CasError::CasFailed(fresh)) => assert_eq!(
                atomics::HostCas::current(&mut h, fresh)
                    .await
                    .expect("no trap")
                    .map_err(|e| format!("{e:?}")),
                Ok(Some(b"changed".to_vec()))
            ),
            other => panic!("expected cas-failed, got {:?}", other.map(|_| ())),
        }
        assert_eq!(
            store::HostBucket::get(&mut h, b(), "a".into())
                .await
                .expect("no trap")
                .map_err(|e| format!("{e:?}")),
            Ok(Some(b"changed".to_vec()))
        );
        store::HostBucket::drop(&mut h, bucket).await.expect("drop");
    }
}
