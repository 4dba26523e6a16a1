//! Concurrency with backpressure for one app: at most `max_concurrent_requests` requests run at
//! once, up to `max_queued_requests` more wait for a slot in arrival order (FIFO), and the rest
//! are refused at once (the caller answers 503 with `Retry-After`).
//!
//! One [`AppGate`] belongs to an app, not to a version: the supervisor creates it once per app
//! and hands it to every version, so a replace neither resets the count nor lets the new version
//! take a second set of slots while the old one drains. Chained requests pass the same gate but
//! never queue (a request waiting for a slot its own caller holds would wait forever).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use lepton_runtime::AppLimits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What an app's requests pass through whatever version serves them: its concurrency gate and
/// its metrics. Created once per app by the supervisor and handed to each version, so counts
/// and series survive replaces.
#[derive(Clone)]
pub struct AppFront {
    /// Concurrency slots and the wait queue.
    pub gate: Arc<AppGate>,
    /// The app's request metrics.
    pub metrics: lepton_metrics::AppMetrics,
}

impl AppFront {
    /// A front sized by `limits`, recording into `metrics` (its queue length included).
    pub fn new(limits: &AppLimits, metrics: lepton_metrics::AppMetrics) -> Self {
        let mut gate = AppGate::unshared(limits);
        gate.queue_gauge = Some(metrics.clone());
        Self {
            gate: Arc::new(gate),
            metrics,
        }
    }
}

/// One app's concurrency slots and wait queue.
pub struct AppGate {
    slots: Arc<Semaphore>,
    /// Slots the semaphore was created or resized to (the current `max_concurrent_requests`).
    capacity: Mutex<u32>,
    max_queued: AtomicU32,
    queued: AtomicU32,
    /// Where the queue length is published, if anywhere.
    queue_gauge: Option<lepton_metrics::AppMetrics>,
}

/// Why a request was refused at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken and the queue is full.
    QueueFull,
}

/// A running request's slot; released when dropped (after its response body is done).
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl AppGate {
    /// A gate sized by `limits`.
    pub fn new(limits: &AppLimits) -> Arc<Self> {
        Arc::new(Self::unshared(limits))
    }

    fn unshared(limits: &AppLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests as usize)),
            capacity: Mutex::new(limits.max_concurrent_requests),
            max_queued: AtomicU32::new(limits.max_queued_requests),
            queued: AtomicU32::new(0),
            queue_gauge: None,
        }
    }

    fn publish_queue(&self) {
        if let Some(gauge) = &self.queue_gauge {
            gauge.set_queued(i64::from(self.queued.load(Ordering::Relaxed)));
        }
    }

    /// Apply new limits (a replaced version may change them). Growing takes effect at once;
    /// shrinking as running requests finish.
    pub fn configure(&self, limits: &AppLimits) {
        self.max_queued
            .store(limits.max_queued_requests, Ordering::Relaxed);
        let mut capacity = self.capacity.lock().unwrap_or_else(|e| e.into_inner());
        let want = limits.max_concurrent_requests;
        if want > *capacity {
            self.slots.add_permits((want - *capacity) as usize);
        } else if want < *capacity {
            let mut to_remove = (*capacity - want) as usize;
            // Forget what is free now; take the rest as requests finish.
            to_remove -= self.slots.forget_permits(to_remove);
            if to_remove > 0 {
                let slots = self.slots.clone();
                tokio::spawn(async move {
                    if let Ok(permits) = slots.acquire_many_owned(to_remove as u32).await {
                        permits.forget();
                    }
                });
            }
        }
        *capacity = want;
    }

    /// Take a slot, waiting in the FIFO queue if all are busy and the queue has room.
    pub async fn enter(&self) -> Result<Slot, Refused> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let max = self.max_queued.load(Ordering::Relaxed);
        let joined = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if joined.is_err() {
            return Err(Refused::QueueFull);
        }
        // Leaves the queue however the wait ends (granted, or the client went away).
        let _in_queue = QueueSeat(self);
        self.publish_queue();
        // tokio's semaphore is fair: waiters are served in the order they arrived.
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => Ok(Slot { _permit: permit }),
            Err(_) => Err(Refused::QueueFull),
        }
    }

    /// Take a slot only if one is free now (chained requests).
    pub fn try_enter(&self) -> Result<Slot, Refused> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(|permit| Slot { _permit: permit })
            .map_err(|_| Refused::QueueFull)
    }

    /// Requests running now.
    pub fn in_flight(&self) -> u32 {
        let capacity = *self.capacity.lock().unwrap_or_else(|e| e.into_inner());
        capacity.saturating_sub(self.slots.available_permits() as u32)
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }
}

struct QueueSeat<'a>(&'a AppGate);

impl Drop for QueueSeat<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
        self.0.publish_queue();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(concurrent: u32, queued: u32) -> AppLimits {
        AppLimits {
            max_concurrent_requests: concurrent,
            max_queued_requests: queued,
            ..AppLimits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_up_to_the_limit_queues_fifo_then_refuses() {
        let gate = AppGate::new(&limits(2, 2));
        let a = gate.enter().await.expect("slot");
        let b = gate.enter().await.expect("slot");
        assert_eq!(gate.in_flight(), 2);
        let mut q1 = Box::pin(gate.enter());
        let mut q2 = Box::pin(gate.enter());
        assert!(futures::poll!(q1.as_mut()).is_pending());
        assert!(futures::poll!(q2.as_mut()).is_pending());
        assert_eq!(gate.queued(), 2);
        // The queue is full: refused without waiting.
        assert_eq!(gate.enter().await.err(), Some(Refused::QueueFull));
        drop(a);
        // The first in line gets the freed slot, not the second.
        assert!(futures::poll!(q2.as_mut()).is_pending());
        let c = q1.await.expect("first in line");
        assert_eq!(gate.queued(), 1);
        drop((b, c));
        let d = q2.await.expect("second in line");
        assert_eq!(gate.queued(), 0);
        drop(d);
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_leaves_the_queue_frees_its_seat() {
        let gate = AppGate::new(&limits(1, 1));
        let a = gate.enter().await.expect("slot");
        let mut q = Box::pin(gate.enter());
        assert!(futures::poll!(q.as_mut()).is_pending());
        drop(q);
        assert_eq!(gate.queued(), 0);
        let mut q = Box::pin(gate.enter());
        assert!(futures::poll!(q.as_mut()).is_pending());
        drop(a);
        drop(q.await.expect("slot"));
    }

    #[tokio::test(start_paused = true)]
    async fn chained_requests_never_queue() {
        let gate = AppGate::new(&limits(1, 10));
        let a = gate.try_enter().expect("slot");
        assert!(gate.try_enter().is_err());
        drop(a);
        assert!(gate.try_enter().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn new_limits_resize_the_gate() {
        let gate = AppGate::new(&limits(1, 0));
        let a = gate.enter().await.expect("slot");
        assert!(gate.enter().await.is_err());
        gate.configure(&limits(2, 0));
        let b = gate.enter().await.expect("grown");
        gate.configure(&limits(1, 0));
        drop((a, b));
        tokio::task::yield_now().await;
        let c = gate.enter().await.expect("one slot");
        assert!(gate.enter().await.is_err(), "shrunk back to one");
        drop(c);
    }
}
