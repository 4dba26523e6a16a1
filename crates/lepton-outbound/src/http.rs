//! Outbound HTTP under a component's policy: the [`WasiHttpHooks`] every request's store uses for
//! `wasi:http/outgoing-handler@0.2` and the `wasi:http@0.3` client, and the seam through which the
//! HTTP trigger serves service-chaining requests in-process ([`LocalDispatch`]).
//!
//! What a guest's request becomes (Spin's behaviour, facts §3.7):
//! - **self request** (a relative URL, an empty host such as the SDK's `:443` placeholder, or host
//!   `self.alt`; over wasi:http 0.2 and 0.3 alike — [`link_p2_relative_urls`] and
//!   [`link_p3_relative_urls`] let a request without an authority reach this point):
//!   allowed only by a `self` / `self.alt` / `*` host entry; sent over plain HTTP to
//!   the app's real listen address. The destination comes only from that address, never from a
//!   `Host` header (CVE-2024-32980), and the `Host` header sent is the listen address — or, for
//!   an app served only by host on a shared ingress, the ingress's address with one of the app's
//!   own hosts as `Host` ([`SelfOrigin::host`]), which the ingress routes back to the same app.
//! - **`http://<component>.spin.internal/...`**: checked like any host, then served in-process by
//!   that component through the installed [`LocalDispatch`].
//! - **anything else**: checked as `scheme://host:port` (the scheme's default port when the URL
//!   has none), then, when `block_networks` is configured, its resolved addresses are checked;
//!   then sent with wasmtime-wasi-http's default sender (TLS with the webpki roots).
//! - denied → `ErrorCode::HttpRequestDenied`; a blocked address → `DestinationIpProhibited`.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};

use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use wasmtime::component::{Accessor, Resource};
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types as p2_types};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::p3::bindings::http::{client as p3_client, types as p3_types};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks, WasiHttpView};

use crate::allowed::{Target, default_port};
use crate::policy::OutboundPolicy;

/// The host of self requests that name no host.
const SELF_ALT: &str = "self.alt";
/// Service-chaining host suffix.
const SPIN_INTERNAL: &str = ".spin.internal";

/// A boxed response future, as [`LocalDispatch`] returns.
pub type DispatchFuture =
    Pin<Box<dyn Future<Output = Result<Response<WasiBody>, Error>> + Send + 'static>>;

/// Serves a request in-process with one of the app's components (service chaining). Implemented by
/// the HTTP trigger, which owns routing and the `spin-*` headers; the runtime only holds it.
pub trait LocalDispatch: Send + Sync {
    /// Whether `component` can be reached by chaining (it has an HTTP trigger).
    fn has_component(&self, component: &str) -> bool;

    /// Serve `request` with `component`, its whole path being the route's trailing wildcard.
    fn dispatch(&self, component: &str, request: Request<WasiBody>) -> DispatchFuture;
}

/// Where an app's [`LocalDispatch`] is installed once its trigger exists. Shared by all of the
/// app's components; holds the dispatcher weakly so the trigger (which owns the components) and
/// the components do not keep each other alive.
#[derive(Default)]
pub struct LocalDispatchSlot(OnceLock<Weak<dyn LocalDispatch>>);

impl LocalDispatchSlot {
    /// Install the dispatcher; `false` if one was already installed.
    pub fn install(&self, dispatch: Weak<dyn LocalDispatch>) -> bool {
        self.0.set(dispatch).is_ok()
    }

    fn get(&self) -> Option<Arc<dyn LocalDispatch>> {
        self.0.get().and_then(Weak::upgrade)
    }
}

impl std::fmt::Debug for LocalDispatchSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LocalDispatchSlot")
            .field(&self.0.get().is_some())
            .finish()
    }
}

/// One component's outbound HTTP context, built once at load and shared by every request.
#[derive(Debug)]
pub struct OutboundHttp {
    app: Arc<str>,
    component: Arc<str>,
    policy: Arc<OutboundPolicy>,
    self_origin: Option<SelfOrigin>,
    chaining: Arc<LocalDispatchSlot>,
}

/// Where an app's self requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfOrigin {
    /// The address to connect to: the app's own listener, or a shared ingress.
    pub addr: SocketAddr,
    /// The `Host` to send (one of the app's hosts, for an ingress); `None` sends `addr`.
    pub host: Option<String>,
}

impl From<SocketAddr> for SelfOrigin {
    fn from(addr: SocketAddr) -> Self {
        Self { addr, host: None }
    }
}

