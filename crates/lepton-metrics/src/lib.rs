//! lepton's Prometheus metrics: one [`Metrics`] per process, which the HTTP request stack, the
//! supervisor and the admin API's `GET /metrics` share.
//!
//! - The request path of each app records through an [`AppMetrics`] handle taken once per app
//!   ([`Metrics::app`]): a response, a limit hit, an in-flight guard, the queue and instance
//!   gauges. Each is a few relaxed atomic operations — no lock, no allocation, no label
//!   formatting — because the handle holds the app's series directly (`app`).
//! - The supervisor and loader record app events by name: pulls, compilations, the app's state.
//! - [`Metrics::remove_app`] forgets every series of a deleted app at once (`table`).
//! - [`Metrics::render`] writes everything in the Prometheus text exposition format 0.0.4
//!   ([`CONTENT_TYPE`]), with `prometheus-client`'s encoder: the app series through a scrape-time
//!   collector (`app_collector`), and the standard `process_*` metrics read from `/proc/self`
//!   (`process`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `lepton_http_requests_total` | counter | `app`, `status_class` (`1xx`…`5xx`, `other`) |
//! | `lepton_http_request_duration_seconds` | histogram (100 µs … 60 s) | `app` |
//! | `lepton_http_limit_hits_total` | counter | `app`, `limit` ([`LimitKind`]) |
//! | `lepton_http_requests_in_flight` | gauge | `app` |
//! | `lepton_http_requests_queued` | gauge | `app` |
//! | `lepton_app_instances` | gauge | `app` |
//! | `lepton_app_state` | gauge | `app`, `state` ([`AppState`]) |
//! | `lepton_app_pull_duration_seconds` | histogram (100 ms … 10 min) | `app`, `result` (`ok`, `error`) |
//! | `lepton_app_compile_duration_seconds` | histogram (10 ms … 2 min) | `app` |
//! | `lepton_app_loads_total` | counter | (loads of apps on demand or preloaded, reloads after eviction) |
//! | `lepton_app_evictions_total` | counter | (loaded apps evicted: idle timeout, memory budget) |
//! | `lepton_apps_loaded` | gauge | (apps loaded now) |
//! | `lepton_apps_loaded_code_bytes` | gauge | (compiled code the loaded apps map, as the memory budget counts it) |
//! | `process_*` | | CPU, memory, fds, start time, threads |

#![warn(missing_docs)]

mod app;
mod app_collector;
mod histogram;
mod process;
mod table;

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

pub use app::{AppMetrics, AppState, InFlightGuard, InstanceGuard, LimitKind};

use app_collector::AppCollector;
use process::ProcessCollector;
use table::AppTable;

