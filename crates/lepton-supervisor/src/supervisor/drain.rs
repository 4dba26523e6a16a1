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

/// Pass a cut of `cut_off` on to each of `switches` (the values one drain covers), if it comes
/// within `within`. A drained version drops its `CutOff` uncut, and that must not cut a value
/// its event triggers may still be using: the task holds a clone so the signal resolves on a
/// cut only.
pub(super) fn forward_cut(cut_off: &CutOff, switches: Vec<CutOff>, within: Duration) {
    let cut = cut_off.signal();
    let watcher = cut_off.clone();
    tokio::spawn(async move {
        let fired = tokio::time::timeout(within, cut).await.is_ok();
        if fired && watcher.is_cut() {
            for switch in switches {
                switch.cut();
            }
        }
    });
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

    /// Runs spawned tasks and timers up to `d` from now (time is paused).
    async fn run_for(d: Duration) {
        tokio::time::sleep(d).await;
        tokio::task::yield_now().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_reaches_every_value_of_the_drain() {
        let cut = CutOff::default();
        let values = [CutOff::default(), CutOff::default()];
        forward_cut(&cut, values.to_vec(), Duration::from_secs(3));
        run_for(Duration::from_secs(1)).await;
        assert!(
            values.iter().all(|v| !v.is_cut()),
            "cut before the drain's cut"
        );
        cut.cut();
        run_for(Duration::from_millis(1)).await;
        assert!(values.iter().all(CutOff::is_cut));
    }

    /// One value retired as `retire` does (a 2 s drain, cuts forwarded for 3 s); with `busy`, a
    /// request still holds it (returned, to keep it held). Returns the value's switch.
    fn retire_one(busy: bool) -> (CutOff, Option<Arc<i32>>) {
        let cut = CutOff::default();
        let value = CutOff::default();
        forward_cut(&cut, vec![value.clone()], Duration::from_secs(3));
        let held = Arc::new(1);
        let request = busy.then(|| held.clone());
        let released = http_released(held);
        in_background("k".into(), "http", released, cut, Duration::from_secs(2));
        (value, request)
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_version_dropping_its_cut_off_cuts_nothing() {
        // The drain finishes at once: its `CutOff` is dropped uncut.
        let (value, _) = retire_one(false);
        run_for(Duration::from_secs(10)).await;
        assert!(!value.is_cut());
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_version_cut_at_the_timeout_cuts_every_value() {
        let (value, _request) = retire_one(true);
        run_for(Duration::from_millis(1900)).await;
        assert!(!value.is_cut(), "cut before the drain timeout");
        run_for(Duration::from_millis(200)).await;
        assert!(value.is_cut());
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
