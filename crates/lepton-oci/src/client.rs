//! A registry session for one reference: transport (HTTP for loopback/insecure registries,
//! HTTPS otherwise), Docker credentials, and the raw operations push/pull need.
//!
//! Sessions share their transport: one [`Client`] per registry transport and credentials, kept
//! for the process. Building a client loads the machine's root certificates and starts an empty
//! connection pool; done per pull, that was 5% of the CPU of a cold start of 1,000 apps
//! (`perf`, `bench/density.sh`), and every pull opened new connections.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tracing::debug;

use crate::RegistryOptions;
use crate::error::OciError;
use crate::media::{DOCKER_MANIFEST_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-read (not whole-transfer) timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// An authenticated connection to the registry of one reference.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) reference: Reference,
    /// `reference.whole()`, for messages.
    pub(crate) name: String,
    /// Credentials (already stored in the client; kept for calls that take them).
    pub(crate) auth: RegistryAuth,
    /// The registry host (`host[:port]`) credentials were looked up for.
    pub(crate) registry: String,
}

impl Session {
    /// Connects and authenticates for `op`. Transport failures are reported as
    /// [`OciError::Registry`]; use [`is_unreachable`] to tell them apart.
    pub(crate) async fn connect(
        reference: &Reference,
        opts: &RegistryOptions,
        op: RegistryOperation,
    ) -> Result<Session, OciError> {
        let registry = reference
            .resolve_registry()
            .trim_end_matches('/')
            .to_string();
        let auth = credentials(registry.clone()).await;
        let client = shared_client(protocol_for(&registry, opts), &registry, &auth);
        let session = Session {
            client,
            reference: reference.clone(),
            name: reference.whole(),
            auth,
            registry,
        };
        session
            .client
            .auth(reference, &session.auth, op)
            .await
            .map_err(|e| session.err(e))?;
        Ok(session)
    }

    pub(crate) fn err(&self, source: OciDistributionError) -> OciError {
        let hint = is_auth_failure(&source).then(|| auth_hint(&self.registry, &self.auth));
        OciError::Registry {
            reference: self.name.clone(),
            hint,
            source,
        }
    }

    /// Fetches the raw manifest bytes (image manifests only).
    pub(crate) async fn manifest_bytes(&self) -> Result<bytes::Bytes, OciError> {
        let (body, _digest) = self
            .client
            .pull_manifest_raw(
                &self.reference,
                &self.auth,
                &[OCI_MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(body)
    }

    /// Opens a blob download stream.
    pub(crate) async fn blob_stream(
        &self,
        desc: &OciDescriptor,
    ) -> Result<oci_client::client::SizedStream, OciError> {
        self.client
            .pull_blob_stream(&self.reference, desc)
            .await
            .map_err(|e| self.err(e))
    }
}

/// How many clients [`shared_client`] keeps; past that the oldest is dropped (its pooled
/// connections close once no session uses it).
const MAX_CLIENTS: usize = 32;

/// Clients by transport (the protocol, which names an insecure registry), registry and
/// credentials. Credentials are part of the key because a client remembers the
/// first credentials it saw for a registry: a changed Docker config gets a fresh client.
static CLIENTS: Mutex<Vec<(ClientProtocol, String, RegistryAuth, Client)>> = Mutex::new(Vec::new());

/// The process's client for `protocol` to `registry` with `auth`, built on first use.
fn shared_client(protocol: ClientProtocol, registry: &str, auth: &RegistryAuth) -> Client {
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, _, _, client)) = clients
        .iter()
        .find(|(p, r, a, _)| *p == protocol && r == registry && a == auth)
    {
        return client.clone();
    }
    let client = Client::new(ClientConfig {
        protocol: protocol.clone(),
        // Bounded so a dead or hung registry turns into a cache fallback, not a hang.
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..Default::default()
    });
    if clients.len() >= MAX_CLIENTS {
        clients.remove(0);
    }
    clients.push((protocol, registry.to_string(), auth.clone(), client.clone()));
    client
}

/// Whether an error means the registry could not be reached or is failing (transport errors,
/// timeouts, 5xx server errors), in which case the cache may be used instead. Answers such as
/// 401/403/404 are not: the registry is up and said no.
pub(crate) fn is_unreachable(err: &OciError) -> bool {
    match err {
        OciError::Registry { source, .. } => match source {
            OciDistributionError::RequestError(e) => {
                e.is_connect()
                    || e.is_timeout()
                    || e.is_request()
                    || e.status().is_some_and(|s| s.is_server_error())
            }
            OciDistributionError::IoError(_) => true,
            OciDistributionError::ServerError { code, .. } => (500..600).contains(code),
            _ => false,
        },
        _ => false,
    }
}

/// Whether the registry refused access (401/403, or a token endpoint refusal).
fn is_auth_failure(err: &OciDistributionError) -> bool {
    use oci_client::errors::OciErrorCode;
    match err {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        OciDistributionError::RequestError(e) => e
            .status()
            .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        _ => false,
    }
}

