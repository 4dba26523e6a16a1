//! Running one request through a component: wasmtime-wasi-http's `ProxyHandler` drives the
//! stores and instances of `wasi:http/incoming-handler@0.2` and `wasi:http/handler@0.3`
//! components ([`ComponentWorkers`]); [`ComponentExecutor`] also dispatches to the Spin 1.x
//! ([`crate::spin_inbound`]) and WAGI ([`crate::wagi`]) executors, which make a fresh instance
//! per request.
//!
//! A wasi:http 0.2 instance serves one request; a 0.3 instance is reused for up to 128 requests,
//! 16 at once, as Spin does ([`crate::reuse`], which also keeps each request's deadline, slot and
//! cut-off on a shared instance). A store lives until its guest has finished, which may be after
//! the response head was sent, so streamed bodies complete — but never past the request
//! deadline of its requests or its version's cut-off, even while the guest waits on I/O, where the
//! epoch callback cannot reach it.

use std::sync::Arc;

use http_body_util::BodyExt;
use lepton_runtime::{ComponentHandlerKind, HostState, PreparedComponent};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{HandlerState, Instance, ProxyHandler};

use crate::gate::Slot;
use crate::reuse::{InstanceBody, InstanceExpiration, InstanceRequests, ReusePolicy, ServedBy};
use crate::spin_inbound::SpinInboundExecutor;
use crate::wagi::WagiExecutor;

/// Runs requests against one prepared component, with the executor its export calls for.
#[derive(Clone)]
pub enum ComponentExecutor {
    /// wasi:http 0.2 / 0.3 through wasmtime-wasi-http's `ProxyHandler`.
    WasiHttp(ProxyHandler<ComponentWorkers>),
    /// Spin 1.x `fermyon:spin/inbound-http`.
    SpinInbound(SpinInboundExecutor),
    /// WAGI (`executor = { type = "wagi" }`).
    Wagi(WagiExecutor),
}

/// What the stack hands the executor with each request: when it must end, and its concurrency
/// slot (if it holds one), which the guest keeps until it has produced the response (or, if it
/// outlives its deadline, until its instance is gone) — so a client that disconnects does not
/// free a slot while its guest still runs.
#[derive(Clone)]
pub struct Ticket {
    /// The request deadline (a chained request's is never past its caller's).
    pub deadline: tokio::time::Instant,
    /// The request's slot of its app's gate, shared with its response body.
    pub slot: Option<Arc<Slot>>,
}

impl ComponentExecutor {
    /// Handle one request (its `spin-*` headers already set) under `ticket`.
    pub async fn handle(
        &self,
        ticket: Ticket,
        req: http::Request<WasiBody>,
    ) -> wasmtime::Result<http::Response<WasiBody>> {
        match self {
            Self::WasiHttp(handler) if handler.state().policy.max_requests > 1 => {
                // A reused instance may be retired under this response: make its body say so.
                let served = ServedBy::new();
                let res = handler.handle((ticket, Some(served.clone())), req).await?;
                Ok(res.map(|body| InstanceBody::new(body, served).boxed_unsync()))
            }
            Self::WasiHttp(handler) => handler.handle((ticket, None), req).await,
            // These stores belong to the request future: they end with it, slot included.
            Self::SpinInbound(executor) => executor.handle(ticket.deadline, req).await,
            Self::Wagi(executor) => executor.handle(ticket.deadline, req).await,
        }
    }
}

/// Create the HTTP-executor (`type = "http"`, the default) executor for `component` of app
/// `app`, by the handler export detected at load. A command (no HTTP handler) is an error: only
/// the WAGI executor serves those.
pub fn executor(
    app: Arc<str>,
    component: Arc<PreparedComponent>,
) -> Result<ComponentExecutor, String> {
    match component.kind() {
        kind @ (ComponentHandlerKind::WasiHttpP2 | ComponentHandlerKind::WasiHttpP3) => {
            Ok(ComponentExecutor::WasiHttp(ProxyHandler::new(
                ComponentWorkers {
                    app,
                    component_id: component.id().into(),
                    component,
                    policy: ReusePolicy::for_kind(kind),
                },
            )))
        }
        ComponentHandlerKind::SpinInbound => SpinInboundExecutor::new(component.clone())
            .map(ComponentExecutor::SpinInbound)
            .map_err(|e| {
                format!(
                    "component `{}`: its fermyon:spin/inbound-http export does not match Spin's: {e:#}",
                    component.id()
                )
            }),
        ComponentHandlerKind::Command => Err(format!(
            "component `{}` exports no HTTP handler, only wasi:cli/run; use `executor = {{ type = \"wagi\" }}` \
             or export wasi:http/incoming-handler@0.2.x, wasi:http/handler@0.3.x or fermyon:spin/inbound-http",
            component.id()
        )),
    }
}

/// The [`HandlerState`]: how to make a worker (store + instance) for one component, and how many
/// requests it serves ([`ReusePolicy`]).
pub struct ComponentWorkers {
    app: Arc<str>,
    component: Arc<PreparedComponent>,
    component_id: Arc<str>,
    policy: ReusePolicy,
}

impl HandlerState for ComponentWorkers {
    type StoreData = HostState;
    type WorkerExpiration = InstanceExpiration;
    type WorkerState = InstanceRequests;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<HostState, InstanceExpiration, InstanceRequests>> {
        let mut store = self.component.new_store()?;
        let Some(pre) = self.component.wasi_http_pre() else {
            wasmtime::bail!(
                "component `{}` has no wasi:http handler",
                self.component.id()
            );
        };
        let proxy = pre.instantiate_async(&mut store).await?;
        let (state, expiration) = crate::reuse::instance(
            self.policy,
            self.app.clone(),
            self.component_id.clone(),
            self.component.cut_off(),
        );
        Ok(Instance {
            store,
            proxy,
            view: HostState::http_view,
            expiration,
            state,
        })
    }
}
