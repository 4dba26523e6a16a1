//! Fetching an artifact into the cache (online) and reading it back (offline).
//!
//! Online: the manifest (checked against a pinned digest), the locked app (layer, or config blob
//! for Spin 1.x artifacts) and every layer are written to the cache, each verified by sha256
//! before it is written; cached layers are re-verified and re-fetched if tampered. Archive
//! layers are unpacked and each file stored under its own digest.
//! Offline: the cached manifest and locked app are read and verified against each other.

use std::collections::HashSet;
use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use oci_client::Reference;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use sha2::{Digest as _, Sha256};

use crate::cache::{BlobKind, OciCache, write_atomic};
use crate::client::Session;
use crate::digest::{FileCheck, check_file, sha256_digest, sha256_hex};
use crate::error::{OciError, io_err};
use crate::media::{ARCHIVE_MEDIA_TYPE, PARALLEL_BLOBS, SPIN_APPLICATION_MEDIA_TYPE, is_wasm};
use crate::progress::PullProgress;

const MANIFEST_FILE: &str = "manifest.json";
const LOCKED_FILE: &str = "config.json";
const DIGEST_FILE: &str = "digest";

/// An artifact whose manifest and locked app are in the cache and verified.
pub(crate) struct Fetched {
    pub(crate) manifest_digest: String,
    pub(crate) locked_bytes: Vec<u8>,
    pub(crate) locked_digest: String,
    /// Blob digests verified in the cache during this load.
    pub(crate) verified: HashSet<String>,
}

/// Where an app's manifest lives in the cache: by tag, or by digest for digest-only refs.
///
/// Spin stores digest-only references under `latest`; lepton uses `sha256:<hex>` (never a valid
/// tag) so a pinned pull cannot clobber the cached `latest` tag.
fn manifest_dir(cache: &OciCache, reference: &Reference) -> std::path::PathBuf {
    match (reference.tag(), reference.digest()) {
        (None, Some(d)) => cache.repository_dir(reference).join(d),
        _ => cache.manifest_dir(reference),
    }
}

/// Parses manifest bytes; `source` names where they came from.
fn parse_manifest(bytes: &[u8], source: &str) -> Result<OciImageManifest, OciError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| OciError::Manifest {
            path: source.to_string(),
            message: e.to_string(),
        })?;
    if value.get("manifests").is_some() {
        return Err(OciError::Unsupported(format!(
            "{source} is an image index (multi-platform); a Spin app manifest was expected"
        )));
    }
    serde_json::from_value(value).map_err(|e| OciError::Manifest {
        path: source.to_string(),
        message: e.to_string(),
    })
}

/// The descriptor of the locked app: the Spin layer (modern) or the config (Spin 1.x).
fn locked_descriptor<'m>(
    manifest: &'m OciImageManifest,
    reference: &str,
) -> Result<&'m OciDescriptor, OciError> {
    let desc = manifest
        .layers
        .iter()
        .find(|l| l.media_type == SPIN_APPLICATION_MEDIA_TYPE)
        .or_else(|| (manifest.config.media_type == SPIN_APPLICATION_MEDIA_TYPE).then_some(&manifest.config))
        .ok_or_else(|| {
            OciError::Unsupported(format!(
                "{reference} has no Spin locked app ({SPIN_APPLICATION_MEDIA_TYPE}); bare Wasm artifacts are not supported"
            ))
        })?;
    if sha256_hex(&desc.digest).is_none() {
        return Err(OciError::Manifest {
            path: reference.to_string(),
            message: format!("locked app digest {:?} is not a sha256 digest", desc.digest),
        });
    }
    Ok(desc)
}

