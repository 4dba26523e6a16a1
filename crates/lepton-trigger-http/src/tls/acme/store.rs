//! What the ACME issuer keeps on disk, under `<state-root>/acme/`:
//!
//! - `account.json`: the directory URL and the account's credentials (its private key), mode
//!   0600; an account made for another directory is not reused.
//! - `certs/<host>.pem`: each issued certificate chain followed by its private key, mode 0600,
//!   the `<host>.pem` shape the SNI resolver reads (and re-reads when it changes).
//!
//! Every file is written to a temporary file, fsynced and renamed into place, so a handshake
//! never reads half a certificate and a crash never leaves a torn account. A certificate is
//! due for renewal once two thirds of its lifetime have passed (30 days before the end of a
//! 90-day certificate), or when it cannot be read.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::AccountCredentials;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use super::AcmeError;

/// The account file's contents.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredAccount {
    /// The directory the account was made with.
    pub directory: String,
    /// Its credentials.
    pub credentials: AccountCredentials,
}

/// `<dir>/account.json`.
pub(super) fn account_path(dir: &Path) -> PathBuf {
    dir.join("account.json")
}

/// `<dir>/certs`: what the SNI resolver reads issued certificates from.
pub fn certs_dir(dir: &Path) -> PathBuf {
    dir.join("certs")
}

/// `<dir>/certs/<host>.pem`.
pub(super) fn cert_path(dir: &Path, host: &str) -> PathBuf {
    certs_dir(dir).join(format!("{host}.pem"))
}

/// The stored account, if there is one for `directory`.
pub(super) fn load_account(dir: &Path, directory: &str) -> Option<AccountCredentials> {
    let path = account_path(dir);
    let text = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<StoredAccount>(&text) {
        Ok(stored) if stored.directory == directory => Some(stored.credentials),
        Ok(stored) => {
            tracing::info!(
                previous = %stored.directory,
                directory,
                "ACME account was made for another directory; making a new one"
            );
            None
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "unreadable ACME account; making a new one");
            None
        }
    }
}

/// Write `bytes` to `path` privately (0600) and atomically, creating its directory.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AcmeError> {
    let io = |source| AcmeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// When the certificate stored for `host` is due for renewal (`None`: now — missing or
/// unreadable).
pub(super) fn renew_at(dir: &Path, host: &str) -> Option<SystemTime> {
    let pem = std::fs::read(cert_path(dir, host)).ok()?;
    let leaf = CertificateDer::pem_slice_iter(&pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).ok()?;
    let validity = cert.validity();
    renewal_time(
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    )
}

/// Two thirds into the validity period `[not_before, not_after]` (Unix seconds).
pub(super) fn renewal_time(not_before: i64, not_after: i64) -> Option<SystemTime> {
    let lifetime = not_after.checked_sub(not_before)?.max(0);
    let at = not_after - lifetime / 3;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(at).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime() {
        let day = 86_400;
        let at = renewal_time(0, 90 * day).expect("time");
        assert_eq!(at, UNIX_EPOCH + Duration::from_secs(60 * day as u64));
        assert!(renewal_time(10, 5).is_some_and(|t| t == UNIX_EPOCH + Duration::from_secs(5)));
    }

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("certs/a.example.com.pem");
        write_private(&path, b"one").expect("write");
        write_private(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(path.parent().expect("parent"))
                .expect("list")
                .count(),
            1,
            "no temp file left"
        );
        // A certificate that is not one is due now.
        assert!(renew_at(dir.path(), "a.example.com").is_none());
    }
}
