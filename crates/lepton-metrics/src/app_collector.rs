//! Writes every app's series at scrape time, as a `prometheus-client` [`Collector`].
//!
//! The per-app values live in atomics (`app`), not in `prometheus-client` `Family`s:
//! a `Family` lookup hashes the label set under a lock, and one app's series must disappear
//! together when the app is removed. So the app table is snapshotted once per scrape and each
//! metric family is written from it, labels formatted only here.
//!
//! Which series appear: counters and histograms once they have counted something (as a
//! `CounterVec` child appears on first use in other clients), so 1xx/`other` and limits never
//! hit cost nothing; the gauges `in_flight`, `queued` and `instances` for every known app; the
//! four `lepton_app_state` series once the app's state was first set.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::registry::Unit;

use crate::app::{AppSeries, AppState, LimitKind, STATUS_CLASSES};
use crate::histogram::DurationHistogram;
use crate::table::AppTable;

/// The [`Collector`] of every app's series.
#[derive(Debug)]
pub(crate) struct AppCollector {
    table: Arc<AppTable>,
}

impl AppCollector {
    pub(crate) fn new(table: Arc<AppTable>) -> AppCollector {
        AppCollector { table }
    }
}

type Apps = [(Arc<str>, Arc<AppSeries>)];

impl Collector for AppCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let apps = self.table.snapshot();
        encode_requests(&mut encoder, &apps)?;
        encode_limit_hits(&mut encoder, &apps)?;
        encode_gauges(&mut encoder, &apps)?;
        encode_states(&mut encoder, &apps)?;
        encode_durations(&mut encoder, &apps)
    }
}

/// `lepton_http_requests_total{app, status_class}`.
fn encode_requests(encoder: &mut DescriptorEncoder, apps: &Apps) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "lepton_http_requests",
        "HTTP responses sent by the app, by status class.",
        None,
        MetricType::Counter,
    )?;
    for (app, series) in apps {
        for (class, counter) in STATUS_CLASSES.iter().zip(&series.responses) {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                let labels = [("app", &**app), ("status_class", *class)];
                encode_counter(&mut family, &labels, n)?;
            }
        }
    }
    Ok(())
}

/// `lepton_http_limit_hits_total{app, limit}`.
fn encode_limit_hits(encoder: &mut DescriptorEncoder, apps: &Apps) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "lepton_http_limit_hits",
        "Requests refused or cut off by one of the app's limits.",
        None,
        MetricType::Counter,
    )?;
    for (app, series) in apps {
        for limit in LimitKind::ALL {
            let n = series.limit_hits(limit);
            if n > 0 {
                let labels = [("app", &**app), ("limit", limit.as_str())];
                encode_counter(&mut family, &labels, n)?;
            }
        }
    }
    Ok(())
}

/// The plain per-app gauges: in flight, queued, instances.
fn encode_gauges(encoder: &mut DescriptorEncoder, apps: &Apps) -> Result<(), std::fmt::Error> {
    type Read = fn(&AppSeries) -> i64;
    let gauges: [(&str, &str, Read); 3] = [
        (
            "lepton_http_requests_in_flight",
            "Requests the app is handling now.",
            |s| s.in_flight.load(Ordering::Relaxed),
        ),
        (
            "lepton_http_requests_queued",
            "Requests waiting for one of the app's concurrency slots.",
            |s| s.queued.load(Ordering::Relaxed),
        ),
        ("lepton_app_instances", "The app's live instances.", |s| {
            s.instances.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, read) in gauges {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (app, series) in apps {
            family
                .encode_family(&[("app", &**app)])?
                .encode_gauge(&read(series))?;
        }
    }
    Ok(())
}

/// `lepton_app_state{app, state}`: one read of the state per app, so exactly one series is 1.
fn encode_states(encoder: &mut DescriptorEncoder, apps: &Apps) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "lepton_app_state",
        "The app's lifecycle state: 1 for the current one (serving, loading, failed, stopped).",
        None,
        MetricType::Gauge,
    )?;
    for (app, series) in apps {
        let Some(current) = series.state() else {
            continue;
        };
        for state in AppState::ALL {
            let labels = [("app", &**app), ("state", state.as_str())];
            family
                .encode_family(&labels)?
                .encode_gauge(&i64::from(state == current))?;
        }
    }
    Ok(())
}

/// The duration histograms: requests, pulls (by result), compilations.
fn encode_durations(encoder: &mut DescriptorEncoder, apps: &Apps) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "lepton_http_request_duration",
        "Time from a request's arrival to its response, per app.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (app, series) in apps {
        encode_histogram(&mut family, &[("app", &**app)], &series.request_duration)?;
    }

    let mut family = encoder.encode_descriptor(
        "lepton_app_pull_duration",
        "Time to pull the app from its registry, by result.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (app, series) in apps {
        for (result, histogram) in [("ok", &series.pull_ok), ("error", &series.pull_error)] {
            let labels = [("app", &**app), ("result", result)];
            encode_histogram(&mut family, &labels, histogram)?;
        }
    }

    let mut family = encoder.encode_descriptor(
        "lepton_app_compile_duration",
        "Time to compile (or load from the cache) the app's components.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (app, series) in apps {
        encode_histogram(&mut family, &[("app", &**app)], &series.compile)?;
    }
    Ok(())
}

fn encode_counter(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> Result<(), std::fmt::Error> {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// Writes one histogram series if it has observed anything.
fn encode_histogram(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    histogram: &DurationHistogram,
) -> Result<(), std::fmt::Error> {
    let snapshot = histogram.snapshot();
    if snapshot.count == 0 {
        return Ok(());
    }
    family.encode_family(labels)?.encode_histogram(
        snapshot.sum_seconds,
        snapshot.count,
        &snapshot.buckets,
        None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
    )
}
