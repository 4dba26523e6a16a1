//! [`Backoff`]: exponential delays between reconnect attempts.
//!
//! The first retry comes after `initial`, each failure doubles the delay up to `max`, and a
//! success ([`Backoff::reset`]) starts over. No jitter: one connection per app and address
//! reconnects, so there is no thundering herd to spread, and fixed delays keep tests exact.

use std::time::Duration;

/// Exponential backoff from `initial` to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
}

impl Backoff {
    /// Delays from `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            next: initial,
            failures: 0,
        }
    }

    /// The delay before the next attempt, and double it for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Failures since the last [`Self::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
        self.failures = 0;
    }

    /// Sleep for [`Self::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.failures(), 6);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_each_delay_in_turn() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let start = Instant::now();
        for _ in 0..4 {
            b.wait().await;
        }
        // 250 + 500 + 1000 + 2000 ms of (paused, auto-advanced) time.
        assert_eq!(start.elapsed(), Duration::from_millis(3750));
    }
}
