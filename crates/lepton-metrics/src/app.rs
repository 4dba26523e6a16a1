//! One app's series and the handle its request path records into.
//!
//! [`AppSeries`] holds every per-app value as plain atomics; [`AppMetrics`] is an `Arc` to it,
//! handed out once per app by [`Metrics::app`](crate::Metrics::app). The app's name is stored
//! once, as the key of the app table (`table`); label values are only written at scrape
//! time, so recording a response is a few relaxed atomic adds: no lock, no allocation, no
//! hashing, no formatting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::histogram::{
    COMPILE_BUCKETS_NS, DurationHistogram, PULL_BUCKETS_NS, REQUEST_BUCKETS_NS,
};

/// An app's lifecycle state, exported as `lepton_app_state{app, state}`: 1 for the current
/// state, 0 for the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppState {
    /// Serving requests.
    Serving,
    /// Being pulled, compiled or instantiated.
    Loading,
    /// Failed to load; the last error is in the supervisor's status.
    Failed,
    /// Stopped (drained, or removed from the desired state).
    Stopped,
}

impl AppState {
    /// Every state, in the order their series are written.
    pub const ALL: [AppState; 4] = [
        AppState::Serving,
        AppState::Loading,
        AppState::Failed,
        AppState::Stopped,
    ];

    /// The `state` label value: `serving`, `loading`, `failed` or `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Serving => "serving",
            AppState::Loading => "loading",
            AppState::Failed => "failed",
            AppState::Stopped => "stopped",
        }
    }

    /// The value kept in [`AppSeries::state`]: 0 means "never set".
    fn code(self) -> u8 {
        match self {
            AppState::Serving => 1,
            AppState::Loading => 2,
            AppState::Failed => 3,
            AppState::Stopped => 4,
        }
    }

    fn from_code(code: u8) -> Option<AppState> {
        AppState::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// A per-app limit that refused or cut off a request, exported as the `limit` label of
/// `lepton_http_limit_hits_total`; the label values are the limit field names of the app spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `request_timeout_ms`: the request ran past its deadline.
    RequestTimeout,
    /// `max_queued_requests`: the queue was full, the request was refused.
    MaxQueued,
    /// `max_concurrent_requests`: every slot was busy (counted when a request has to wait or is
    /// refused because of it, as the owner decides).
    MaxConcurrent,
    /// `max_request_body_bytes`: the request body was too large.
    MaxRequestBody,
    /// `memory_mib`: a guest hit its memory limit.
    Memory,
}

impl LimitKind {
    /// Every limit, in the order their series are written.
    pub const ALL: [LimitKind; 5] = [
        LimitKind::RequestTimeout,
        LimitKind::MaxQueued,
        LimitKind::MaxConcurrent,
        LimitKind::MaxRequestBody,
        LimitKind::Memory,
    ];

    /// The `limit` label value, the limit's field name (e.g. `request_timeout_ms`).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::RequestTimeout => "request_timeout_ms",
            LimitKind::MaxQueued => "max_queued_requests",
            LimitKind::MaxConcurrent => "max_concurrent_requests",
            LimitKind::MaxRequestBody => "max_request_body_bytes",
            LimitKind::Memory => "memory_mib",
        }
    }

    fn index(self) -> usize {
        match self {
            LimitKind::RequestTimeout => 0,
            LimitKind::MaxQueued => 1,
            LimitKind::MaxConcurrent => 2,
            LimitKind::MaxRequestBody => 3,
            LimitKind::Memory => 4,
        }
    }
}

/// The `status_class` label values, indexed by [`status_class_index`].
pub(crate) const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Index into [`STATUS_CLASSES`]: 100–199 → `1xx` … 500–599 → `5xx`, anything else `other`.
#[inline]
pub(crate) fn status_class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 5,
    }
}

/// Every series of one app, as atomics. Shared by the table and every [`AppMetrics`] handle.
#[derive(Debug)]
pub(crate) struct AppSeries {
    /// `lepton_http_requests_total` by [`STATUS_CLASSES`] index.
    pub(crate) responses: [AtomicU64; 6],
    /// `lepton_http_request_duration_seconds`.
    pub(crate) request_duration: DurationHistogram,
    /// `lepton_http_limit_hits_total` by [`LimitKind::index`].
    pub(crate) limit_hits: [AtomicU64; 5],
    /// `lepton_http_requests_in_flight`.
    pub(crate) in_flight: AtomicI64,
    /// `lepton_http_requests_queued`.
    pub(crate) queued: AtomicI64,
    /// `lepton_app_instances`.
    pub(crate) instances: AtomicI64,
    /// `lepton_app_state`, one atomic so a scrape never sees two states (or none) at 1.
    state: AtomicU8,
    /// `lepton_app_pull_duration_seconds{result="ok"}`.
    pub(crate) pull_ok: DurationHistogram,
    /// `lepton_app_pull_duration_seconds{result="error"}`.
    pub(crate) pull_error: DurationHistogram,
    /// `lepton_app_compile_duration_seconds`.
    pub(crate) compile: DurationHistogram,
}

impl AppSeries {
    /// A new app: every counter at 0, no state yet.
    pub(crate) fn new() -> AppSeries {
        AppSeries {
            responses: Default::default(),
            request_duration: DurationHistogram::new(REQUEST_BUCKETS_NS),
            limit_hits: Default::default(),
            in_flight: AtomicI64::new(0),
            queued: AtomicI64::new(0),
            instances: AtomicI64::new(0),
            state: AtomicU8::new(0),
            pull_ok: DurationHistogram::new(PULL_BUCKETS_NS),
            pull_error: DurationHistogram::new(PULL_BUCKETS_NS),
            compile: DurationHistogram::new(COMPILE_BUCKETS_NS),
        }
    }

