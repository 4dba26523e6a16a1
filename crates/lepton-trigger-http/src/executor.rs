//! Running one request through a component: wasmtime-wasi-http's `ProxyHandler` drives a fresh
//! store and instance per request for both `wasi:http/incoming-handler@0.2` and
//! `wasi:http/handler@0.3` components; [`ComponentExecutor`] also dispatches to the Spin 1.x
//! ([`crate::spin_inbound`]) and WAGI ([`crate::wagi`]) executors.
//!
//! Each worker serves exactly one request (Spin's model for 0.2 and the simplest correct one for
//! 0.3; pooled 0.3 instance reuse can be switched on here later by accepting more requests per
//! worker). The store lives until the guest has finished, which may be after the response head was
//! sent, so streamed bodies complete — but never past the app's `request_timeout_ms` or its
//! version's cut-off: [`RequestExpiration`] ends the worker then (dropping its store and pool
//! slot) even while the guest waits on I/O, where the epoch callback cannot reach it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use lepton_runtime::{ComponentHandlerKind, HostState, PreparedComponent};
use wasmtime_wasi_http::WasiBody;

use crate::gate::Slot;
use crate::spin_inbound::SpinInboundExecutor;
use crate::wagi::WagiExecutor;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

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
/// slot (if it holds one), which the guest's worker keeps until it is gone — so a client that
/// disconnects does not free a slot while its guest still runs.
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
            Self::WasiHttp(handler) => handler.handle(ticket, req).await,
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
        ComponentHandlerKind::WasiHttpP2 | ComponentHandlerKind::WasiHttpP3 => Ok(
            ComponentExecutor::WasiHttp(ProxyHandler::new(ComponentWorkers { app, component })),
        ),
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

/// The [`HandlerState`]: how to make a worker (store + instance) for one component.
pub struct ComponentWorkers {
    app: Arc<str>,
    component: Arc<PreparedComponent>,
}

impl HandlerState for ComponentWorkers {
    type StoreData = HostState;
    type WorkerExpiration = RequestExpiration;
    type WorkerState = SingleRequest;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<HostState, RequestExpiration, SingleRequest>> {
        let mut store = self.component.new_store()?;
        let Some(pre) = self.component.wasi_http_pre() else {
            wasmtime::bail!(
                "component `{}` has no wasi:http handler",
                self.component.id()
            );
        };
        let proxy = pre.instantiate_async(&mut store).await?;
        let sooner = Arc::new(Mutex::new(None));
        Ok(Instance {
            store,
            proxy,
            view: HostState::http_view,
            expiration: RequestExpiration {
                deadline: Box::pin(tokio::time::sleep(
                    self.component.limits().request_timeout() + STOP_GRACE,
                )),
                sooner: sooner.clone(),
                cut_off: Box::pin(self.component.cut_off().signal()),
            },
            state: SingleRequest {
                app: self.app.clone(),
                component: self.component.id().into(),
                sooner,
                ticket: Mutex::new(None),
            },
        })
    }
}

/// How long after the request deadline a worker is ended: the stack answers 504 (or aborts the
/// stream) at the deadline itself, and the worker goes right after, so the client sees the
/// deadline rather than the worker's own failure.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_millis(100);

/// Ends a worker (its one request included) at the app's request deadline or when its version
/// is cut off. Polled by wasi-http outside the guest's event loop, so it fires even while the
/// guest is blocked.
pub struct RequestExpiration {
    /// The component's own `request_timeout_ms` from instantiation, until the request arrives.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The request's own deadline (plus [`STOP_GRACE`]), set by
    /// [`SingleRequest::on_request_start`] when it is sooner.
    sooner: Arc<Mutex<Option<tokio::time::Instant>>>,
    cut_off: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
}

impl WorkerExpiration for RequestExpiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _state: WorkerStatus,
        _start: Instant,
    ) -> Poll<()> {
        if self.cut_off.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let sooner = self.sooner.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(at) = sooner
            && at < self.deadline.deadline()
        {
            self.deadline.as_mut().reset(at);
        }
        self.deadline.as_mut().poll(cx)
    }
}

/// A worker that accepts exactly one request: a fresh instance per request. It keeps the
/// request's [`Ticket`] (its slot) until the worker ends.
pub struct SingleRequest {
    app: Arc<str>,
    component: Arc<str>,
    sooner: Arc<Mutex<Option<tokio::time::Instant>>>,
    ticket: Mutex<Option<Ticket>>,
}

impl WorkerState for SingleRequest {
    type StoreData = HostState;
    type RequestData = Ticket;

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        ticket: Ticket,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        store
            .data_mut()
            .shorten_deadline(ticket.deadline.into_std());
        let end = ticket.deadline + STOP_GRACE;
        *self.sooner.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
        *self.ticket.lock().unwrap_or_else(|e| e.into_inner()) = Some(ticket);
        Box::pin(tokio::time::sleep_until(end))
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        drop(store);
        // The guest is gone: its slot may go too (once its response body is done as well).
        drop(self.ticket.lock().unwrap_or_else(|e| e.into_inner()).take());
        match result {
            Ok(()) => {}
            Err(err) if crate::stack::is_stopped_by_limits(&err) => {
                tracing::warn!(app = %self.app, component = %self.component, error = %format!("{err:#}"), "guest stopped");
            }
            Err(err) => {
                tracing::warn!(app = %self.app, component = %self.component, error = %format!("{err:#}"), "guest failed");
            }
        }
    }
}
