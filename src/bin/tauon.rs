//! `tauon`: run the Spin apps described by a directory of one JSON file per app, and follow the
//! directory live — new files start apps, edits replace them without dropping requests, deleted
//! files stop them — until SIGTERM/SIGINT, which drains in-flight requests and exits 0.

#[path = "../allocator.rs"]
mod allocator;
#[path = "../cli.rs"]
mod cli;
#[path = "../otel.rs"]
mod otel;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use lepton_supervisor::tauon::{self, TauonOptions};

/// A live control plane for lepton: one file per app in DIR, applied as it changes.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The directory of app files (`*.json`, the per-app shape of a lepton.json entry).
    #[arg(default_value = "tauon")]
    dir: PathBuf,

    #[command(flatten)]
    registry: cli::RegistryArgs,

    #[command(flatten)]
    limits: cli::LimitArgs,

    #[command(flatten)]
    log: cli::LogArgs,

    /// Where pulled artifacts and compiled components are cached.
    #[arg(long, env = "LEPTON_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// How long in-flight requests may take to finish when an app is replaced or stopped, or at
    /// shutdown, in seconds.
    #[arg(long, default_value_t = 10)]
    drain_timeout: u64,

    /// Where to write the status (running apps and their digests, files in error); default
    /// `DIR/.tauon-status.json`.
    #[arg(long)]
    status_file: Option<PathBuf>,

    /// How long the directory must be quiet before changes are applied, in milliseconds.
    #[arg(long, default_value_t = 200)]
    debounce_ms: u64,
}

fn main() -> std::process::ExitCode {
    let args = Cli::parse();
    let _otel = cli::init_tracing(args.log.log_format);
    cli::raise_open_file_limit();
    cli::block_on(run(args))
}

async fn run(args: Cli) -> Result<()> {
    let supervisor = cli::supervisor(
        args.cache_dir,
        args.registry.options(),
        Duration::from_secs(args.drain_timeout),
        &args.limits,
        lepton_metrics::Metrics::new(),
        None,
        cli::ResidencyDefaults {
            eager: true,
            idle_timeout_s: None,
        },
    )?;
    let opts = TauonOptions {
        dir: args.dir,
        status_file: args.status_file,
        debounce: Duration::from_millis(args.debounce_ms.max(1)),
    };
    let reconciler = lepton_supervisor::Reconciler::spawn(supervisor);
    tauon::run(reconciler, opts, cli::shutdown_signal()).await?;
    Ok(())
}
