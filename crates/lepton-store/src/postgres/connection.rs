//! Connections to PostgreSQL: [`Connector`] (the parsed URL and its TLS), a background task per
//! connection that drives its I/O and forwards notifications, and [`follow_notifications`], the
//! `LISTEN` loop that turns other nodes' writes into change-counter bumps.
//!
//! TLS: with `sslmode=disable` the connection is plain TCP; otherwise (the default `prefer`, or
//! `require`) it is rustls with the ring provider and the system's root certificates, the same
//! setup as lepton-outbound-services. `prefer` falls back to plain TCP when the server has no TLS.
//! Certificates are not verified against a custom CA yet (`sslrootcert` is ignored).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

use crate::BackendError;
use crate::changes::{Backoff, Changes, retry};
use crate::error::postgres_message;

/// The channel every put and delete notifies, with the new revision as payload.
pub(crate) const CHANNEL: &str = "lepton_apps";

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalive idle time, so a `LISTEN` connection to a vanished server is noticed (the
/// connection then closes and is re-established) instead of waiting silently forever.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// The first delay before re-establishing a lost `LISTEN` connection; it doubles up to
/// [`RECONNECT_MAX`].
const RECONNECT_INITIAL: Duration = Duration::from_millis(100);

/// The longest delay between attempts to re-establish a lost `LISTEN` connection.
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// What a connection is for; it names the connection in `pg_stat_activity.application_name`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Role {
    /// The store's queries and transactions.
    Queries,
    /// The `LISTEN` connection.
    Listen,
}

/// How the store connects: the parsed URL and its TLS connector.
#[derive(Clone)]
pub(crate) struct Connector {
    config: Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

/// A connected client and the notifications its connection receives.
pub(crate) struct Connected {
    /// The client; dropping it closes the connection.
    pub(crate) client: Client,
    /// `NOTIFY`s delivered to this connection; closed when the connection ends.
    pub(crate) notifications: mpsc::UnboundedReceiver<Notification>,
}

impl Connector {
    /// Parses `url` and prepares TLS unless `sslmode=disable`.
    pub(crate) fn new(url: &str) -> Result<Connector, BackendError> {
        let mut config = Config::from_str(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(tls_connector()?),
        };
        Ok(Connector { config, tls })
    }

    /// Opens a connection for `role`; its I/O runs on a spawned task until the client drops.
    pub(crate) async fn connect(&self, role: Role) -> Result<Connected, tokio_postgres::Error> {
        let mut config = self.config.clone();
        if config.get_application_name().is_none() {
            config.application_name(match role {
                Role::Queries => "lepton-store",
                Role::Listen => "lepton-store-listen",
            });
        }
        match &self.tls {
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                Ok(drive(client, connection))
            }
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok(drive(client, connection))
            }
        }
    }

    /// Opens a connection and `LISTEN`s on [`CHANNEL`].
    pub(crate) async fn listen(&self) -> Result<Connected, tokio_postgres::Error> {
        let connected = self.connect(Role::Listen).await?;
        connected
            .client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await?;
        Ok(connected)
    }
}

/// Spawns the task that drives `connection`, forwarding its notifications.
fn drive<S, T>(client: Client, mut connection: tokio_postgres::Connection<S, T>) -> Connected
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    // The receiver is gone when nobody listens on this connection.
                    let _ = tx.send(notification);
                }
                Ok(AsyncMessage::Notice(notice)) => {
                    tracing::debug!(%notice, "PostgreSQL notice");
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(error = %postgres_message(&error), "PostgreSQL connection ended with an error");
                    break;
                }
            }
        }
    });
    Connected {
        client,
        notifications,
    }
}

/// rustls with the ring provider and the system's roots.
fn tls_connector() -> Result<tokio_postgres_rustls::MakeRustlsConnect, BackendError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "cannot load a system root certificate");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        added,
        ignored,
        "system root certificates for PostgreSQL TLS"
    );
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BackendError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Bumps `changes` for every notification on `listening` that another connection sent (not the
/// store's own query connection, whose backend pid is `own_pid`: its writes bump the counter
/// themselves). When the connection is lost it is re-established with backoff (logged), and the
/// counter is bumped once it is back: notifications sent meanwhile are lost. Runs until aborted.
pub(crate) async fn follow_notifications(
    mut listening: Connected,
    connector: Connector,
    own_pid: Arc<AtomicI32>,
    changes: Changes,
    location: Arc<str>,
) {
    let mut backoff = Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX);
    loop {
        let since = tokio::time::Instant::now();
        while let Some(notification) = listening.notifications.recv().await {
            if notification.process_id() != own_pid.load(Ordering::Relaxed) {
                tracing::debug!(
                    %location,
                    revision = notification.payload(),
                    "another node changed the desired state"
                );
                changes.bump();
            }
        }
        // A connection that lived a while starts the backoff over; one that keeps dropping at
        // once does not reconnect in a tight loop.
        if since.elapsed() > RECONNECT_MAX {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(%location, ?delay, "lost the PostgreSQL LISTEN connection; reconnecting");
        tokio::time::sleep(delay).await;
        listening = retry(
            &mut backoff,
            || connector.listen(),
            |error, delay| {
                tracing::warn!(
                    %location,
                    error = %postgres_message(error),
                    ?delay,
                    "cannot re-establish the PostgreSQL LISTEN connection; retrying"
                );
            },
        )
        .await;
        tracing::info!(%location, "re-established the PostgreSQL LISTEN connection");
        changes.bump();
    }
}
