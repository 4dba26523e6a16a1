//! `lepton serve`: the long-running service. Desired state lives in a database (`--db`: an
//! embedded SQLite file by default, or a `postgres://` URL shared by several nodes), written
//! through the authenticated admin API (`--admin`), followed into the one reconciler, and served
//! on each app's own address and/or by host on the shared ingress (`--http` and `--https`, each
//! repeatable). HTTPS listeners share one TLS configuration whose certificates are chosen by
//! SNI: an app's own `tls` files, else `--cert-dir`, else what ACME issued (`--acme-directory`;
//! see `lepton_trigger_http::tls`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lepton_admin::{AdminApi, AdminConfig, DbSource, Tokens};
use lepton_metrics::Metrics;
use lepton_store::{Store, StoreLocation};
use lepton_supervisor::Reconciler;
use lepton_trigger_http::tls::acme::{AcmeConfig, AcmeIssuer};
use lepton_trigger_http::tls::http01::Http01Tokens;
use lepton_trigger_http::tls::resolver::SniResolver;
use lepton_trigger_http::{HttpListener, ServeTarget};
use tokio::sync::watch;

use crate::cli;

/// `lepton serve` options.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The desired state: a SQLite file (created if absent) or a `postgres://…` URL.
    #[arg(long, default_value = "lepton.db", env = "LEPTON_DB")]
    pub db: String,
    /// Where the admin API listens.
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub admin: SocketAddr,
    /// A shared plain-HTTP ingress routing by host to apps with `hosts`. Repeatable.
    #[arg(long = "http")]
    pub http: Vec<SocketAddr>,
    /// A shared HTTPS ingress (HTTP/2 and HTTP/1.1) routing by host, with certificates chosen
    /// by SNI. Repeatable.
    #[arg(long = "https")]
    pub https: Vec<SocketAddr>,
    /// Certificates for hosts whose app brings none: `<host>.crt` + `<host>.key`, or
    /// `<host>.pem` with both; a wildcard `*.example.com` as `_.example.com.*`.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// An ACME directory URL to obtain and renew certificates from for hosts that have none
    /// (HTTP-01, answered on the `--http` ingress). Needs `--https`, `--http` and `--acme-email`.
    #[arg(long, requires = "acme_email")]
    pub acme_directory: Option<String>,
    /// The ACME account's contact email.
    #[arg(long, requires = "acme_directory")]
    pub acme_email: Option<String>,
    /// Extra PEM roots trusted for the ACME server (a private or test CA).
    #[arg(long, requires = "acme_directory")]
    pub acme_ca_root: Option<PathBuf>,
    /// Where apps without a `state_dir` keep their data (`<state-root>/<name>`).
    #[arg(long, default_value = "state")]
    pub state_root: PathBuf,
    /// A file of admin API bearer tokens, one per line (with or instead of `LEPTON_ADMIN_TOKEN`).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// This node's name in the statuses recorded in the database (default: the host name).
    #[arg(long)]
    pub node: Option<String>,
}

