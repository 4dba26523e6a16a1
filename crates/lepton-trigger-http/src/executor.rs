//! Running one request through a component: wasmtime-wasi-http's `ProxyHandler` drives a fresh
//! store and instance per request for both `wasi:http/incoming-handler@0.2` and
//! `wasi:http/handler@0.3` components.
//!
//! Each worker serves exactly one request (Spin's model for 0.2 and the simplest correct one for
//! 0.3; pooled 0.3 instance reuse can be switched on here later by accepting more requests per
//! worker). The store lives until the guest has finished, which may be after the response head was
//! sent, so streamed bodies complete.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use lepton_runtime::{HostState, PreparedComponent};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

/// Runs requests against one prepared component.
pub type ComponentExecutor = ProxyHandler<ComponentWorkers>;

/// Create the executor for `component` of app `app`.
pub fn executor(app: Arc<str>, component: Arc<PreparedComponent>) -> ComponentExecutor {
    ProxyHandler::new(ComponentWorkers { app, component })
}

/// The [`HandlerState`]: how to make a worker (store + instance) for one component.
pub struct ComponentWorkers {
    app: Arc<str>,
    component: Arc<PreparedComponent>,
}

impl HandlerState for ComponentWorkers {
    type StoreData = HostState;
    type WorkerExpiration = NoExpiration;
    type WorkerState = SingleRequest;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<HostState, NoExpiration, SingleRequest>> {
        let mut store = self.component.new_store()?;
        let proxy = self
            .component
            .proxy_pre()
            .instantiate_async(&mut store)
            .await?;
        Ok(Instance {
            store,
            proxy,
            view: HostState::http_view,
            expiration: NoExpiration,
            state: SingleRequest {
                app: self.app.clone(),
                component: self.component.id().into(),
            },
        })
    }
}

/// Workers never expire on their own; each exits after its one request (see [`SingleRequest`]).
pub struct NoExpiration;

impl WorkerExpiration for NoExpiration {
    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _state: WorkerStatus,
        _start: Instant,
    ) -> Poll<()> {
        Poll::Pending
    }
}

/// A worker that accepts exactly one request: a fresh instance per request.
pub struct SingleRequest {
    app: Arc<str>,
    component: Arc<str>,
}

impl WorkerState for SingleRequest {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, _concurrent: usize, total: usize) -> ShouldAccept {
        if total == 0 {
            ShouldAccept::Yes
        } else {
            ShouldAccept::Never
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, HostState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        drop(store);
        if let Err(err) = result {
            tracing::warn!(app = %self.app, component = %self.component, error = %format!("{err:#}"), "guest failed");
        }
    }
}
