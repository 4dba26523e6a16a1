//! [`OciCache`]: Spin's on-disk cache layout, with atomic writes and digest-checked reads.
//!
//! ```text
//! <root>/registry/manifests/<registry>/<repository>/<tag>/{manifest.json,config.json,digest}
//! <root>/registry/manifests/<registry>/<repository>/sha256:<hex>/...   digest-pinned refs
//! <root>/registry/wasm/sha256:<hex>     Wasm layers
//! <root>/registry/data/sha256:<hex>     files, archives, other layers
//! <root>/assets/<locked-app-hex>/<component>/...   materialized file mounts (lepton addition)
//! ```
//! `config.json` holds the LOCKED APP JSON (as in Spin); `digest` holds the manifest digest and
//! is written last, as the commit marker of a complete pull.
//!
//! Every write is a temp file (`.tmp-*`) renamed into place, so a process killed mid-write
//! leaves its temp file behind and nothing half-written under a real name. `registry/.lock`
//! (a lepton addition) reclaims those: every load holds it shared ([`OciCache::hold`]), and a
//! load that gets it exclusively knows no load in any process is writing, so it removes the
//! `.tmp-*` files (and the `.tmp-*` / `.old-*` asset dirs) killed writers left.
//!
//! One deliberate difference from Spin: Spin stores a digest-only reference (`repo@sha256:…`)
//! under `latest/`, so pulling a pinned digest overwrites the cached `:latest` tag (and an
//! offline `:latest` would then start the pinned version). lepton stores it under
//! `sha256:<hex>` instead, which can never be a tag (tags may not contain `:`).

use std::fs::TryLockError;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_client::Reference;

use crate::digest::{FileCheck, check_file, sha256_hex};
use crate::error::{OciError, io_err};

/// Env var overriding the default cache root.
pub const CACHE_DIR_ENV: &str = "LEPTON_CACHE_DIR";

/// The content-addressed cache of pulled artifacts.
#[derive(Clone, Debug)]
pub struct OciCache {
    root: PathBuf,
}

/// `registry/.lock`: held shared by every load, exclusively only to sweep (see the module docs).
pub(crate) const LOCK_FILE: &str = ".lock";
/// The name prefix of the temp files and dirs of atomic writes.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// The name prefix of invalid asset dirs moved aside before they are deleted.
pub(crate) const ASIDE_PREFIX: &str = ".old-";

/// One load's shared hold on the cache; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct CacheHold {
    _lock: Option<std::fs::File>,
}

/// Which blob directory a layer belongs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlobKind {
    Wasm,
    Data,
}

impl OciCache {
    /// A cache rooted at `root` (created lazily).
    pub fn new(root: PathBuf) -> Self {
        OciCache { root }
    }

    /// `$LEPTON_CACHE_DIR`, else `<user cache dir>/lepton` (e.g. `~/.cache/lepton`).
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("lepton")
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn registry_dir(&self) -> PathBuf {
        self.root.join("registry")
    }

    /// The path of a blob by kind; `digest` must be a validated `sha256:` digest.
    pub(crate) fn blob_path(&self, kind: BlobKind, digest: &str) -> Result<PathBuf, OciError> {
        let dir = match kind {
            BlobKind::Wasm => "wasm",
            BlobKind::Data => "data",
        };
        if sha256_hex(digest).is_none() {
            return Err(OciError::InvalidDigest {
                digest: digest.to_string(),
                context: format!("blob in the {dir} cache"),
            });
        }
        Ok(self.registry_dir().join(dir).join(digest))
    }

    /// `manifests/<registry>/<repository>` for a reference.
    pub(crate) fn repository_dir(&self, reference: &Reference) -> PathBuf {
        let mut dir = self
            .registry_dir()
            .join("manifests")
            .join(reference.registry());
        for part in reference.repository().split('/') {
            dir.push(part);
        }
        dir
    }

    /// `manifests/<registry>/<repository>/<tag>`; `…/sha256:<hex>` for digest-only references
    /// (see the module docs for why this differs from Spin's `latest`).
    pub(crate) fn manifest_dir(&self, reference: &Reference) -> PathBuf {
        let repo = self.repository_dir(reference);
        match (reference.tag(), reference.digest()) {
            (Some(tag), _) => repo.join(tag),
            (None, Some(digest)) => repo.join(digest),
            (None, None) => repo.join("latest"),
        }
    }

    /// `assets/<hex of locked app digest>`.
    pub(crate) fn assets_dir(&self, locked_digest: &str) -> Result<PathBuf, OciError> {
        let hex = sha256_hex(locked_digest).ok_or_else(|| OciError::InvalidDigest {
            digest: locked_digest.to_string(),
            context: "locked app".to_string(),
        })?;
        Ok(self.root.join("assets").join(hex))
    }

