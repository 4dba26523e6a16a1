//! Garbage collection of the cache: manifest dirs, blobs and assets dirs no app references.
//!
//! Several processes may share one cache dir, and none knows what the others run. So liveness
//! is written into the cache itself, as modification times:
//!
//! - **Keep-alive** ([`OciCache::keep_alive`]): every process periodically touches (sets the
//!   mtime of) everything its desired apps reference — a [`Keep`]: the manifest dir of each app's
//!   reference, the manifest dir recording each loaded app's digest, every blob their manifests
//!   and locked apps name, and their assets dirs. Every load touches what it read too (so an
//!   entry is fresh from the moment a load used it).
//! - **Collection** ([`OciCache::collect`]): what *this* process does not reference and whose
//!   mtime is older than the grace period is removed. With keep-alives far more frequent than
//!   the grace (by default hourly against 24 h), an entry another live process uses is always
//!   fresh; one only a stopped process used ages out.
//!
//! A collection runs only with `registry/.lock` held exclusively, so no load in any process is
//! reading or writing the cache while entries go (if one is, the round is skipped). The temp
//! files (`.tmp-*`) and aside dirs (`.old-*`) of interrupted writes are left to the sweeper that
//! owns them (see [`crate::cache`]). A manifest dir loses its `digest` commit marker first, so
//! a dir half-removed (a crash) reads as an incomplete pull, never as another version; an assets
//! dir is renamed aside before it is deleted.
//!
//! The grace must exceed the keep-alive interval of *every* process sharing the cache.

use std::collections::HashSet;
use std::fs::TryLockError;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lepton_app::{LockedApp, file_url};
use oci_client::Reference;

use crate::cache::{ASIDE_PREFIX, LOCK_FILE, OciCache};
use crate::digest::sha256_hex;
use crate::error::{OciError, io_err};
use crate::loader::LoadedApp;
use crate::pull::{DIGEST_FILE, LOCKED_FILE, MANIFEST_FILE, locked_descriptor, parse_manifest};

/// The files of a manifest dir, commit marker first (the order they are removed in).
const MANIFEST_DIR_FILES: [&str; 3] = [DIGEST_FILE, MANIFEST_FILE, LOCKED_FILE];

/// What one process references: the roots of a keep-alive or a collection.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    references: Vec<Reference>,
    loaded: Vec<LoadedRoot>,
}

/// What a loaded app (one held in memory, possibly evicted) needs from the cache.
#[derive(Debug, Clone)]
struct LoadedRoot {
    reference: Option<Reference>,
    manifest_digest: String,
    /// Component digests and the `file://` paths of its sources and files.
    digests: Vec<String>,
    paths: Vec<PathBuf>,
}

impl Keep {
    /// Nothing referenced.
    pub fn new() -> Self {
        Self::default()
    }

    /// A desired app's reference: its manifest dir (a tag's, or the dirs recording a pinned
    /// digest) and everything that manifest names.
    pub fn reference(&mut self, reference: &str) -> Result<&mut Self, OciError> {
        Ok(self.add_reference(crate::parse_reference(reference)?))
    }

    /// [`Keep::reference`] for a parsed reference.
    pub(crate) fn add_reference(&mut self, reference: Reference) -> &mut Self {
        self.references.push(reference);
        self
    }

    /// A loaded app: the Wasm blobs and assets its runnable locked app points at (what loading
    /// it again after an eviction reads), and any manifest dir recording its digest.
    pub fn loaded(&mut self, app: &LoadedApp) -> &mut Self {
        let mut digests = Vec::new();
        let mut paths = Vec::new();
        for c in &app.locked.components {
            digests.extend(c.source.content.digest.iter().cloned());
            let sources =
                std::iter::once(&c.source.content).chain(c.files.iter().map(|f| &f.content));
            paths.extend(
                sources
                    .filter_map(|content| content.source.as_deref())
                    .filter_map(file_url::to_path),
            );
        }
        self.loaded.push(LoadedRoot {
            reference: crate::parse_reference(&app.reference).ok(),
            manifest_digest: app.manifest_digest.clone(),
            digests,
            paths,
        });
        self
    }

