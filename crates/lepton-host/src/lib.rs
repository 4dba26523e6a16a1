//! lepton-host: Spin's data host interfaces for lepton — variables, key-value and SQLite — and
//! the `runtime-config.toml` format that configures them.
//!
//! Lifecycle, one unit per capability as in Spin's factors:
//! - **per app, once at load**: [`AppHost::load`] reads the runtime config, builds the variable
//!   resolver (failing on a missing required variable), checks every component's
//!   `key_value_stores` / `databases` labels and `config` templates, and opens the stores.
//! - **per instance**: [`AppHost::instance`] gives the [`DataHost`] a request's store data
//!   holds (implement [`DataView`] to expose it).
//! - **linking**: [`add_to_linker`] links every interface below into a `Linker<T: DataView>`.
//!
//! Interfaces (WIT vendored from the spin-sdk packages in `wit/`):
//! `fermyon:spin/{variables,key-value,sqlite}@2.0.0`, `fermyon:spin/config` (unversioned),
//! `spin:variables/variables@3.0.0`, `spin:key-value/key-value@3.0.0`,
//! `spin:sqlite/sqlite@3.1.0` (serves 3.0 too), `wasi:config/store@0.2.0-draft-2024-09-27`,
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`.
//!
//! Modules: [`runtime_config`] (the file format), [`variables`] (providers and templates),
//! [`kv`] (key-value backends: SQLite, Redis), [`sqlite`] (SQLite databases), [`app`] (per-app
//! state and load-time validation), [`instance`] (per-instance state, linking), `bindings`
//! (generated), `host_v2` / `host_v3` / `host_wasi` (the interface implementations).

pub mod app;
mod bindings;
mod host_v2;
mod host_v3;
mod host_wasi;
pub mod instance;
pub mod kv;
pub mod runtime_config;
pub mod sqlite;
pub mod variables;

pub use app::{AppHost, AppHostConfig, HostError};
pub use instance::{DataHost, DataView, add_to_linker};
pub use runtime_config::{RuntimeConfig, RuntimeConfigError};
pub use variables::{VariableError, VariableResolver};
