//! The per-store host state ([`HostState`]) and the linker of host interfaces lepton provides.
//!
//! Each instance gets a store of its own whose data is a `HostState` (one request per instance,
//! except wasi:http 0.3 components, whose instances the HTTP trigger reuses): the component's
//! WASI context (environment, read-only files at `/`, captured stdio), the wasi-http context, and
//! the resource table they share. Capabilities added later (variables, key-value, SQLite,
//! outbound policy) each add one field here and one `add_to_linker` call in [`build_linker`].

use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::RuntimeError;

/// The data of every request's [`wasmtime::Store`].
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: OutboundHttpHooks,
    /// Interfaces linked but not served (LLM): they answer with an error (lepton-host-unsupported).
    pub(crate) unsupported: lepton_host_unsupported::UnsupportedHost,
    /// Spin variables, key-value and SQLite state (lepton-host).
    pub(crate) data: lepton_host::DataHost,
    /// Outbound Redis, PostgreSQL, MySQL and MQTT connections (lepton-outbound-services).
    pub(crate) services: lepton_outbound_services::ServicesHost,
    /// The instance's memory budget (`memory_mib`, runtime-config `max_instance_memory`).
    pub(crate) limits: crate::limits::InstanceBudget,
    /// When the request this store serves must end (for a reused store, the latest deadline of
    /// the requests running on it): the epoch callback stops the guest past it, and outbound
    /// requests carry it (chained requests never outlive their caller).
    pub(crate) deadline: std::time::Instant,
    /// Counts this store in its app's `lepton_app_instances` while it lives.
    pub(crate) _instance: Option<lepton_metrics::InstanceGuard>,
}

impl HostState {
    /// Bring the request deadline forward to `to` if it is earlier (a chained request's caller
    /// ends sooner than the callee's own `request_timeout_ms`).
    pub fn shorten_deadline(&mut self, to: std::time::Instant) {
        self.deadline = self.deadline.min(to);
        self.hooks.shorten_deadline(self.deadline);
    }

    /// Set the deadline to `to`, later or earlier: a store reused for several requests ends with
    /// the latest of the requests running on it (the HTTP trigger's reuse pool decides which).
    /// The epoch callback stops the guest past it; outbound requests carry it.
    pub fn set_deadline(&mut self, to: std::time::Instant) {
        self.deadline = to;
        self.hooks = self.hooks.clone().with_deadline(to);
    }

    /// When the request this store serves must end.
    pub fn deadline(&self) -> std::time::Instant {
        self.deadline
    }

    /// The wasi-http view; a plain `fn` so it can be handed to wasi-http's request handler.
    pub fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl lepton_host_unsupported::UnsupportedView for HostState {
    fn unsupported(&mut self) -> &mut lepton_host_unsupported::UnsupportedHost {
        &mut self.unsupported
    }
}

impl lepton_outbound::OutboundView for HostState {
    fn outbound_hooks(&mut self) -> &mut OutboundHttpHooks {
        &mut self.hooks
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl lepton_outbound_services::ServicesView for HostState {
    fn services(&mut self) -> &mut lepton_outbound_services::ServicesHost {
        &mut self.services
    }
}

impl lepton_host::DataView for HostState {
    fn data_host(&mut self) -> &mut lepton_host::DataHost {
        &mut self.data
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.http_view()
    }
}

/// Outbound HTTP hooks: each component's `allowed_outbound_hosts` policy, self requests and
/// service chaining (see [`lepton_outbound::http`]).
pub use lepton_outbound::OutboundHttpHooks;

/// Build the linker with every interface lepton provides today: WASI 0.2 and 0.3 (cli, clocks,
/// filesystem, io, random, sockets — gated per component by its outbound policy) and
/// wasi:http 0.2 and 0.3. Components importing anything else fail at load, naming the interface.
pub(crate) fn build_linker(engine: &Engine) -> Result<Linker<HostState>, RuntimeError> {
    let mut linker = Linker::<HostState>::new(engine);
    let link = |interface: &'static str| {
        move |e: wasmtime::Error| RuntimeError::Linker {
            interface,
            reason: crate::chain(&e),
        }
    };
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link("wasi@0.2"))?;
    wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(link("wasi@0.3"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(link("wasi:http@0.2"))?;
    lepton_outbound::link_p2_relative_urls(&mut linker).map_err(link("wasi:http@0.2"))?;
    lepton_outbound::add_legacy_http_to_linker(&mut linker).map_err(link("fermyon:spin/http"))?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(link("wasi:http@0.3"))?;
    lepton_outbound::http::link_p3_relative_urls(&mut linker).map_err(link("wasi:http@0.3"))?;
    lepton_host::add_to_linker(&mut linker).map_err(link("spin variables/key-value/sqlite"))?;
    lepton_host_unsupported::add_to_linker(&mut linker).map_err(link("fermyon:spin/llm"))?;
    lepton_outbound_services::add_to_linker(&mut linker)
        .map_err(link("spin redis/postgres/mysql/mqtt"))?;
    Ok(linker)
}
