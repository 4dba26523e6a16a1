//! Running one guest call (a Redis message, a cron tick) under the app's limits, as the HTTP
//! trigger runs a request:
//!
//! - **concurrency**: a run first takes one of the app version's `max_concurrent_requests` slots
//!   ([`Gate`]);
//! - **a fresh instance** per run, in a store from `PreparedComponent::new_store`: its memory
//!   budget (`memory_mib`), its deadline (now + `request_timeout_ms`) and the version's cut-off
//!   stop the guest at its next epoch tick while it computes;
//! - **the deadline and the cut-off also while it waits** (on outbound I/O, where no epoch tick
//!   reaches it): [`run_guest`] drops the call, and with it the store and instance, the moment
//!   either passes.

use std::sync::Arc;
use std::time::Duration;

use lepton_runtime::{AppLimits, GuestStopped, HostState, PreparedComponent};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

/// One app version's `max_concurrent_requests` slots for trigger runs.
#[derive(Debug, Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    limit: u32,
}

impl Gate {
    /// A gate of `limits.max_concurrent_requests` slots.
    pub fn new(limits: &AppLimits) -> Self {
        let limit = limits.max_concurrent_requests.max(1);
        Self {
            slots: Arc::new(Semaphore::new(limit as usize)),
            limit,
        }
    }

    /// Take a slot, waiting at most `wait` for one to come free.
    pub async fn enter(&self, wait: Duration) -> Result<OwnedSemaphorePermit, RunError> {
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(RunError::Busy(self.limit)),
        }
    }

    /// Take a slot if one is free now.
    pub fn try_enter(&self) -> Result<OwnedSemaphorePermit, RunError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| RunError::Busy(self.limit))
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No slot came free in time.
    #[error("all {0} slots of the app's max_concurrent_requests are taken")]
    Busy(u32),
    /// The guest was stopped by its deadline or its version's cut-off.
    #[error("{0}")]
    Stopped(GuestStopped),
    /// The store could not be created.
    #[error("cannot create the guest's store: {0}")]
    Store(String),
    /// Instantiating or calling the guest failed (a trap, an exhausted instance pool, ...).
    #[error("the guest failed: {0}")]
    Guest(String),
}

impl RunError {
    /// The limit that ended the run, for logs (`limit = ...`), if one did.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::Busy(_) => Some("max_concurrent_requests"),
            Self::Stopped(GuestStopped::Deadline) => Some("request_timeout_ms"),
            Self::Stopped(GuestStopped::CutOff) | Self::Store(_) | Self::Guest(_) => None,
        }
    }
}

/// Run `call` with a fresh store of `component`: `call` instantiates the guest in it and calls
/// its export. The run ends at the store's deadline (`request_timeout_ms` from now) or when the
/// component's version is cut off, whichever comes first, even while the guest waits on I/O.
pub async fn run_guest<T, F, Fut>(component: &PreparedComponent, call: F) -> Result<T, RunError>
where
    F: FnOnce(Store<HostState>) -> Fut,
    Fut: Future<Output = wasmtime::Result<T>>,
{
    let store = component
        .new_store()
        .map_err(|e| RunError::Store(format!("{e:#}")))?;
    let deadline = tokio::time::Instant::from_std(store.data().deadline());
    let cut_off = component.cut_off().signal();
    tokio::select! {
        result = call(store) => result.map_err(classify),
        () = tokio::time::sleep_until(deadline) => Err(RunError::Stopped(GuestStopped::Deadline)),
        () = cut_off => Err(RunError::Stopped(GuestStopped::CutOff)),
    }
}

/// A guest error stopped by the epoch callback carries [`GuestStopped`] in its chain.
fn classify(err: wasmtime::Error) -> RunError {
    match err.chain().find_map(|e| e.downcast_ref::<GuestStopped>()) {
        Some(stopped) => RunError::Stopped(*stopped),
        None => RunError::Guest(format!("{err:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_gate_bounds_runs_and_waits_at_most_its_wait() {
        let limits = AppLimits {
            max_concurrent_requests: 2,
            ..AppLimits::default()
        };
        let gate = Gate::new(&limits);
        let a = gate.try_enter().expect("slot 1");
        let _b = gate.enter(Duration::from_secs(1)).await.expect("slot 2");
        assert!(matches!(gate.try_enter(), Err(RunError::Busy(2))));
        let start = tokio::time::Instant::now();
        let err = gate.enter(Duration::from_secs(3)).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(err.limit(), Some("max_concurrent_requests"));
        // A slot freed while waiting is taken at once.
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(Duration::from_secs(10)).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        waiter.await.expect("join").expect("got the freed slot");
        assert_eq!(gate.available(), 1);
    }

    #[test]
    fn stopped_guests_are_told_from_failures() {
        let stopped = wasmtime::Error::new(GuestStopped::Deadline).context("call failed");
        assert!(matches!(
            classify(stopped),
            RunError::Stopped(GuestStopped::Deadline)
        ));
        let trap = wasmtime::format_err!("wasm trap: unreachable");
        let err = classify(trap);
        assert!(matches!(&err, RunError::Guest(m) if m.contains("unreachable")));
        assert_eq!(err.limit(), None);
    }
}
