//! The per-app request stack every request passes on its way to a component, in this order:
//!
//! 1. Spin's reserved `/.well-known/spin/` paths are answered first (health checks keep working
//!    while the app is saturated).
//! 2. **Body limit**: a declared `Content-Length` over `max_request_body_bytes` is refused with
//!    413 before anything runs; a streamed body is counted as the guest reads it, and a body that
//!    crosses the limit ends with an error for the guest and a 413 for the client (if no
//!    response head was sent). Nothing is buffered.
//! 3. **Concurrency** ([`crate::gate::AppGate`]): a free slot, or a FIFO wait in the app's queue
//!    (bounded by the request timeout), or 503 with `Retry-After` when the queue is full.
//! 4. **Deadline**: the request may run `request_timeout_ms` from when it got its slot to its
//!    last response byte. No response head by then → 504; a response still streaming then is
//!    aborted. The guest itself is stopped at the same deadline by the runtime (epoch callback,
//!    worker expiration), whether or not the client is still there.
//! 5. **Cut-off**: when the version outlives its drain timeout, its requests are abandoned
//!    (the connection is closed) and its guests stopped.
//!
//! Every request is measured in the app's metrics (`lepton-metrics`): in flight until its body
//! is done, its status class and latency when its response head is ready, and each limit it
//! hit (`max_request_body_bytes`, `max_queued_requests`, `request_timeout_ms`).
//!
//! The slot, the version and the deadline stay attached to the response body
//! ([`StackBody`]) until it is done, so streaming responses count as running requests; the guest's
//! worker holds the slot too (through the [`Ticket`]), so a client that goes away does not free
//! it while its guest still runs. Chained
//! requests (`*.spin.internal`) pass steps 2–5 through [`crate::chaining`], taking a slot only
//! if one is free.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;
use wasmtime_wasi_http::WasiBody;

use crate::app::{HttpApp, TimedOut, empty};
use crate::executor::Ticket;
use crate::gate::Slot;
use lepton_metrics::{InFlightGuard, LimitKind};

/// The response body type of the stack (what listeners send).
pub type ResponseBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// A request abandoned because its app version was cut off after its drain timeout; the
/// listener closes the connection.
#[derive(Debug)]
pub struct Abandoned;

impl std::fmt::Display for Abandoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request cut off: its app version outlived the drain timeout")
    }
}

impl std::error::Error for Abandoned {}

/// Serve one request that arrived on a listener speaking `scheme` from `client`, through the
/// whole stack, with `app` (the version current when it arrived).
pub async fn serve<B>(
    app: Arc<HttpApp>,
    req: Request<B>,
    scheme: &'static str,
    client: SocketAddr,
) -> Result<Response<ResponseBody>, Abandoned>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    // The request's trace span (exported over OTLP when configured; otherwise disabled, and
    // then creating it costs one atomic load).
    let span = tracing::info_span!(
        target: "lepton::trace",
        "request",
        app = %app.name(),
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    tracing::Instrument::instrument(serve_in_span(app, req, scheme, client), span).await
}

