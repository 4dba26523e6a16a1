//! Service chaining: `http://<component>.spin.internal/...` requests from a guest, served
//! in-process by that component. [`ChainDispatch`] is the app's [`LocalDispatch`], which the
//! runtime holds weakly (see `RuntimeApp::install_local_dispatch`).
//!
//! As in Spin, the whole path is the trailing wildcard of a synthetic `/...` route, the request
//! arrives over `http` from `127.0.0.1:0`, and the `Host` header is removed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use http::{Request, header};
use lepton_outbound::{DispatchFuture, LocalDispatch};
use wasmtime_wasi_http::WasiBody;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::BodyExt;
use lepton_runtime::{AppLimits, CutOff};

use crate::app::run_with_deadline;
use crate::executor::{ComponentExecutor, Ticket};
use crate::gate::AppFront;
use crate::headers::SpinHeaders;
use crate::router::{RouteMatch, RouteTarget};
use crate::stack::LimitedBody;

/// The client address chained requests appear to come from.
const CHAINED_CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// One app's component executors, reachable by component id.
pub struct ChainDispatch {
    app: Arc<str>,
    executors: HashMap<String, ComponentExecutor>,
    front: AppFront,
    limits: AppLimits,
    cut_off: CutOff,
}

impl ChainDispatch {
    /// Dispatch over `executors`; requests pass the app's gate (never queueing) and its
    /// `limits`, count their limit hits in its metrics (they are not counted as requests of
    /// their own: the request that chained is), and are abandoned when `cut_off` is cut.
    pub fn new(
        app: Arc<str>,
        executors: HashMap<String, ComponentExecutor>,
        front: AppFront,
        limits: AppLimits,
        cut_off: CutOff,
    ) -> Self {
        Self {
            app,
            executors,
            front,
            limits,
            cut_off,
        }
    }

    /// The executor of `component`.
    pub fn executor(&self, component: &str) -> Option<&ComponentExecutor> {
        self.executors.get(component)
    }
}

impl LocalDispatch for ChainDispatch {
    fn has_component(&self, component: &str) -> bool {
        self.executors.contains_key(component)
    }

    fn dispatch(&self, component: &str, request: Request<WasiBody>) -> DispatchFuture {
        let Some(executor) = self.executors.get(component).cloned() else {
            return Box::pin(async { Err(wasmtime_wasi_http::Error::DestinationNotFound) });
        };
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let host = parts
            .uri
            .authority()
            .map_or_else(|| format!("{component}.spin.internal"), |a| a.to_string());
        let target = RouteTarget::Component(component.to_string());
        let m = RouteMatch {
            target: &target,
            raw_route: "/...",
            based_route: "/...",
            path_info: path,
            captures: Vec::new(),
        };
        let spin = SpinHeaders::new(&m, "http", &host, &path_and_query, CHAINED_CLIENT);
        parts.headers.remove(header::HOST);
        spin.apply(&mut parts.headers);
        let limits = self.limits;
        if crate::stack::declared_length(&parts.headers)
            .is_some_and(|len| len > limits.max_request_body_bytes)
        {
            tracing::warn!(app = %self.app, component, limit = "max_request_body_bytes", "chained request refused: declared body too large");
            self.front
                .metrics
                .limit_hit(lepton_metrics::LimitKind::MaxRequestBody);
            return Box::pin(async { Ok(crate::app::empty(http::StatusCode::PAYLOAD_TOO_LARGE)) });
        }
        // The caller already holds a slot of this app: wait for none, or it could wait on itself.
        let Ok(slot) = self.front.gate.try_enter() else {
            tracing::warn!(app = %self.app, component, limit = "max_concurrent_requests", "chained request refused: the app is at its concurrency limit");
            self.front
                .metrics
                .limit_hit(lepton_metrics::LimitKind::MaxConcurrent);
            return Box::pin(async { Ok(crate::stack::unavailable()) });
        };
        let parts_deadline = parts
            .extensions
            .get::<lepton_outbound::CallerDeadline>()
            .map(|d| tokio::time::Instant::from_std(d.0));
        let over_limit = Arc::new(AtomicBool::new(false));
        let body = LimitedBody {
            inner: body,
            remaining: limits.max_request_body_bytes,
            over_limit: over_limit.clone(),
        };
        let request = Request::from_parts(parts, body.boxed_unsync());
        let app = self.app.clone();
        let component = component.to_string();
        let cut_off = self.cut_off.signal();
        // Never past the caller's own deadline: a guest chaining to itself just before each
        // deadline must not outlive the request that started it.
        let caller = parts_deadline;
        Box::pin(async move {
            let own = tokio::time::Instant::now() + limits.request_timeout();
            let deadline = caller.map_or(own, |caller| own.min(caller));
            let slot = Arc::new(slot);
            let ticket = Ticket {
                deadline,
                slot: Some(slot.clone()),
            };
            let mut cut_off: Pin<Box<dyn Future<Output = ()> + Send + Sync>> = Box::pin(cut_off);
            let res = tokio::select! {
                res = run_with_deadline(&app, &component, &executor, request, ticket) => res,
                () = &mut cut_off => return Err(wasmtime_wasi_http::Error::ConnectionTerminated),
            };
            let res = if over_limit.load(Ordering::Acquire) {
                crate::app::empty(http::StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                res
            };
            let holding = crate::stack::Holding {
                version: None,
                slot: Some(slot),
                in_flight: None,
            };
            Ok(crate::stack::hold(res, app, holding, deadline, cut_off))
        })
    }
}
