//! Fetching an artifact into the cache (online) and reading it back (offline).
//!
//! Online: the manifest is checked against a pinned digest; every layer is downloaded (bounded
//! by its declared size and [`MAX_BLOB_BYTES`]) and verified by sha256 before it is written;
//! cached layers are re-verified and re-fetched if tampered. Archive layers are unpacked within
//! [`crate::archive::ArchiveLimits`] and each file stored under its own digest. Only then is the
//! manifest dir updated: locked app (layer, or config blob for Spin 1.x artifacts), manifest,
//! and last the `digest` commit marker, so a failed pull leaves the last good version in place.
//! Offline: the cached manifest and locked app are read and verified against each other; an
//! incomplete dir is "not cached", a mismatching locked app is refused.

use std::collections::HashSet;
use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use oci_client::Reference;
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use sha2::{Digest as _, Sha256};

use crate::archive::ArchiveLimits;
use crate::cache::{BlobKind, OciCache, write_atomic};
use crate::client::Session;
use crate::digest::{FileCheck, check_file, sha256_digest, sha256_hex};
use crate::error::{OciError, blocking, io_err};
use crate::locks::KeyedLocks;
use crate::media::{ARCHIVE_MEDIA_TYPE, PARALLEL_BLOBS, SPIN_APPLICATION_MEDIA_TYPE, is_wasm};
use crate::progress::PullProgress;

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
pub(crate) const LOCKED_FILE: &str = "config.json";
pub(crate) const DIGEST_FILE: &str = "digest";

/// An artifact whose manifest and locked app are in the cache and verified.
pub(crate) struct Fetched {
    pub(crate) manifest_digest: String,
    pub(crate) locked_bytes: Vec<u8>,
    pub(crate) locked_digest: String,
    /// Blob digests verified in the cache during this load.
    pub(crate) verified: HashSet<String>,
}

/// Parses manifest bytes; `source` names where they came from.
pub(crate) fn parse_manifest(bytes: &[u8], source: &str) -> Result<OciImageManifest, OciError> {
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
pub(crate) fn locked_descriptor<'m>(
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
pub(crate) async fn fetch(
    cache: &OciCache,
    session: &Session,
    locks: &KeyedLocks,
) -> Result<Fetched, OciError> {
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
    let dir = cache.manifest_dir(&session.reference);

    let locked_path = dir.join(LOCKED_FILE);
    let progress = PullProgress::new(
        name,
        manifest.layers.iter().map(|l| l.size.max(0) as u64).sum(),
    );
    let cached_locked = {
        let (path, digest) = (locked_path.clone(), locked_desc.digest.clone());
        blocking("reading the cached locked app", move || {
            Ok(std::fs::read(&path)
                .ok()
                .filter(|b| sha256_digest(b) == digest))
        })
        .await?
    };
    let locked_bytes = match cached_locked {
        Some(b) => b,
        None => download(session, locked_desc, &progress).await?,
    };

    // Every layer is fetched and verified before the manifest dir is touched, so a failed pull
    // leaves the last good version of the tag in place.
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
        let (c, d, n) = (cache.clone(), desc.digest.clone(), name.clone());
        let files = blocking("unpacking an archive layer", move || {
            unpack_into_cache(&c, &d, &n)
        })
        .await?;
        verified.extend(files);
    }
    let locked_digest = locked_desc.digest.clone();
    let locked_bytes = {
        let _guard = locks.lock(&format!("manifest:{}", dir.display())).await;
        let manifest_digest = manifest_digest.clone();
        blocking("recording the pulled manifest", move || {
            commit(&dir, &bytes, &manifest_digest, &locked_bytes)?;
            Ok(locked_bytes)
        })
        .await?
    };
    progress.finish();
    Ok(Fetched {
        locked_digest,
        manifest_digest,
        locked_bytes,
        verified,
    })
}