async fn serve_in_span<B>(
    app: Arc<HttpApp>,
    req: Request<B>,
    scheme: &'static str,
    client: SocketAddr,
) -> Result<Response<ResponseBody>, Abandoned>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    if let Some(res) = app.reserved_response(req.uri().path()) {
        return Ok(res.map(BodyExt::boxed_unsync));
    }
    let started = Instant::now();
    let metrics = app.metrics().clone();
    let in_flight = metrics.in_flight();
    let line = RequestLine::capture(&req);
    let done = |status: StatusCode| {
        metrics.record_response(status.as_u16(), started.elapsed());
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if let Some(line) = &line {
            line.log(app.name(), status, started);
        }
    };
    let refuse = |res: Response<ResponseBody>, limit: LimitKind| {
        metrics.limit_hit(limit);
        done(res.status());
        Ok(res)
    };
    if !lepton_runtime::limits_enforced() {
        let far = Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600);
        let ticket = Ticket {
            deadline: far,
            slot: None,
        };
        let res = app.handle(req, scheme, client, ticket).await;
        done(res.status());
        let name: Arc<str> = app.name().into();
        let cut_off = Box::pin(app.cut_off_switch().signal());
        let hold_on = Holding {
            version: Some(app),
            slot: None,
            in_flight: Some(in_flight),
        };
        return Ok(hold(res, name, hold_on, far, cut_off));
    }
    let limits = *app.limits();
    let max_body = limits.max_request_body_bytes;
    if declared_length(req.headers()).is_some_and(|len| len > max_body) {
        tracing::warn!(app = %app.name(), limit = "max_request_body_bytes", max_request_body_bytes = max_body, "request refused: declared body too large");
        let res = empty(StatusCode::PAYLOAD_TOO_LARGE).map(BodyExt::boxed_unsync);
        return refuse(res, LimitKind::MaxRequestBody);
    }
    let over_limit = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| LimitedBody {
        inner: body,
        remaining: max_body,
        over_limit: over_limit.clone(),
    });

    let mut cut_off = Box::pin(app.cut_off_switch().signal());
    let timeout = limits.request_timeout();
    let slot = tokio::select! {
        entered = tokio::time::timeout(timeout, app.gate().enter()) => match entered {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => {
                tracing::warn!(app = %app.name(), limit = "max_queued_requests", max_concurrent_requests = limits.max_concurrent_requests, max_queued_requests = limits.max_queued_requests, "request refused: the app is at its concurrency limit and its queue is full");
                return refuse(unavailable(), LimitKind::MaxQueued);
            }
            Err(_) => {
                tracing::warn!(app = %app.name(), limit = "request_timeout_ms", "request refused: it waited in the queue for request_timeout_ms");
                return refuse(unavailable(), LimitKind::RequestTimeout);
            }
        },
        () = &mut cut_off => return Err(Abandoned),
    };
    let deadline = Instant::now() + timeout;
    let slot = Arc::new(slot);
    let ticket = Ticket {
        deadline,
        slot: Some(slot.clone()),
    };
    let res = tokio::select! {
        res = app.handle(req, scheme, client, ticket) => res,
        () = &mut cut_off => return Err(Abandoned),
    };
    let res = if over_limit.load(Ordering::Acquire) {
        tracing::warn!(app = %app.name(), limit = "max_request_body_bytes", max_request_body_bytes = max_body, "request refused: body too large");
        metrics.limit_hit(LimitKind::MaxRequestBody);
        empty(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        if res.extensions().get::<TimedOut>().is_some() {
            metrics.limit_hit(LimitKind::RequestTimeout);
        }
        res
    };
    done(res.status());
    let name: Arc<str> = app.name().into();
    let hold_on = Holding {
        version: Some(app),
        slot: Some(slot),
        in_flight: Some(in_flight),
    };
    let res = crate::coalesce::first_frames(res).await;
    Ok(hold(res, name, hold_on, deadline, cut_off))
}

/// The request log line (`lepton::request` target, info level): app, method, path, status and
/// time to the response head. Captured only when that target is enabled, so turning it off
/// (`LEPTON_LOG=info,lepton::request=off`) costs nothing per request.
struct RequestLine {
    method: http::Method,
    path: Box<str>,
}

impl RequestLine {
    fn capture<B>(req: &Request<B>) -> Option<Self> {
        tracing::enabled!(target: "lepton::request", tracing::Level::INFO).then(|| Self {
            method: req.method().clone(),
            path: req.uri().path().into(),
        })
    }

    fn log(&self, app: &str, status: StatusCode, started: Instant) {
        tracing::info!(
            target: "lepton::request",
            app,
            method = %self.method,
            path = %self.path,
            status = status.as_u16(),
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }
}

/// What a response body keeps alive until it is done: the app version it runs on, its
/// concurrency slot, and its place in the in-flight gauge.
// Held, never read: dropping them (when the body is done) is what ends the request.
#[allow(dead_code)]
pub(crate) struct Holding {
    pub(crate) version: Option<Arc<HttpApp>>,
    pub(crate) slot: Option<Arc<Slot>>,
    pub(crate) in_flight: Option<InFlightGuard>,
}

/// Attach what the request holds (`holding`) and its deadline to a response body.
pub(crate) fn hold(
    res: Response<WasiBody>,
    name: Arc<str>,
    holding: Holding,
    deadline: Instant,
    cut_off: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
) -> Response<ResponseBody> {
    res.map(|body| {
        StackBody {
            body,
            deadline,
            timer: None,
            cut_off,
            _holding: holding,
            name,
        }
        .boxed_unsync()
    })
}

pub(crate) fn unavailable() -> Response<ResponseBody> {
    let mut res = empty(StatusCode::SERVICE_UNAVAILABLE);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res.map(BodyExt::boxed_unsync)
}

pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a guest error is the runtime stopping it for a limit (deadline, cut-off) rather than
/// a fault of its own.
pub fn is_stopped_by_limits(err: &wasmtime::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<lepton_runtime::GuestStopped>()
            || cause.is::<wasmtime_wasi_http::handler::ExpirationError>()
    }) || format!("{err:#}").contains("guest timed out")
}

