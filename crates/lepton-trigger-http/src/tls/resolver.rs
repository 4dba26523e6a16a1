//! Choosing a certificate by SNI ([`SniResolver`]): the rustls hook the HTTPS ingress calls in
//! every handshake.
//!
//! A handshake goes on only for a host some app serves (the [`HostTable`], exact host first,
//! then a `*.` wildcard one label up), with the first certificate found:
//!
//! 1. the app's own `tls` files;
//! 2. from the operator's certificate directories (`--cert-dir`), for the SNI host
//!    `shop.example.com`: `shop.example.com.crt` with `shop.example.com.key`, else
//!    `shop.example.com.pem` holding both, in each directory in order; then the wildcard one
//!    label up the same way, written with `_` for `*` (`_.example.com.crt` + `.key`, or
//!    `_.example.com.pem`; `_` is never part of a host lepton routes, so names cannot clash).
//!    The exact host's certificate wins over a wildcard one, wherever each is;
//! 3. what lepton issued itself through ACME ([`super::acme`]): `<host>.pem` in its directory,
//!    for exact hosts only.
//!
//! Otherwise the handshake fails: without SNI, for a host no app serves (logged at debug: any
//! client can send any name), or for an app's host without a certificate (a warning, once per
//! host pattern until it has one again).

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::TlsFiles;
use super::cache::CertCache;
use crate::ingress::HostTable;

/// Certificates by SNI for the HTTPS ingress (see the module documentation for the order).
pub struct SniResolver {
    hosts: watch::Receiver<Arc<HostTable>>,
    dirs: Vec<PathBuf>,
    /// Where ACME-issued certificates are, if lepton issues any.
    issued: Option<PathBuf>,
    cache: CertCache,
    /// Host patterns already reported as having no certificate.
    unserved: Mutex<HashSet<String>>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("dirs", &self.dirs)
            .field("issued", &self.issued)
            .finish_non_exhaustive()
    }
}

impl SniResolver {
    /// Certificates for the hosts in `hosts`: the apps' own, else from `dirs` in order.
    pub fn new(hosts: watch::Receiver<Arc<HostTable>>, dirs: Vec<PathBuf>) -> Self {
        Self {
            hosts,
            dirs,
            issued: None,
            cache: CertCache::new(),
            unserved: Mutex::new(HashSet::new()),
        }
    }

    /// Also serve the certificates lepton issued itself, as `<host>.pem` in `dir` (after the
    /// apps' own and the operator's).
    pub fn with_issued(mut self, dir: PathBuf) -> Self {
        self.issued = Some(dir);
        self
    }

    /// The hosts some app serves (exact patterns, sorted) that have no certificate of their
    /// app's own nor in the operator's directories: what lepton may issue certificates for.
    pub fn hosts_to_issue(&self) -> Vec<String> {
        let table = self.hosts.borrow().clone();
        let mut hosts: Vec<String> = table
            .tls_routes()
            .filter(|route| route.files.is_none() && !route.pattern.starts_with("*."))
            .filter(|route| self.operator_lookup(route.pattern).is_none())
            .map(|route| route.pattern.to_string())
            .collect();
        hosts.sort();
        hosts
    }

    /// The wildcard patterns some app serves that no certificate covers, which lepton cannot
    /// issue one for (HTTP-01 validates one name at a time).
    pub fn wildcards_without_certificate(&self) -> Vec<String> {
        let table = self.hosts.borrow().clone();
        let mut wildcards: Vec<String> = table
            .tls_routes()
            .filter(|route| route.files.is_none())
            .filter_map(|route| route.pattern.strip_prefix("*."))
            .filter(|parent| self.operator_lookup(&format!("_.{parent}")).is_none())
            .map(|parent| format!("*.{parent}"))
            .collect();
        wildcards.sort();
        wildcards
    }

    /// The certificate a handshake for `sni` presents, if any.
    pub fn certificate(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let host = sni.trim_end_matches('.').to_ascii_lowercase();
        let table = self.hosts.borrow().clone();
        let Some(route) = table.tls_route(&host) else {
            tracing::debug!(sni = %host, "TLS handshake refused: no app serves this host");
            return None;
        };
        let found = match route.files {
            Some(files) => self.cache.get(files),
            None => self.dir_lookup(&host),
        };
        let mut unserved = self.unserved.lock().unwrap_or_else(|e| e.into_inner());
        match &found {
            Some(_) => {
                if !unserved.is_empty() {
                    unserved.remove(route.pattern);
                }
            }
            None => {
                if unserved.insert(route.pattern.to_string()) {
                    tracing::warn!(
                        host = %host,
                        pattern = route.pattern,
                        "TLS handshake refused: no certificate for this host"
                    );
                }
            }
        }
        found
    }

    /// The first pair in the certificate directories for `host` or its wildcard, then the
    /// issued one for `host`.
    pub(super) fn dir_lookup(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(found) = self.operator_lookup(host) {
            return Some(found);
        }
        let issued = self.issued.as_ref()?;
        if !safe_host(host) {
            return None;
        }
        let files = TlsFiles {
            cert: issued.join(format!("{host}.pem")),
            key: issued.join(format!("{host}.pem")),
        };
        if files.cert.is_file() {
            self.cache.get(&files)
        } else {
            None
        }
    }

    /// The first pair in the operator's directories for `host` (or a `_.parent` stem), then
    /// for its wildcard.
    fn operator_lookup(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        if !safe_host(host) {
            return None;
        }
        let wildcard = host
            .split_once('.')
            .filter(|(label, _)| *label != "_")
            .map(|(_, parent)| format!("_.{parent}"));
        for stem in std::iter::once(host).chain(wildcard.as_deref()) {
            for dir in &self.dirs {
                for files in dir_candidates(dir, stem) {
                    if files.cert.is_file()
                        && let Some(found) = self.cache.get(&files)
                    {
                        return Some(found);
                    }
                }
            }
        }
        None
    }
}

/// Whether `host` is a plain host name, safe to build a file name from (rustls only hands over
/// valid DNS names; stay safe anyway). `_` may be a whole first label (`_.example.com`, the
/// wildcard's file stem).
fn safe_host(host: &str) -> bool {
    let name = host.strip_prefix("_.").unwrap_or(host);
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// `<stem>.crt` + `<stem>.key`, then `<stem>.pem` (both in one file).
fn dir_candidates(dir: &std::path::Path, stem: &str) -> [TlsFiles; 2] {
    [
        TlsFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        },
        TlsFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.pem")),
        },
    ]
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(sni) = hello.server_name() else {
            tracing::debug!("TLS handshake refused: the client sent no SNI");
            return None;
        };
        self.certificate(sni)
    }
}
