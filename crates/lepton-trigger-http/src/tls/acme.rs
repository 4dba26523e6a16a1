//! ACME (RFC 8555) for hosts without a certificate ([`AcmeIssuer`]): `lepton serve
//! --acme-directory URL --acme-email EMAIL` obtains and renews a certificate for every exact
//! host an app serves that has none of its app's own nor in `--cert-dir`, with instant-acme.
//!
//! - Challenge: HTTP-01. The issuer puts each token's key authorization in [`Http01Tokens`],
//!   which every `--http` listener answers on `/.well-known/acme-challenge/{token}` for any
//!   host, before routing; the CA must reach the first `--http` listener on port 80 (for a
//!   test CA, whatever port it is told). Wildcard hosts cannot be validated this way (they need
//!   DNS-01) and are reported instead.
//! - Storage ([`store`]): the account and the issued certificates live under
//!   `<state-root>/acme/`; the SNI resolver serves `certs/<host>.pem` from there, re-reading it
//!   when it is renewed, so a new certificate is served from the next handshake.
//! - Renewal: a certificate is renewed two thirds into its lifetime. The issuer wakes when the
//!   host table changes (an app with new hosts starts), at the next renewal due, and at least
//!   hourly. A host whose issuance fails is retried after 30 s, doubling up to an hour, while
//!   the other hosts go on.
//! - Trust: requests to the ACME server use rustls (ring) with the system's roots, plus
//!   `--acme-ca-root` (a PEM file) for a private or test CA.

pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;

use super::http01::Http01Tokens;
use super::resolver::SniResolver;

/// How the issuer talks to its CA.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The ACME directory URL (Let's Encrypt's is
    /// `https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    /// The account's contact address.
    pub email: String,
    /// Where the account and the issued certificates are kept (`<state-root>/acme`).
    pub dir: PathBuf,
    /// Extra roots (PEM) trusted for the ACME server, besides the system's.
    pub ca_root: Option<PathBuf>,
}

/// What can go wrong obtaining a certificate.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME server or the protocol failed.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The order did not go as RFC 8555 says it should.
    #[error("{0}")]
    Order(String),
}

/// The longest the issuer sleeps without looking at the host table.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// The first retry after a failed issuance; doubled per failure up to [`MAX_SLEEP`].
const FIRST_RETRY: Duration = Duration::from_secs(30);

/// Obtains and renews certificates for the hosts that lack one.
pub struct AcmeIssuer {
    config: AcmeConfig,
    resolver: Arc<SniResolver>,
    hosts: watch::Receiver<Arc<crate::HostTable>>,
    tokens: Http01Tokens,
    account: Option<Account>,
    /// Hosts whose issuance failed: failures so far and when to try again.
    failures: HashMap<String, (u32, Instant)>,
    /// Wildcards already reported as needing a certificate from elsewhere.
    reported: HashSet<String>,
}