impl OutboundHttp {
    /// The context of `component` of `app`: its policy, the app's listen address (the target of
    /// self requests; `None` refuses them) and the app's chaining slot.
    pub fn new(
        app: &str,
        component: &str,
        policy: Arc<OutboundPolicy>,
        self_origin: Option<SelfOrigin>,
        chaining: Arc<LocalDispatchSlot>,
    ) -> Self {
        // An app listening on every interface is reached over loopback.
        let self_origin = self_origin.map(|mut origin| {
            let addr = &mut origin.addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                });
            }
            origin
        });
        Self {
            app: app.into(),
            component: component.into(),
            policy,
            self_origin,
            chaining,
        }
    }

    /// A context that denies every request (no `allowed_outbound_hosts`).
    pub fn deny_all() -> Self {
        Self::new(
            "",
            "",
            Arc::new(OutboundPolicy::deny_all()),
            None,
            Arc::default(),
        )
    }

    /// The component's policy.
    pub fn policy(&self) -> &Arc<OutboundPolicy> {
        &self.policy
    }

    pub(crate) async fn send(
        self: Arc<Self>,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(Response<WasiBody>, IoFuture), Error> {
        let uri = request.uri().clone();
        let host = uri.authority().map(|a| a.host()).unwrap_or("");
        if host.is_empty() || host.eq_ignore_ascii_case(SELF_ALT) {
            self.prepare_self_request(&mut request)?;
            return send_default(request, options).await;
        }
        let scheme = uri.scheme_str().unwrap_or("https");
        let port = uri
            .port_u16()
            .or_else(|| default_port(scheme))
            .ok_or(Error::HttpRequestUriInvalid)?;
        let target = Target::new(scheme, host, port);
        if !self.policy.entries().iter().any(|a| a.allows(&target)) {
            tracing::debug!(app = %self.app, component = %self.component, %target, "outbound HTTP request denied by allowed_outbound_hosts");
            return Err(Error::HttpRequestDenied);
        }
        let host_lower = target.host();
        if let Some(id) = host_lower.strip_suffix(SPIN_INTERNAL) {
            return self.chain(id, request).await;
        }
        self.check_blocked(&target).await?;
        send_default(request, options).await
    }

    fn prepare_self_request(&self, request: &mut Request<WasiBody>) -> Result<(), Error> {
        if !(self.policy.allows_self("http") || self.policy.allows_self("https")) {
            tracing::debug!(app = %self.app, component = %self.component, uri = %request.uri(), "self request denied: no `self` entry in allowed_outbound_hosts");
            return Err(Error::HttpRequestDenied);
        }
        let Some(origin) = &self.self_origin else {
            tracing::error!(app = %self.app, component = %self.component, "self request, but the app's listen address is unknown");
            return Err(Error::HttpRequestUriInvalid);
        };
        let authority = origin.addr.to_string();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        *request.uri_mut() = Uri::builder()
            .scheme("http")
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|_| Error::HttpRequestUriInvalid)?;
        // The destination is the listen address alone; the Host header says the same, or names
        // the app on a shared ingress.
        let host = origin.host.clone().unwrap_or(authority);
        let host = HeaderValue::try_from(host).map_err(|_| Error::HttpRequestUriInvalid)?;
        request.headers_mut().insert(HOST, host);
        Ok(())
    }

    async fn chain(
        &self,
        id: &str,
        request: Request<WasiBody>,
    ) -> Result<(Response<WasiBody>, IoFuture), Error> {
        let Some(dispatch) = self.chaining.get() else {
            tracing::warn!(app = %self.app, component = %self.component, target = id, "service chaining requested but the app has no HTTP trigger installed");
            return Err(Error::DestinationNotFound);
        };
        if !dispatch.has_component(id) {
            tracing::debug!(app = %self.app, component = %self.component, target = id, "service chaining to an unknown component");
            return Err(Error::DestinationNotFound);
        }
        let response = dispatch.dispatch(id, request).await?;
        Ok((response, Box::new(async { Ok(()) })))
    }

    async fn check_blocked(&self, target: &Target) -> Result<(), Error> {
        let blocked = self.policy.blocked_networks();
        if blocked.is_empty() {
            return Ok(());
        }
        let addrs: Vec<IpAddr> = match target.host().parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((target.host(), target.port()))
                .await
                .map_err(|_| Error::DnsError {
                    rcode: Some("address not available".into()),
                    info_code: Some(0),
                })?
                .map(|a| a.ip())
                .collect(),
        };
        if let Some(ip) = addrs.iter().find(|ip| blocked.is_blocked(**ip)) {
            tracing::debug!(app = %self.app, component = %self.component, %target, %ip, "outbound HTTP request to a blocked network");
            return Err(Error::DestinationIpProhibited);
        }
        Ok(())
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

async fn send_default(
    request: Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<(Response<WasiBody>, IoFuture), Error> {
    let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
    Ok((
        response.map(BodyExt::boxed_unsync),
        Box::new(io) as IoFuture,
    ))
}

/// The wasi-http hooks of one request's store.
#[derive(Debug, Clone)]
pub struct OutboundHttpHooks {
    ctx: Arc<OutboundHttp>,
    deadline: Option<std::time::Instant>,
}

/// The deadline of the request whose guest sends an outbound request, carried in the request's
/// extensions so a chained request (`*.spin.internal`) never outlives its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerDeadline(pub std::time::Instant);

impl OutboundHttpHooks {
    /// Hooks applying `ctx`.
    pub fn new(ctx: Arc<OutboundHttp>) -> Self {
        Self {
            ctx,
            deadline: None,
        }
    }

    /// The same hooks, attaching `deadline` (the calling request's) to every outbound request
    /// as a [`CallerDeadline`].
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Bring the attached deadline forward to `to` if it is earlier (or attach it).
    pub fn shorten_deadline(&mut self, to: std::time::Instant) {
        self.deadline = Some(self.deadline.map_or(to, |d| d.min(to)));
    }

    /// The component's outbound HTTP context.
    pub fn context(&self) -> &Arc<OutboundHttp> {
        &self.ctx
    }
}

impl Default for OutboundHttpHooks {
    fn default() -> Self {
        Self::new(Arc::new(OutboundHttp::deny_all()))
    }
}

impl WasiHttpHooks for OutboundHttpHooks {
    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), Error>> + Send> {
        if let Some(deadline) = self.deadline {
            request.extensions_mut().insert(CallerDeadline(deadline));
        }
        Box::new(self.ctx.clone().send(request, options))
    }
}

