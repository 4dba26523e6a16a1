//! `lepton`: run the Spin apps a manifest lists, straight from their OCI references, or publish a
//! Spin app to a registry in Spin's artifact format (`lepton push`).

mod allocator;
mod apps;
mod cli;
mod otel;
mod serve;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use lepton_oci::RegistryOptions;
use lepton_supervisor::{Desired, Manifest, Reconciler};

/// A production host for Spin applications published to OCI registries.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The app manifest to run.
    #[arg(default_value = "lepton.json")]
    file: PathBuf,

    #[command(flatten)]
    registry: cli::RegistryArgs,

    #[command(flatten)]
    limits: cli::LimitArgs,

    #[command(flatten)]
    log: cli::LogArgs,

    /// Where pulled artifacts and compiled components are cached.
    #[arg(long, env = "LEPTON_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,

    /// How long in-flight requests may take to finish at shutdown, in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    drain_timeout: u64,

    #[command(subcommand)]
    command: Option<Command>,
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
    /// Run as a service: desired state in a database, an admin API, a shared ingress.
    Serve(serve::ServeArgs),
    /// Manage the apps of a running `lepton serve` through its admin API.
    Apps(apps::AppsArgs),
    /// Maintain the cache dir (`--cache-dir`).
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Remove what no lepton has used for `--cache-gc-grace` seconds (running leptons keep
    /// what their apps use fresh; nothing is removed while one is loading an app).
    Gc,
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    let _otel = cli::init_tracing(args.log.log_format);
    cli::raise_open_file_limit();
    cli::block_on(run(args))
}

async fn run(cli: Cli) -> Result<()> {
    let registry = cli.registry.options();
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
        Some(Command::Serve(args)) => {
            serve::run(
                args,
                cli.cache_dir,
                registry,
                Duration::from_secs(cli.drain_timeout),
                &cli.limits,
            )
            .await
        }
        Some(Command::Apps(args)) => apps::run(args).await,
        Some(Command::Cache {
            command: CacheCommand::Gc,
        }) => cache_gc(cli.cache_dir, &cli.limits).await,
        None => {
            serve(
                &cli.file,
                cli.cache_dir,
                registry,
                Duration::from_secs(cli.drain_timeout),
                &cli.limits,
            )
            .await
        }
    }
}

/// `lepton cache gc`: one collection of the whole cache, keeping only what was used recently.
async fn cache_gc(cache_dir: Option<PathBuf>, limits: &cli::LimitArgs) -> Result<()> {
    // One collection: no keep-alive interval to check the grace against.
    if limits.cache_gc_grace == 0 {
        bail!("--cache-gc-grace 0 removes nothing");
    }
    let grace = Duration::from_secs(limits.cache_gc_grace);
    let root = cache_dir.unwrap_or_else(lepton_oci::OciCache::default_root);
    let cache = lepton_oci::OciCache::new(root.clone());
    let (registry, compiled) = tokio::task::spawn_blocking(move || {
        let none = std::collections::HashSet::new();
        let registry = cache.collect(&lepton_oci::Keep::new(), grace);
        let compiled =
            lepton_runtime::compile_cache::gc::collect_compiled(cache.root(), &none, grace);
        (registry, compiled)
    })
    .await?;
    let registry = registry.with_context(|| format!("collecting {}", root.display()))?;
    if registry.busy {
        println!("the cache is in use by a load; pulled apps were not collected (try again)");
    }
    println!(
        "removed {} manifests, {} blobs, {} assets dirs, {} compiled components: {} bytes freed",
        registry.manifests,
        registry.blobs,
        registry.assets,
        compiled.artifacts,
        registry.bytes + compiled.bytes
    );
    Ok(())
}

async fn serve(
    file: &std::path::Path,
    cache_dir: Option<PathBuf>,
    registry: RegistryOptions,
    drain: Duration,
    limits: &cli::LimitArgs,
) -> Result<()> {
    // Everything about the manifest is checked before anything is pulled or bound.
    let manifest = Manifest::load(file)?;
    if manifest.apps.is_empty() {
        bail!("{}: `apps` is empty; nothing to run", file.display());
    }
    let supervisor = cli::supervisor(
        cache_dir,
        registry,
        drain,
        limits,
        lepton_metrics::Metrics::new(),
        None,
        cli::ResidencyDefaults {
            eager: true,
            idle_timeout_s: None,
        },
    )?;

    let total = manifest.apps.len();
    let specs: Vec<(String, lepton_supervisor::AppSpec)> = manifest
        .apps
        .into_iter()
        .enumerate()
        .map(|(i, spec)| (format!("{}: apps[{i}]", file.display()), spec))
        .collect();
    let order: Vec<String> = specs.iter().map(|(key, _)| key.clone()).collect();
    // The manifest is one more source for the reconciler tauon and `lepton serve` use: every
    // app is handed over at once (claims are taken in manifest order) and each outcome awaited;
    // an app whose pull failed is retried in the background with a backoff.
    let reconciler = Reconciler::spawn(supervisor.clone());
    let outcomes: Vec<_> = specs
        .into_iter()
        .map(|(key, spec)| reconciler.set(key, Desired::App(spec)))
        .collect();
    for outcome in outcomes {
        if let Err(refused) = outcome.await {
            eprintln!(
                "error: app `{}` ({}) failed to start: {}",
                refused.app, refused.reference, refused.cause
            );
        }
    }
    let mut running = supervisor.status();
    // In manifest order.
    running.sort_by_key(|app| order.iter().position(|key| *key == app.key));
    if running.is_empty() {
        bail!(
            "none of the {total} apps in {} could be started",
            file.display()
        );
    }
    for app in &running {
        // Manifest apps always have an address of their own (checked at load).
        let address = app.address.map(|a| a.to_string()).unwrap_or_default();
        if app.digest.is_empty() {
            println!(
                "Serving http://{address} ({} from {}, loaded on its first request)",
                app.name, app.reference
            );
        } else {
            println!(
                "Serving http://{address} ({} from {}, {})",
                app.name, app.reference, app.digest
            );
        }
        let l = &app.limits;
        println!(
            "  limits: request_timeout_ms={} memory_mib={} max_concurrent_requests={} max_queued_requests={} max_request_body_bytes={}",
            l.request_timeout_ms,
            l.memory_mib,
            l.max_concurrent_requests,
            l.max_queued_requests,
            l.max_request_body_bytes
        );
        for route in &app.routes {
            println!("  {route}");
        }
    }
    println!("{} of {total} apps serving", running.len());

    cli::shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    cli::shutdown(&supervisor, drain).await;
    Ok(())
}