/// Records a fully fetched artifact in its manifest dir. The `digest` file is the commit
/// marker: it is removed first and written last, so a reader that finds it matching
/// `manifest.json` knows `config.json` belongs to that manifest; anything else is an
/// incomplete pull, i.e. not cached. Nothing is rewritten if the dir already holds this
/// version.
fn commit(
    dir: &Path,
    manifest_bytes: &[u8],
    manifest_digest: &str,
    locked_bytes: &[u8],
) -> Result<(), OciError> {
    let digest_path = dir.join(DIGEST_FILE);
    let manifest_path = dir.join(MANIFEST_FILE);
    let locked_path = dir.join(LOCKED_FILE);
    let current = std::fs::read_to_string(&digest_path).is_ok_and(|d| d.trim() == manifest_digest)
        && std::fs::read(&manifest_path).is_ok_and(|m| m == manifest_bytes)
        && std::fs::read(&locked_path).is_ok_and(|l| l == locked_bytes);
    if current {
        return Ok(());
    }
    match std::fs::remove_file(&digest_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&digest_path)(e)),
    }
    write_atomic(&locked_path, locked_bytes)?;
    write_atomic(&manifest_path, manifest_bytes)?;
    write_atomic(&digest_path, manifest_digest.as_bytes())
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
    let (c, d) = (cache.clone(), desc.digest.clone());
    let (path, check) = blocking("verifying a cached blob", move || c.check_blob(kind, &d)).await?;
    if check == FileCheck::Valid {
        progress.cached(desc.size.max(0) as u64);
        return Ok(desc.digest.clone());
    }
    let bytes = download(session, desc, progress).await?;
    blocking("writing a pulled blob", move || write_atomic(&path, &bytes)).await?;
    Ok(desc.digest.clone())
}

/// Largest blob lepton downloads (1 GiB); blobs are held in memory while being verified.
pub(crate) const MAX_BLOB_BYTES: u64 = 1 << 30;
/// Never pre-allocate more than this for a download, whatever the manifest claims (64 MiB).
const MAX_DOWNLOAD_PREALLOC: u64 = 64 << 20;

/// Downloads a blob into memory, verifying its size and sha256 before returning it.
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
    let bound = BlobBound::new(desc, &session.name, MAX_BLOB_BYTES)?;
    let stream = session.blob_stream(desc).await?;
    let buf = collect_blob(
        stream.map(|chunk| chunk.map_err(|e| session.err(e.into()))),
        &bound,
        |n| layer.inc(n),
    )
    .await?;
    layer.done(buf.len() as u64);
    Ok(buf)
}

/// What a download of one blob may receive.
pub(crate) struct BlobBound<'a> {
    desc: &'a OciDescriptor,
    reference: &'a str,
    /// Stop once more than this many bytes arrive.
    limit: u64,
    /// The exact size the manifest declares (when it declares one).
    declared: Option<u64>,
}

impl<'a> BlobBound<'a> {
    /// The bound for `desc`: its declared size (if > 0), never more than `max`.
    pub(crate) fn new(
        desc: &'a OciDescriptor,
        reference: &'a str,
        max: u64,
    ) -> Result<Self, OciError> {
        let declared = u64::try_from(desc.size).ok().filter(|s| *s > 0);
        let bound = BlobBound {
            desc,
            reference,
            limit: declared.unwrap_or(max).min(max),
            declared,
        };
        if let Some(size) = declared.filter(|s| *s > max) {
            return Err(bound.size_error(format!(
                "the manifest declares {size} bytes, over the {max} byte limit"
            )));
        }
        Ok(bound)
    }

    fn size_error(&self, detail: String) -> OciError {
        OciError::BlobSize {
            digest: self.desc.digest.clone(),
            reference: self.reference.to_string(),
            detail,
        }
    }
}