/// The `Content-Type` of [`Metrics::render`]'s output:
/// `text/plain; version=0.0.4; charset=utf-8`, the Prometheus text format that every Prometheus
/// server and compatible scraper reads and `promtool check metrics` checks.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// All of lepton's metrics; one per process. Cheap to clone (an `Arc` inside), `Send + Sync`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Holds the collectors; encoded on every scrape.
    registry: Registry,
    /// Process-wide loading and eviction counters.
    residency: ResidencyMetrics,
    /// Every app's series, shared with the app collector.
    apps: Arc<AppTable>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("apps", &self.inner.apps.len())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered: the per-app families (empty until apps record) and the process
    /// collector.
    pub fn new() -> Metrics {
        let apps = Arc::new(AppTable::default());
        let mut registry = Registry::default();
        registry.register_collector(Box::new(AppCollector::new(Arc::clone(&apps))));
        registry.register_collector(Box::new(ProcessCollector));
        let residency = ResidencyMetrics::default();
        registry.register(
            "lepton_app_loads",
            "Loads of apps (first loads and reloads after eviction)",
            residency.loads.clone(),
        );
        registry.register(
            "lepton_app_evictions",
            "Loaded apps evicted (idle timeout or memory budget)",
            residency.evictions.clone(),
        );
        registry.register(
            "lepton_apps_loaded",
            "Apps loaded now",
            residency.loaded.clone(),
        );
        registry.register(
            "lepton_apps_loaded_code_bytes",
            "Bytes of compiled code the loaded apps map, as the memory budget counts them",
            residency.code_bytes.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                apps,
                residency,
            }),
        }
    }

    /// The process-wide loading and eviction series, for the residency to record into.
    pub fn residency(&self) -> ResidencyMetrics {
        self.inner.residency.clone()
    }

    /// The handle the request path of `app` records into. Take it once per app (it is cheap to
    /// clone) rather than per request: this call looks the app up under a lock, the handle's
    /// methods do not. Every handle for the same name records into the same series, so an app's
    /// counters survive version replaces.
    pub fn app(&self, app: &str) -> AppMetrics {
        AppMetrics::new(self.inner.apps.get_or_create(app))
    }

    /// Forgets every series of `app` (when it is deleted), so apps can come and go without the
    /// exposition growing. Call it after the app's last event: a later [`Metrics::app`],
    /// [`Metrics::set_app_state`] or other event for the name starts fresh series, and handles
    /// taken before record into series no longer exported.
    pub fn remove_app(&self, app: &str) {
        if self.inner.apps.remove(app) {
            tracing::debug!(app, "metrics: app series removed");
        }
    }

    /// Every metric in the Prometheus text exposition format 0.0.4; answer with
    /// [`CONTENT_TYPE`]. Process metrics are read from `/proc/self` now.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a `String` cannot fail and neither collector returns its own errors, so an
        // error here would be a bug in the encoder: log it and serve what was written.
        if let Err(e) = prometheus_text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "metrics: encoding the exposition failed");
        }
        out
    }

    /// An OCI pull of `app` finished after `seconds`: observes
    /// `lepton_app_pull_duration_seconds{app, result="ok"|"error"}`.
    pub fn pull_finished(&self, app: &str, seconds: f64, ok: bool) {
        let series = self.inner.apps.get_or_create(app);
        let histogram = if ok {
            &series.pull_ok
        } else {
            &series.pull_error
        };
        histogram.observe_seconds(seconds);
    }

    /// Compiling (or loading from the cache) `app`'s components took `seconds`: observes
    /// `lepton_app_compile_duration_seconds{app}`.
    pub fn compile_finished(&self, app: &str, seconds: f64) {
        self.inner
            .apps
            .get_or_create(app)
            .compile
            .observe_seconds(seconds);
    }

    /// `app` is now in `state`: `lepton_app_state{app, state}` is 1 for it and 0 for the three
    /// others. The state is one atomic, so no scrape sees two states (or none) at 1.
    pub fn set_app_state(&self, app: &str, state: AppState) {
        self.inner.apps.get_or_create(app).set_state(state);
    }
}

/// Process-wide loading and eviction series; clones share them.
#[derive(Clone, Default, Debug)]
pub struct ResidencyMetrics {
    /// `lepton_app_loads_total`.
    pub loads: prometheus_client::metrics::counter::Counter,
    /// `lepton_app_evictions_total`.
    pub evictions: prometheus_client::metrics::counter::Counter,
    /// `lepton_apps_loaded`.
    pub loaded: prometheus_client::metrics::gauge::Gauge,
    /// `lepton_apps_loaded_code_bytes`.
    pub code_bytes: prometheus_client::metrics::gauge::Gauge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_is_send_sync_and_clones_share_state() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Metrics>();
        assert_send_sync::<AppMetrics>();

        let metrics = Metrics::new();
        let clone = metrics.clone();
        clone.app("shop").set_instances(2);
        assert!(
            metrics
                .render()
                .contains("lepton_app_instances{app=\"shop\"} 2\n")
        );
        assert_eq!(format!("{metrics:?}"), "Metrics { apps: 1, .. }");
    }

    #[test]
    fn instance_guards_count_live_instances() {
        let metrics = Metrics::new();
        let app = metrics.app("shop");
        let (a, b) = (app.instance(), app.instance());
        assert!(
            metrics
                .render()
                .contains("lepton_app_instances{app=\"shop\"} 2\n")
        );
        drop((a, b));
        assert!(
            metrics
                .render()
                .contains("lepton_app_instances{app=\"shop\"} 0\n")
        );
    }

    #[test]
    fn content_type_is_the_prometheus_text_format() {
        assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    }
}
