//! [`InFlight`]: counting one version's running work, so a retired version can be drained.
//!
//! Every run (and every event queued for a version) holds an [`InFlightGuard`]; the version is
//! drained when the count is back to zero ([`InFlight::idle`]).

use std::sync::Arc;

use tokio::sync::watch;

/// A count of work in flight, shared by everything that runs on one version.
#[derive(Debug, Clone)]
pub struct InFlight(Arc<watch::Sender<usize>>);

impl Default for InFlight {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl InFlight {
    /// Count one more piece of work until the guard is dropped.
    pub fn enter(&self) -> InFlightGuard {
        self.0.send_modify(|n| *n += 1);
        InFlightGuard(self.0.clone())
    }

    /// The work in flight now.
    pub fn count(&self) -> usize {
        *self.0.borrow()
    }

    /// Resolves once nothing is in flight (at once if nothing is).
    pub async fn idle(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// One piece of work counted by an [`InFlight`].
#[derive(Debug)]
#[must_use = "the work is counted only while the guard lives"]
pub struct InFlightGuard(Arc<watch::Sender<usize>>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_last_guard() {
        let in_flight = InFlight::default();
        in_flight.idle().await;
        let a = in_flight.enter();
        let b = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(a);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "one guard is still held");
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("drained once the last guard went")
            .expect("waiter");
        assert_eq!(in_flight.count(), 0);
    }
}
