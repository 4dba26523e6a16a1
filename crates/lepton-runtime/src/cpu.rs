//! A fair share of CPU between apps: the [`CpuScheduler`] every store's epoch callback consults.
//!
//! Every store yields to the async executor at each epoch tick ([`crate::engine::EPOCH_TICK`],
//! 10 ms); a tick that lands while a guest runs Wasm is one tick of CPU charged to its request.
//! A request's first [`CpuScheduler::grace_ticks`] ticks are free: it just yields, so the short
//! requests that make up nearly all HTTP traffic (a hello request uses ~0.1 ms) never wait here.
//! Past the grace a request is *CPU-bound*, and from then on each of its slices must be granted
//! one of a few **lanes** (by default one fewer than the cores, at least one). Grants are
//! round-robin between apps and FIFO within an app, so an app with eight looping requests gets
//! the same share of the lanes as an app with one, and every core but the lanes' stays free for
//! the requests that are not CPU-bound, whatever the CPU-bound ones do.
//!
//! A grant is a lease of one slice ([`SLICE`]): it is released when the slice ends, even if the
//! guest then blocks on I/O instead of reaching its next tick, so a guest that computes and then
//! sleeps cannot hold a lane.
//!
//! Why this policy, measured with `bench/isolation.sh` on a 2-core VM (8 looping requests in one
//! app, wrk on a hello app beside it): without lanes every store only yielded at each tick, and
//! the neighbour fell from ~19,000 req/s to 24 req/s (p99 529 ms) because the loopers took both
//! runtime threads in turn; with one lane the loopers share one core and the neighbour keeps the
//! other (numbers in the README's limits section and the issue note).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

/// How long one lane grant lasts: one epoch tick.
pub const SLICE: Duration = crate::engine::EPOCH_TICK;

/// Hands out CPU lanes to CPU-bound requests, fairly between apps.
pub struct CpuScheduler {
    lanes: usize,
    grace_ticks: u32,
    state: Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    free: usize,
    /// Apps with waiters, in the order they get their next grant.
    ready: VecDeque<Arc<str>>,
    /// Each app's waiting requests, oldest first.
    waiters: HashMap<Arc<str>, VecDeque<oneshot::Sender<LanePermit>>>,
}

impl CpuScheduler {
    /// A scheduler with `lanes` lanes (at least one) where a request becomes CPU-bound after
    /// `grace_ticks` ticks.
    pub fn new(lanes: usize, grace_ticks: u32) -> Arc<Self> {
        let lanes = lanes.max(1);
        Arc::new(Self {
            lanes,
            grace_ticks,
            state: Mutex::new(LaneState {
                free: lanes,
                ..LaneState::default()
            }),
        })
    }

    /// The default lane count for this machine: one fewer than its cores, at least one.
    pub fn default_lanes() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get().saturating_sub(1))
            .unwrap_or(1)
            .max(1)
    }

    /// How many lanes there are.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// How many ticks a request runs before it counts as CPU-bound.
    pub fn grace_ticks(&self) -> u32 {
        self.grace_ticks
    }

    fn state(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a lane for one slice of `app`'s CPU-bound request. The lane is held by the
    /// returned permit.
    pub fn acquire(self: &Arc<Self>, app: &Arc<str>) -> impl Future<Output = LanePermit> + use<> {
        let rx = {
            let mut state = self.state();
            if state.free > 0 && state.ready.is_empty() {
                state.free -= 1;
                let permit = LanePermit::new(self.clone());
                return grant_future(Ok(permit));
            }
            let (tx, rx) = oneshot::channel();
            let state = &mut *state;
            let queue = state.waiters.entry(app.clone()).or_default();
            if queue.is_empty() {
                state.ready.push_back(app.clone());
            }
            queue.push_back(tx);
            rx
        };
        grant_future(Err((rx, self.clone())))
    }

    /// Give a freed lane to the next waiter, round-robin between apps.
    fn release(self: &Arc<Self>) {
        let mut state = self.state();
        while let Some(app) = state.ready.pop_front() {
            let Some(queue) = state.waiters.get_mut(&app) else {
                continue;
            };
            let Some(tx) = queue.pop_front() else {
                state.waiters.remove(&app);
                continue;
            };
            if queue.is_empty() {
                state.waiters.remove(&app);
            } else {
                state.ready.push_back(app);
            }
            match tx.send(LanePermit::new(self.clone())) {
                Ok(()) => return,
                // The waiter gave up (its request ended); this lane goes to the next one.
                Err(permit) => permit.disarm(),
            }
        }
        state.free = (state.free + 1).min(self.lanes);
    }

    /// Lanes not granted right now (for tests and metrics).
    pub fn free_lanes(&self) -> usize {
        self.state().free
    }
}