/// The `wasi:http` 0.2 version wasmtime-wasi-http links (guests importing any 0.2.x match it).
const P2_OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// Let `wasi:http/outgoing-handler@0.2` accept relative URLs. Call after wasmtime-wasi-http's
/// p2 interfaces are linked: it redefines `handle` so that a request with no authority (what an
/// `http::Request` built from `/path` becomes) is given `self.alt` — meaning the same thing, a
/// self request — before wasmtime-wasi-http's own implementation runs, which otherwise cannot
/// build a URI for it and answers `HttpRequestUriInvalid`.
pub fn link_p2_relative_urls<T: WasiHttpView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = define_p2_handle(linker);
    linker.allow_shadowing(false);
    result
}

type P2HandleResult = (Result<Resource<HostFutureIncomingResponse>, p2_types::ErrorCode>,);

fn define_p2_handle<T: WasiHttpView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    let mut instance = linker.instance(P2_OUTGOING_HANDLER)?;
    instance.func_wrap(
        "handle",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (request, options): (
            Resource<HostOutgoingRequest>,
            Option<Resource<p2_types::RequestOptions>>,
        )|
         -> wasmtime::Result<P2HandleResult> {
            let mut view = store.data_mut().http();
            if let Ok(req) = view.table.get_mut(&request)
                && req.authority.as_deref().is_none_or(str::is_empty)
            {
                req.authority = Some(SELF_ALT.to_string());
            }
            match outgoing_handler::Host::handle(&mut view, request, options) {
                Ok(response) => Ok((Ok(response),)),
                Err(err) => Ok((Err(err.downcast()?),)),
            }
        },
    )
}

/// The `wasi:http` 0.3 client interface wasmtime-wasi-http links (guests importing any 0.3.x
/// match it).
const P3_CLIENT: &str = "wasi:http/client@0.3.0";

/// Let `wasi:http/client@0.3` accept relative URLs, as [`link_p2_relative_urls`] does for 0.2.
/// Call after wasmtime-wasi-http's p3 interfaces are linked: it redefines `send` so that a
/// request with no authority (what spin-sdk 7 and the `wasip3` crate make of an `http::Request`
/// built from `/path`) is given `self.alt` before wasmtime-wasi-http's own `send` runs, which
/// otherwise cannot build a URI for it and fails with `HttpRequestUriInvalid`. The request then
/// reaches [`OutboundHttpHooks`] as a self request, under the same `self` policy. An empty host
/// with a port (`http://:80/path`) already arrives there as a self request.
pub fn link_p3_relative_urls<T: WasiHttpView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = define_p3_send(linker);
    linker.allow_shadowing(false);
    result
}

type P3SendResult = (Result<Resource<wasmtime_wasi_http::p3::Response>, p3_types::ErrorCode>,);

fn define_p3_send<T: WasiHttpView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    let mut instance = linker.instance(P3_CLIENT)?;
    instance.func_wrap_concurrent(
        "send",
        |accessor: &Accessor<T>, (request,): (Resource<wasmtime_wasi_http::p3::Request>,)| {
            Box::pin(async move {
                accessor.with(|mut access| {
                    let view = access.get().http();
                    if let Ok(req) = view.table.get_mut(&request)
                        && req.authority.is_none()
                    {
                        req.authority = Some(http::uri::Authority::from_static(SELF_ALT));
                    }
                });
                let http = accessor.with_getter::<wasmtime_wasi_http::WasiHttp>(T::http);
                let sent = <wasmtime_wasi_http::WasiHttp as p3_client::HostWithStore<T>>::send(
                    &http, request,
                )
                .await;
                match sent {
                    Ok(response) => Ok::<P3SendResult, wasmtime::Error>((Ok(response),)),
                    Err(err) => Ok((Err(err.downcast()?),)),
                }
            })
        },
    )
}

#[cfg(test)]
mod tests {
    /// spin-sdk 5.2 gives a relative URL the authority `:443` (or `:80`); wasmtime-wasi-http
    /// builds the request URI from it, and this module sees an empty host: a self request.
    #[test]
    fn placeholder_authority_is_an_empty_host() {
        let uri = http::Uri::builder()
            .scheme("https")
            .authority(":443")
            .path_and_query("/x")
            .build()
            .expect("uri");
        assert_eq!(uri.authority().map(|a| a.host()), Some(""));
    }
}
