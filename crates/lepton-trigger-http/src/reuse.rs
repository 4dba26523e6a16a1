//! Instance reuse: how many requests one wasi:http instance (its store) serves, how many at once,
//! when it is dropped, and how every request's limits still hold on a shared store. Plugged into
//! wasmtime-wasi-http's `ProxyHandler` as each worker's [`WorkerState`] ([`InstanceRequests`])
//! and [`WorkerExpiration`] ([`InstanceExpiration`]); [`crate::executor`] creates them.
//!
//! **Policy** ([`ReusePolicy`]), Spin's (spinframework/spin `crates/trigger-http`):
//! - wasi:http 0.2 (and anything but 0.3): one request per instance, a fresh instance each time.
//! - wasi:http 0.3: up to 128 requests per instance, 16 of them at once, and an instance idle
//!   for 1 s is dropped (`DEFAULT_WASIP3_MAX_INSTANCE_REUSE_COUNT`,
//!   `DEFAULT_WASIP3_MAX_INSTANCE_CONCURRENT_REUSE_COUNT`, `--idle-instance-timeout 1s`; `spin up`
//!   can change them with `--max-instance-reuse-count`, `--max-instance-concurrent-reuse-count`
//!   and `--idle-instance-timeout`, lepton keeps the defaults). wasmtime-wasi-http gives an
//!   instance a second request while the first waits on I/O, never while it computes.
//!
//! **Limits on a shared store:**
//! - *Deadline.* Every request keeps its own: the stack answers 504 at it. The store's epoch
//!   deadline (what stops a computing guest) is the latest deadline of the requests running on
//!   it, reset at each request start, so it never cuts a request short. Once a request on the
//!   instance is past its deadline without a response, the instance takes no more requests; if
//!   it still has none [`STOP_GRACE`] later, its guest is still running, and wasmtime 48 cannot
//!   cancel one guest task (wasmtime issue #11833): the whole instance is retired then, its
//!   other requests with it (those without a response head get a 500, streaming responses are
//!   aborted — [`InstanceBody`] turns the end a dropped instance gives their bodies into an
//!   error, so a cut-short body never looks complete). Spin instead stops giving such an
//!   instance requests and keeps it until its most recent request's `--request-timeout` passes
//!   (by default never); lepton stops the guest at the deadline, as for a fresh instance.
//!   Outbound requests carry the store's deadline, so a chained request made from a shared
//!   instance may be given up to the latest deadline of the requests running there.
//! - *Concurrency slot.* Held by the request (through its [`Ticket`]) until the guest produced its
//!   response (the response body holds it on until it is sent), not until the instance goes. An
//!   expired request's slot stays taken until its instance is gone, since its guest still runs.
//! - *Cut-off* of the version: the instance ends at once, whatever it runs.
//! - *Trap*: wasmtime-wasi-http ends the instance; its other requests fail too (a 500, or an
//!   aborted stream).
//! - *Memory*: `memory_mib` bounds the instance, so it is shared by the requests on it, as in
//!   Spin; outbound connection limits are per instance too. Each instance counts once in
//!   `lepton_app_instances`, idle ones included.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use lepton_runtime::{ComponentHandlerKind, CutOff, HostState};
use tokio::time::{Instant, Sleep};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus};

use crate::executor::Ticket;

/// How long after a request's deadline its instance is retired if the request is still running:
/// the stack answers 504 (or aborts the stream) at the deadline itself and the instance goes
/// right after, so the client sees the deadline rather than the instance's own failure.
pub const STOP_GRACE: Duration = Duration::from_millis(100);

/// How many requests an instance serves, how many at once, and how long it may stay idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReusePolicy {
    /// Requests one instance serves in its life.
    pub max_requests: usize,
    /// Requests one instance serves at once.
    pub max_concurrent: usize,
    /// How long an instance with nothing to do is kept for the next request.
    pub idle_timeout: Duration,
}