    /// Whether nothing is referenced.
    pub fn is_empty(&self) -> bool {
        self.references.is_empty() && self.loaded.is_empty()
    }
}

/// What a [`OciCache::collect`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Manifest dirs (a tag or a pinned digest of one repository).
    pub manifests: u64,
    /// Blobs in `registry/wasm` and `registry/data`.
    pub blobs: u64,
    /// Assets dirs (the materialized files of one locked app).
    pub assets: u64,
    /// Bytes freed.
    pub bytes: u64,
    /// The round was skipped: a load (in this or another process) held the cache.
    pub busy: bool,
}

impl GcReport {
    /// Entries removed, of every kind.
    pub fn removed(&self) -> u64 {
        self.manifests + self.blobs + self.assets
    }
}

/// A [`Keep`] resolved against the cache: every entry it references.
#[derive(Debug, Default)]
struct Roots {
    manifest_dirs: HashSet<PathBuf>,
    /// `sha256:` digests of blobs (kept in `wasm/` and `data/` alike).
    blobs: HashSet<String>,
    /// Hex names of assets dirs.
    assets: HashSet<String>,
    /// Hex digests of component Wasm (what the compile cache keeps).
    wasm: HashSet<String>,
}

impl OciCache {
    /// Marks everything `keep` references as used now (its mtime), so that no process sharing
    /// the cache collects it within the grace period. Best effort: an entry that cannot be
    /// touched (a read-only cache) is skipped. Returns the sha256 hex digests of the component
    /// Wasm kept, whose compiled artifacts the compile cache should keep alive too. Reads and
    /// touches files: call it from a blocking thread.
    pub fn keep_alive(&self, keep: &Keep) -> HashSet<String> {
        let roots = self.roots(keep);
        for dir in &roots.manifest_dirs {
            for file in MANIFEST_DIR_FILES {
                touch(&dir.join(file));
            }
        }
        let registry = self.registry_dir();
        for digest in &roots.blobs {
            for kind in ["wasm", "data"] {
                touch(&registry.join(kind).join(digest));
            }
        }
        for hex in &roots.assets {
            touch(&self.root().join("assets").join(hex));
        }
        roots.wasm
    }