/// Fetches `session.reference` into the cache.
pub(crate) async fn fetch(cache: &OciCache, session: &Session) -> Result<Fetched, OciError> {
    let name = &session.name;
    let bytes = session.manifest_bytes().await?;
    let manifest_digest = sha256_digest(&bytes);
    if let Some(pinned) = session.reference.digest()
        && pinned != manifest_digest
    {
        return Err(OciError::DigestMismatch {
            digest: pinned.to_string(),
            actual: manifest_digest,
            reference: name.clone(),
        });
    }
    let manifest = parse_manifest(&bytes, name)?;
    let locked_desc = locked_descriptor(&manifest, name)?;
    let dir = manifest_dir(cache, &session.reference);

    let locked_path = dir.join(LOCKED_FILE);
    let progress = PullProgress::new(
        name,
        manifest.layers.iter().map(|l| l.size.max(0) as u64).sum(),
    );
    let locked_bytes = match std::fs::read(&locked_path) {
        Ok(b) if sha256_digest(&b) == locked_desc.digest => b,
        _ => download(session, locked_desc, &progress).await?,
    };
    write_atomic(&locked_path, &locked_bytes)?;
    write_atomic(&dir.join(MANIFEST_FILE), &bytes)?;
    write_atomic(&dir.join(DIGEST_FILE), manifest_digest.as_bytes())?;

    let layers: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| l.media_type != SPIN_APPLICATION_MEDIA_TYPE)
        .collect();
    // Owned descriptors: a future borrowing the closure's argument is not `Send` for every
    // lifetime, which callers spawning `load` on a multi-threaded runtime need.
    let progress_ref = &progress;
    let owned: Vec<OciDescriptor> = layers.iter().map(|d| (*d).clone()).collect();
    let mut verified: HashSet<String> = futures::stream::iter(owned)
        .map(|desc| async move { ensure_layer(cache, session, &desc, progress_ref).await })
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect()
        .await?;
    for desc in layers.iter().filter(|l| l.media_type == ARCHIVE_MEDIA_TYPE) {
        unpack_into_cache(cache, &desc.digest, name, &mut verified)?;
    }
    progress.finish();
    Ok(Fetched {
        locked_digest: locked_desc.digest.clone(),
        manifest_digest,
        locked_bytes,
        verified,
    })
}

/// Makes sure one layer is in the cache and valid; returns its digest.
async fn ensure_layer(
    cache: &OciCache,
    session: &Session,
    desc: &OciDescriptor,
    progress: &PullProgress,
) -> Result<String, OciError> {
    let kind = if is_wasm(&desc.media_type) {
        BlobKind::Wasm
    } else {
        BlobKind::Data
    };
    let (path, check) = cache.check_blob(kind, &desc.digest)?;
    if check == FileCheck::Valid {
        progress.cached(desc.size.max(0) as u64);
        return Ok(desc.digest.clone());
    }
    let bytes = download(session, desc, progress).await?;
    write_atomic(&path, &bytes)?;
    Ok(desc.digest.clone())
}

/// Downloads a blob into memory, verifying its sha256 before returning it.
async fn download(
    session: &Session,
    desc: &OciDescriptor,
    progress: &PullProgress,
) -> Result<Vec<u8>, OciError> {
    if sha256_hex(&desc.digest).is_none() {
        return Err(OciError::Manifest {
            path: session.name.clone(),
            message: format!("layer digest {:?} is not a sha256 digest", desc.digest),
        });
    }
    let layer = progress.layer(&desc.digest, desc.size.max(0) as u64);
    let mut stream = session.blob_stream(desc).await?;
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(desc.size.clamp(0, 64 << 20) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| session.err(e.into()))?;
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
        layer.inc(chunk.len() as u64);
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != desc.digest {
        return Err(OciError::DigestMismatch {
            digest: desc.digest.clone(),
            actual,
            reference: session.name.clone(),
        });
    }
    layer.done(buf.len() as u64);
    Ok(buf)
}