/// Collects a blob stream within `bound`, then checks its size and sha256.
pub(crate) async fn collect_blob<B: AsRef<[u8]>>(
    mut stream: impl futures::Stream<Item = Result<B, OciError>> + Unpin,
    bound: &BlobBound<'_>,
    mut on_chunk: impl FnMut(u64),
) -> Result<Vec<u8>, OciError> {
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(bound.limit.min(MAX_DOWNLOAD_PREALLOC) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let chunk = chunk.as_ref();
        if (buf.len() as u64).saturating_add(chunk.len() as u64) > bound.limit {
            return Err(bound.size_error(match bound.declared {
                Some(size) if size == bound.limit => {
                    format!("the registry sent more than the {size} bytes the manifest declares")
                }
                _ => format!("the registry sent more than the {} byte limit", bound.limit),
            }));
        }
        hasher.update(chunk);
        buf.extend_from_slice(chunk);
        on_chunk(chunk.len() as u64);
    }
    if let Some(size) = bound.declared
        && buf.len() as u64 != size
    {
        return Err(bound.size_error(format!(
            "the registry sent {} bytes but the manifest declares {size}",
            buf.len()
        )));
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != bound.desc.digest {
        return Err(OciError::DigestMismatch {
            digest: bound.desc.digest.clone(),
            actual,
            reference: bound.reference.to_string(),
        });
    }
    Ok(buf)
}

/// Unpacks a (verified) archive blob, storing each regular file under `data/<its digest>`.
/// Returns the digests of the files stored (all verified).
fn unpack_into_cache(
    cache: &OciCache,
    digest: &str,
    reference: &str,
) -> Result<HashSet<String>, OciError> {
    let mut verified = HashSet::new();
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
    crate::archive::unpack(&archive, ArchiveLimits::default(), |_, bytes| {
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
    .map_err(|source| OciError::Archive {
        digest: digest.to_string(),
        reference: reference.to_string(),
        source,
    })?;
    Ok(verified)
}

/// Why a cached app could not be read.
pub(crate) enum CacheMiss {
    /// Nothing (usable) cached; the string says what is missing.
    NotCached(String),
    /// Cached, but invalid (tampered) — never fall through to running it.
    Invalid(OciError),
}

/// Reads a previously fetched app for `reference` from the cache, fully offline.
///
/// A missing or inconsistent manifest dir (no `digest`, `manifest.json` or `config.json`, or a
/// manifest that does not match the recorded digest) is an interrupted pull: not cached. A
/// locked app whose bytes do not match the committed manifest is tampered: invalid.
pub(crate) fn read_cached(cache: &OciCache, reference: &Reference) -> Result<Fetched, CacheMiss> {
    let name = reference.whole();
    let dir = find_cached_dir(cache, reference).ok_or_else(|| {
        CacheMiss::NotCached(format!(
            "it is not in the cache (nothing under {})",
            cache.manifest_dir(reference).display()
        ))
    })?;
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read(&path).map_err(|e| {
            CacheMiss::NotCached(format!(
                "it is not in the cache ({}: {e}; an earlier pull did not complete)",
                path.display()
            ))
        })
    };
    let recorded = read(DIGEST_FILE)?;
    let recorded = String::from_utf8_lossy(&recorded).trim().to_string();
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = read(MANIFEST_FILE)?;
    let manifest_digest = sha256_digest(&bytes);
    let expected = reference.digest().unwrap_or(&recorded);
    if manifest_digest != recorded || manifest_digest != expected {
        return Err(CacheMiss::NotCached(format!(
            "it is not in the cache ({} has digest {manifest_digest}, expected {expected}; an \
             earlier pull did not complete)",
            manifest_path.display()
        )));
    }
    let shown = manifest_path.display().to_string();
    let manifest = parse_manifest(&bytes, &shown).map_err(CacheMiss::Invalid)?;
    let locked_desc = locked_descriptor(&manifest, &name).map_err(CacheMiss::Invalid)?;
    let locked_bytes = read(LOCKED_FILE)?;
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
    let primary = cache.manifest_dir(reference);
    let Some(pinned) = reference.digest() else {
        return primary.is_dir().then_some(primary);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(bytes: &[u8], size: i64) -> OciDescriptor {
        OciDescriptor {
            digest: sha256_digest(bytes),
            size,
            ..Default::default()
        }
    }

    async fn collect(
        chunks: Vec<Vec<u8>>,
        d: &OciDescriptor,
        max: u64,
    ) -> Result<Vec<u8>, OciError> {
        let bound = BlobBound::new(d, "reg/app:v1", max)?;
        let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, OciError>));
        collect_blob(stream, &bound, |_| {}).await
    }

    #[tokio::test]
    async fn blob_sizes_are_bounded() {
        let data = vec![7u8; 1000];
        let ok = collect(
            vec![data[..500].to_vec(), data[500..].to_vec()],
            &desc(&data, 1000),
            1 << 20,
        )
        .await;
        assert_eq!(ok.unwrap(), data);
        // Undeclared size: the global limit applies.
        assert!(
            collect(vec![data.clone()], &desc(&data, 0), 1 << 20)
                .await
                .is_ok()
        );

        let named = |e: OciError| {
            let msg = e.to_string();
            assert!(matches!(e, OciError::BlobSize { .. }), "{e:?}");
            assert!(
                msg.contains(&sha256_digest(&data)) && msg.contains("reg/app:v1"),
                "{msg}"
            );
            msg
        };
        // More than declared: stopped at the declared size.
        let msg = named(
            collect(
                vec![data.clone(), data.clone()],
                &desc(&data, 1000),
                1 << 20,
            )
            .await
            .unwrap_err(),
        );
        assert!(msg.contains("declares"), "{msg}");
        // Less than declared.
        named(
            collect(vec![data[..10].to_vec()], &desc(&data, 1000), 1 << 20)
                .await
                .unwrap_err(),
        );
        // Undeclared and over the limit.
        named(
            collect(vec![data.clone()], &desc(&data, 0), 100)
                .await
                .unwrap_err(),
        );
        // Declared over the limit: refused before any byte is read.
        named(
            collect(Vec::new(), &desc(&data, i64::MAX), 1 << 30)
                .await
                .unwrap_err(),
        );
        // Right size, wrong bytes.
        let err = collect(vec![vec![8u8; 1000]], &desc(&data, 1000), 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, OciError::DigestMismatch { .. }), "{err:?}");
    }
}