    /// Removes every manifest dir, blob and assets dir that `keep` does not reference and that
    /// nobody has used (touched) for `grace`. Only while no load holds the cache: if one does,
    /// nothing is removed and the report says `busy`. Failures to remove one entry are logged
    /// and skipped. Call it from a blocking thread.
    pub fn collect(&self, keep: &Keep, grace: Duration) -> Result<GcReport, OciError> {
        let mut report = GcReport::default();
        let registry = self.registry_dir();
        if !registry.is_dir() {
            return Ok(report);
        }
        let path = registry.join(LOCK_FILE);
        let lock = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(lock) => lock,
            // A read-only cache (pre-populated for pinned references): nothing can go anyway.
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                tracing::debug!(path = %path.display(), error = %err, "cache gc skipped: read-only cache");
                return Ok(report);
            }
            Err(err) => return Err(io_err(&path)(err)),
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::debug!(cache = %self.root().display(), "cache gc skipped: a load holds the cache");
                report.busy = true;
                return Ok(report);
            }
            Err(TryLockError::Error(err)) => return Err(io_err(&path)(err)),
        }
        // Resolved under the lock: no load is committing a manifest dir meanwhile.
        let roots = self.roots(keep);
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let sweep = Sweep {
            roots: &roots,
            cutoff,
        };
        sweep.manifests(&registry.join("manifests"), &mut report, true);
        for kind in ["wasm", "data"] {
            sweep.blobs(&registry.join(kind), &mut report);
        }
        sweep.assets(&self.root().join("assets"), &mut report);
        drop(lock);
        Ok(report)
    }

    /// Every entry `keep` references (reading the manifest dirs it names).
    fn roots(&self, keep: &Keep) -> Roots {
        let mut roots = Roots::default();
        for reference in &keep.references {
            let dir = self.manifest_dir(reference);
            match reference.digest() {
                // A pinned digest may be cached under a tag that recorded it.
                Some(digest) => {
                    if reference.tag().is_some() && dir.is_dir() {
                        roots.manifest_dirs.insert(dir);
                    }
                    roots
                        .manifest_dirs
                        .extend(recording(&self.repository_dir(reference), digest));
                }
                None => {
                    if dir.is_dir() {
                        roots.manifest_dirs.insert(dir);
                    }
                }
            }
        }
        for loaded in &keep.loaded {
            if let Some(reference) = &loaded.reference {
                roots.manifest_dirs.extend(recording(
                    &self.repository_dir(reference),
                    &loaded.manifest_digest,
                ));
            }
            for digest in &loaded.digests {
                roots.add_component(digest);
            }
            for path in &loaded.paths {
                self.add_path(&mut roots, path);
            }
        }
        let dirs: Vec<PathBuf> = roots.manifest_dirs.iter().cloned().collect();
        for dir in dirs {
            self.add_manifest_dir(&mut roots, &dir);
        }
        roots
    }

    /// Adds the blob or assets dir a `file://` source path of a loaded app points into.
    fn add_path(&self, roots: &mut Roots, path: &Path) {
        let Ok(rel) = path.strip_prefix(self.root()) else {
            return;
        };
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        match parts.as_slice() {
            ["registry", "wasm" | "data", digest, ..] if sha256_hex(digest).is_some() => {
                roots.blobs.insert((*digest).to_string());
            }
            ["assets", hex, ..] if is_hex64(hex) => {
                roots.assets.insert((*hex).to_string());
            }
            _ => {}
        }
    }

    /// Adds what a manifest dir's manifest and locked app name: every layer, the config, each
    /// component's Wasm and files, and the locked app's assets dir. Unreadable parts add nothing
    /// (the dir itself is kept: a load will find it incomplete and pull again).
    fn add_manifest_dir(&self, roots: &mut Roots, dir: &Path) {
        let shown = dir.join(MANIFEST_FILE).display().to_string();
        let Ok(bytes) = std::fs::read(dir.join(MANIFEST_FILE)) else {
            return;
        };
        let Ok(manifest) = parse_manifest(&bytes, &shown) else {
            return;
        };
        roots.blobs.insert(manifest.config.digest.clone());
        roots
            .blobs
            .extend(manifest.layers.iter().map(|l| l.digest.clone()));
        if let Ok(desc) = locked_descriptor(&manifest, &shown)
            && let Some(hex) = sha256_hex(&desc.digest)
        {
            roots.assets.insert(hex.to_string());
        }
        let locked = std::fs::read(dir.join(LOCKED_FILE))
            .ok()
            .and_then(|b| LockedApp::from_json(&b).ok());
        for c in locked.iter().flat_map(|app| &app.components) {
            if let Some(digest) = &c.source.content.digest {
                roots.add_component(digest);
            }
            roots
                .blobs
                .extend(c.files.iter().filter_map(|f| f.content.digest.clone()));
        }
    }
}

impl Roots {
    fn add_component(&mut self, digest: &str) {
        if let Some(hex) = sha256_hex(digest) {
            self.wasm.insert(hex.to_string());
            self.blobs.insert(digest.to_string());
        }
    }
}

/// The manifest dirs of a repository whose commit marker records `digest`.
fn recording(repository: &Path, digest: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(repository) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|dir| {
            std::fs::read_to_string(dir.join(DIGEST_FILE)).is_ok_and(|d| d.trim() == digest)
        })
        .collect()
}

/// One collection's removals.
struct Sweep<'a> {
    roots: &'a Roots,
    /// Entries last used before this are old.
    cutoff: SystemTime,
}

