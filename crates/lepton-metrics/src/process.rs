//! The standard `process_*` metrics, read from `/proc/self` at scrape time.
//!
//! The same names and meanings as the Prometheus Go client's process collector (and so the same
//! dashboards work): CPU time, resident memory, open and maximum file descriptors, start time
//! and threads. Like it, CPU ticks are divided by `USER_HZ`, which the kernel fixes at 100 for
//! everything it reports in `/proc` whatever its internal tick rate; resident memory comes from
//! `VmRSS` in `/proc/self/status`, in kB, so no page size is needed. Open descriptors are the
//! entries of `/proc/self/fd`, which, as in the Go client, include the one used to list them.
//!
//! A value that cannot be read (no `/proc`, a format change) is left out of the scrape and
//! logged at `debug`; the other values are still written.

use std::fs;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// `USER_HZ`: the unit of the tick counts in `/proc/<pid>/stat`, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// The [`Collector`] of the `process_*` metrics of this process.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// What one scrape read from `/proc`; `None` where a file could not be read or parsed.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessSample {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) open_fds: Option<u64>,
    pub(crate) max_fds: Option<u64>,
    pub(crate) start_time_seconds: Option<f64>,
    pub(crate) threads: Option<u64>,
}

impl ProcessSample {
    /// Reads this process's values from `/proc/self` (and the boot time from `/proc/stat`).
    pub(crate) fn read() -> ProcessSample {
        let stat = read_to_string("/proc/self/stat").and_then(|s| parse_stat(&s));
        let status = read_to_string("/proc/self/status");
        let boot_time = read_to_string("/proc/stat").and_then(|s| parse_boot_time(&s));
        let start_time_seconds = match (&stat, boot_time) {
            (Some(stat), Some(boot)) => Some(boot as f64 + stat.start_ticks as f64 / USER_HZ),
            _ => None,
        };
        ProcessSample {
            cpu_seconds: stat.as_ref().map(|s| s.cpu_ticks as f64 / USER_HZ),
            resident_bytes: status
                .as_deref()
                .and_then(|s| status_field(s, "VmRSS:"))
                .map(|kb| kb.saturating_mul(1024)),
            open_fds: count_open_fds(),
            max_fds: read_to_string("/proc/self/limits").and_then(|s| parse_max_open_files(&s)),
            start_time_seconds,
            threads: status.as_deref().and_then(|s| status_field(s, "Threads:")),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessSample::read();
        if let Some(v) = s.cpu_seconds {
            let metric = ConstCounter::new(v);
            metric.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&Unit::Seconds),
                metric.metric_type(),
            )?)?;
        }
        let e = &mut encoder;
        let bytes = Some(&Unit::Bytes);
        let seconds = Some(&Unit::Seconds);
        encode_gauge(
            e,
            "process_resident_memory",
            "Resident memory size in bytes.",
            bytes,
            s.resident_bytes,
        )?;
        encode_gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            None,
            s.open_fds,
        )?;
        encode_gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            None,
            s.max_fds,
        )?;
        encode_gauge(
            e,
            "process_start_time",
            "Start time of the process since unix epoch in seconds.",
            seconds,
            s.start_time_seconds,
        )?;
        encode_gauge(
            e,
            "process_threads",
            "Number of OS threads in the process.",
            None,
            s.threads,
        )
    }
}

/// Writes one unlabelled gauge, or nothing if its value could not be read.
fn encode_gauge<N: EncodeGaugeValue + std::fmt::Debug + Send + Sync>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<N>,
) -> Result<(), std::fmt::Error> {
    let Some(value) = value else {
        return Ok(());
    };
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

fn read_to_string(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .inspect_err(|e| tracing::debug!(path, error = %e, "process metrics: cannot read"))
        .ok()
}

fn count_open_fds() -> Option<u64> {
    match fs::read_dir("/proc/self/fd") {
        Ok(entries) => Some(entries.count() as u64),
        Err(e) => {
            tracing::debug!(error = %e, "process metrics: cannot list /proc/self/fd");
            None
        }
    }
}

/// The fields of `/proc/self/stat` the collector uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stat {
    /// `utime + stime`, in `USER_HZ` ticks.
    pub(crate) cpu_ticks: u64,
    /// `starttime`: ticks after boot when the process started.
    pub(crate) start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    // Field 3 (`state`) is index 0 here, so field N is index N - 3.
    let fields: Vec<&str> = after_comm.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
    })
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
pub(crate) fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The first number of a `/proc/<pid>/status` line such as `VmRSS:    1234 kB` or `Threads: 7`.
pub(crate) fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits` (`None` if `unlimited`).
pub(crate) fn parse_max_open_files(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with a space and a `)` inside, as a process may name itself.
        let text = "4242 (tokio) worker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                cpu_ticks: 325,
                start_ticks: 123456
            })
        );
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_limits_and_boot_time_lines_are_found() {
        let status = "Name:\tlepton\nVmPeak:\t  9000 kB\nVmRSS:\t   5120 kB\nThreads:\t7\n";
        assert_eq!(status_field(status, "VmRSS:"), Some(5120));
        assert_eq!(status_field(status, "Threads:"), Some(7));
        assert_eq!(status_field(status, "VmSwap:"), None);

        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);

        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let s = ProcessSample::read();
        assert!(s.resident_bytes.is_some_and(|v| v > 1024 * 1024), "{s:?}");
        assert!(s.open_fds.is_some_and(|v| v >= 3), "{s:?}");
        assert!(
            s.max_fds.is_some_and(|v| v >= s.open_fds.unwrap_or(0)),
            "{s:?}"
        );
        assert!(s.threads.is_some_and(|v| v >= 1), "{s:?}");
        assert!(s.cpu_seconds.is_some_and(|v| v >= 0.0), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // Started before now, and not before 2020.
        assert!(
            s.start_time_seconds
                .is_some_and(|v| v <= now + 1.0 && v > 1_577_836_800.0),
            "{s:?}"
        );
    }
}
