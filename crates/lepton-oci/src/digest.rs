//! `sha256:<hex>` digests: computing, validating (before a digest is ever used as a file name)
//! and verifying files against them.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lepton_app::file_stamp::FileStamp;
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

/// Checks the file at `path` against `expected`: hashes it, unless this process already found
/// this very file (same device, inode, size, modification and change times) to match
/// `expected`. A cached blob is checked on every pull that uses it; with many apps over the
/// same components that re-read each one per app (10,000 apps over 1,000 hello components:
/// 1.8 GB hashed at start). Any write to the file, or a new file put in its place, changes
/// its stamp and makes the next check hash it again (an in-place rewrite of the same length
/// within the file system's timestamp granularity would not; whoever can write the cache can
/// also swap a file between its check and its use, so the check is against corruption and
/// stray writes, not against the cache's owner).
pub(crate) fn check_file(path: &Path, expected: &str) -> std::io::Result<FileCheck> {
    check_file_memo(path, expected).map(|(check, _)| check)
}

/// Files this process verified: path → (stamp when verified, digest it matched).
type Verified = HashMap<PathBuf, (FileStamp, String)>;
static VERIFIED: Mutex<Option<Verified>> = Mutex::new(None);
/// Past this many entries the memo starts over (about 200 bytes each).
const MAX_VERIFIED: usize = 100_000;

/// [`check_file`], and whether the file was hashed (`false`: its stamp matched the memo).
fn check_file_memo(path: &Path, expected: &str) -> std::io::Result<(FileCheck, bool)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((FileCheck::Missing, false));
        }
        Err(e) => return Err(e),
    };
    // Taken before reading: a write during the read leaves a stamp that no longer matches.
    let stamp = FileStamp::of_metadata(&file.metadata()?);
    {
        let memo = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
        if memo
            .as_ref()
            .and_then(|m| m.get(path))
            .is_some_and(|(s, d)| *s == stamp && d == expected)
        {
            return Ok((FileCheck::Valid, false));
        }
    }
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
    let mut memo = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    let memo = memo.get_or_insert_with(HashMap::new);
    if actual != expected {
        memo.remove(path);
        return Ok((FileCheck::Mismatch(actual), true));
    }
    if memo.len() >= MAX_VERIFIED {
        memo.clear();
    }
    memo.insert(path.to_path_buf(), (stamp, actual));
    Ok((FileCheck::Valid, true))
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

    #[test]
    fn a_verified_file_is_not_hashed_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"hello").unwrap();
        let digest = sha256_digest(b"hello");
        assert_eq!(
            check_file_memo(&path, &digest).unwrap(),
            (FileCheck::Valid, true)
        );
        assert_eq!(
            check_file_memo(&path, &digest).unwrap(),
            (FileCheck::Valid, false)
        );
        // Another expected digest is never answered from the memo.
        let other = sha256_digest(b"other");
        assert!(matches!(
            check_file_memo(&path, &other).unwrap(),
            (FileCheck::Mismatch(_), true)
        ));
        // Rewritten in place: its stamp changed, so it is hashed again.
        std::fs::write(&path, b"hello!").unwrap();
        let check = check_file_memo(&path, &digest).unwrap();
        assert_eq!(check, (FileCheck::Mismatch(sha256_digest(b"hello!")), true));
        // A new file put in its place (another inode) is hashed too.
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, b"hello").unwrap();
        std::fs::rename(&fresh, &path).unwrap();
        assert_eq!(
            check_file_memo(&path, &digest).unwrap(),
            (FileCheck::Valid, true)
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            check_file_memo(&path, &digest).unwrap(),
            (FileCheck::Missing, false)
        );
    }
}