impl Sweep<'_> {
    fn old(&self, modified: Option<SystemTime>) -> bool {
        modified.is_some_and(|t| t < self.cutoff)
    }

    /// Walks `dir` (under `registry/manifests`): a dir holding manifest files is a manifest dir
    /// (removed if unreferenced and old); every subdir is walked too (nested repository names),
    /// and dirs left empty are removed.
    fn manifests(&self, dir: &Path, report: &mut GcReport, top: bool) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.manifests(&entry.path(), report, false);
            }
        }
        if top {
            return;
        }
        let files: Vec<PathBuf> = MANIFEST_DIR_FILES.iter().map(|f| dir.join(f)).collect();
        let newest = files
            .iter()
            .filter_map(|f| f.symlink_metadata().ok())
            .filter_map(|m| m.modified().ok())
            .max();
        if newest.is_some() && !self.roots.manifest_dirs.contains(dir) && self.old(newest) {
            let mut bytes = 0;
            let mut removed = true;
            // The commit marker first: a dir without it is an incomplete pull, never read.
            for file in &files {
                let len = file.symlink_metadata().map_or(0, |m| m.len());
                match std::fs::remove_file(file) {
                    Ok(()) => bytes += len,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %file.display(), error = %e, "cache gc: cannot remove");
                        removed = false;
                        break;
                    }
                }
            }
            if removed {
                tracing::debug!(dir = %dir.display(), "cache gc: removed an unused manifest");
                report.manifests += 1;
                report.bytes += bytes;
            }
        }
        // Fails (harmlessly) unless empty: other tags, nested repositories, temp files.
        let _ = std::fs::remove_dir(dir);
    }

    /// Removes the unreferenced, old blobs of `dir` (`registry/wasm` or `registry/data`).
    fn blobs(&self, dir: &Path, report: &mut GcReport) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(digest) = name.to_str().filter(|n| sha256_hex(n).is_some()) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file()
                || self.roots.blobs.contains(digest)
                || !self.old(meta.modified().ok())
            {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(path = %entry.path().display(), "cache gc: removed an unused blob");
                    report.blobs += 1;
                    report.bytes += meta.len();
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cache gc: cannot remove");
                }
            }
        }
    }

    /// Removes the unreferenced, old assets dirs of `dir` (`assets/`): renamed aside first, so
    /// the dir is either whole or gone (a crash leaves an `.old-*` dir the sweeper removes).
    fn assets(&self, dir: &Path, report: &mut GcReport) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(hex) = name.to_str().filter(|n| is_hex64(n)) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() || self.roots.assets.contains(hex) || !self.old(meta.modified().ok())
            {
                continue;
            }
            let path = entry.path();
            let bytes = dir_bytes(&path);
            let aside = match tempfile::Builder::new()
                .prefix(ASIDE_PREFIX)
                .tempdir_in(dir)
            {
                Ok(aside) => aside,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cache gc: cannot make a dir to remove assets from");
                    return;
                }
            };
            if let Err(e) = std::fs::rename(&path, aside.path().join(hex)) {
                tracing::warn!(path = %path.display(), error = %e, "cache gc: cannot remove");
                continue;
            }
            let aside_path = aside.path().to_path_buf();
            if let Err(e) = aside.close() {
                tracing::warn!(path = %aside_path.display(), error = %e, "cache gc: assets moved aside but not removed (the next load sweeps them)");
            }
            tracing::debug!(path = %path.display(), "cache gc: removed unused assets");
            report.assets += 1;
            report.bytes += bytes;
        }
    }
}

/// Marks `path` (a file or a dir) as used now; best effort, missing paths are skipped.
fn touch(path: &Path) {
    // Setting explicit times needs ownership, not write access: a read-only open is enough.
    if let Ok(file) = std::fs::File::open(path)
        && let Err(err) = file.set_modified(SystemTime::now())
    {
        tracing::debug!(path = %path.display(), error = %err, "cache keep-alive: cannot touch");
    }
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.path(), e.file_type().ok()?)))
        .map(|(path, ty)| {
            if ty.is_dir() {
                dir_bytes(&path)
            } else if ty.is_file() {
                path.symlink_metadata().map_or(0, |m| m.len())
            } else {
                0
            }
        })
        .sum()
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests;