impl AcmeIssuer {
    /// An issuer for the hosts in `hosts` that `resolver` has no certificate for; challenges
    /// are answered through `tokens` (give the same to the `--http` listeners).
    pub fn new(
        config: AcmeConfig,
        resolver: Arc<SniResolver>,
        hosts: watch::Receiver<Arc<crate::HostTable>>,
        tokens: Http01Tokens,
    ) -> Self {
        Self {
            config,
            resolver,
            hosts,
            tokens,
            account: None,
            failures: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// Where the issued certificates are (for [`SniResolver::with_issued`]).
    pub fn certs_dir(dir: &Path) -> PathBuf {
        store::certs_dir(dir)
    }

    /// Issue and renew until `shutdown` becomes `true`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.hosts.borrow_and_update();
            let next = tokio::select! {
                next = self.pass() => next,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let wake = tokio::time::Instant::now() + next;
            tokio::select! {
                _ = self.hosts.changed() => {}
                () = tokio::time::sleep_until(wake) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Issue what is due now; returns how long until something is due again.
    async fn pass(&mut self) -> Duration {
        for wildcard in self.resolver.wildcards_without_certificate() {
            if self.reported.insert(wildcard.clone()) {
                tracing::warn!(
                    host = %wildcard,
                    "no certificate for a wildcard host: ACME HTTP-01 cannot issue wildcards; put one in --cert-dir or the app's tls"
                );
            }
        }
        let mut next = MAX_SLEEP;
        for host in self.resolver.hosts_to_issue() {
            let now = SystemTime::now();
            if let Some(at) = store::renew_at(&self.config.dir, &host)
                && at > now
            {
                next = next.min(at.duration_since(now).unwrap_or_default());
                continue;
            }
            if let Some((_, retry)) = self.failures.get(&host)
                && *retry > Instant::now()
            {
                next = next.min(retry.saturating_duration_since(Instant::now()));
                continue;
            }
            let started = Instant::now();
            match self.issue(&host).await {
                Ok(()) => {
                    self.failures.remove(&host);
                    tracing::info!(
                        host = %host,
                        ms = started.elapsed().as_millis() as u64,
                        "certificate issued"
                    );
                }
                Err(err) => {
                    let failures = self.failures.get(&host).map_or(0, |(n, _)| *n) + 1;
                    let delay = FIRST_RETRY
                        .saturating_mul(1 << failures.min(16).saturating_sub(1))
                        .min(MAX_SLEEP);
                    self.failures
                        .insert(host.clone(), (failures, Instant::now() + delay));
                    next = next.min(delay);
                    tracing::warn!(
                        host = %host,
                        error = %err,
                        retry_in_s = delay.as_secs(),
                        "cannot issue a certificate"
                    );
                }
            }
        }
        next
    }

    /// The account: loaded from the state directory, else created and stored.
    async fn account(&mut self) -> Result<Account, AcmeError> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let builder = || -> Result<_, AcmeError> {
            Ok(Account::builder_with_http(http_client(
                self.config.ca_root.as_deref(),
            )?))
        };
        let account = match store::load_account(&self.config.dir, &self.config.directory) {
            Some(credentials) => builder()?.from_credentials(credentials).await?,
            None => {
                let contact = format!("mailto:{}", self.config.email);
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &[&contact],
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.config.directory.clone(),
                        None,
                    )
                    .await?;
                let stored = store::StoredAccount {
                    directory: self.config.directory.clone(),
                    credentials,
                };
                let json = serde_json::to_vec_pretty(&stored)
                    .map_err(|e| AcmeError::Order(format!("cannot store the account: {e}")))?;
                store::write_private(&store::account_path(&self.config.dir), &json)?;
                tracing::info!(directory = %self.config.directory, id = account.id(), "ACME account created");
                account
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order for `host`, validated over HTTP-01, its chain and key stored.
    async fn issue(&mut self, host: &str) -> Result<(), AcmeError> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(host.to_string())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut answering = Answering {
            tokens: &self.tokens,
            pending: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Order(format!(
                        "{host}: authorization is {other:?}"
                    )));
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::Order(format!("{host}: no http-01 challenge")))?;
            answering.add(&challenge.token, challenge.key_authorization().as_str());
            challenge.set_ready().await?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .timeout(Duration::from_secs(120));
        let status = order.poll_ready(&retry).await?;
        drop(answering);
        if status != OrderStatus::Ready {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            return Err(AcmeError::Order(format!(
                "{host}: order is {status:?} {detail}"
            )));
        }
        let key_pem = order.finalize().await?;
        let chain_pem = order.poll_certificate(&retry).await?;
        if CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .next()
            .is_none()
        {
            return Err(AcmeError::Order(format!(
                "{host}: the CA sent no certificate"
            )));
        }
        let path = store::cert_path(&self.config.dir, host);
        store::write_private(&path, format!("{chain_pem}\n{key_pem}").as_bytes())
    }
}

/// Challenge tokens answered while an order is validated; withdrawn when dropped (whatever
/// way the order ends).
struct Answering<'a> {
    tokens: &'a Http01Tokens,
    pending: Vec<String>,
}

impl Answering<'_> {
    fn add(&mut self, token: &str, key_authorization: &str) {
        self.tokens.insert(token, key_authorization);
        self.pending.push(token.to_string());
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        for token in &self.pending {
            self.tokens.remove(token);
        }
    }
}

/// The ACME server's HTTP client: hyper over rustls (ring), trusting the system's roots and
/// `ca_root`.
fn http_client(ca_root: Option<&Path>) -> Result<Box<dyn HttpClient>, AcmeError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_root {
        let io = |e: rustls::pki_types::pem::Error| AcmeError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        };
        for cert in CertificateDer::pem_file_iter(path).map_err(io)? {
            roots
                .add(cert.map_err(io)?)
                .map_err(|e| AcmeError::Order(format!("{}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeError::Order(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: HyperClient<_, BodyWrapper<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(client))
}
