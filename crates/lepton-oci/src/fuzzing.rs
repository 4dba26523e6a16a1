//! Entry points for the fuzz targets in `fuzz/` (see `scripts/fuzz.sh`). Not a stable API: each
//! function is a thin wrapper that exposes one crate-private parser of registry-supplied
//! (untrusted) data exactly as the pull path calls it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use lepton_app::LockedApp;

use crate::archive::ArchiveLimits;
use crate::cache::OciCache;
use crate::digest::sha256_digest;
use crate::error::OciError;
use crate::pull::Fetched;

/// Parses manifest bytes as a pull does and picks the locked-app descriptor; returns its digest.
pub fn parse_manifest(bytes: &[u8]) -> Result<String, OciError> {
    let manifest = crate::pull::parse_manifest(bytes, "fuzz")?;
    crate::pull::locked_descriptor(&manifest, "fuzz").map(|d| d.digest.clone())
}

/// Unpacks an archive layer within the given limits, calling `each(relative_path, bytes)` for
/// every regular file.
pub fn unpack_archive(
    archive: &[u8],
    max_file_bytes: u64,
    max_total_bytes: u64,
    each: impl FnMut(&str, Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let limits = ArchiveLimits {
        max_file_bytes,
        max_total_bytes,
    };
    crate::archive::unpack(archive, limits, each)
}

/// Resolves `locked_bytes` (as pulled for `reference`) into its runnable form against the cache
/// at `cache_root`, materializing inline files under `<cache_root>/assets/` as a load does.
pub fn runnable(
    cache_root: &Path,
    reference: &str,
    locked_bytes: &[u8],
) -> Result<LockedApp, OciError> {
    let fetched = Fetched {
        manifest_digest: sha256_digest(b"fuzz"),
        locked_bytes: locked_bytes.to_vec(),
        locked_digest: sha256_digest(locked_bytes),
        verified: HashSet::new(),
    };
    crate::resolve::runnable(
        &OciCache::new(cache_root.to_path_buf()),
        reference,
        &fetched,
    )
}

/// The cache directory a pull of `reference` writes its manifest to, under `cache_root`.
pub fn manifest_dir(cache_root: &Path, reference: &str) -> Result<PathBuf, OciError> {
    let reference = crate::parse_reference(reference)?;
    Ok(OciCache::new(cache_root.to_path_buf()).manifest_dir(&reference))
}
