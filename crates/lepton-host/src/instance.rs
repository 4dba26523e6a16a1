//! Per-instance state ([`DataHost`]) living in each request's `Store` data, the [`DataView`]
//! trait a store's data implements to expose it, and [`add_to_linker`], which links every data
//! interface lepton-host provides.
//!
//! Permission checks happen here, shared by every interface version: opening a key-value store
//! or database the component does not list is `access-denied`, checked before whether the label
//! exists (`no-such-store` / `no-such-database`).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::app::{AppHost, ComponentData};
use crate::kv::{CasHandle, KvHandle, KvStore};
use crate::sqlite::{ConnHandle, Database, SqlConn};

/// The data interfaces' state for one store: the app's shared state, this component's
/// permissions and config, and the guest's open handles.
pub struct DataHost {
    pub(crate) app: Arc<AppHost>,
    pub(crate) component: Arc<ComponentData>,
    pub(crate) table: ResourceTable,
}

/// Implemented by a store's data type to give the bindings its [`DataHost`].
pub trait DataView: Send {
    /// This store's data host state.
    fn data_host(&mut self) -> &mut DataHost;
}

/// The [`HasData`] marker the generated bindings are linked with.
pub struct DataHostData;

impl HasData for DataHostData {
    type Data<'a> = &'a mut DataHost;
}

/// Link `fermyon:spin/{variables,key-value,sqlite}@2.0.0`, `fermyon:spin/config`,
/// `spin:variables/variables@3.0.0`, `spin:key-value/key-value@3.0.0`,
/// `spin:sqlite/sqlite@3.1.0` (which also serves 3.0 imports), `wasi:config/store` and
/// `wasi:keyvalue/{store,atomics,batch}` into `linker`.
pub fn add_to_linker<T: DataView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    crate::bindings::Data::add_to_linker::<T, DataHostData>(linker, |t| t.data_host())
}

/// Why a store or database could not be opened.
pub(crate) enum OpenError {
    AccessDenied,
    NoSuch,
}

impl DataHost {
    pub(crate) fn new(app: Arc<AppHost>, component: Arc<ComponentData>) -> Self {
        Self {
            app,
            component,
            table: ResourceTable::new(),
        }
    }

    /// The app-level state (variables, runtime config).
    pub fn app(&self) -> &Arc<AppHost> {
        &self.app
    }

    pub(crate) fn kv_store(&self, label: &str) -> Result<Arc<KvStore>, OpenError> {
        if !self.component.kv_allowed.contains(label) {
            return Err(OpenError::AccessDenied);
        }
        self.app
            .kv_stores
            .get(label)
            .cloned()
            .ok_or(OpenError::NoSuch)
    }

    pub(crate) fn database(&self, label: &str) -> Result<Arc<Database>, OpenError> {
        if !self.component.db_allowed.contains(label) {
            return Err(OpenError::AccessDenied);
        }
        self.app
            .databases
            .get(label)
            .cloned()
            .ok_or(OpenError::NoSuch)
    }

    /// Open key-value store `label` as a new guest handle.
    pub(crate) fn open_kv(
        &mut self,
        label: &str,
    ) -> wasmtime::Result<Result<Resource<KvHandle>, OpenError>> {
        match self.kv_store(label) {
            Ok(store) => Ok(Ok(self.table.push(KvHandle { store })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    pub(crate) fn kv(&self, handle: &Resource<KvHandle>) -> wasmtime::Result<Arc<KvStore>> {
        Ok(self.table.get(handle)?.store.clone())
    }

    pub(crate) fn push_conn(&mut self, conn: SqlConn) -> wasmtime::Result<Resource<ConnHandle>> {
        Ok(self.table.push(ConnHandle { conn })?)
    }

    pub(crate) fn conn(&self, handle: &Resource<ConnHandle>) -> wasmtime::Result<SqlConn> {
        Ok(self.table.get(handle)?.conn.clone())
    }

    pub(crate) fn cas(&self, handle: &Resource<CasHandle>) -> wasmtime::Result<&CasHandle> {
        Ok(self.table.get(handle)?)
    }
}
