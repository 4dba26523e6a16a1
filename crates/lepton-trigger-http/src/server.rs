//! The HTTP listener: accepts connections on one address and serves each request with whatever
//! [`HttpApp`] version is current at that moment — of its one app (an app's own address), or of
//! the app its host routes to ([`ServeTarget::Hosts`], the shared ingress; unknown hosts get 404).
//!
//! The current app lives in a `watch` channel so a supervisor can swap versions without touching
//! the listener: new requests see the new version at once, while in-flight requests keep the
//! `Arc` of the version they started with until they finish. A version is a [`Resident`]: the
//! first request to one not loaded waits for its load (shared with every request arriving
//! meanwhile); one whose load fails gets 503. Spin's health check
//! (`/.well-known/spin/health`) is answered without loading. Binding is separate from serving so
//! a bind error is reported for its app before that app's version is published, and so a new
//! address can be claimed before an old one is released.
//!
//! A listener given a TLS configuration ([`HttpListener::with_tls`], the `--https` ingress)
//! does each connection's handshake in the connection's own task (a slow one never holds up
//! accepting), bounded like a request head by the header read timeout, and then serves HTTP/2
//! or HTTP/1.1 (by ALPN) on the decrypted stream with the request scheme `https`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use lepton_runtime::Resident;

use crate::app::HttpApp;
use crate::ingress::{AppVersion, HostTable};
use crate::tls::http01::Http01Tokens;

/// What a listener serves.
#[derive(Clone)]
pub enum ServeTarget {
    /// One app: its own address.
    App(AppVersion),
    /// Many apps, by the request's host: the shared ingress.
    Hosts(watch::Receiver<Arc<HostTable>>),
}

impl ServeTarget {
    fn resolve<B>(&self, req: &hyper::Request<B>) -> Option<Resident<HttpApp>> {
        match self {
            Self::App(app) => Some(app.borrow().clone()),
            Self::Hosts(table) => table.borrow().resolve_request(req),
        }
    }
}

/// Connection hygiene for one listener: what a client that connects and then does too little
/// (slowloris), too much (huge headers, thousands of sockets) or nothing at all is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's head must arrive within this (HTTP/1: also the longest idle gap between
    /// keep-alive requests, as hyper starts this timer when it waits for the next head). A
    /// connection that sends nothing is closed after it too.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// The largest request head accepted: HTTP/1 answers 431 past it; HTTP/2's header list
    /// limit is the same number.
    pub max_header_bytes: usize,
    /// Open connections at once on this listener; further ones wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_header_bytes: 64 << 10,
            max_connections: 4096,
        }
    }
}

/// When a connection last had a request start or finish, and how many are in flight.
struct Activity {
    in_flight: AtomicUsize,
    /// Whether any request has started on the connection.
    used: std::sync::atomic::AtomicBool,
    last: std::sync::Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| *self.last.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Counts a request as in flight on its connection until its response body is done.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.used.store(true, Ordering::Release);
        activity.touch();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that counts as in flight on its connection until it is done.
struct Tracked {
    body: crate::stack::ResponseBody,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serve one request with `resident`, loading it first if it is not loaded.
async fn serve_resident(
    resident: Resident<HttpApp>,
    req: hyper::Request<Incoming>,
    scheme: &'static str,
    client: SocketAddr,
) -> Result<hyper::Response<crate::stack::ResponseBody>, crate::stack::Abandoned> {
    let app = match resident.hit() {
        Some(app) => app,
        None if req.uri().path() == HEALTH => {
            return Ok(crate::app::text(http::StatusCode::OK, "OK")
                .map(http_body_util::BodyExt::boxed_unsync));
        }
        None => match resident.get().await {
            Ok(app) => app,
            Err(err) => {
                let mut res = crate::app::text(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "the app could not be loaded; see the host's logs",
                );
                res.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("2"),
                );
                tracing::debug!(app = %err.app, error = %err.message, "request refused: its app failed to load");
                return Ok(res.map(http_body_util::BodyExt::boxed_unsync));
            }
        },
    };
    crate::stack::serve(app, req, scheme, client).await
}

/// Spin's health check path, answered without loading the app.
const HEALTH: &str = "/.well-known/spin/health";

/// Serve HTTP/1.1 or HTTP/2 (whichever the client speaks) on one connection's stream.
async fn serve_io<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    watcher.watch(conn).await
}

