//! What the `lepton` and `tauon` binaries share: logging setup, registry options, building the
//! one engine + cache + loader + supervisor stack, and waiting for SIGTERM/SIGINT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lepton_oci::{AppLoader, OciCache, RegistryOptions};
use lepton_runtime::{CompileCache, RuntimeEngine, RuntimeEngineConfig};
use lepton_supervisor::{AppSupervisor, SupervisorConfig};

/// Registry flags common to both binaries.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Registries to reach over plain HTTP (loopback registries always are). Repeatable.
    #[arg(
        long = "insecure-registry",
        env = "LEPTON_INSECURE_REGISTRIES",
        value_delimiter = ',',
        global = true
    )]
    pub insecure_registries: Vec<String>,
}

impl RegistryArgs {
    /// The registry client options these flags describe.
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            ..RegistryOptions::default()
        }
    }
}

/// Host-wide per-app limits (an app's own `limits` win) and listener connection limits, common
/// to both binaries. The defaults are the README's.
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Default `request_timeout_ms`: how long a request may run, to its last response byte.
    #[arg(long, global = true, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub request_timeout_ms: u64,
    /// Default `memory_mib`: memory per instance, all its memories and tables together.
    #[arg(long, global = true, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub memory_mib: u64,
    /// Default `max_concurrent_requests` per app.
    #[arg(long, global = true, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_requests: u32,
    /// Default `max_queued_requests` per app (waiting for a slot; then 503).
    #[arg(long, global = true, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_queued_requests: u32,
    /// Default `max_request_body_bytes` (413 past it).
    #[arg(long, global = true, default_value_t = 10 << 20, value_parser = clap::value_parser!(u64).range(0..=1 << 40))]
    pub max_request_body_bytes: u64,
    /// A request head must arrive within this many milliseconds (slowloris; also the longest
    /// idle gap between HTTP/1 keep-alive requests).
    #[arg(long, global = true, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=300_000))]
    pub header_read_timeout_ms: u64,
    /// Connections with no request in flight are closed after this many milliseconds.
    #[arg(long, global = true, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub idle_timeout_ms: u64,
    /// The largest request head in bytes (431 past it).
    #[arg(long, global = true, default_value_t = 64 << 10, value_parser = clap::value_parser!(u64).range(8192..=1 << 20))]
    pub max_header_bytes: u64,
    /// Open connections at once per listener; more wait in the kernel's backlog.
    #[arg(long, global = true, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// How apps that do not set `preload` load: `eager` (as soon as they are desired, checked
    /// before they serve) or `lazy` (on their first request). Default: eager for `lepton FILE`
    /// and `tauon`, lazy for `lepton serve`.
    #[arg(long, global = true, value_enum)]
    pub load: Option<LoadMode>,
    /// Evict the least recently used idle apps while the compiled code of the loaded ones adds
    /// up to more than this many MiB (they load again on their next request). Default: no
    /// budget.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub app_memory_budget: Option<u64>,
    /// Evict apps that had no request for this many seconds (0: never). Default: never for
    /// `lepton FILE` and `tauon`, 900 for `lepton serve`.
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub app_idle_timeout: Option<u64>,
    /// Remove cache entries (pulled apps, assets, compiled components) that no running app
    /// uses and no lepton sharing the cache dir has used for this many seconds (0: never remove;
    /// what this process uses is still kept alive for the others).
    #[arg(long, global = true, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(0..=315_360_000))]
    pub cache_gc_grace: u64,
    /// Every this many seconds, mark what the running apps use in the cache as used, then
    /// collect. Must be at most half of `--cache-gc-grace` (of every lepton sharing the cache).
    #[arg(long, global = true, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub cache_gc_interval: u64,
}

/// When apps load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadMode {
    /// As soon as they are in the desired state, checked before they serve.
    Eager,
    /// On their first request (routable at once).
    Lazy,
}

/// Defaults that differ between the file modes and the service.
#[derive(Debug, Clone, Copy)]
pub struct ResidencyDefaults {
    /// Apps load eagerly unless `--load` or their `preload` says otherwise.
    pub eager: bool,
    /// Seconds without a request before an app is evicted, unless `--app-idle-timeout` says.
    pub idle_timeout_s: Option<u64>,
}

impl LimitArgs {
    /// Whether apps that do not say load eagerly, and when loaded apps are evicted.
    pub fn residency(
        &self,
        defaults: ResidencyDefaults,
    ) -> (bool, lepton_runtime::ResidencyConfig) {
        let eager = self.load.map_or(defaults.eager, |m| m == LoadMode::Eager);
        let idle = self
            .app_idle_timeout
            .or(defaults.idle_timeout_s)
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        let budget = self.app_memory_budget.map(|mib| mib << 20);
        (
            eager,
            lepton_runtime::ResidencyConfig {
                memory_budget: budget,
                idle_timeout: idle,
            },
        )
    }

    /// When the cache is kept alive and collected; a grace shorter than two intervals is refused
    /// (entries in use could age out between two keep-alives).
    pub fn cache_gc(&self) -> Result<lepton_supervisor::supervisor::GcConfig> {
        if self.cache_gc_grace != 0 && self.cache_gc_grace < 2 * self.cache_gc_interval {
            anyhow::bail!(
                "--cache-gc-grace {} must be at least twice --cache-gc-interval {} (or 0: never remove)",
                self.cache_gc_grace,
                self.cache_gc_interval
            );
        }
        Ok(lepton_supervisor::supervisor::GcConfig {
            interval: Duration::from_secs(self.cache_gc_interval),
            grace: (self.cache_gc_grace > 0).then(|| Duration::from_secs(self.cache_gc_grace)),
        })
    }

