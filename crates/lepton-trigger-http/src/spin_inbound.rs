//! The executor for Spin 1.x components exporting the unversioned `fermyon:spin/inbound-http`
//! interface (`handle-request: func(request) -> response`), with Spin's semantics (facts §3.4):
//!
//! - a fresh store and instance per request;
//! - methods outside GET/POST/PUT/DELETE/PATCH/HEAD/OPTIONS get an empty 405 (the component is
//!   instantiated, the guest is not called);
//! - `uri` is the path and query only, `params` is always empty, `body` is always `some`, the
//!   whole request body buffered;
//! - `headers` are the client's headers plus the `spin-*` headers;
//! - a response status outside 100..=600 becomes an empty 500.
//!
//! The WIT bound here (`wit/spin-unversioned`) is copied from spin-sdk 5.2.0.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lepton_runtime::PreparedComponent;
use wasmtime_wasi_http::WasiBody;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-unversioned",
        world: "fermyon:spin/inbound",
        exports: { default: async },
    });
}

use bindings::InboundPre;
use bindings::fermyon::spin::http_types::{Method, Request as SpinRequest};

/// Runs requests through a component's `fermyon:spin/inbound-http` export.
#[derive(Clone)]
pub struct SpinInboundExecutor {
    component: Arc<PreparedComponent>,
    pre: InboundPre<lepton_runtime::HostState>,
}

impl SpinInboundExecutor {
    /// The executor for `component`, whose export was detected at load. Fails if the export's
    /// signature is not the one Spin defines.
    pub fn new(component: Arc<PreparedComponent>) -> wasmtime::Result<Self> {
        let pre = InboundPre::new(component.instance_pre().clone())?;
        Ok(Self { component, pre })
    }

    /// Handle one request (with its `spin-*` headers already set).
    pub async fn handle(
        &self,
        deadline: tokio::time::Instant,
        req: Request<WasiBody>,
    ) -> wasmtime::Result<Response<WasiBody>> {
        let mut store = self.component.new_store()?;
        store.data_mut().shorten_deadline(deadline.into_std());
        let instance = self.pre.instantiate_async(&mut store).await?;

        let (parts, body) = req.into_parts();
        let Some(method) = spin_method(&parts.method) else {
            return Ok(response(StatusCode::METHOD_NOT_ALLOWED, Bytes::new()));
        };
        let body = body.collect().await?.to_bytes();
        let uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_string());
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let request = SpinRequest {
            method,
            uri,
            headers,
            params: Vec::new(),
            body: Some(body.to_vec()),
        };
        let res = instance
            .fermyon_spin_inbound_http()
            .call_handle_request(&mut store, &request)
            .await?;

        if !(100..=600).contains(&res.status) {
            tracing::error!(
                component = %self.component.id(),
                status = res.status,
                "malformed HTTP status code from fermyon:spin/inbound-http"
            );
            return Ok(response(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()));
        }
        let status = StatusCode::from_u16(res.status)?;
        let mut out = response(status, Bytes::from(res.body.unwrap_or_default()));
        for (name, value) in res.headers.unwrap_or_default() {
            let name = HeaderName::try_from(name.as_str())?;
            let value = HeaderValue::try_from(value.as_str())?;
            out.headers_mut().append(name, value);
        }
        Ok(out)
    }
}

fn spin_method(method: &http::Method) -> Option<Method> {
    Some(match *method {
        http::Method::GET => Method::Get,
        http::Method::POST => Method::Post,
        http::Method::PUT => Method::Put,
        http::Method::DELETE => Method::Delete,
        http::Method::PATCH => Method::Patch,
        http::Method::HEAD => Method::Head,
        http::Method::OPTIONS => Method::Options,
        _ => return None,
    })
}

fn response(status: StatusCode, body: Bytes) -> Response<WasiBody> {
    let mut res = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_spins_seven_methods_map() {
        assert!(matches!(spin_method(&http::Method::GET), Some(Method::Get)));
        assert!(matches!(
            spin_method(&http::Method::OPTIONS),
            Some(Method::Options)
        ));
        assert!(spin_method(&http::Method::TRACE).is_none());
        assert!(spin_method(&http::Method::CONNECT).is_none());
        let custom = http::Method::from_bytes(b"PROPFIND").expect("method");
        assert!(spin_method(&custom).is_none());
    }
}
