//! What `Metrics::render` shows after recording through the public API.

mod support;

use std::time::Duration;

use lepton_metrics::{AppState, LimitKind, Metrics};
use support::{Exposition, parse};

fn scrape(metrics: &Metrics) -> (String, Exposition) {
    let text = metrics.render();
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, parsed)
}

fn has_lines(text: &str, lines: &[&str]) {
    for line in lines {
        has_line(text, line);
    }
}

fn has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in\n{text}"
    );
}

#[test]
fn responses_are_counted_by_status_class_and_timed() {
    let metrics = Metrics::new();
    let shop = metrics.app("shop");
    for _ in 0..3 {
        shop.record_response(200, Duration::from_micros(80));
    }
    shop.record_response(404, Duration::from_millis(3));
    shop.record_response(503, Duration::from_secs(2));
    shop.record_response(700, Duration::from_secs(90));
    metrics
        .app("shop")
        .record_response(101, Duration::from_millis(1));

    let (text, parsed) = scrape(&metrics);
    has_lines(
        &text,
        &[
            "# TYPE lepton_http_requests_total counter",
            r#"lepton_http_requests_total{app="shop",status_class="2xx"} 3"#,
            r#"lepton_http_requests_total{app="shop",status_class="4xx"} 1"#,
            r#"lepton_http_requests_total{app="shop",status_class="5xx"} 1"#,
            r#"lepton_http_requests_total{app="shop",status_class="1xx"} 1"#,
            r#"lepton_http_requests_total{app="shop",status_class="other"} 1"#,
        ],
    );
    // Never-seen classes are not written.
    assert!(!text.contains(r#"status_class="3xx""#), "{text}");

    has_line(
        &text,
        "# TYPE lepton_http_request_duration_seconds histogram",
    );
    let bucket = |le: &str| {
        parsed.value(
            "lepton_http_request_duration_seconds_bucket",
            &[("app", "shop"), ("le", le)],
        )
    };
    assert_eq!(bucket("0.0001"), Some(3.0)); // the three 80 µs responses
    assert_eq!(bucket("0.001"), Some(4.0)); // + the 1 ms one (le is inclusive)
    assert_eq!(bucket("0.005"), Some(5.0)); // + 3 ms
    assert_eq!(bucket("2.5"), Some(6.0)); // + 2 s
    assert_eq!(bucket("60"), Some(6.0));
    assert_eq!(bucket("+Inf"), Some(7.0)); // + 90 s
    has_line(
        &text,
        r#"lepton_http_request_duration_seconds_count{app="shop"} 7"#,
    );
    let sum = parsed
        .value(
            "lepton_http_request_duration_seconds_sum",
            &[("app", "shop")],
        )
        .unwrap_or(f64::NAN);
    assert!((sum - 92.00424).abs() < 1e-6, "sum {sum}");
}

#[test]
fn limits_gauges_and_in_flight_guard() {
    let metrics = Metrics::new();
    let shop = metrics.app("shop");
    shop.limit_hit(LimitKind::RequestTimeout);
    shop.limit_hit(LimitKind::RequestTimeout);
    shop.limit_hit(LimitKind::MaxQueued);
    shop.set_queued(7);
    shop.set_instances(3);

    let (text, _) = scrape(&metrics);
    has_lines(
        &text,
        &[
            r#"lepton_http_limit_hits_total{app="shop",limit="request_timeout_ms"} 2"#,
            r#"lepton_http_limit_hits_total{app="shop",limit="max_queued_requests"} 1"#,
        ],
    );
    assert!(!text.contains("memory_mib"), "{text}");
    has_lines(
        &text,
        &[
            r#"lepton_http_requests_queued{app="shop"} 7"#,
            r#"lepton_app_instances{app="shop"} 3"#,
            "# TYPE lepton_http_requests_in_flight gauge",
            r#"lepton_http_requests_in_flight{app="shop"} 0"#,
        ],
    );

    let first = shop.in_flight();
    let second = shop.clone().in_flight();
    has_line(
        &metrics.render(),
        r#"lepton_http_requests_in_flight{app="shop"} 2"#,
    );
    drop(first);
    has_line(
        &metrics.render(),
        r#"lepton_http_requests_in_flight{app="shop"} 1"#,
    );
    // The guard owns its handle: it can outlive the `AppMetrics` it came from.
    drop(shop);
    drop(second);
    has_line(
        &metrics.render(),
        r#"lepton_http_requests_in_flight{app="shop"} 0"#,
    );
}

#[test]
fn app_state_has_exactly_one_state_at_one() {
    let metrics = Metrics::new();
    metrics.set_app_state("shop", AppState::Loading);
    metrics.set_app_state("shop", AppState::Serving);
    metrics.set_app_state("blog", AppState::Failed);

    let (text, parsed) = scrape(&metrics);
    has_line(&text, "# TYPE lepton_app_state gauge");
    for (app, current) in [("shop", "serving"), ("blog", "failed")] {
        let mut ones = Vec::new();
        for state in ["serving", "loading", "failed", "stopped"] {
            let v = parsed.value("lepton_app_state", &[("app", app), ("state", state)]);
            assert!(v == Some(0.0) || v == Some(1.0), "{app} {state}: {v:?}");
            if v == Some(1.0) {
                ones.push(state);
            }
        }
        assert_eq!(ones, [current], "{text}");
    }
    metrics.set_app_state("shop", AppState::Stopped);
    let (_, parsed) = scrape(&metrics);
    assert_eq!(
        parsed.value("lepton_app_state", &[("app", "shop"), ("state", "stopped")]),
        Some(1.0)
    );
    assert_eq!(
        parsed.value("lepton_app_state", &[("app", "shop"), ("state", "serving")]),
        Some(0.0)
    );
}

#[test]
fn pulls_and_compiles_are_timed_per_app() {
    let metrics = Metrics::new();
    metrics.pull_finished("shop", 0.3, true);
    metrics.pull_finished("shop", 1.5, true);
    metrics.pull_finished("shop", 700.0, false);
    metrics.compile_finished("shop", 0.02);

    let (text, parsed) = scrape(&metrics);
    has_lines(
        &text,
        &[
            "# TYPE lepton_app_pull_duration_seconds histogram",
            r#"lepton_app_pull_duration_seconds_count{app="shop",result="ok"} 2"#,
            r#"lepton_app_pull_duration_seconds_bucket{app="shop",result="ok",le="0.5"} 1"#,
            r#"lepton_app_pull_duration_seconds_bucket{app="shop",result="error",le="600"} 0"#,
            r#"lepton_app_pull_duration_seconds_bucket{app="shop",result="error",le="+Inf"} 1"#,
        ],
    );
    let ok_sum = parsed.value(
        "lepton_app_pull_duration_seconds_sum",
        &[("app", "shop"), ("result", "ok")],
    );
    assert!(ok_sum.is_some_and(|v| (v - 1.8).abs() < 1e-9), "{ok_sum:?}");
    has_lines(
        &text,
        &[
            r#"lepton_app_compile_duration_seconds_bucket{app="shop",le="0.025"} 1"#,
            r#"lepton_app_compile_duration_seconds_count{app="shop"} 1"#,
        ],
    );
}

#[test]
fn remove_app_removes_every_series_of_that_app_only() {
    let metrics = Metrics::new();
    for app in ["shop", "blog"] {
        drop(support::record_everything(&metrics, app));
    }
    let stale = metrics.app("shop");
    let (_, before) = scrape(&metrics);
    let count = |e: &Exposition, app: &str| {
        e.samples()
            .filter(|s| s.labels.get("app").map(String::as_str) == Some(app))
            .count()
    };
    let blog_before = count(&before, "blog");
    assert!(count(&before, "shop") > 50, "{before:?}");
    // Every per-app family carries series of both apps before the removal (the process-wide
    // loading and eviction families have no `app` label).
    let app_families: Vec<_> = before
        .families
        .iter()
        .filter(|f| f.name.starts_with("lepton_"))
        .filter(|f| f.samples.iter().any(|s| s.labels.contains_key("app")))
        .collect();
    assert_eq!(app_families.len(), 9);
    for family in &app_families {
        assert!(
            family.samples.iter().any(|s| s.labels["app"] == "shop"),
            "{}",
            family.name
        );
    }

    metrics.remove_app("shop");
    stale.record_response(200, Duration::from_millis(1)); // an old handle: recorded nowhere
    let (text, after) = scrape(&metrics);
    assert_eq!(count(&after, "shop"), 0, "{text}");
    assert!(!text.contains("\"shop\""), "{text}");
    assert_eq!(count(&after, "blog"), blog_before);

    // The name starts fresh.
    metrics
        .app("shop")
        .record_response(200, Duration::from_millis(1));
    has_line(
        &metrics.render(),
        r#"lepton_http_requests_total{app="shop",status_class="2xx"} 1"#,
    );
}

#[test]
fn ten_thousand_apps_come_and_go_without_growth() {
    let metrics = Metrics::new();
    let baseline = metrics.render().lines().count();
    for round in 0..2 {
        for i in 0..10_000 {
            let name = format!("app-{i}");
            let app = metrics.app(&name);
            app.record_response(200, Duration::from_millis(1));
            metrics.set_app_state(&name, AppState::Serving);
            metrics.remove_app(&name);
        }
        let text = metrics.render();
        assert!(!text.contains("app-"), "round {round}");
        // Process metric lines may differ by nothing; the app families are back to empty.
        assert_eq!(text.lines().count(), baseline, "round {round}");
    }
    assert_eq!(format!("{metrics:?}"), "Metrics { apps: 0, .. }");
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new();
    metrics
        .app("we\"ird\\app\nname")
        .record_response(200, Duration::from_millis(1));
    let (text, parsed) = scrape(&metrics);
    has_line(
        &text,
        r#"lepton_http_requests_total{app="we\"ird\\app\nname",status_class="2xx"} 1"#,
    );
    assert_eq!(
        parsed.value(
            "lepton_http_requests_total",
            &[("app", "we\"ird\\app\nname"), ("status_class", "2xx")]
        ),
        Some(1.0)
    );
}

#[test]
fn process_metrics_are_present_and_plausible() {
    let metrics = Metrics::new();
    let (text, parsed) = scrape(&metrics);
    let value = |name: &str| {
        parsed
            .value(name, &[])
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    has_lines(
        &text,
        &[
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
        ],
    );
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_resident_memory_bytes") > 1_000_000.0);
    let open = value("process_open_fds");
    assert!(open > 0.0);
    assert!(value("process_max_fds") >= open);
    assert!(value("process_threads") >= 1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let start = value("process_start_time_seconds");
    assert!(
        start > now - 86_400.0 * 365.0 && start <= now + 1.0,
        "{start}"
    );
}
