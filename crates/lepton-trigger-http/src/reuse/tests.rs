//! The reuse policy and per-request bookkeeping on tokio's paused clock: what an instance
//! accepts, the store deadline as requests come and go, when a slot is released, and when the
//! expiration ends the instance (idle, a request past its deadline, post-return work, cut-off).

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lepton_runtime::{AppLimits, CutOff};
use tokio::time::{Instant, advance};
use wasmtime_wasi_http::handler::{ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus};

use super::*;
use crate::gate::AppGate;

fn p3_instance(cut_off: &CutOff) -> (InstanceRequests, InstanceExpiration) {
    instance(ReusePolicy::WASIP3, "app".into(), "c".into(), cut_off)
}

fn ticket(gate: &Arc<AppGate>, deadline: Instant) -> Ticket {
    let slot = gate.try_enter().map(Arc::new).ok();
    assert!(slot.is_some(), "the test gate has a free slot");
    Ticket { deadline, slot }
}

/// Poll `expiration` once as wasmtime-wasi-http does, in `status` since `start`.
fn poll(
    expiration: &mut InstanceExpiration,
    status: WorkerStatus,
    start: std::time::Instant,
) -> Poll<()> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(expiration).poll(&mut cx, status, start)
}

fn poll_watch(watch: &mut RequestWatch) -> Poll<()> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(watch).poll(&mut cx)
}

fn accepts(state: &InstanceRequests, concurrent: usize, total: usize) -> &'static str {
    match state.should_accept_request(concurrent, total) {
        ShouldAccept::Yes => "yes",
        ShouldAccept::No => "no",
        ShouldAccept::Never => "never",
    }
}

#[tokio::test(start_paused = true)]
async fn policies_accept_what_spin_does() {
    let cut_off = CutOff::default();
    let (p3, _) = p3_instance(&cut_off);
    assert_eq!(accepts(&p3, 0, 0), "yes");
    assert_eq!(accepts(&p3, 15, 127), "yes");
    assert_eq!(accepts(&p3, 16, 20), "no");
    assert_eq!(accepts(&p3, 0, 128), "never");
    let (p2, _) = instance(ReusePolicy::ONE_REQUEST, "a".into(), "c".into(), &cut_off);
    assert_eq!(accepts(&p2, 0, 0), "yes");
    assert_eq!(accepts(&p2, 0, 1), "never");
    assert_eq!(
        ReusePolicy::for_kind(ComponentHandlerKind::WasiHttpP3),
        ReusePolicy::WASIP3
    );
    assert_eq!(
        ReusePolicy::for_kind(ComponentHandlerKind::WasiHttpP2),
        ReusePolicy::ONE_REQUEST
    );
    // A cut-off version's instances take nothing more.
    cut_off.cut();
    assert_eq!(accepts(&p3, 0, 0), "never");
}

