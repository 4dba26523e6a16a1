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
//! One deliberate difference from Spin: Spin stores a digest-only reference (`repo@sha256:…`)
//! under `latest/`, so pulling a pinned digest overwrites the cached `:latest` tag (and an
//! offline `:latest` would then start the pinned version). lepton stores it under
//! `sha256:<hex>` instead, which can never be a tag (tags may not contain `:`).

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

    fn registry_dir(&self) -> PathBuf {
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

/// Writes `bytes` to `path` atomically: temp file in the same dir, fsync, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
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
}
