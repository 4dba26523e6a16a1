//! A micro-benchmark of the request path: nanoseconds per `record_response`, printed (not
//! asserted: timing depends on the machine and the build profile). Run with
//! `cargo test -p lepton-metrics --test bench -- --nocapture`.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use lepton_metrics::Metrics;

const ITERATIONS: u32 = 2_000_000;

#[test]
fn record_response_cost() {
    let metrics = Metrics::new();
    let app = metrics.app("bench");
    let statuses = [200u16, 200, 404, 200, 500, 304, 200, 201];
    let elapsed = [
        Duration::from_micros(90),
        Duration::from_millis(3),
        Duration::from_millis(40),
        Duration::from_secs(2),
    ];

    // Warm up, then one thread.
    for i in 0..10_000usize {
        app.record_response(statuses[i % 8], elapsed[i % 4]);
    }
    let start = Instant::now();
    for i in 0..ITERATIONS as usize {
        app.record_response(black_box(statuses[i % 8]), black_box(elapsed[i % 4]));
    }
    let single = start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);

    // Two threads on the same app (this machine's cores): the cost under contention on the same
    // cache lines, which is what a busy app sees.
    let threads = 2;
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..threads {
            let app = app.clone();
            s.spawn(move || {
                for i in 0..ITERATIONS as usize {
                    app.record_response(black_box(statuses[i % 8]), black_box(elapsed[i % 4]));
                }
            });
        }
    });
    let contended = start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);

    let guard_start = Instant::now();
    for _ in 0..ITERATIONS {
        drop(black_box(app.in_flight()));
    }
    let guard = guard_start.elapsed().as_nanos() as f64 / f64::from(ITERATIONS);

    eprintln!(
        "record_response: {single:.1} ns (1 thread), {contended:.1} ns per call in each of \
         {threads} threads on the same app; in_flight guard: {guard:.1} ns \
         [{} build]",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "optimised"
        }
    );

    // Everything recorded was counted: 10,000 + 3 × ITERATIONS responses.
    let want = 10_000 + 3 * u64::from(ITERATIONS);
    let text = metrics.render();
    let counted: u64 = text
        .lines()
        .filter(|l| l.starts_with("lepton_http_request_duration_seconds_count{app=\"bench\"}"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, want, "{text}");
    assert!(text.contains("lepton_http_requests_in_flight{app=\"bench\"} 0\n"));
}
