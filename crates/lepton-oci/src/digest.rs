//! `sha256:<hex>` digests: computing, validating (before a digest is ever used as a file name)
//! and verifying files against them.

use std::io::Read;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a well-formed `sha256:` digest (64 lowercase hex chars), or `None`.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// Result of checking a cached file against its digest.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FileCheck {
    /// No such file.
    Missing,
    /// Content matches.
    Valid,
    /// Content has this other digest.
    Mismatch(String),
}

/// Hashes the file at `path` and compares with `expected`.
pub(crate) fn check_file(path: &Path, expected: &str) -> std::io::Result<FileCheck> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileCheck::Missing),
        Err(e) => return Err(e),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    Ok(if actual == expected {
        FileCheck::Valid
    } else {
        FileCheck::Mismatch(actual)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_digest_shape() {
        let d = sha256_digest(b"hi");
        assert_eq!(sha256_hex(&d).map(str::len), Some(64));
        assert!(sha256_hex("sha256:../../etc/passwd").is_none());
        assert!(sha256_hex("sha512:00").is_none());
        assert!(sha256_hex(&d.to_uppercase()).is_none());
    }

    #[test]
    fn checks_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        assert_eq!(check_file(&p, "sha256:00").unwrap(), FileCheck::Missing);
        std::fs::write(&p, b"hi").unwrap();
        assert_eq!(
            check_file(&p, &sha256_digest(b"hi")).unwrap(),
            FileCheck::Valid
        );
        assert_eq!(
            check_file(&p, &sha256_digest(b"ho")).unwrap(),
            FileCheck::Mismatch(sha256_digest(b"hi"))
        );
    }
}
