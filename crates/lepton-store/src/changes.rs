//! [`Changes`]: the counter behind [`Store::changes`](crate::Store::changes), bumped whenever the
//! desired state may have changed; and [`Backoff`]/[`retry`], how a lost PostgreSQL `LISTEN`
//! connection is re-established.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// A counter that only grows; every clone bumps the same counter.
#[derive(Clone, Debug)]
pub(crate) struct Changes(watch::Sender<u64>);

impl Changes {
    /// A counter at 0.
    pub(crate) fn new() -> Changes {
        Changes(watch::Sender::new(0))
    }

    /// Records that the desired state may have changed, waking every receiver.
    pub(crate) fn bump(&self) {
        self.0.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver of the counter.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Exponential backoff: `initial`, doubling up to `max`.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt; the one after it doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Starts over at the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Calls `attempt` until it succeeds, sleeping `backoff`'s next delay after each failure;
/// `on_error` hears of each failure with the delay that follows it. The backoff is not reset.
pub(crate) async fn retry<T, E, Fut>(
    backoff: &mut Backoff,
    mut attempt: impl FnMut() -> Fut,
    mut on_error: impl FnMut(&E, Duration),
) -> T
where
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                let delay = backoff.next_delay();
                on_error(&error, delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_waits_the_backoff_between_failed_attempts() {
        let start = Instant::now();
        let mut attempts = Vec::new();
        let mut reported = Vec::new();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let value = retry(
            &mut backoff,
            || {
                attempts.push(start.elapsed().as_millis());
                let n = attempts.len();
                async move { if n < 4 { Err(n) } else { Ok("connected") } }
            },
            |error: &usize, delay| reported.push((*error, delay.as_millis())),
        )
        .await;
        assert_eq!(value, "connected");
        assert_eq!(attempts, [0, 100, 300, 700]);
        assert_eq!(reported, [(1, 100), (2, 200), (3, 400)]);
    }

    #[test]
    fn every_bump_moves_the_counter() {
        let changes = Changes::new();
        let mut rx = changes.subscribe();
        assert!(!rx.has_changed().unwrap());
        changes.bump();
        changes.clone().bump();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
    }
}
