//! The one drain primitive every trigger type's retired versions go through: wait (in the
//! background) up to the drain timeout for what the version still runs to finish, then pull its
//! cut-off switch, which stops every guest it still runs at its next epoch tick.
//!
//! HTTP versions are drained when the last request holding them lets go ([`http_released`]);
//! Redis and cron versions when their in-flight count reaches zero
//! ([`super::triggers::drained`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use lepton_runtime::CutOff;

/// Drain `what` (a description for the logs) of app `key` in the background: wait up to
/// `timeout` for `drained`, then cut the version off and log it.
pub(super) fn in_background(
    key: String,
    what: &'static str,
    drained: impl Future<Output = ()> + Send + 'static,
    cut_off: CutOff,
    timeout: Duration,
) {
    tokio::spawn(async move {
        let _ = wait(&key, what, drained, &cut_off, timeout).await;
    });
}

/// Wait up to `timeout` for `drained`; past it, cut the version off and wait (up to
/// [`AFTER_CUT`]) for the cut work to end. `true` when it drained in time.
pub(super) async fn wait(
    key: &str,
    what: &'static str,
    drained: impl Future<Output = ()>,
    cut_off: &CutOff,
    timeout: Duration,
) -> bool {
    let mut drained = std::pin::pin!(drained);
    if tokio::time::timeout(timeout, &mut drained).await.is_ok() {
        tracing::info!(%key, what, cut_off = false, "previous version released: its in-flight requests finished");
        return true;
    }
    tracing::warn!(%key, what, "drain timeout: cutting off the previous version's remaining requests");
    cut_off.cut();
    if tokio::time::timeout(AFTER_CUT, drained).await.is_ok() {
        tracing::info!(%key, what, cut_off = true, "previous version released: its in-flight requests finished");
    } else {
        tracing::warn!(%key, what, "previous version still busy {AFTER_CUT:?} after its requests were cut off");
    }
    false
}

/// How long a cut-off version gets for its guests to stop before that is logged as a problem.
const AFTER_CUT: Duration = Duration::from_secs(5);

/// Resolves once nothing holds `value` any more (each request on an HTTP version holds it),
/// checking every 20 ms.
pub(super) fn http_released<T: Send + Sync + 'static>(
    value: Arc<T>,
) -> impl Future<Output = ()> + Send + 'static {
    let weak: Weak<T> = Arc::downgrade(&value);
    drop(value);
    async move {
        while weak.strong_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_version_that_drains_in_time_is_not_cut_off() {
        let cut = CutOff::default();
        let held = Arc::new(1);
        let request = held.clone();
        let released = http_released(held);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(request);
        });
        assert!(wait("k", "http", released, &cut, Duration::from_secs(2)).await);
        assert!(!cut.is_cut());
    }

    #[tokio::test(start_paused = true)]
    async fn a_version_still_busy_at_the_timeout_is_cut_off() {
        let cut = CutOff::default();
        let held = Arc::new(1);
        let _request = held.clone();
        assert!(
            !wait(
                "k",
                "http",
                http_released(held),
                &cut,
                Duration::from_secs(2)
            )
            .await
        );
        assert!(cut.is_cut());
    }
}
