//! An app's `tls` object: the certificate `lepton serve`'s shared HTTPS ingress (`--https`)
//! presents for the app's `hosts`.
//!
//! ```json
//! { "reference": "…", "hosts": ["shop.example.com"],
//!   "tls": { "cert": "/etc/lepton/tls/shop.crt", "key": "/etc/lepton/tls/shop.key" } }
//! ```
//!
//! `cert` is a PEM file holding the certificate first and then, optionally, its chain; `key` a
//! PEM private key (PKCS#8, PKCS#1 or SEC1); both may name the same file. Relative paths are
//! resolved against the source's base directory (the admin API's: `--state-root`). Only the
//! shape is checked here (this crate reads no files): that the files exist, parse, match and
//! cover the hosts is checked where the admin API accepts a `PUT`, and again whenever the
//! ingress (re)loads them. `tls` needs `hosts` (certificates are chosen by the TLS client's SNI
//! among the app's hosts), and only the admin API has an ingress: in `lepton.json` and tauon
//! files `tls` is refused.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The certificate and key files an app's hosts are served with on the HTTPS ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTls {
    /// PEM certificate chain, leaf first (absolute).
    pub cert: PathBuf,
    /// PEM private key of the leaf (absolute; may be the same file as `cert`).
    pub key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
}

/// Parse a `tls` value, resolving relative paths against `base` (made absolute by
/// `absolute`); every problem is returned with its field (`tls`, `tls.cert`, `tls.key`).
pub(crate) fn parse_tls(
    value: &serde_json::Value,
    base: &Path,
    absolute: impl Fn(&Path) -> PathBuf,
) -> Result<AppTls, Vec<(&'static str, String)>> {
    let raw = RawTls::deserialize(value).map_err(|e| {
        vec![(
            "tls",
            format!("must be {{\"cert\": PATH, \"key\": PATH}} ({e})"),
        )]
    })?;
    let mut problems = Vec::new();
    if raw.cert.is_empty() {
        problems.push(("tls.cert", "must not be empty".to_string()));
    }
    if raw.key.is_empty() {
        problems.push(("tls.key", "must not be empty".to_string()));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(AppTls {
        cert: absolute(&base.join(&raw.cert)),
        key: absolute(&base.join(&raw.key)),
    })
}
