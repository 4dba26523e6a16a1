//! The HTTP listener: accepts connections on one address and serves each request with whatever
//! [`HttpApp`] version is current at that moment.
//!
//! The current app lives in a `watch` channel so a supervisor can swap versions without touching
//! the listener: new requests see the new version at once, while in-flight requests keep the
//! `Arc` of the version they started with until they finish. Binding is separate from serving so
//! a bind error is reported for its app before that app's version is published, and so a new
//! address can be claimed before an old one is released.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime_wasi_http::WasiBody;

use crate::app::HttpApp;

/// A response body that keeps the app version that produced it alive until it is done, and
/// ends with an error (aborting the connection) if that version is cut off first.
struct HoldVersion {
    body: WasiBody,
    cut_off: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    _app: Arc<HttpApp>,
}

impl http_body::Body for HoldVersion {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.cut_off.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(
                wasmtime_wasi_http::Error::ConnectionTerminated,
            )));
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A request abandoned because its app version was cut off after its drain timeout; hyper closes
/// the connection.
#[derive(Debug)]
struct CutOff;

impl std::fmt::Display for CutOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request cut off: its app version outlived the drain timeout")
    }
}

impl std::error::Error for CutOff {}

/// A bound, not yet serving, listener.
pub struct HttpListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl HttpListener {
    /// Bind `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` becomes `true`, then stop accepting and give in-flight connections
    /// up to `drain` to finish.
    pub async fn serve(
        self,
        app: watch::Receiver<Arc<HttpApp>>,
        mut shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) {
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        // Connection tasks, so any still running after the drain timeout can be aborted.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            // Reap finished connections so the set stays as small as the open ones.
            while connections.try_join_next().is_some() {}
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
            let app = app.clone();
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let current = app.borrow().clone();
                async move {
                    let mut cut_off = Box::pin(current.cut_off_signal());
                    let res = tokio::select! {
                        res = current.handle(req, "http", client) => res,
                        () = &mut cut_off => return Err(CutOff),
                    };
                    // The version stays referenced until its response body is done, so a
                    // replaced version counts as drained only once its streams have finished.
                    Ok(res.map(|body| {
                        HoldVersion {
                            body,
                            cut_off,
                            _app: current,
                        }
                        .boxed_unsync()
                    }))
                }
            });
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            connections.spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(client = %client, error = %err, "connection ended with an error");
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