/// Resolves once the connection has been idle (nothing in flight) for `idle`, or has not sent
/// a first request within `first`.
async fn idle_expired(activity: Arc<Activity>, first: Duration, idle: Duration) {
    let mut check = Instant::now() + first.min(idle);
    loop {
        tokio::time::sleep_until(check).await;
        let Some(since) = activity.idle_since() else {
            check = Instant::now() + idle;
            continue;
        };
        let bound = if activity.used.load(Ordering::Acquire) {
            idle
        } else {
            first
        };
        if since + bound <= Instant::now() {
            return;
        }
        check = since + bound;
    }
}

/// A bound, not yet serving, listener.
pub struct HttpListener {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    challenges: Option<Http01Tokens>,
}

impl HttpListener {
    /// Bind `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            tls: None,
            challenges: None,
        })
    }

    /// Answer the ACME HTTP-01 challenges pending in `tokens`, for any host, before routing.
    pub fn with_acme_challenges(mut self, tokens: Http01Tokens) -> Self {
        self.challenges = Some(tokens);
        self
    }

    /// Speak TLS with `config` (certificates, ALPN) on every connection: HTTPS.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::from(config));
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` becomes `true`, then stop accepting and give in-flight connections
    /// up to `drain` to finish. Every request goes through the per-app stack
    /// ([`crate::stack::serve`]) of the version current when it arrives.
    pub async fn serve(
        self,
        target: ServeTarget,
        mut shutdown: watch::Receiver<bool>,
        drain: Duration,
        limits: ConnectionLimits,
    ) {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        // Connection tasks, so any still running after the drain timeout can be aborted.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            // Reap finished connections so the set stays as small as the open ones.
            while connections.try_join_next().is_some() {}
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let Ok(slot) = slot else { break };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, client) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(addr = %self.local_addr, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let target = target.clone();
            let activity = Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                used: std::sync::atomic::AtomicBool::new(false),
                last: std::sync::Mutex::new(Instant::now()),
            });
            let conn_activity = activity.clone();
            let challenges = self.challenges.clone();
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let answer = challenges.as_ref().and_then(|c| c.answer(req.uri().path()));
                let current = target.resolve(&req);
                let in_flight = InFlight::start(&conn_activity);
                async move {
                    let res = match (answer, current) {
                        (Some(answer), _) => answer,
                        (None, Some(app)) => serve_resident(app, req, scheme, client).await?,
                        (None, None) => crate::app::empty(http::StatusCode::NOT_FOUND)
                            .map(http_body_util::BodyExt::boxed_unsync),
                    };
                    Ok::<_, crate::stack::Abandoned>(res.map(|body| {
                        http_body_util::BodyExt::boxed_unsync(Tracked {
                            body,
                            _in_flight: in_flight,
                        })
                    }))
                }
            });
            // Taken before the drain can start, so a handshake finishing during the drain
            // still sees it and shuts its connection down gracefully at once.
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let tls = self.tls.clone();
            // From the accept: a TLS handshake and the first request head share the header
            // read timeout (slowloris over TLS is closed like slowloris in the clear).
            let idle = idle_expired(activity, limits.header_read_timeout, limits.idle_timeout);
            connections.spawn(async move {
                let _slot = slot;
                let serve = async move {
                    let Some(tls) = tls else {
                        return serve_io(&builder, stream, service, watcher).await;
                    };
                    match tls.accept(stream).await {
                        Ok(stream) => serve_io(&builder, stream, service, watcher).await,
                        Err(err) => Err(format!("TLS handshake failed: {err}").into()),
                    }
                };
                tokio::select! {
                    res = serve => if let Err(err) = res {
                        tracing::debug!(client = %client, error = %err, "connection ended with an error");
                    },
                    () = idle => tracing::debug!(client = %client, "idle connection closed"),
                }
            });
        }
        drop(self.listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(addr = %self.local_addr, "drain timed out; closing remaining connections");
            connections.abort_all();
        }
        while connections.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            used: std::sync::atomic::AtomicBool::new(false),
            last: std::sync::Mutex::new(Instant::now()),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_closes_after_the_header_timeout() {
        let start = Instant::now();
        idle_expired(activity(), Duration::from_secs(2), Duration::from_secs(60)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_the_connection_and_idleness_counts_from_its_end() {
        let a = activity();
        let start = Instant::now();
        let request = InFlight::start(&a);
        let watchdog = tokio::spawn(idle_expired(
            a.clone(),
            Duration::from_secs(1),
            Duration::from_secs(5),
        ));
        // A 30 s request: never idle while it runs.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!watchdog.is_finished());
        drop(request);
        watchdog.await.expect("watchdog");
        assert_eq!(start.elapsed(), Duration::from_secs(35));
    }
}