/// The future [`CpuScheduler::acquire`] returns: ready at once, or waiting for a grant.
async fn grant_future(
    start: Result<LanePermit, (oneshot::Receiver<LanePermit>, Arc<CpuScheduler>)>,
) -> LanePermit {
    match start {
        Ok(permit) => permit,
        Err((rx, scheduler)) => match rx.await {
            Ok(permit) => permit,
            // Unreachable while the scheduler lives (it never drops a waiter it has not
            // answered); run without a lane rather than never.
            Err(_) => LanePermit {
                scheduler,
                armed: false,
            },
        },
    }
}

/// One lane, held until dropped.
pub struct LanePermit {
    scheduler: Arc<CpuScheduler>,
    armed: bool,
}

impl LanePermit {
    fn new(scheduler: Arc<CpuScheduler>) -> Self {
        Self {
            scheduler,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }

    /// Hold the lane for one [`SLICE`] in the background, then release it.
    pub fn lease_for_slice(self) {
        tokio::spawn(async move {
            tokio::time::sleep(SLICE).await;
            drop(self);
        });
    }
}

impl Drop for LanePermit {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            self.scheduler.release();
        }
    }
}

/// CPU ticks charged to one app, across its versions (for status and metrics).
#[derive(Debug, Default)]
pub struct AppCpu {
    ticks: std::sync::atomic::AtomicU64,
}

impl AppCpu {
    /// Charge one tick.
    pub fn charge(&self) {
        self.ticks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ticks charged so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[tokio::test(start_paused = true)]
    async fn grants_up_to_the_lane_count_at_once() {
        let s = CpuScheduler::new(2, 1);
        let a = app("a");
        let p1 = s.acquire(&a).await;
        let p2 = s.acquire(&a).await;
        assert_eq!(s.free_lanes(), 0);
        let mut third = Box::pin(s.acquire(&a));
        assert!(futures::poll!(third.as_mut()).is_pending());
        drop(p1);
        let p3 = third.await;
        drop((p2, p3));
        assert_eq!(s.free_lanes(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn grants_alternate_between_apps_whatever_their_queue_lengths() {
        let s = CpuScheduler::new(1, 1);
        let hog = app("hog");
        let other = app("other");
        let held = s.acquire(&hog).await;
        // Eight waiting requests of one app, then one of another.
        let mut waiting: Vec<_> = (0..8).map(|_| Box::pin(s.acquire(&hog))).collect();
        let mut neighbour = Box::pin(s.acquire(&other));
        for w in &mut waiting {
            assert!(futures::poll!(w.as_mut()).is_pending());
        }
        assert!(futures::poll!(neighbour.as_mut()).is_pending());
        drop(held);
        // The hog queued first, so it gets the next grant; the neighbour gets the one after,
        // not the ninth.
        let first = waiting.remove(0).await;
        assert!(futures::poll!(neighbour.as_mut()).is_pending());
        drop(first);
        let n = neighbour.await;
        for w in &mut waiting {
            assert!(futures::poll!(w.as_mut()).is_pending());
        }
        drop(n);
        let next = waiting.remove(0).await;
        drop(next);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gave_up_does_not_keep_the_lane() {
        let s = CpuScheduler::new(1, 1);
        let a = app("a");
        let held = s.acquire(&a).await;
        let mut gone = Box::pin(s.acquire(&app("b")));
        assert!(futures::poll!(gone.as_mut()).is_pending());
        drop(gone);
        let mut next = Box::pin(s.acquire(&app("c")));
        assert!(futures::poll!(next.as_mut()).is_pending());
        drop(held);
        let p = next.await;
        drop(p);
        assert_eq!(s.free_lanes(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_ends_after_one_slice() {
        let s = CpuScheduler::new(1, 1);
        let a = app("a");
        s.acquire(&a).await.lease_for_slice();
        tokio::task::yield_now().await;
        assert_eq!(s.free_lanes(), 0);
        let waiter = tokio::spawn({
            let s = s.clone();
            let b = app("b");
            async move {
                let start = tokio::time::Instant::now();
                drop(s.acquire(&b).await);
                start.elapsed()
            }
        });
        let waited = waiter.await.expect("waiter");
        assert!(waited >= SLICE, "granted after {waited:?}");
        assert_eq!(s.free_lanes(), 1);
    }
}
