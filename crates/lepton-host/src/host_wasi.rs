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