/// What to check when `registry` refused a request made with `auth`.
fn auth_hint(registry: &str, auth: &RegistryAuth) -> String {
    match auth {
        RegistryAuth::Anonymous => format!(
            "no credentials found for {registry} in docker config (DOCKER_CONFIG or ~/.docker/config.json)"
        ),
        _ => format!("credentials for {registry} were rejected"),
    }
}

/// Plain HTTP for loopback and insecure registries, HTTPS otherwise.
fn protocol_for(registry: &str, opts: &RegistryOptions) -> ClientProtocol {
    if opts.insecure_all {
        return ClientProtocol::Http;
    }
    let host = host_of(registry);
    let insecure = is_loopback(host)
        || opts
            .insecure_registries
            .iter()
            .map(|r| r.trim_end_matches('/'))
            .any(|r| r == registry || r == host);
    if insecure {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::HttpsExcept(Vec::new())
    }
}

/// The host part of `host[:port]` / `[v6][:port]`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Docker credentials for `registry` (config.json, credsStore, credHelpers), else anonymous.
async fn credentials(registry: String) -> RegistryAuth {
    let lookup = registry.clone();
    let found =
        tokio::task::spawn_blocking(move || docker_credential::get_credential(&lookup)).await;
    match found {
        Ok(Ok(docker_credential::DockerCredential::UsernamePassword(user, pass))) => {
            debug!(%registry, "using Docker credentials");
            RegistryAuth::Basic(user, pass)
        }
        Ok(Ok(docker_credential::DockerCredential::IdentityToken(_))) => {
            debug!(%registry, "Docker identity tokens are not supported; using anonymous access");
            RegistryAuth::Anonymous
        }
        Ok(Err(e)) => {
            debug!(%registry, error = %e, "no Docker credentials; using anonymous access");
            RegistryAuth::Anonymous
        }
        Err(e) => {
            debug!(%registry, error = %e, "credential lookup failed; using anonymous access");
            RegistryAuth::Anonymous
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_get_a_hint() {
        let unauthorized = || OciDistributionError::UnauthorizedError {
            url: "http://r/v2/".into(),
        };
        assert!(is_auth_failure(&unauthorized()));
        assert!(is_auth_failure(&OciDistributionError::ServerError {
            code: 403,
            url: String::new(),
            message: String::new(),
        }));
        assert!(!is_auth_failure(&OciDistributionError::ServerError {
            code: 500,
            url: String::new(),
            message: String::new(),
        }));
        let anon = auth_hint("r.example:5000", &RegistryAuth::Anonymous);
        assert!(
            anon.contains("no credentials found for r.example:5000")
                && anon.contains("DOCKER_CONFIG"),
            "{anon}"
        );
        let basic = auth_hint("r.example", &RegistryAuth::Basic("u".into(), "p".into()));
        assert!(basic.contains("rejected"), "{basic}");
    }

    #[test]
    fn sessions_share_one_client_per_transport_registry_and_credentials() {
        let registry = "shared-client-test.example:5000";
        let count = || {
            CLIENTS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|(_, r, _, _)| r == registry)
                .count()
        };
        let https = ClientProtocol::HttpsExcept(Vec::new());
        let basic = RegistryAuth::Basic("u".into(), "p".into());
        shared_client(https.clone(), registry, &RegistryAuth::Anonymous);
        shared_client(https.clone(), registry, &RegistryAuth::Anonymous);
        assert_eq!(
            count(),
            1,
            "the same transport and credentials reuse one client"
        );
        shared_client(https.clone(), registry, &basic);
        assert_eq!(count(), 2, "other credentials get their own client");
        shared_client(ClientProtocol::Http, registry, &basic);
        assert_eq!(count(), 3, "another transport gets its own client");
        shared_client(https, registry, &basic);
        assert_eq!(count(), 3);
    }

    #[test]
    fn loopback_registries_use_http() {
        let opts = RegistryOptions::default();
        for r in [
            "localhost:5000",
            "127.0.0.1:41234",
            "127.3.2.1",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(
                matches!(protocol_for(r, &opts), ClientProtocol::HttpsExcept(ref v) if v == &vec![r.to_string()]),
                "{r}"
            );
        }
        assert!(
            matches!(protocol_for("ghcr.io", &opts), ClientProtocol::HttpsExcept(ref v) if v.is_empty())
        );
        let opts = RegistryOptions {
            insecure_registries: vec!["myreg.lan".into()],
            insecure_all: false,
        };
        assert!(
            matches!(protocol_for("myreg.lan:5000", &opts), ClientProtocol::HttpsExcept(ref v) if v.len() == 1)
        );
        let all = RegistryOptions {
            insecure_all: true,
            ..Default::default()
        };
        assert!(matches!(
            protocol_for("ghcr.io", &all),
            ClientProtocol::Http
        ));
    }
}
