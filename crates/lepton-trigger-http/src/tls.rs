//! TLS on the shared ingress (`lepton serve --https`): one rustls [`ServerConfig`] (the `ring`
//! provider; TLS 1.3 and 1.2; ALPN `h2` then `http/1.1`) whose certificate is chosen per
//! handshake by the client's SNI ([`resolver::SniResolver`]).
//!
//! - Where a host's certificate comes from, in order: the `tls` files of the app the host routes
//!   to, then the `--cert-dir` ([`resolver`] documents the file names), then what lepton issued
//!   itself through ACME ([`acme`], answering HTTP-01 challenges through [`http01`]). A host no
//!   app routes to, or one with no certificate, fails the handshake (logged once per host).
//! - Certificates are files read through [`cache::CertCache`], which notices a replaced file at
//!   the next handshake (an `mtime` check) and swaps the certificate in without touching open
//!   connections.
//! - [`load_certified_key`] reads and checks one pair (PEM, the key matches the leaf), and
//!   [`check_certificate`] is what the admin API runs before it accepts an app's `tls`: the pair
//!   loads and the leaf covers each of the app's hosts.

pub mod acme;
pub mod cache;
pub mod http01;
pub mod resolver;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::InconsistentKeys;
/// The rustls server configuration [`crate::HttpListener::with_tls`] takes.
pub use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;

/// An app's certificate files: a PEM chain (leaf first) and the leaf's PEM private key (which
/// may be the same file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Why a certificate pair cannot be used; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read, holds no certificate, or does not fit.
    #[error("{}: {message}", path.display())]
    Cert {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key file cannot be read, holds no usable key, or the key is another certificate's.
    #[error("{}: {message}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl TlsError {
    /// The field of an app's `tls` object this error is about (`tls.cert` or `tls.key`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::Cert { .. } => "tls.cert",
            Self::Key { .. } => "tls.key",
        }
    }

    fn cert(path: &Path, message: impl Into<String>) -> Self {
        Self::Cert {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    fn key(path: &Path, message: impl Into<String>) -> Self {
        Self::Key {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// The crypto provider every TLS listener uses: rustls's `ring` one, named explicitly because
/// other dependencies enable `aws-lc-rs` too (and then there is no process-wide default).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The ingress's server configuration: certificates from `resolver`, ALPN `h2` and `http/1.1`
/// (hyper's auto builder then serves either on the decrypted stream).
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::cert(Path::new("(rustls)"), e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Read a PEM certificate chain and its PEM private key (`cert` and `key` may be one file) and
/// check that the key is the leaf's.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| TlsError::cert(cert, format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::cert(cert, format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::cert(
            cert,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    };
    webpki::EndEntityCert::try_from(leaf)
        .map_err(|e| TlsError::cert(cert, format!("the first certificate is not X.509: {e}")))?;
    let key_pem = if key == cert {
        cert_pem.clone()
    } else {
        std::fs::read(key).map_err(|e| TlsError::key(key, format!("cannot read: {e}")))?
    };
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::key(
            key,
            "holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
        ),
        other => TlsError::key(key, format!("not a PEM private key: {other}")),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::key(key, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(TlsError::key(
            key,
            format!("is not the key of the certificate in {}", cert.display()),
        )),
        Err(other) => Err(TlsError::cert(cert, other.to_string())),
    }
}

/// What the admin API checks before it accepts an app's `tls`: the pair loads
/// ([`load_certified_key`]) and the leaf covers every host of the app — an exact host by the
/// leaf's DNS names (a wildcard name covering it counts), a wildcard host `*.example.com` only
/// by that same wildcard name. Every problem found is returned.
pub fn check_certificate(files: &TlsFiles, hosts: &[String]) -> Vec<TlsError> {
    let certified = match load_certified_key(&files.cert, &files.key) {
        Ok(certified) => certified,
        Err(err) => return vec![err],
    };
    let Some(leaf) = certified.cert.first() else {
        return vec![TlsError::cert(&files.cert, "holds no certificate")];
    };
    let leaf = match webpki::EndEntityCert::try_from(leaf) {
        Ok(leaf) => leaf,
        Err(e) => return vec![TlsError::cert(&files.cert, e.to_string())],
    };
    let names: Vec<String> = leaf
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    hosts
        .iter()
        .filter(|host| !covers(&leaf, &names, host))
        .map(|host| {
            TlsError::cert(
                &files.cert,
                format!(
                    "does not cover host {host} (its names: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })
        .collect()
}

/// Whether `leaf` (whose DNS names are `names`, lowercased) is valid for `host` (normalised).
fn covers(leaf: &webpki::EndEntityCert<'_>, names: &[String], host: &str) -> bool {
    if host.starts_with("*.") {
        return names.iter().any(|n| n == host);
    }
    match ServerName::try_from(host) {
        Ok(name) => leaf.verify_is_valid_for_subject_name(&name).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