    /// The current state, `None` until one was set.
    pub(crate) fn state(&self) -> Option<AppState> {
        AppState::from_code(self.state.load(Ordering::Relaxed))
    }

    /// Sets the current state.
    pub(crate) fn set_state(&self, state: AppState) {
        self.state.store(state.code(), Ordering::Relaxed);
    }

    /// The `lepton_http_limit_hits_total` value for `limit`.
    pub(crate) fn limit_hits(&self, limit: LimitKind) -> u64 {
        self.limit_hits[limit.index()].load(Ordering::Relaxed)
    }
}

/// The handle the request path of one app records into: cheap to clone (one `Arc`), and every
/// method is a few relaxed atomic operations.
///
/// A handle kept after [`Metrics::remove_app`](crate::Metrics::remove_app) still works but
/// records into series no longer exported; [`Metrics::app`](crate::Metrics::app) for the same
/// name then starts fresh series.
#[derive(Debug, Clone)]
pub struct AppMetrics {
    series: Arc<AppSeries>,
}

impl AppMetrics {
    pub(crate) fn new(series: Arc<AppSeries>) -> AppMetrics {
        AppMetrics { series }
    }

    /// A response was sent: counts `lepton_http_requests_total{app, status_class}` (`1xx` …
    /// `5xx`, `other` outside 100–599) and observes `lepton_http_request_duration_seconds{app}`.
    #[inline]
    pub fn record_response(&self, status: u16, elapsed: Duration) {
        self.series.responses[status_class_index(status)].fetch_add(1, Ordering::Relaxed);
        self.series.request_duration.observe(elapsed);
    }

    /// A limit refused or cut off a request: counts `lepton_http_limit_hits_total{app, limit}`.
    #[inline]
    pub fn limit_hit(&self, limit: LimitKind) {
        self.series.limit_hits[limit.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A request starts: `lepton_http_requests_in_flight{app}` is one higher until the returned
    /// guard is dropped.
    #[inline]
    pub fn in_flight(&self) -> InFlightGuard {
        self.series.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            series: Arc::clone(&self.series),
        }
    }

    /// Sets `lepton_http_requests_queued{app}`: requests waiting for a concurrency slot.
    pub fn set_queued(&self, n: i64) {
        self.series.queued.store(n, Ordering::Relaxed);
    }

    /// Sets `lepton_app_instances{app}`: the app's live instances.
    pub fn set_instances(&self, n: i64) {
        self.series.instances.store(n, Ordering::Relaxed);
    }

    /// An instance (a store) of the app starts: `lepton_app_instances{app}` is one higher until
    /// the returned guard is dropped with the store.
    pub fn instance(&self) -> InstanceGuard {
        self.series.instances.fetch_add(1, Ordering::Relaxed);
        InstanceGuard {
            series: Arc::clone(&self.series),
        }
    }
}

/// Counts one live instance in `lepton_app_instances{app}`; from [`AppMetrics::instance`].
#[derive(Debug)]
#[must_use = "the instance counts only while the guard lives"]
pub struct InstanceGuard {
    series: Arc<AppSeries>,
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        self.series.instances.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one request in `lepton_http_requests_in_flight{app}` while it lives; from
/// [`AppMetrics::in_flight`]. Owns its handle, so it can move into the request's future.
#[derive(Debug)]
#[must_use = "the request counts as in flight only while the guard lives"]
pub struct InFlightGuard {
    series: Arc<AppSeries>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.series.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_follow_the_hundreds_and_everything_else_is_other() {
        let class = |s| STATUS_CLASSES[status_class_index(s)];
        assert_eq!(class(100), "1xx");
        assert_eq!(class(199), "1xx");
        assert_eq!(class(200), "2xx");
        assert_eq!(class(302), "3xx");
        assert_eq!(class(404), "4xx");
        assert_eq!(class(599), "5xx");
        assert_eq!(class(600), "other");
        assert_eq!(class(99), "other");
        assert_eq!(class(0), "other");
        assert_eq!(class(u16::MAX), "other");
    }

    #[test]
    fn label_values_are_the_spec_field_names_and_codes_round_trip() {
        let limits: Vec<_> = LimitKind::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(
            limits,
            [
                "request_timeout_ms",
                "max_queued_requests",
                "max_concurrent_requests",
                "max_request_body_bytes",
                "memory_mib"
            ]
        );
        for (i, l) in LimitKind::ALL.into_iter().enumerate() {
            assert_eq!(l.index(), i);
        }
        for s in AppState::ALL {
            assert_eq!(AppState::from_code(s.code()), Some(s));
        }
        assert_eq!(AppState::from_code(0), None);
    }

    #[test]
    fn handles_record_into_the_shared_series() {
        let series = Arc::new(AppSeries::new());
        let a = AppMetrics::new(Arc::clone(&series));
        let b = a.clone();
        a.record_response(200, Duration::from_millis(3));
        b.record_response(503, Duration::from_millis(3));
        b.limit_hit(LimitKind::Memory);
        assert_eq!(series.responses[1].load(Ordering::Relaxed), 1);
        assert_eq!(series.responses[4].load(Ordering::Relaxed), 1);
        assert_eq!(series.limit_hits(LimitKind::Memory), 1);
        assert_eq!(series.request_duration.snapshot().count, 2);
        assert_eq!(series.state(), None);
        series.set_state(AppState::Failed);
        assert_eq!(series.state(), Some(AppState::Failed));
    }
}
