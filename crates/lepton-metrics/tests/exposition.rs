//! The rendered text is valid Prometheus text exposition format: checked by this crate's strict
//! parser always, and by `promtool check metrics` when a `promtool` is at hand (`$PROMTOOL`, or
//! on `PATH`; Debian's `prometheus` package ships it).

mod support;

use lepton_metrics::Metrics;
use std::io::Write;
use std::process::{Command, Stdio};

/// A registry with every family populated, for two apps.
fn populated() -> String {
    let metrics = Metrics::new();
    let mut guards = Vec::new();
    for app in ["shop", "blog"] {
        guards.push(support::record_everything(&metrics, app));
    }
    metrics.render()
}

#[test]
fn rendered_text_passes_the_strict_parser() {
    let text = populated();
    let parsed = support::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut names: Vec<_> = parsed.families.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "lepton_app_compile_duration_seconds",
            "lepton_app_evictions_total",
            "lepton_app_instances",
            "lepton_app_loads_total",
            "lepton_app_pull_duration_seconds",
            "lepton_app_state",
            "lepton_apps_loaded",
            "lepton_apps_loaded_code_bytes",
            "lepton_http_limit_hits_total",
            "lepton_http_request_duration_seconds",
            "lepton_http_requests_in_flight",
            "lepton_http_requests_queued",
            "lepton_http_requests_total",
            "process_cpu_seconds_total",
            "process_max_fds",
            "process_open_fds",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_threads",
        ]
    );
    for family in &parsed.families {
        assert!(
            family.help.as_deref().is_some_and(|h| !h.is_empty()),
            "{}: no HELP",
            family.name
        );
        assert_ne!(family.kind, "untyped", "{}: no TYPE", family.name);
        assert!(!family.samples.is_empty(), "{}: no samples", family.name);
    }
}

#[test]
fn the_strict_parser_rejects_broken_expositions() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n";
    assert!(support::parse(good).is_ok());
    let broken = [
        "a_total 1",                                                // no final newline
        "# TYPE a counter\na 1\n# TYPE a counter\n",                // TYPE twice
        "a 1\n# TYPE a gauge\n",                                    // TYPE after samples
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",             // duplicate series
        "# TYPE a gauge\na{x=\"1} 1\n",                             // unterminated value
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",                         // bad escape
        "# TYPE a gauge\na{1x=\"1\"} 1\n",                          // bad label name
        "# TYPE a gauge\na one\n",                                  // bad value
        "# TYPE a counter\na -1\n",                                 // negative counter
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 1\n", // family split
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", // no +Inf
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n", // count differs
    ];
    for text in broken {
        assert!(support::parse(text).is_err(), "accepted {text:?}");
    }
}

fn promtool() -> Option<String> {
    if let Ok(path) = std::env::var("PROMTOOL") {
        return Some(path);
    }
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found.then(|| "promtool".to_string())
}

#[test]
fn rendered_text_passes_promtool_check_metrics_when_available() {
    let text = populated();
    // Always hold the text to the parser, so this test checks something without promtool too.
    support::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let Some(promtool) = promtool() else {
        eprintln!("promtool not found (set PROMTOOL or install Debian's prometheus): skipped");
        return;
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {promtool}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("waiting for promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: {:?} {report}", out.status);
    // promtool exits 1 for lint problems and 3 for parse errors; both fail here.
    assert!(
        out.status.success(),
        "promtool check metrics:\n{report}\n{text}"
    );
    assert!(report.trim().is_empty(), "promtool reported:\n{report}");
}