impl ReusePolicy {
    /// A fresh instance per request (wasi:http 0.2, as Spin does).
    pub const ONE_REQUEST: Self = Self {
        max_requests: 1,
        max_concurrent: 1,
        idle_timeout: Duration::from_secs(1),
    };

    /// Spin's defaults for wasi:http 0.3 components: 128 requests, 16 at once, 1 s idle.
    pub const WASIP3: Self = Self {
        max_requests: 128,
        max_concurrent: 16,
        idle_timeout: Duration::from_secs(1),
    };

    /// The policy for a component exporting `kind`: reuse for wasi:http 0.3 only.
    pub fn for_kind(kind: ComponentHandlerKind) -> Self {
        match kind {
            ComponentHandlerKind::WasiHttpP3 => Self::WASIP3,
            _ => Self::ONE_REQUEST,
        }
    }

    fn should_accept(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }
}

/// Why an instance ended without failing (logged at debug level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// It served all the requests it may (or its one request).
    Served,
    /// It had nothing to do for the policy's idle timeout.
    Idle,
    /// A request on it outlived its deadline.
    Deadline,
    /// Its version was cut off.
    CutOff,
}

/// What one instance's worker state, its expiration and its requests' futures share.
#[derive(Default)]
struct Shared {
    /// Deadlines of the requests still waiting for their response, counted.
    live: BTreeMap<Instant, usize>,
    /// The store's deadline, as last set: the latest of the live ones at the last request start.
    deadline: Option<Instant>,
    /// Requests accepted so far.
    served: usize,
    /// A request outlived its deadline: the instance is retired.
    expired: bool,
    /// Slots of expired requests, released when the instance is gone.
    held: Vec<Ticket>,
    /// Why the expiration ended the instance, if it did.
    ending: Option<Ending>,
    /// Wakes the expiration when a request expires.
    waker: Option<Waker>,
}