#[tokio::test(start_paused = true)]
async fn the_store_deadline_is_the_latest_of_the_running_requests() {
    let gate = AppGate::new(&AppLimits::default());
    let (state, _expiration) = p3_instance(&CutOff::default());
    let now = Instant::now();
    let (d1, a) = state.begin(ticket(&gate, now + Duration::from_secs(10)));
    assert_eq!(d1, now + Duration::from_secs(10));
    // A request with an earlier deadline (a chained one) does not shorten the others'.
    let (d2, b) = state.begin(ticket(&gate, now + Duration::from_secs(5)));
    assert_eq!(d2, now + Duration::from_secs(10));
    drop(a);
    // The one with the late deadline is done: the next request's start brings the store's
    // deadline back to the latest of those still running.
    let (d3, c) = state.begin(ticket(&gate, now + Duration::from_secs(3)));
    assert_eq!(d3, now + Duration::from_secs(5));
    drop((b, c));
    let (d4, _d) = state.begin(ticket(&gate, now + Duration::from_secs(1)));
    assert_eq!(d4, now + Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_request_done_in_time_frees_its_slot_at_once() {
    let gate = AppGate::new(&AppLimits::default());
    let (state, mut expiration) = p3_instance(&CutOff::default());
    let (_, mut watch) = state.begin(ticket(&gate, Instant::now() + Duration::from_secs(5)));
    assert_eq!(gate.in_flight(), 1);
    assert!(poll_watch(&mut watch).is_pending());
    drop(watch);
    assert_eq!(gate.in_flight(), 0, "the slot goes with the request");
    assert!(lock(&state.shared).live.is_empty());
    assert_eq!(accepts(&state, 0, 1), "yes");
    // Idle from now on: the instance stays for the idle timeout, then goes.
    let start = std::time::Instant::now();
    assert!(poll(&mut expiration, WorkerStatus::Idle, start).is_pending());
    advance(Duration::from_millis(999)).await;
    assert!(poll(&mut expiration, WorkerStatus::Idle, start).is_pending());
    advance(Duration::from_millis(2)).await;
    assert!(poll(&mut expiration, WorkerStatus::Idle, start).is_ready());
    assert_eq!(lock(&state.shared).ending, Some(Ending::Idle));
}

#[tokio::test(start_paused = true)]
async fn a_new_request_restarts_the_idle_timeout() {
    let (_state, mut expiration) = p3_instance(&CutOff::default());
    let first = std::time::Instant::now();
    assert!(poll(&mut expiration, WorkerStatus::Idle, first).is_pending());
    advance(Duration::from_millis(900)).await;
    // A request came and went between two polls: wasmtime-wasi-http reports a new idle start.
    let second = first + Duration::from_millis(1);
    assert!(poll(&mut expiration, WorkerStatus::Idle, second).is_pending());
    advance(Duration::from_millis(900)).await;
    assert!(poll(&mut expiration, WorkerStatus::Idle, second).is_pending());
    advance(Duration::from_millis(101)).await;
    assert!(poll(&mut expiration, WorkerStatus::Idle, second).is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_request_past_its_deadline_retires_the_instance_and_keeps_its_slot() {
    let gate = AppGate::new(&AppLimits::default());
    let (state, mut expiration) = p3_instance(&CutOff::default());
    let now = Instant::now();
    let (_, mut slow) = state.begin(ticket(&gate, now + Duration::from_secs(1)));
    let (_, mut other) = state.begin(ticket(&gate, now + Duration::from_secs(20)));
    let start = std::time::Instant::now();
    advance(Duration::from_millis(1050)).await;
    // Past the deadline, within the grace: the stack has answered 504; the guest may still end.
    assert!(poll_watch(&mut slow).is_pending());
    assert!(poll(&mut expiration, WorkerStatus::Requests, start).is_pending());
    advance(Duration::from_millis(51)).await;
    assert!(poll_watch(&mut slow).is_ready(), "the request expired");
    assert!(poll_watch(&mut other).is_pending());
    assert_eq!(accepts(&state, 1, 2), "never");
    assert!(
        poll(&mut expiration, WorkerStatus::Requests, start).is_ready(),
        "the instance is retired with its other request"
    );
    drop(slow);
    drop(other);
    assert_eq!(
        gate.in_flight(),
        1,
        "the expired request's guest still runs: its slot is kept until the instance goes"
    );
    assert_eq!(lock(&state.shared).ending, Some(Ending::Deadline));
    drop((state, expiration));
    assert_eq!(gate.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_expiration_alone_retires_an_instance_whose_guest_blocks_the_store() {
    // A guest computing (or blocked in a host call) keeps the request futures from being
    // polled; the expiration, polled outside the guest's event loop, still ends the instance at
    // the earliest unanswered deadline.
    let gate = AppGate::new(&AppLimits::default());
    let (state, mut expiration) = p3_instance(&CutOff::default());
    let now = Instant::now();
    let (_, _a) = state.begin(ticket(&gate, now + Duration::from_secs(2)));
    let (_, _b) = state.begin(ticket(&gate, now + Duration::from_secs(1)));
    let start = std::time::Instant::now();
    advance(Duration::from_millis(1099)).await;
    assert!(poll(&mut expiration, WorkerStatus::Requests, start).is_pending());
    advance(Duration::from_millis(2)).await;
    assert!(poll(&mut expiration, WorkerStatus::Requests, start).is_ready());
}

#[tokio::test(start_paused = true)]
async fn work_after_the_responses_ends_at_the_store_deadline() {
    let gate = AppGate::new(&AppLimits::default());
    let (state, mut expiration) = p3_instance(&CutOff::default());
    let now = Instant::now();
    let (_, a) = state.begin(ticket(&gate, now + Duration::from_secs(3)));
    drop(a);
    // The response is out but a guest task still runs (a body being streamed).
    let start = std::time::Instant::now();
    advance(Duration::from_millis(3099)).await;
    assert!(poll(&mut expiration, WorkerStatus::PostReturn, start).is_pending());
    advance(Duration::from_millis(2)).await;
    assert!(poll(&mut expiration, WorkerStatus::PostReturn, start).is_ready());
    assert_eq!(lock(&state.shared).ending, Some(Ending::Deadline));
}

#[tokio::test(start_paused = true)]
async fn a_cut_off_ends_the_instance_at_once() {
    let cut_off = CutOff::default();
    let (state, mut expiration) = p3_instance(&cut_off);
    let start = std::time::Instant::now();
    assert!(poll(&mut expiration, WorkerStatus::Idle, start).is_pending());
    cut_off.cut();
    tokio::task::yield_now().await;
    assert!(poll(&mut expiration, WorkerStatus::Idle, start).is_ready());
    assert_eq!(lock(&state.shared).ending, Some(Ending::CutOff));
}

#[tokio::test(start_paused = true)]
async fn an_instance_with_a_request_past_its_deadline_takes_no_more() {
    let gate = AppGate::new(&AppLimits::default());
    let (state, _expiration) = p3_instance(&CutOff::default());
    let (_, _slow) = state.begin(ticket(&gate, Instant::now() + Duration::from_secs(1)));
    assert_eq!(accepts(&state, 1, 1), "yes");
    // At the deadline the stack answers 504; the guest has STOP_GRACE to end before the
    // instance is retired, and nothing new is given to it meanwhile.
    advance(Duration::from_secs(1)).await;
    assert_eq!(accepts(&state, 1, 1), "never");
}

/// A body made of `chunks`, as the guest would stream it.
fn guest_body(chunks: &[&'static str]) -> WasiBody {
    use http_body_util::BodyExt;
    let frames: Vec<Result<Frame<Bytes>, wasmtime_wasi_http::Error>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
}

#[tokio::test]
async fn a_body_cut_short_by_its_instance_ends_with_an_error() {
    use http_body_util::BodyExt;
    let failed = Arc::new(AtomicBool::new(false));
    let served = ServedBy::new();
    assert!(served.0.set(failed.clone()).is_ok());
    let body = InstanceBody::new(guest_body(&["a", "b"]), served.clone());
    let bytes = body.collect().await.expect("a finished body").to_bytes();
    assert_eq!(&bytes[..], b"ab");
    // The instance was retired (a trap, a deadline) while the guest wrote this body: the end
    // wasmtime-wasi-http reports is not the guest's.
    failed.store(true, Ordering::Release);
    let body = InstanceBody::new(guest_body(&["a"]), served);
    assert!(body.collect().await.is_err());
    // A request never bound to an instance (it failed before) has nothing to say.
    let body = InstanceBody::new(guest_body(&["x"]), ServedBy::new());
    assert!(body.collect().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_later_end_waits_for_the_earlier_timer_then_holds() {
    let gate = AppGate::new(&AppLimits::default());
    let (state, mut expiration) = p3_instance(&CutOff::default());
    let created = Instant::now();
    let idle_start = std::time::Instant::now();
    assert!(poll(&mut expiration, WorkerStatus::Idle, idle_start).is_pending());
    assert_eq!(
        expiration.sleep.deadline(),
        created + Duration::from_secs(1)
    );
    advance(Duration::from_millis(500)).await;
    // A request with a far deadline: its end is later, so the idle timer is left as it is.
    let (_, _request) = state.begin(ticket(&gate, Instant::now() + Duration::from_secs(20)));
    let busy = std::time::Instant::now();
    assert!(poll(&mut expiration, WorkerStatus::Requests, busy).is_pending());
    assert_eq!(
        expiration.sleep.deadline(),
        created + Duration::from_secs(1)
    );
    // It fires at the idle end, which no longer applies: re-armed at the request's end.
    advance(Duration::from_millis(600)).await;
    assert!(poll(&mut expiration, WorkerStatus::Requests, busy).is_pending());
    let end = created + Duration::from_millis(500) + Duration::from_secs(20) + STOP_GRACE;
    assert_eq!(expiration.sleep.deadline(), end);
    advance(end - Instant::now() - Duration::from_millis(1)).await;
    assert!(poll(&mut expiration, WorkerStatus::Requests, busy).is_pending());
    advance(Duration::from_millis(1)).await;
    assert!(poll(&mut expiration, WorkerStatus::Requests, busy).is_ready());
}