    /// Takes a shared hold on the cache for one load, which keeps other processes from sweeping
    /// the temp files it writes. First, if `sweep` and no other load (in any process) holds the
    /// cache, removes what loads killed mid-write left behind ([`OciCache::sweep_orphans`]);
    /// returns whether it did. Blocks while another process sweeps (briefly): call it from a
    /// blocking thread. Where file locks are unavailable nothing is ever swept (a sweeper needs
    /// the lock too), and the load goes on without a hold.
    pub(crate) fn hold(&self, sweep: bool) -> (CacheHold, bool) {
        let unheld = CacheHold { _lock: None };
        let dir = self.registry_dir();
        let path = dir.join(LOCK_FILE);
        let opened = std::fs::create_dir_all(&dir)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
            })
            // A read-only cache (pre-populated for pinned references) needs no write lock, but
            // can still keep out sweepers if its lock file exists.
            .or_else(|_| std::fs::File::open(&path));
        let file = match opened {
            Ok(file) => file,
            Err(err) => {
                tracing::debug!(path = %path.display(), error = %err, "cannot open the cache lock (read-only cache?); loading without it");
                return (unheld, false);
            }
        };
        let mut swept = false;
        if sweep {
            match file.try_lock() {
                Ok(()) => {
                    self.sweep_orphans();
                    swept = true;
                    // Exclusive → shared: std leaves converting a held lock unspecified.
                    if let Err(err) = file.unlock() {
                        tracing::warn!(path = %path.display(), error = %err, "cannot release the cache lock");
                        return (unheld, swept);
                    }
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(err)) => {
                    tracing::debug!(path = %path.display(), error = %err, "cannot lock the cache (no file locks here?); loading without the lock");
                    return (unheld, false);
                }
            }
        }
        match file.lock_shared() {
            Ok(()) => (CacheHold { _lock: Some(file) }, swept),
            Err(err) => {
                tracing::debug!(path = %path.display(), error = %err, "cannot lock the cache (no file locks here?); loading without the lock");
                (unheld, swept)
            }
        }
    }

    /// Removes what writers killed mid-write leave: `.tmp-*` files in `registry/wasm`,
    /// `registry/data` and the manifest dirs, and `.tmp-*` (being built) and `.old-*` (moved
    /// aside) dirs in `assets/`. Only with the lock held exclusively: then no live load owns any
    /// of them. Failures are logged and skipped; a leftover is never read, only wasted space.
    fn sweep_orphans(&self) {
        let mut removed = Removed::default();
        let registry = self.registry_dir();
        for dir in [registry.join("wasm"), registry.join("data")] {
            sweep_dir(&dir, &[TEMP_PREFIX], false, &mut removed);
        }
        sweep_dir(
            &registry.join("manifests"),
            &[TEMP_PREFIX],
            true,
            &mut removed,
        );
        sweep_dir(
            &self.root.join("assets"),
            &[TEMP_PREFIX, ASIDE_PREFIX],
            false,
            &mut removed,
        );
        if removed.entries > 0 {
            tracing::info!(
                cache = %self.root.display(),
                removed = removed.entries,
                bytes = removed.bytes,
                "removed temp files of interrupted loads (a lepton killed mid-write)"
            );
        }
    }

    /// Checks a cached blob; a tampered one is logged, deleted and reported as such.
    pub(crate) fn check_blob(
        &self,
        kind: BlobKind,
        digest: &str,
    ) -> Result<(PathBuf, FileCheck), OciError> {
        let path = self.blob_path(kind, digest)?;
        let check = check_file(&path, digest).map_err(io_err(&path))?;
        if let FileCheck::Mismatch(actual) = &check {
            tracing::warn!(
                path = %path.display(),
                expected = digest,
                actual = %actual,
                "cached blob does not match its digest (tampered or corrupt); deleting it"
            );
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok((path, check))
    }
}

/// What [`OciCache::sweep_orphans`] removed.
#[derive(Default)]
struct Removed {
    entries: u64,
    bytes: u64,
}

