//! `lepton`: run the Spin apps a manifest lists, straight from their OCI references, or publish a
//! Spin app to a registry in Spin's artifact format (`lepton push`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use lepton_oci::{AppLoader, OciCache, RegistryOptions};
use lepton_runtime::{CompileCache, RuntimeEngine, RuntimeEngineConfig};
use lepton_supervisor::{AppSupervisor, Manifest, SupervisorConfig};

/// A production host for Spin applications published to OCI registries.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The app manifest to run.
    #[arg(default_value = "lepton.json")]
    file: PathBuf,

    #[command(flatten)]
    registry: RegistryArgs,

    /// Where pulled artifacts and compiled components are cached.
    #[arg(long, env = "LEPTON_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,

    /// How long in-flight requests may take to finish at shutdown, in seconds.
    #[arg(long, default_value_t = 10)]
    drain_timeout: u64,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Args)]
struct RegistryArgs {
    /// Registries to reach over plain HTTP (loopback registries always are). Repeatable.
    #[arg(
        long = "insecure-registry",
        env = "LEPTON_INSECURE_REGISTRIES",
        value_delimiter = ',',
        global = true
    )]
    insecure_registries: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a Spin app (spin.toml and its Wasm and files) to an OCI registry, as `spin registry push` does.
    Push {
        /// The app's spin.toml.
        spin_toml: PathBuf,
        /// Where to publish it, e.g. `127.0.0.1:5000/hello:v1`.
        reference: String,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEPTON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
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
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let registry = RegistryOptions {
        insecure_registries: cli.registry.insecure_registries.clone(),
        ..RegistryOptions::default()
    };
    match cli.command {
        Some(Command::Push {
            spin_toml,
            reference,
        }) => {
            let outcome = lepton_oci::push(&spin_toml, &reference, &registry)
                .await
                .with_context(|| format!("pushing {} to {reference}", spin_toml.display()))?;
            println!("Pushed {reference}");
            println!("digest: {}", outcome.manifest_digest);
            Ok(())
        }
        None => {
            serve(
                &cli.file,
                cli.cache_dir,
                registry,
                Duration::from_secs(cli.drain_timeout),
            )
            .await
        }
    }
}

async fn serve(
    file: &std::path::Path,
    cache_dir: Option<PathBuf>,
    registry: RegistryOptions,
    drain: Duration,
) -> Result<()> {
    // Everything about the manifest is checked before anything is pulled or bound.
    let manifest = Manifest::load(file)?;
    if manifest.apps.is_empty() {
        bail!("{}: `apps` is empty; nothing to run", file.display());
    }
    // Absolute, so the file:// sources in resolved apps do not depend on the working directory.
    let cache_root = cache_dir.unwrap_or_else(OciCache::default_root);
    let cache_root = std::path::absolute(&cache_root)
        .with_context(|| format!("cache directory {}", cache_root.display()))?;
    let engine = Arc::new(RuntimeEngine::new(&RuntimeEngineConfig::default())?);
    let compile_cache = CompileCache::new(&cache_root, engine.engine());
    let loader = Arc::new(AppLoader::new(OciCache::new(cache_root.clone()), registry));
    let mut supervisor = AppSupervisor::new(
        engine,
        loader,
        compile_cache,
        SupervisorConfig {
            drain_timeout: drain,
        },
    );

    let total = manifest.apps.len();
    let failures = supervisor.start_all(manifest.apps).await;
    for f in &failures {
        eprintln!(
            "error: app `{}` ({}) failed to start: {}",
            f.app,
            f.reference,
            f.describe()
        );
    }
    let running = supervisor.status();
    if running.is_empty() {
        bail!(
            "none of the {total} apps in {} could be started",
            file.display()
        );
    }
    for app in &running {
        println!(
            "Serving http://{} ({} from {}, {})",
            app.address, app.name, app.reference, app.digest
        );
        for route in &app.routes {
            println!("  {route}");
        }
    }
    println!("{} of {total} apps serving", running.len());

    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    supervisor.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
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
