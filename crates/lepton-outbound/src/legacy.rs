//! Spin 1.x's outbound HTTP, the unversioned `fermyon:spin/http` `send-request`, under the same
//! policy as wasi-http (self requests, service chaining, `block_networks` included). The request
//! and response bodies are whole byte lists. A destination the policy refuses is
//! `http-error.destination-not-allowed`; an unparsable URL is `invalid-url`.

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi_http::Error;

use crate::http::OutboundHttpHooks;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin-unversioned",
        world: "fermyon:spin/outbound-http",
        imports: { default: async },
    });
}

use bindings::fermyon::spin::http_types::{HttpError, Method, Request, Response};

/// Gives the legacy interface the store's outbound hooks.
pub trait OutboundView: Send {
    /// The store's outbound HTTP hooks.
    fn outbound_hooks(&mut self) -> &mut OutboundHttpHooks;
}

struct LegacyHttp;

impl HasData for LegacyHttp {
    type Data<'a> = &'a mut OutboundHttpHooks;
}

fn hooks<T: OutboundView>(state: &mut T) -> &mut OutboundHttpHooks {
    state.outbound_hooks()
}

/// Link `fermyon:spin/http` (and its `http-types`).
pub fn add_legacy_http_to_linker<T: OutboundView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    bindings::fermyon::spin::http::add_to_linker::<T, LegacyHttp>(linker, hooks::<T>)
}

impl bindings::fermyon::spin::http_types::Host for OutboundHttpHooks {}

impl bindings::fermyon::spin::http::Host for OutboundHttpHooks {
    async fn send_request(&mut self, req: Request) -> Result<Response, HttpError> {
        let ctx = self.context().clone();
        let request = to_http(req)?;
        let (response, _io) = ctx.send(request, None).await.map_err(|e| match e {
            Error::HttpRequestDenied => HttpError::DestinationNotAllowed,
            Error::HttpRequestUriInvalid => HttpError::InvalidUrl,
            other => {
                tracing::debug!(error = ?other, "legacy outbound HTTP request failed");
                HttpError::RequestError
            }
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| {
                tracing::debug!(error = ?e, "legacy outbound HTTP response body failed");
                HttpError::RuntimeError
            })?
            .to_bytes();
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok(Response {
            status: parts.status.as_u16(),
            headers: Some(headers),
            body: Some(body.to_vec()),
        })
    }
}

fn to_http(req: Request) -> Result<http::Request<wasmtime_wasi_http::WasiBody>, HttpError> {
    let uri: http::Uri = req.uri.parse().map_err(|_| HttpError::InvalidUrl)?;
    let method = match req.method {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Patch => http::Method::PATCH,
        Method::Head => http::Method::HEAD,
        Method::Options => http::Method::OPTIONS,
    };
    let body = Full::new(Bytes::from(req.body.unwrap_or_default()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    for (name, value) in &req.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) else {
            return Err(HttpError::RequestError);
        };
        request.headers_mut().append(name, value);
    }
    if let Some(authority) = uri.authority()
        && !request.headers().contains_key(HOST)
    {
        let host = HeaderValue::try_from(authority.as_str()).map_err(|_| HttpError::InvalidUrl)?;
        request.headers_mut().insert(HOST, host);
    }
    *request.uri_mut() = uri;
    Ok(request)
}