impl Shared {
    fn remove_live(&mut self, deadline: Instant) {
        if let Some(count) = self.live.get_mut(&deadline) {
            *count -= 1;
            if *count == 0 {
                self.live.remove(&deadline);
            }
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The worker state and expiration of one new instance of `component` (of `app`), under
/// `policy`, ended early when `cut_off` is cut.
pub fn instance(
    policy: ReusePolicy,
    app: Arc<str>,
    component: Arc<str>,
    cut_off: &CutOff,
) -> (InstanceRequests, InstanceExpiration) {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let now = Instant::now();
    (
        InstanceRequests {
            policy,
            app,
            component,
            cut_off: cut_off.clone(),
            shared: shared.clone(),
            failed: Arc::default(),
        },
        InstanceExpiration {
            policy,
            shared,
            cut_off: Box::pin(cut_off.signal()),
            sleep: Box::pin(tokio::time::sleep_until(now + policy.idle_timeout)),
            seen: None,
            since: now,
        },
    )
}

/// An instance's [`WorkerState`]: which requests it accepts, the store deadline as requests
/// start, and the log line when it goes.
pub struct InstanceRequests {
    policy: ReusePolicy,
    app: Arc<str>,
    component: Arc<str>,
    cut_off: CutOff,
    shared: Arc<Mutex<Shared>>,
    /// Set before the store is dropped when the instance ends with guest tasks still running
    /// (a trap, a deadline, a cut-off): the bodies they were writing are cut short.
    failed: Arc<AtomicBool>,
}

/// Links a request to the instance that serves it, so that its response body can tell a guest
/// that finished it from an instance retired under it. One per request on a reused instance,
/// handed to the worker with the [`Ticket`] (a fresh instance's request needs none: its body
/// is cut at its own deadline, before its instance goes).
#[derive(Default)]
pub struct ServedBy(OnceLock<Arc<AtomicBool>>);

impl ServedBy {
    /// A link not yet bound to an instance.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Whether the instance that served the request ended with its guest tasks cut short.
    pub fn instance_failed(&self) -> bool {
        self.0
            .get()
            .is_some_and(|failed| failed.load(Ordering::Acquire))
    }
}

/// The response body of a request on a reused instance ([`ReusePolicy::max_requests`] > 1): a
/// body whose instance was retired before the guest finished it ends, in wasmtime-wasi-http,
/// as if complete; this one ends with an error instead, so the connection is closed and the
/// client sees it cut short. (A body the guest did finish, whose last frame is read only after
/// its instance failed for another request, is reported cut too: the window is the time
/// between the guest's last write and hyper's next poll.)
pub struct InstanceBody {
    body: WasiBody,
    served: Arc<ServedBy>,
}

impl InstanceBody {
    /// `body`, from the request linked by `served`.
    pub fn new(body: WasiBody, served: Arc<ServedBy>) -> Self {
        Self { body, served }
    }
}

impl Body for InstanceBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) if self.served.instance_failed() => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionTerminated)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl InstanceRequests {
    /// Account for a request starting under `ticket`: the store's new deadline (the latest of
    /// the requests now running) and the request's future.
    fn begin(&self, ticket: Ticket) -> (Instant, RequestWatch) {
        let deadline = ticket.deadline;
        let latest = {
            let mut shared = lock(&self.shared);
            *shared.live.entry(deadline).or_insert(0) += 1;
            shared.served += 1;
            let latest = shared.live.keys().next_back().copied().unwrap_or(deadline);
            shared.deadline = Some(latest);
            latest
        };
        let watch = RequestWatch {
            shared: self.shared.clone(),
            deadline,
            ticket: Some(ticket),
            stop: Box::pin(tokio::time::sleep_until(deadline + STOP_GRACE)),
            live: true,
        };
        (latest, watch)
    }
}

impl WorkerState for InstanceRequests {
    type StoreData = HostState;
    type RequestData = (Ticket, Option<Arc<ServedBy>>);

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        {
            let shared = lock(&self.shared);
            // A request past its deadline without a response dooms the instance: take nothing
            // more (a request taken now would be retired with it).
            let overdue = shared
                .live
                .keys()
                .next()
                .is_some_and(|first| *first <= Instant::now());
            if shared.expired || overdue || self.cut_off.is_cut() {
                return ShouldAccept::Never;
            }
        }
        self.policy.should_accept(concurrent, total)
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        (ticket, served): (Ticket, Option<Arc<ServedBy>>),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        if let Some(served) = served {
            let _ = served.0.set(self.failed.clone());
        }
        let (store_deadline, watch) = self.begin(ticket);
        store.data_mut().set_deadline(store_deadline.into_std());
        Box::pin(watch)
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        if result.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        drop(store);
        // The guest is gone: the slots of its expired requests may go too.
        let (served, ending, held) = {
            let mut shared = lock(&self.shared);
            (
                shared.served,
                shared.ending,
                std::mem::take(&mut shared.held),
            )
        };
        drop(held);
        let (app, component) = (&self.app, &self.component);
        match result {
            Ok(()) => {
                let reason = ending.unwrap_or(Ending::Served);
                tracing::debug!(app = %app, component = %component, requests = served, reason = ?reason, "instance retired");
            }
            Err(err) if crate::stack::is_stopped_by_limits(&err) => {
                let cut = err.chain().any(|cause| {
                    cause.downcast_ref::<lepton_runtime::GuestStopped>()
                        == Some(&lepton_runtime::GuestStopped::CutOff)
                });
                let reason = match ending {
                    Some(ending) => ending,
                    None if cut => Ending::CutOff,
                    None => Ending::Deadline,
                };
                tracing::debug!(app = %app, component = %component, requests = served, reason = ?reason, "instance retired");
                tracing::warn!(app = %app, component = %component, error = %format!("{err:#}"), "guest stopped");
            }
            Err(err) => {
                tracing::debug!(app = %app, component = %component, requests = served, reason = "failed", "instance retired");
                tracing::warn!(app = %app, component = %component, error = %format!("{err:#}"), "guest failed");
            }
        }
    }
}

