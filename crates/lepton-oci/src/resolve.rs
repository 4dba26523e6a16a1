//! Turning a cached artifact into a runnable LockedApp (facts §1.5).
//!
//! - Component sources become `file://` URLs of verified cache blobs (digest kept as the
//!   runtime's compile-cache key).
//! - Files are materialized into `<root>/assets/<locked-app-hex>/<component>/<path>` from inline
//!   bytes or verified `data/` blobs. The directory is built in a temp dir and renamed into
//!   place; later loads reuse it after re-verifying every file (and that nothing was added).
//! - `metadata.origin` is set to `vnd.fermyon.origin-oci:<reference>`.
//!
//! Nothing here touches the network: content missing or tampered at this point is an error.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use lepton_app::{ContentPath, ContentRef, LockedApp, file_url};

use crate::cache::{ASIDE_PREFIX, BlobKind, OciCache, TEMP_PREFIX, write_atomic};
use crate::digest::{FileCheck, check_file, sha256_digest, sha256_hex};
use crate::error::{OciError, io_err};
use crate::media::ORIGIN_PREFIX;
use crate::pull::Fetched;

/// One file to materialize: its digest and, if inlined, its bytes.
struct AssetSource {
    digest: String,
    inline: Option<Vec<u8>>,
}

/// Builds the runnable form of `fetched` for `reference` (fully qualified).
pub(crate) fn runnable(
    cache: &OciCache,
    reference: &str,
    fetched: &Fetched,
) -> Result<LockedApp, OciError> {
    let invalid = |message: String| OciError::InvalidLockedApp {
        reference: reference.to_string(),
        message,
    };
    let mut app =
        LockedApp::from_json(&fetched.locked_bytes).map_err(|e| invalid(e.to_string()))?;
    let blobs = Blobs {
        cache,
        reference,
        verified: &fetched.verified,
    };

    let mut assets: BTreeMap<String, AssetSource> = BTreeMap::new();
    for c in &app.components {
        check_component_id(&c.id).map_err(&invalid)?;
        for f in &c.files {
            if !is_plain_relative(&f.path) {
                return Err(OciError::InvalidFilePath {
                    component: c.id.clone(),
                    path: f.path.clone(),
                    reference: reference.to_string(),
                });
            }
            let digest = match (&f.content.digest, &f.content.inline) {
                (Some(d), _) => d.clone(),
                (None, Some(bytes)) => sha256_digest(bytes),
                (None, None) => {
                    return Err(invalid(format!(
                        "component {} file {} has neither digest nor inline content",
                        c.id, f.path
                    )));
                }
            };
            if sha256_hex(&digest).is_none() {
                return Err(invalid(format!(
                    "component {} file {} has invalid digest {digest:?}",
                    c.id, f.path
                )));
            }
            if let Some(bytes) = &f.content.inline {
                let actual = sha256_digest(bytes);
                if actual != digest {
                    return Err(OciError::DigestMismatch {
                        digest,
                        actual,
                        reference: reference.to_string(),
                    });
                }
            }
            let key = format!("{}/{}", c.id, f.path.trim_start_matches("./"));
            assets.insert(
                key,
                AssetSource {
                    digest,
                    inline: f.content.inline.clone(),
                },
            );
        }
    }
    let assets_dir = if assets.is_empty() {
        None
    } else {
        Some(materialize(cache, &blobs, &fetched.locked_digest, &assets)?)
    };

    for c in &mut app.components {
        let digest = c
            .source
            .content
            .digest
            .clone()
            .ok_or_else(|| invalid(format!("component {} source has no digest", c.id)))?;
        let path = blobs.wasm_path(&digest)?;
        c.source.content = ContentRef {
            source: Some(file_url::from_path(&path)),
            inline: None,
            digest: Some(digest),
        };
        let had_files = !c.files.is_empty();
        c.files.clear();
        if let (true, Some(dir)) = (had_files, &assets_dir) {
            c.files.push(ContentPath {
                content: ContentRef {
                    source: Some(file_url::from_path(&dir.join(&c.id))),
                    ..Default::default()
                },
                path: "/".to_string(),
            });
        }
    }
    app.metadata.insert(
        "origin".to_string(),
        serde_json::Value::String(format!("{ORIGIN_PREFIX}{reference}")),
    );
    Ok(app)
}

/// Verified access to cached blobs.
struct Blobs<'a> {
    cache: &'a OciCache,
    reference: &'a str,
    verified: &'a HashSet<String>,
}

