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

/// Log to stderr with `LEPTON_LOG` as the filter (default `info`), colours only on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEPTON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Run `fut` on a multi-threaded runtime; errors are printed and become exit status 1.
pub fn block_on(fut: impl Future<Output = Result<()>>) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The shared engine, compile cache and loader, under one supervisor.
pub fn supervisor(
    cache_dir: Option<PathBuf>,
    registry: RegistryOptions,
    drain: Duration,
) -> Result<AppSupervisor> {
    // Absolute, so the file:// sources in resolved apps do not depend on the working directory.
    let cache_root = cache_dir.unwrap_or_else(OciCache::default_root);
    let cache_root = std::path::absolute(&cache_root)
        .with_context(|| format!("cache directory {}", cache_root.display()))?;
    let engine = Arc::new(RuntimeEngine::new(&RuntimeEngineConfig::default())?);
    let compile_cache = CompileCache::new(&cache_root, engine.engine());
    let loader = Arc::new(AppLoader::new(OciCache::new(cache_root), registry));
    Ok(AppSupervisor::new(
        engine,
        loader,
        compile_cache,
        SupervisorConfig {
            drain_timeout: drain,
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