/// Run the service until SIGTERM/SIGINT.
pub async fn run(
    args: ServeArgs,
    cache_dir: Option<PathBuf>,
    registry: lepton_oci::RegistryOptions,
    drain: Duration,
    limits: &cli::LimitArgs,
) -> Result<()> {
    let env_token = std::env::var("LEPTON_ADMIN_TOKEN").ok();
    let tokens = Tokens::load(args.admin_token_file.as_deref(), env_token.as_deref())?;
    let state_root = std::path::absolute(&args.state_root)
        .with_context(|| format!("--state-root {}", args.state_root.display()))?;
    // Options are checked before anything is opened or bound.
    let cert_dirs = cert_dirs(args.cert_dir.as_deref(), !args.https.is_empty())?;
    let acme = acme_config(&args, &state_root)?;
    let store = Store::open(&StoreLocation::parse(&args.db)).await?;
    let admin = tokio::net::TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("--admin {}: cannot listen", args.admin))?;
    let metrics = Metrics::new();
    let challenges = Http01Tokens::new();
    let mut listeners = bind_ingress("http", &args.http).await?;
    if acme.is_some() {
        listeners = listeners
            .into_iter()
            .map(|l| l.with_acme_challenges(challenges.clone()))
            .collect();
    }
    let secure = bind_ingress("https", &args.https).await?;
    // Self requests of apps with only hosts go through the first plain ingress.
    let self_ingress = listeners.first().map(HttpListener::local_addr);
    let supervisor = cli::supervisor(
        cache_dir,
        registry,
        drain,
        limits,
        metrics.clone(),
        self_ingress,
        cli::ResidencyDefaults {
            eager: false,
            idle_timeout_s: Some(900),
        },
    )?;
    let mut issuer = None;
    if !secure.is_empty() {
        // One configuration (and so one certificate cache) for every HTTPS listener.
        let mut resolver = SniResolver::new(supervisor.host_table(), cert_dirs);
        if let Some(config) = &acme {
            resolver = resolver.with_issued(AcmeIssuer::certs_dir(&config.dir));
        }
        let resolver = Arc::new(resolver);
        let tls = Arc::new(lepton_trigger_http::tls::server_config(resolver.clone())?);
        listeners.extend(secure.into_iter().map(|l| l.with_tls(tls.clone())));
        issuer = acme
            .map(|config| AcmeIssuer::new(config, resolver, supervisor.host_table(), challenges));
    }
    let (stop_ingress, stop_rx) = watch::channel(false);
    let mut ingress = Vec::new();
    if let Some(issuer) = issuer {
        ingress.push(tokio::spawn(issuer.run(stop_rx.clone())));
    }
    for listener in listeners {
        ingress.push(tokio::spawn(listener.serve(
            ServeTarget::Hosts(supervisor.host_table()),
            stop_rx.clone(),
            drain,
            limits.connection_limits(),
        )));
    }
    let node = args.node.unwrap_or_else(node_name);
    let reconciler = Reconciler::spawn(supervisor.clone());
    let source = DbSource::new(store, reconciler, metrics.clone(), state_root, node.clone());
    let (stop_source, mut source_stop) = watch::channel(false);
    let follow = tokio::spawn(source.clone().run(async move {
        let _ = source_stop.wait_for(|s| *s).await;
    }));
    println!(
        "Admin API http://{} (node {node}, desired state in {})",
        admin.local_addr().unwrap_or(args.admin),
        redact(&args.db)
    );
    let api = AdminApi::new(source, AdminConfig { tokens, metrics });
    api.serve(admin, cli::shutdown_signal()).await;

    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_source.send(true);
    let _ = stop_ingress.send(true);
    cli::shutdown(&supervisor, drain).await;
    for task in ingress {
        let _ = tokio::time::timeout(drain, task).await;
    }
    let _ = follow.await;
    Ok(())
}

/// Bind the `--http` or `--https` (`scheme`) ingress addresses, announcing each.
async fn bind_ingress(scheme: &str, addrs: &[SocketAddr]) -> Result<Vec<HttpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let listener = HttpListener::bind(*addr)
            .await
            .with_context(|| format!("--{scheme} {addr}: cannot listen"))?;
        println!("Ingress {scheme}://{}", listener.local_addr());
        listeners.push(listener);
    }
    Ok(listeners)
}

/// ACME's settings, if `--acme-directory` is given (clap makes sure `--acme-email` is too);
/// its account and certificates live under `<state-root>/acme`.
fn acme_config(args: &ServeArgs, state_root: &std::path::Path) -> Result<Option<AcmeConfig>> {
    let (Some(directory), Some(email)) = (&args.acme_directory, &args.acme_email) else {
        return Ok(None);
    };
    anyhow::ensure!(
        !args.https.is_empty() && !args.http.is_empty(),
        "--acme-directory needs --https (where the certificates are served) and --http (where the CA's HTTP-01 challenges are answered)"
    );
    anyhow::ensure!(
        directory.starts_with("https://"),
        "--acme-directory {directory}: must be an https:// URL"
    );
    if let Some(root) = &args.acme_ca_root {
        anyhow::ensure!(
            root.is_file(),
            "--acme-ca-root {}: not a file",
            root.display()
        );
    }
    Ok(Some(AcmeConfig {
        directory: directory.clone(),
        email: email.clone(),
        dir: state_root.join("acme"),
        ca_root: args.acme_ca_root.clone(),
    }))
}

/// The directories certificates are looked up in by host: `--cert-dir` (absolute), checked
/// before anything listens.
fn cert_dirs(cert_dir: Option<&std::path::Path>, https: bool) -> Result<Vec<PathBuf>> {
    let Some(dir) = cert_dir else {
        return Ok(Vec::new());
    };
    if !https {
        tracing::warn!(cert_dir = %dir.display(), "--cert-dir without --https: unused");
    }
    let dir = std::path::absolute(dir).with_context(|| format!("--cert-dir {}", dir.display()))?;
    anyhow::ensure!(
        dir.is_dir(),
        "--cert-dir {}: not a directory",
        dir.display()
    );
    Ok(vec![dir])
}

/// The host name, for status records.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "lepton".into())
}

/// A database location without its password.
fn redact(db: &str) -> String {
    match (db.find("://"), db.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &db[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &db[..scheme + 3], &db[at..])
        }
        _ => db.to_string(),
    }
}