/// A request body that ends with an error once more than `remaining` bytes were read.
pub(crate) struct LimitedBody<B> {
    pub(crate) inner: B,
    pub(crate) remaining: u64,
    pub(crate) over_limit: Arc<AtomicBool>,
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.over_limit.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                None,
            ))));
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            if len > self.remaining {
                self.over_limit.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                    None,
                ))));
            }
            self.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request's slot and app version until it is done, and ends
/// with an error (aborting the response) at the request deadline or the version's cut-off.
struct StackBody {
    body: WasiBody,
    deadline: Instant,
    /// A timer for `deadline`, made the first time the body has nothing ready: most bodies
    /// end without waiting, and then cost no timer (its creation, registration and removal
    /// were ~2.5% of hello-p3's CPU in `perf`).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    cut_off: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    _holding: Holding,
    name: Arc<str>,
}

impl StackBody {
    fn past_deadline(&self) -> Poll<Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>> {
        tracing::warn!(app = %self.name, limit = "request_timeout_ms", "response aborted: still streaming at request_timeout_ms");
        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
    }
}

impl Body for StackBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.cut_off.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionTerminated)));
        }
        let past = match self.timer.as_mut() {
            Some(timer) => timer.as_mut().poll(cx).is_ready(),
            None => Instant::now() >= self.deadline,
        };
        if past {
            return self.past_deadline();
        }
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if polled.is_pending() && self.timer.is_none() {
            let mut timer = Box::pin(tokio::time::sleep_until(self.deadline));
            // Registers this task to be woken at the deadline.
            if timer.as_mut().poll(cx).is_ready() {
                return self.past_deadline();
            }
            self.timer = Some(timer);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn a_body_over_its_limit_errors_and_is_flagged() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = LimitedBody {
            inner: Full::new(Bytes::from(vec![0u8; 100])),
            remaining: 99,
            over_limit: flag.clone(),
        };
        assert!(body.collect().await.is_err());
        assert!(flag.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn a_body_within_its_limit_passes_unchanged() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = LimitedBody {
            inner: Full::new(Bytes::from(vec![7u8; 100])),
            remaining: 100,
            over_limit: flag.clone(),
        };
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(bytes.len(), 100);
        assert!(!flag.load(Ordering::Acquire));
    }

    /// `body` held as the stack holds a response, with a deadline `after` from now.
    fn held(body: WasiBody, after: std::time::Duration) -> ResponseBody {
        let holding = Holding {
            version: None,
            slot: None,
            in_flight: None,
        };
        let never = Box::pin(std::future::pending());
        hold(
            Response::new(body),
            "a".into(),
            holding,
            Instant::now() + after,
            never,
        )
        .into_body()
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_streaming_at_the_deadline_is_aborted_then() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Frame<Bytes>, _>>();
        let stream = http_body_util::StreamBody::new(tokio_stream_from(rx));
        tx.send(Ok(Frame::data(Bytes::from_static(b"head"))))
            .unwrap();
        let mut body = held(stream.boxed_unsync(), std::time::Duration::from_secs(2));
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "head");
        // Nothing more comes: the body waits, and ends with an error at the deadline.
        let started = Instant::now();
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(2));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ready_body_ends_normally_before_its_deadline() {
        let full = Full::new(Bytes::from_static(b"done")).map_err(|e| match e {});
        let body = held(full.boxed_unsync(), std::time::Duration::from_secs(2));
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"done");
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
    ) -> impl futures::Stream<Item = T> + Send {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
