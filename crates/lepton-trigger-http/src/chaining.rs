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

use crate::executor::ComponentExecutor;
use crate::headers::SpinHeaders;
use crate::router::{RouteMatch, RouteTarget};

/// The client address chained requests appear to come from.
const CHAINED_CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// One app's component executors, reachable by component id.
pub struct ChainDispatch {
    app: Arc<str>,
    executors: HashMap<String, ComponentExecutor>,
}

impl ChainDispatch {
    /// Dispatch over `executors`.
    pub fn new(app: Arc<str>, executors: HashMap<String, ComponentExecutor>) -> Self {
        Self { app, executors }
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
        let request = Request::from_parts(parts, body);
        let app = self.app.clone();
        let component = component.to_string();
        Box::pin(async move {
            // The caller gets what an outside client would: an empty 500 when the handler fails.
            match executor.handle((), request).await {
                Ok(response) => Ok(response),
                Err(err) => {
                    tracing::error!(app = %app, component = %component, error = %format!("{err:#}"), "chained request failed");
                    Ok(crate::app::empty(http::StatusCode::INTERNAL_SERVER_ERROR))
                }
            }
        })
    }
}