/// One request's future in its worker (what `on_request_start` returns): it holds the request's
/// [`Ticket`] (its slot) until the guest produced the response, when wasmtime-wasi-http drops
/// it. If it resolves first, [`STOP_GRACE`] past the deadline, the request expired: its instance
/// is retired and keeps the slot until it is gone.
struct RequestWatch {
    shared: Arc<Mutex<Shared>>,
    deadline: Instant,
    ticket: Option<Ticket>,
    stop: Pin<Box<Sleep>>,
    live: bool,
}

impl Future for RequestWatch {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let ticket = self.ticket.take();
        let mut shared = lock(&self.shared);
        if self.live {
            shared.remove_live(self.deadline);
        }
        shared.expired = true;
        shared.ending.get_or_insert(Ending::Deadline);
        shared.held.extend(ticket);
        if let Some(waker) = shared.waker.take() {
            waker.wake();
        }
        drop(shared);
        self.live = false;
        Poll::Ready(())
    }
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        if self.live {
            lock(&self.shared).remove_live(self.deadline);
        }
    }
}

/// An instance's [`WorkerExpiration`], polled by wasmtime-wasi-http outside the guest's event
/// loop (so it fires even while the guest computes or blocks the store): the instance ends when
/// its version is cut off, when a request on it has no response [`STOP_GRACE`] past its deadline,
/// when a guest task outlives the store's deadline after the responses, or after the idle
/// timeout.
pub struct InstanceExpiration {
    policy: ReusePolicy,
    shared: Arc<Mutex<Shared>>,
    cut_off: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    sleep: Pin<Box<Sleep>>,
    /// The worker status last seen and when wasmtime-wasi-http says it began.
    seen: Option<(WorkerStatus, std::time::Instant)>,
    /// When that status was first seen, on tokio's clock (which tests can pause).
    since: Instant,
}

impl InstanceExpiration {
    /// When the instance ends if nothing changes, and why; `None` once it must end now.
    fn end_at(
        &mut self,
        status: WorkerStatus,
        start: std::time::Instant,
    ) -> Option<(Instant, Ending)> {
        if self.seen != Some((status, start)) {
            self.seen = Some((status, start));
            self.since = Instant::now();
        }
        let shared = lock(&self.shared);
        if shared.expired {
            return None;
        }
        let idle = (self.since + self.policy.idle_timeout, Ending::Idle);
        let after = |deadline: Option<Instant>| {
            deadline.map_or(idle, |at| (at + STOP_GRACE, Ending::Deadline))
        };
        Some(match status {
            WorkerStatus::Idle => idle,
            // The earliest request still waiting for its response bounds the instance.
            WorkerStatus::Requests => after(shared.live.keys().next().copied().or(shared.deadline)),
            // Every request has its response; guest tasks still running (a body being
            // streamed, post-return work) may run until the store's deadline.
            WorkerStatus::PostReturn => after(shared.deadline),
        })
    }
}

impl WorkerExpiration for InstanceExpiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: std::time::Instant,
    ) -> Poll<()> {
        if self.cut_off.as_mut().poll(cx).is_ready() {
            lock(&self.shared).ending = Some(Ending::CutOff);
            return Poll::Ready(());
        }
        {
            let mut shared = lock(&self.shared);
            if !shared
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                shared.waker = Some(cx.waker().clone());
            }
        }
        let Some((at, ending)) = self.end_at(status, start) else {
            return Poll::Ready(());
        };
        // The timer is only ever moved earlier here. A later end (the usual change: each request
        // pushes the idle end on, and a running request's deadline is far off) is taken up when
        // the earlier timer fires, so a busy instance re-arms it about once per idle timeout
        // instead of at every status change (two timer-wheel updates per request).
        if at < self.sleep.deadline() {
            self.sleep.as_mut().reset(at);
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= at {
                break;
            }
            self.sleep.as_mut().reset(at);
        }
        lock(&self.shared).ending.get_or_insert(ending);
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests;