    /// The host-wide app limits.
    pub fn app_limits(&self) -> lepton_runtime::AppLimits {
        lepton_runtime::AppLimits {
            request_timeout_ms: self.request_timeout_ms,
            memory_mib: self.memory_mib,
            max_concurrent_requests: self.max_concurrent_requests,
            max_queued_requests: self.max_queued_requests,
            max_request_body_bytes: self.max_request_body_bytes,
        }
    }

    /// The listeners' connection limits.
    pub fn connection_limits(&self) -> lepton_trigger_http::ConnectionLimits {
        lepton_trigger_http::ConnectionLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, message and every field: `app`,
    /// `component`, `limit`, …), for log pipelines.
    Json,
}

/// The logging option common to both binaries.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// How log lines on stderr are written.
    #[arg(long, global = true, env = "LEPTON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Log to stderr with `LEPTON_LOG` as the filter (default `info`), as text (colours only on a
/// terminal) or JSON lines. Request lines are the `lepton::request` target. When
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, request spans (`lepton::trace`) are exported over OTLP
/// too ([`crate::otel`]); hold the returned guard until exit so the last spans are flushed.
pub fn init_tracing(format: LogFormat) -> Option<crate::otel::OtelGuard> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEPTON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Spans are for export only: never printed, never created unless an exporter wants them.
    let filter =
        filter.add_directive("lepton::trace=off".parse().unwrap_or_else(|_| {
            tracing_subscriber::filter::Directive::from(tracing::Level::ERROR)
        }));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed(),
    };
    let (otel, guard) = if crate::otel::configured() {
        match crate::otel::layer() {
            Ok((layer, guard)) => (Some(layer), Some(guard)),
            Err(err) => {
                eprintln!("warning: OTLP trace export disabled: {err}");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    tracing_subscriber::registry().with(fmt).with(otel).init();
    guard
}

/// Raise the soft limit on open files to the hard one: every listener may hold up to
/// `--max-connections` (4,096 by default) connections, far past the usual soft limit of 1,024,
/// and a process out of descriptors fails to accept for every app at once. Logged; never fatal.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "could not read the open file limit");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        tracing::debug!(open_files = limit.rlim_cur, "open file limit");
        return;
    }
    let soft = limit.rlim_cur;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::debug!(
            from = soft,
            to = limit.rlim_cur,
            "raised the open file limit"
        );
    } else {
        tracing::warn!(open_files = soft, error = %std::io::Error::last_os_error(), "could not raise the open file limit");
    }
}

/// Run `fut` on a multi-threaded runtime; errors are printed and become exit status 1.
pub fn block_on(fut: impl Future<Output = Result<()>>) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Pulls hash and copy on the blocking pool; starting 1,000 apps at once must not make a
        // thread each (compilations are gated apart: `CompileCache`). Excess work queues.
        .max_blocking_threads(64)
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(fut);
    // Work still on the blocking pool (a SQLite query, a compile) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Stop `supervisor`'s apps within `drain` plus a small margin whatever their guests do: the
/// supervisor drains, then cuts off every version (stopping its guests at their next tick).
/// (`lepton` calls this; tauon's loop stops its supervisor itself.)
#[allow(dead_code)]
pub async fn shutdown(supervisor: &AppSupervisor, drain: Duration) {
    if tokio::time::timeout(drain + Duration::from_millis(500), supervisor.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown did not finish within the drain timeout; exiting anyway");
    }
}

/// The shared engine, compile cache and loader, under one supervisor.
pub fn supervisor(
    cache_dir: Option<PathBuf>,
    registry: RegistryOptions,
    drain: Duration,
    limits: &LimitArgs,
    metrics: lepton_metrics::Metrics,
    self_ingress: Option<std::net::SocketAddr>,
    residency: ResidencyDefaults,
) -> Result<AppSupervisor> {
    let (preload_by_default, residency) = limits.residency(residency);
    let gc = limits.cache_gc()?;
    // Absolute, so the file:// sources in resolved apps do not depend on the working directory.
    let cache_root = cache_dir.unwrap_or_else(OciCache::default_root);
    let cache_root = std::path::absolute(&cache_root)
        .with_context(|| format!("cache directory {}", cache_root.display()))?;
    let engine = Arc::new(RuntimeEngine::new(&RuntimeEngineConfig::default())?);
    let mut compile_cache = CompileCache::new(&cache_root, engine.engine());
    if let Some(quick) = engine.quick_engine() {
        compile_cache = compile_cache.with_quick_tier(quick);
    }
    let loader = Arc::new(AppLoader::new(OciCache::new(cache_root), registry));
    Ok(AppSupervisor::new(
        engine,
        loader,
        compile_cache,
        SupervisorConfig {
            drain_timeout: drain,
            default_limits: limits.app_limits(),
            connection_limits: limits.connection_limits(),
            metrics,
            self_ingress,
            preload_by_default,
            residency,
            gc: Some(gc),
        },
    ))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