impl Blobs<'_> {
    fn unavailable(&self, digest: &str, mismatch: Option<String>) -> OciError {
        match mismatch {
            Some(actual) => OciError::DigestMismatch {
                digest: digest.to_string(),
                actual,
                reference: self.reference.to_string(),
            },
            None => OciError::MissingContent {
                digest: digest.to_string(),
                reference: self.reference.to_string(),
                detail: "not in the cache (and not fetched from the registry)".to_string(),
            },
        }
    }

    /// The verified cache path of a Wasm blob (`wasm/`, falling back to `data/`).
    fn wasm_path(&self, digest: &str) -> Result<PathBuf, OciError> {
        let mut mismatch = None;
        for kind in [BlobKind::Wasm, BlobKind::Data] {
            let path = self.cache.blob_path(kind, digest)?;
            if self.verified.contains(digest) && path.is_file() {
                return Ok(path);
            }
            match self.cache.check_blob(kind, digest)?.1 {
                FileCheck::Valid => return Ok(path),
                FileCheck::Mismatch(actual) => mismatch = Some(actual),
                FileCheck::Missing => {}
            }
        }
        Err(self.unavailable(digest, mismatch))
    }

    /// The bytes of a data blob, verified in memory.
    fn data_bytes(&self, digest: &str) -> Result<Vec<u8>, OciError> {
        let path = self.cache.blob_path(BlobKind::Data, digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.unavailable(digest, None));
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        let actual = sha256_digest(&bytes);
        if actual != digest {
            tracing::warn!(path = %path.display(), expected = digest, actual = %actual, "cached blob does not match its digest; deleting it");
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            return Err(self.unavailable(digest, Some(actual)));
        }
        Ok(bytes)
    }
}

/// Attempts at swapping a freshly built assets dir into place before giving up.
const SWAP_ATTEMPTS: usize = 3;

/// Ensures `<root>/assets/<hex>/` holds exactly `assets`, verified; returns the dir.
///
/// A directory that verifies is never deleted: it may be in use by a running app (another load
/// of the same app, in this or another process). A new copy is built in a temp dir; if the final
/// dir appears meanwhile and verifies, it is used and the copy discarded. An invalid one is
/// renamed aside, the new copy renamed in, and only then is the aside copy deleted.
fn materialize(
    cache: &OciCache,
    blobs: &Blobs<'_>,
    locked_digest: &str,
    assets: &BTreeMap<String, AssetSource>,
) -> Result<PathBuf, OciError> {
    let dir = cache.assets_dir(locked_digest)?;
    if dir.is_dir() {
        if assets_valid(&dir, assets)? {
            return Ok(dir);
        }
        tracing::warn!(dir = %dir.display(), "cached assets do not match the app; rebuilding them");
    }
    let parent = dir.parent().unwrap_or(cache.root());
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(parent)
        .map_err(io_err(parent))?;
    for (rel, src) in assets {
        let bytes = match &src.inline {
            Some(b) => b.clone(),
            None => blobs.data_bytes(&src.digest)?,
        };
        write_atomic(&tmp.path().join(rel), &bytes)?;
    }
    // Invalid copies moved aside; deleted when this returns, after the new copy is in place.
    let mut asides = Vec::new();
    let mut last_err = None;
    for _ in 0..SWAP_ATTEMPTS {
        match std::fs::rename(tmp.path(), &dir) {
            Ok(()) => {
                // The temp dir is now `dir`; don't let the guard delete it.
                let _ = tmp.keep();
                return Ok(dir);
            }
            Err(e) => last_err = Some(e),
        }
        // Something is in the way: another loader's result (use it if it verifies) or a stale,
        // invalid copy (move it aside, never delete it in place).
        if dir.is_dir() && assets_valid(&dir, assets)? {
            return Ok(dir);
        }
        let aside = tempfile::Builder::new()
            .prefix(ASIDE_PREFIX)
            .tempdir_in(parent)
            .map_err(io_err(parent))?;
        let aside_path = aside.path().join("assets");
        match std::fs::rename(&dir, &aside_path) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "moved invalid assets aside"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        asides.push(aside);
    }
    // `tmp` is dropped (deleted) here.
    Err(io_err(&dir)(last_err.unwrap_or_else(|| {
        std::io::Error::other("assets directory kept changing while being replaced")
    })))
}

/// Whether `dir` contains exactly the expected files with the expected digests.
fn assets_valid(dir: &Path, assets: &BTreeMap<String, AssetSource>) -> Result<bool, OciError> {
    for (rel, src) in assets {
        if check_file(&dir.join(rel), &src.digest).map_err(io_err(dir.join(rel)))?
            != FileCheck::Valid
        {
            return Ok(false);
        }
    }
    let mut count = 0usize;
    count_files(dir, &mut count)?;
    Ok(count == assets.len())
}

fn count_files(dir: &Path, count: &mut usize) -> Result<(), OciError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let ty = entry.file_type().map_err(io_err(entry.path()))?;
        if ty.is_dir() {
            count_files(&entry.path(), count)?;
        } else {
            *count += 1;
        }
    }
    Ok(())
}

fn is_plain_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && p.components().any(|c| matches!(c, Component::Normal(_)))
}

fn check_component_id(id: &str) -> Result<(), String> {
    let mut comps = Path::new(id).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) if !id.contains(['/', '\\']) => Ok(()),
        _ => Err(format!(
            "component id {id:?} is not usable as a directory name"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_must_be_plain_relative() {
        assert!(is_plain_relative("static/index.html"));
        assert!(is_plain_relative("./a"));
        for bad in ["/etc/passwd", "../x", "a/../../b", "", "."] {
            assert!(!is_plain_relative(bad), "{bad}");
        }
        assert!(check_component_id("hello").is_ok());
        for bad in ["..", "a/b", "", "."] {
            assert!(check_component_id(bad).is_err(), "{bad}");
        }
    }
}