/// Removes the entries of `dir` named with one of `prefixes` (files, or dirs with everything in
/// them); with `recurse`, in its subdirectories too. Symlinks are removed, never followed.
fn sweep_dir(dir: &Path, prefixes: &[&str], recurse: bool, removed: &mut Removed) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let (path, name) = (entry.path(), entry.file_name());
        let Ok(ty) = entry.file_type() else { continue };
        let orphan = name
            .to_str()
            .is_some_and(|n| prefixes.iter().any(|p| n.starts_with(p)));
        if !orphan {
            if recurse && ty.is_dir() {
                sweep_dir(&path, prefixes, recurse, removed);
            }
            continue;
        }
        let bytes = if ty.is_dir() {
            0
        } else {
            entry.metadata().map(|m| m.len()).unwrap_or(0)
        };
        let result = if ty.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => {
                tracing::debug!(path = %path.display(), bytes, "removed a temp file of an interrupted load");
                removed.entries += 1;
                removed.bytes += bytes;
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot remove a temp file of an interrupted load");
            }
        }
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same dir, fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
    tmp.persist(path).map_err(|e| OciError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_spin() {
        let cache = OciCache::new(PathBuf::from("/c"));
        let r: Reference = "localhost:5000/jane/hello:v1".parse().unwrap();
        assert_eq!(
            cache.manifest_dir(&r),
            Path::new("/c/registry/manifests/localhost:5000/jane/hello/v1")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let pinned: Reference = format!("localhost:5000/jane/hello@{d}").parse().unwrap();
        // Spin would use `latest/`; lepton keeps pinned refs apart from the `latest` tag.
        assert_eq!(
            cache.manifest_dir(&pinned),
            Path::new("/c/registry/manifests/localhost:5000/jane/hello").join(&d)
        );
        let untagged: Reference = "localhost:5000/jane/hello".parse().unwrap();
        assert_eq!(
            cache.manifest_dir(&untagged),
            Path::new("/c/registry/manifests/localhost:5000/jane/hello/latest")
        );
        assert_eq!(
            cache.blob_path(BlobKind::Wasm, &d).unwrap(),
            Path::new("/c/registry/wasm").join(&d)
        );
        assert!(cache.blob_path(BlobKind::Data, "sha256:../../x").is_err());
    }

    #[test]
    fn atomic_write_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let cache = OciCache::new(dir.path().to_path_buf());
        let d = crate::digest::sha256_digest(b"hello");
        let p = cache.blob_path(BlobKind::Data, &d).unwrap();
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(
            cache.check_blob(BlobKind::Data, &d).unwrap().1,
            FileCheck::Valid
        );
        std::fs::write(&p, b"evil").unwrap();
        let (_, check) = cache.check_blob(BlobKind::Data, &d).unwrap();
        assert!(matches!(check, FileCheck::Mismatch(_)));
        assert!(!p.exists(), "tampered blob is deleted");
    }

    #[test]
    fn temp_files_of_killed_loads_are_swept_only_when_no_load_holds_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let cache = OciCache::new(root.clone());
        let d = crate::digest::sha256_digest(b"blob");
        let blob = cache.blob_path(BlobKind::Wasm, &d).unwrap();
        write_atomic(&blob, b"blob").unwrap();
        let tag = root.join("registry/manifests/reg:5000/team/app/v1");
        let asset = root
            .join("assets")
            .join("ab".repeat(32))
            .join("web/index.html");
        for keep in [&tag.join("digest"), &asset] {
            write_atomic(keep, b"kept").unwrap();
        }
        // What writers killed mid-write leave: temp files of atomic writes, asset dirs being
        // built or moved aside.
        let orphans = [
            root.join("registry/wasm/.tmp-A1b2C3"),
            root.join("registry/data/.tmp-D4e5F6"),
            tag.join(".tmp-G7h8I9"),
            root.join("assets/.tmp-J0k1L2"),
            root.join("assets/.old-M3n4O5"),
        ];
        for orphan in &orphans {
            if orphan.starts_with(root.join("assets")) {
                write_atomic(&orphan.join("web/partial"), b"half").unwrap();
            } else {
                std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
                std::fs::write(orphan, b"half a blob").unwrap();
            }
        }

        // A load under way elsewhere (another handle on the lock, as another process has) may
        // own them: nothing is swept.
        let (elsewhere, _) = OciCache::new(root.clone()).hold(false);
        let (hold, swept) = cache.hold(true);
        assert!(!swept, "no sweep while another load holds the cache");
        assert!(orphans.iter().all(|o| o.exists()));
        drop(hold);
        drop(elsewhere);

        // Nobody else holds it: the orphans go, everything else stays.
        let (_hold, swept) = cache.hold(true);
        assert!(swept);
        for orphan in &orphans {
            assert!(!orphan.exists(), "{} is removed", orphan.display());
        }
        assert_eq!(std::fs::read(&blob).unwrap(), b"blob");
        assert!(tag.join("digest").is_file() && asset.is_file());
        assert!(root.join("registry").join(LOCK_FILE).is_file());
        // While this load holds the cache, another one neither sweeps nor waits.
        let (_other, swept) = OciCache::new(root).hold(true);
        assert!(!swept);
    }
}
