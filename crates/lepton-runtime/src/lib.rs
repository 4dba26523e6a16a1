//! The lepton runtime: one shared wasmtime [`Engine`](wasmtime::Engine) for every app in the
//! process, the on-disk cache of compiled components, and the per-app host state each request's
//! store is built from.
//!
//! Data flows in from the loader as a runnable [`lepton_app::LockedApp`] (component sources are
//! verified `file://` paths in the content-addressed cache) and flows out to the triggers as a
//! [`RuntimeApp`]: one [`PreparedComponent`] per component, each holding an `InstancePre` and
//! everything needed to build a fresh [`Store`](wasmtime::Store) per request.
//!
//! Modules:
//! - [`engine`]: engine configuration (pooling allocator with copy-on-write, epochs) and the linker
//!   of host interfaces lepton provides.
//! - [`compile_cache`]: compile each component once; reuse the artifact across restarts.
//! - [`componentize`]: turn WASI preview 1 core modules into components before compiling.
//! - [`host`]: the `Store` data type and the WASI / wasi-http views over it.
//! - [`limits`]: per-app limits enforced inside each store (deadline, cut-off, memory budget).
//! - [`cpu`]: the fair share of CPU between apps (lanes for CPU-bound requests).
//! - [`logs`]: per-app capture of component stdout/stderr.
//! - [`app`]: turning a runnable locked app into prepared components.
//! - [`exports`]: the Redis and cron handler exports, and which components must have them.
//! - [`residency`]: loading apps when first needed and evicting idle ones.

pub mod app;
pub mod compile_cache;
pub mod componentize;
pub mod cpu;
pub mod engine;
pub mod exports;
pub mod host;
pub mod limits;
pub mod logs;
pub mod residency;

pub use app::{AppConfig, ComponentHandlerKind, ComponentPre, PreparedComponent, RuntimeApp};
pub use compile_cache::CompileCache;
pub use engine::{PoolingMode, RuntimeEngine, RuntimeEngineConfig};
pub use exports::{ComponentExports, RedisHandlerKind};
pub use host::HostState;
pub use limits::{AppLimits, CutOff, GuestStopped, enforced as limits_enforced};
pub use residency::{LoadFailed, Loaded, Residency, ResidencyConfig, Resident, ResidentState};

/// Errors raised while building the engine or preparing an app's components.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine could not be configured.
    #[error("failed to configure the wasmtime engine: {0}")]
    Engine(String),
    /// The linker could not be populated with lepton's host interfaces.
    #[error("failed to link host interface `{interface}`: {reason}")]
    Linker {
        /// The interface family that failed to link.
        interface: &'static str,
        /// The underlying wasmtime error.
        reason: String,
    },
    /// A component's Wasm could not be read.
    #[error("component `{component}`: cannot read Wasm at {path}: {source}")]
    ReadWasm {
        /// The component id.
        component: String,
        /// The file that could not be read.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A component's source is not in the runnable form (`file://` URL).
    #[error("component `{component}`: source `{source_url}` is not a local file:// URL")]
    BadSource {
        /// The component id.
        component: String,
        /// The offending source string.
        source_url: String,
    },
    /// The app's data host state (variables, key-value stores, SQLite databases, runtime
    /// config) could not be built.
    #[error(transparent)]
    Host(#[from] lepton_host::HostError),
    /// A component's outbound networking configuration (`allowed_outbound_hosts`, runtime-config
    /// `block_networks`) is invalid; the error names the app, component and entry.
    #[error(transparent)]
    Outbound(Box<lepton_outbound::OutboundError>),
    /// A core module could not be turned into a component.
    #[error("component `{component}`: cannot turn the core module into a component: {reason}")]
    Componentize {
        /// The component id.
        component: String,
        /// What went wrong.
        reason: String,
    },
    /// Compilation failed.
    #[error("component `{component}`: failed to compile: {reason}")]
    Compile {
        /// The component id.
        component: String,
        /// The wasmtime error.
        reason: String,
    },
    /// The component imports something lepton does not provide, or its imports don't type-check.
    #[error("component `{component}`: cannot be linked: {reason}")]
    Link {
        /// The component id.
        component: String,
        /// The wasmtime error, which names the missing interface.
        reason: String,
    },
    /// The component does not export a handler lepton can call.
    #[error("component `{component}`: {reason}")]
    Handler {
        /// The component id.
        component: String,
        /// What is wrong with its exports.
        reason: String,
    },
    /// The component's files or log directory could not be prepared.
    #[error("component `{component}`: {what} {path}: {source}")]
    Io {
        /// The component id.
        component: String,
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Format a wasmtime error with its whole cause chain on one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    format!("{err:#}")
}
