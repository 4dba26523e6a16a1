//! A lock-free histogram of durations, and the bucket layouts lepton's duration metrics use.
//!
//! `prometheus-client`'s own `Histogram` keeps its buckets behind a mutex, so every request of an
//! app would take the same lock. [`DurationHistogram`] keeps one atomic per bucket and the sum in
//! whole nanoseconds, so an observation is a bucket search plus two relaxed `fetch_add`s: no lock,
//! no allocation. A scrape reads the buckets one by one, so a scrape racing observations may see
//! a sum and a count a few observations apart; the count is always the sum of the buckets read
//! (the `+Inf` bucket equals `_count`), which is what the exposition format requires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Request durations, 100 µs to 60 s: bucket upper bounds in nanoseconds.
pub(crate) const REQUEST_BUCKETS_NS: &[u64] = &[
    100_000,        // 100 µs
    250_000,        // 250 µs
    500_000,        // 500 µs
    1_000_000,      // 1 ms
    2_500_000,      // 2.5 ms
    5_000_000,      // 5 ms
    10_000_000,     // 10 ms
    25_000_000,     // 25 ms
    50_000_000,     // 50 ms
    100_000_000,    // 100 ms
    250_000_000,    // 250 ms
    500_000_000,    // 500 ms
    1_000_000_000,  // 1 s
    2_500_000_000,  // 2.5 s
    5_000_000_000,  // 5 s
    10_000_000_000, // 10 s
    30_000_000_000, // 30 s
    60_000_000_000, // 60 s
];

/// OCI pulls, 100 ms to 10 min (a large component over a slow link takes minutes).
pub(crate) const PULL_BUCKETS_NS: &[u64] = &[
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
    300_000_000_000,
    600_000_000_000,
];

/// Component compilation, 10 ms to 2 min (a cache hit is milliseconds, Cranelift on a large
/// component tens of seconds).
pub(crate) const COMPILE_BUCKETS_NS: &[u64] = &[
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    120_000_000_000,
];

/// A histogram of durations with fixed bucket bounds, updated with atomics only.
#[derive(Debug)]
pub(crate) struct DurationHistogram {
    /// Upper bounds (inclusive, `le`) in nanoseconds, ascending.
    bounds_ns: &'static [u64],
    /// Per-bucket (not cumulative) counts; one more than `bounds_ns`, the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of every observation in nanoseconds (wraps after 584 years of total time).
    sum_ns: AtomicU64,
}

/// What a scrape read from a [`DurationHistogram`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// Sum of the observations in seconds.
    pub(crate) sum_seconds: f64,
    /// Number of observations: the sum of `buckets`' counts.
    pub(crate) count: u64,
    /// `(upper bound in seconds, non-cumulative count)`, the last bound `+Inf`.
    pub(crate) buckets: Vec<(f64, u64)>,
}

impl DurationHistogram {
    /// An empty histogram with the given ascending upper bounds in nanoseconds.
    pub(crate) fn new(bounds_ns: &'static [u64]) -> DurationHistogram {
        debug_assert!(bounds_ns.windows(2).all(|w| w[0] < w[1]));
        DurationHistogram {
            bounds_ns,
            counts: (0..=bounds_ns.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation of `nanos` nanoseconds.
    #[inline]
    pub(crate) fn observe_nanos(&self, nanos: u64) {
        // First bound >= nanos (`le` is inclusive); past the last bound is the `+Inf` bucket.
        let index = self.bounds_ns.partition_point(|&bound| bound < nanos);
        if let Some(slot) = self.counts.get(index) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records one observation of `elapsed`.
    #[inline]
    pub(crate) fn observe(&self, elapsed: Duration) {
        self.observe_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records one observation given in seconds; negative and NaN values count as 0, values
    /// too large for `u64` nanoseconds saturate.
    pub(crate) fn observe_seconds(&self, seconds: f64) {
        if seconds.is_nan() || seconds < 0.0 {
            tracing::debug!(seconds, "negative or NaN duration recorded as 0");
        }
        // `as` saturates: NaN and negatives become 0, +Inf becomes u64::MAX.
        self.observe_nanos((seconds * 1e9) as u64);
    }

    /// Reads the histogram for a scrape.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut count = 0;
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let n = slot.load(Ordering::Relaxed);
                count += n;
                let bound = match self.bounds_ns.get(i) {
                    // Exact integers below 2^53 divided by 1e9: the correctly rounded quotient,
                    // i.e. the same f64 as the decimal literal (100_000 ns -> 0.0001).
                    Some(&ns) => ns as f64 / 1e9,
                    None => f64::INFINITY,
                };
                (bound, n)
            })
            .collect();
        HistogramSnapshot {
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            count,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        let h = DurationHistogram::new(REQUEST_BUCKETS_NS);
        h.observe(Duration::from_micros(100)); // exactly on the 100 µs bound: le is inclusive
        h.observe(Duration::from_micros(101)); // just above: next bucket
        h.observe(Duration::from_secs(61)); // past 60 s: +Inf
        h.observe(Duration::ZERO);
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), REQUEST_BUCKETS_NS.len() + 1);
        assert_eq!(s.buckets[0], (0.0001, 2));
        assert_eq!(s.buckets[1], (0.00025, 1));
        assert_eq!(s.buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!(
            (s.sum_seconds - 61.000201).abs() < 1e-9,
            "{}",
            s.sum_seconds
        );
    }

    #[test]
    fn seconds_are_converted_and_invalid_values_clamped() {
        let h = DurationHistogram::new(PULL_BUCKETS_NS);
        h.observe_seconds(0.3);
        h.observe_seconds(-1.0);
        h.observe_seconds(f64::NAN);
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], (0.1, 2)); // the two invalid ones as 0
        assert_eq!(s.buckets[2], (0.5, 1));
        assert!((s.sum_seconds - 0.3).abs() < 1e-9);
    }

    #[test]
    fn bucket_layouts_are_ascending_and_cover_their_ranges() {
        for bounds in [REQUEST_BUCKETS_NS, PULL_BUCKETS_NS, COMPILE_BUCKETS_NS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(REQUEST_BUCKETS_NS.first(), Some(&100_000));
        assert_eq!(REQUEST_BUCKETS_NS.last(), Some(&60_000_000_000));
    }
}