/// Unpacks a (verified) archive blob, storing each regular file under `data/<its digest>`.
fn unpack_into_cache(
    cache: &OciCache,
    digest: &str,
    reference: &str,
    verified: &mut HashSet<String>,
) -> Result<(), OciError> {
    let path = cache.blob_path(BlobKind::Data, digest)?;
    let archive = std::fs::read(&path).map_err(io_err(&path))?;
    let actual = sha256_digest(&archive);
    if actual != digest {
        return Err(OciError::DigestMismatch {
            digest: digest.to_string(),
            actual,
            reference: reference.to_string(),
        });
    }
    crate::push::unpack_archive(&archive, |_, bytes| {
        let d = sha256_digest(&bytes);
        let dest = cache
            .blob_path(BlobKind::Data, &d)
            .map_err(std::io::Error::other)?;
        if check_file(&dest, &d)? != FileCheck::Valid {
            write_atomic(&dest, &bytes).map_err(std::io::Error::other)?;
        }
        verified.insert(d);
        Ok(())
    })
    .map_err(|e| OciError::Manifest {
        path: format!("{reference} archive layer {digest}"),
        message: e.to_string(),
    })
}

/// Why a cached app could not be read.
pub(crate) enum CacheMiss {
    /// Nothing (usable) cached; the string says what is missing.
    NotCached(String),
    /// Cached, but invalid (tampered) — never fall through to running it.
    Invalid(OciError),
}

/// Reads a previously fetched app for `reference` from the cache, fully offline.
pub(crate) fn read_cached(cache: &OciCache, reference: &Reference) -> Result<Fetched, CacheMiss> {
    let name = reference.whole();
    let dir = find_cached_dir(cache, reference).ok_or_else(|| {
        CacheMiss::NotCached(format!(
            "no cached manifest under {}",
            manifest_dir(cache, reference).display()
        ))
    })?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&manifest_path)
        .map_err(|e| CacheMiss::NotCached(format!("{}: {e}", manifest_path.display())))?;
    let manifest_digest = sha256_digest(&bytes);
    let recorded = std::fs::read_to_string(dir.join(DIGEST_FILE)).unwrap_or_default();
    let expected = reference.digest().unwrap_or(recorded.trim());
    if expected != manifest_digest {
        return Err(CacheMiss::Invalid(OciError::DigestMismatch {
            digest: expected.to_string(),
            actual: manifest_digest,
            reference: name,
        }));
    }
    let shown = manifest_path.display().to_string();
    let manifest = parse_manifest(&bytes, &shown).map_err(CacheMiss::Invalid)?;
    let locked_desc = locked_descriptor(&manifest, &name).map_err(CacheMiss::Invalid)?;
    let locked_path = dir.join(LOCKED_FILE);
    let locked_bytes = std::fs::read(&locked_path)
        .map_err(|e| CacheMiss::NotCached(format!("{}: {e}", locked_path.display())))?;
    let actual = sha256_digest(&locked_bytes);
    if actual != locked_desc.digest {
        return Err(CacheMiss::Invalid(OciError::DigestMismatch {
            digest: locked_desc.digest.clone(),
            actual,
            reference: name,
        }));
    }
    Ok(Fetched {
        locked_digest: locked_desc.digest.clone(),
        manifest_digest,
        locked_bytes,
        verified: HashSet::new(),
    })
}

/// The cache dir for `reference`; for digest-pinned refs, any dir of the repository whose
/// recorded manifest digest matches (e.g. the tag it was first pulled by).
fn find_cached_dir(cache: &OciCache, reference: &Reference) -> Option<std::path::PathBuf> {
    let primary = manifest_dir(cache, reference);
    let Some(pinned) = reference.digest() else {
        return primary.join(MANIFEST_FILE).is_file().then_some(primary);
    };
    let records = |dir: &Path| {
        std::fs::read_to_string(dir.join(DIGEST_FILE)).is_ok_and(|d| d.trim() == pinned)
    };
    if records(&primary) {
        return Some(primary);
    }
    std::fs::read_dir(cache.repository_dir(reference))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| records(p))
}
