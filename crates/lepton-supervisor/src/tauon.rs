//! tauon: a live control plane. A directory holds one JSON file per app (the per-app shape of a
//! `lepton.json` entry, see [`crate::spec::parse_app_file`]); tauon starts what is there, then
//! follows creates, edits, renames and deletes, and feeds each change to the [`Reconciler`]
//! (which owns retries, conflicts and status; each file is one key, its absolute path).
//!
//! - Only `*.json` files whose name does not start with `.` are apps; editors' temp and swap
//!   files, hidden files and the status file are ignored.
//! - Filesystem events (notify) are debounced: tauon rescans once the directory has been quiet
//!   for the debounce interval. A file's content is compared with what was last seen, so an
//!   unchanged file does nothing, while a rewritten one (even with the same text, e.g. `touch`)
//!   re-resolves its reference: a new digest is a replace, the same digest a no-op.
//! - A file that does not parse (a half-written file, a typo) is reported with its file, line
//!   and column, and the app it described keeps running its last good version; once it parses
//!   again it is applied.
//! - An app's identity is its file. A renamed file keeps serving without a restart (its name,
//!   which defaults to the file stem, is replaced in place). A deleted file stops only its app.
//! - Two files claiming one address or state_dir: the later one is refused, naming both files,
//!   and is retried whenever another app stops or moves (by the reconciler). At startup files
//!   are taken in name order.
//! - A load that fails (registry outage, unknown reference) is retried with a backoff (2 s
//!   doubling to 60 s, by the reconciler) while the version serving, if any, keeps serving.
//! - Status: every transition is logged with app, reference and digest, and a JSON status file
//!   (by default `<DIR>/.tauon-status.json`, replaced atomically) lists the running apps with
//!   their resolved digests and load state (`load`, as the admin API's `status.load`) and the
//!   files in error. tauon follows the reconciler's status per changed key and writes the file
//!   at most once per [`STATUS_COALESCE`] (one write for a burst of 10,000 changes, not 10,000).
//!   A status file that cannot be written (a read-only directory) is logged once, until a write
//!   succeeds again; tauon goes on without it.
//! - A directory projected by kubelet (a ConfigMap or Secret volume) is followed: there each key
//!   is a visible symlink `<key> -> ..data/<key>`, and an update writes a new hidden
//!   timestamped directory and renames a `..data_tmp` link over `..data`, so an edit of an
//!   existing key changes only hidden names. A change of `..data` therefore triggers a rescan
//!   like a change of an app file, and app files are read through their symlinks (a link whose
//!   target is gone is no app). Hidden names are never apps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use notify::Watcher;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::reconciler::{Desired, Reconciler, StatusBoard};
use crate::{ResidentState, RunningAppStatus};
use lepton_spec::{AppSpec, parse_app_file};

/// How long changes gather before the status file is written: one write per burst.
pub const STATUS_COALESCE: Duration = Duration::from_millis(100);

/// tauon settings.
#[derive(Debug, Clone)]
pub struct TauonOptions {
    /// The directory of app files.
    pub dir: PathBuf,
    /// Where to write the status file; `<dir>/.tauon-status.json` when `None`.
    pub status_file: Option<PathBuf>,
    /// How long the directory must stay quiet before a rescan.
    pub debounce: Duration,
}

/// Why tauon could not run.
#[derive(Debug, thiserror::Error)]
pub enum TauonError {
    /// The directory is missing or unreadable.
    #[error("{dir}: cannot read the app directory: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory cannot be watched.
    #[error("{dir}: cannot watch the app directory: {source}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// What notify said.
        #[source]
        source: notify::Error,
    },
}

/// One app file as last seen on disk.
struct FileEntry {
    content: Vec<u8>,
    modified: Option<SystemTime>,
    /// The last spec this file described validly (to recognise a rename).
    spec: Option<AppSpec>,
}

/// A running app in the status file.
#[derive(Debug, Serialize, PartialEq)]
struct AppStatus {
    file: String,
    name: String,
    reference: String,
    digest: String,
    address: String,
    state_dir: String,
    routes: Vec<String>,
    triggers: Vec<String>,
    from_cache_only: bool,
    limits: lepton_runtime::AppLimits,
    load: LoadStatus,
}

/// Where a running app's load stands, in the admin API's `status.load` shape: `{"state":
/// "idle" | "loading" | "loaded"}`, or `{"state": "failed", "error": "…"}`.
#[derive(Debug, Serialize, PartialEq)]
struct LoadStatus {
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl LoadStatus {
    fn of(state: &ResidentState) -> Self {
        Self {
            state: state.name(),
            error: match state {
                ResidentState::Failed { message } => Some(message.clone()),
                _ => None,
            },
        }
    }
}

/// A file in error in the status file.
#[derive(Debug, Serialize, PartialEq)]
struct FileError {
    file: String,
    error: String,
}

/// The status file's content.
#[derive(Debug, Serialize, PartialEq)]
struct Status<'a> {
    dir: &'a str,
    running: bool,
    apps: Vec<&'a AppStatus>,
    errors: Vec<&'a FileError>,
}

struct Tauon {
    reconciler: Reconciler,
    dir: PathBuf,
    status_file: PathBuf,
    status_writer: StatusWriter,
    files: BTreeMap<String, FileEntry>,
    /// The status file's running apps and errors by key, kept in step per changed key.
    apps: BTreeMap<String, AppStatus>,
    errors: BTreeMap<String, FileError>,
    /// Whether `apps` or `errors` changed since the file was last written.
    unwritten: bool,
}

/// Run tauon on `opts.dir` until `shutdown` completes, then stop every app gracefully (draining
/// in-flight requests within the supervisor's drain timeout) and write the final status.
pub async fn run(
    reconciler: Reconciler,
    opts: TauonOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TauonError> {
    let dir = std::path::absolute(&opts.dir).map_err(|source| TauonError::Dir {
        dir: opts.dir.clone(),
        source,
    })?;
    let meta = std::fs::metadata(&dir).map_err(|source| TauonError::Dir {
        dir: dir.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(TauonError::Dir {
            dir: dir.clone(),
            source: std::io::Error::other("not a directory"),
        });
    }
    let status_file = match &opts.status_file {
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
        None => dir.join(".tauon-status.json"),
    };

    // Watch before the first scan, so nothing written in between is missed.
    let (event_tx, mut events) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                if event.paths.is_empty()
                    || event
                        .paths
                        .iter()
                        .any(|p| is_app_file(p) || is_projection_swap(p))
                {
                    let _ = event_tx.send(());
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "file watcher error; rescanning");
                let _ = event_tx.send(());
            }
        })
        .map_err(|source| TauonError::Watch {
            dir: dir.clone(),
            source,
        })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| TauonError::Watch {
            dir: dir.clone(),
            source,
        })?;
    tracing::info!(dir = %dir.display(), status_file = %status_file.display(), "tauon watching");

    let mut status = reconciler.status();
    let mut tauon = Tauon {
        reconciler: reconciler.clone(),
        dir: dir.clone(),
        status_writer: StatusWriter::new(status_file.clone()),
        status_file,
        files: BTreeMap::new(),
        apps: BTreeMap::new(),
        errors: BTreeMap::new(),
        unwritten: true,
    };
    tauon.rescan().await;
    let first = status.take();
    tauon.update(status.board(), status.keys(first));
    tauon.write_status(true);

    let debounce = opts.debounce;
    let max_wait = debounce * 10;
    tokio::pin!(shutdown);
    // (first event of the burst, last event) while a rescan is pending.
    let mut pending: Option<(Instant, Instant)> = None;
    // When the status file is due, while changes wait to be written.
    let mut write_at: Option<Instant> = None;
    loop {
        let wake = pending.map(|(first, last)| (last + debounce).min(first + max_wait));
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = events.recv() => {
                let now = Instant::now();
                pending = Some(match pending {
                    Some((first, _)) => (first, now),
                    None => (now, now),
                });
            }
            _ = sleep_until(wake), if wake.is_some() => {
                pending = None;
                tauon.rescan().await;
            }
            Some(changes) = status.changed() => {
                tauon.update(status.board(), status.keys(changes));
                if tauon.unwritten && write_at.is_none() {
                    write_at = Some(Instant::now() + STATUS_COALESCE);
                }
            }
            _ = sleep_until(write_at), if write_at.is_some() => {
                write_at = None;
                tauon.write_status(true);
            }
        }
    }
    drop(watcher);
    tracing::info!("tauon shutting down: draining in-flight requests");
    reconciler.supervisor().shutdown().await;
    // What runs now (nothing), with the last known errors.
    let last = status.take();
    tauon.update(status.board(), status.keys(last));
    tauon.apps = reconciler
        .supervisor()
        .status()
        .iter()
        .map(|s| (s.key.clone(), tauon.app_status(s)))
        .collect();
    tauon.unwritten = true;
    tauon.write_status(false);
    tracing::info!("tauon stopped");
    Ok(())
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// `*.json`, not hidden.
fn is_app_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json") && n.len() > ".json".len())
}

/// kubelet's `..data` link, renamed over when a projected volume (ConfigMap, Secret) changes.
fn is_projection_swap(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "..data")
}

/// The app files in `dir`, by key (absolute path), with their content and mtime.
/// An app file's bytes and mtime, as read by [`scan`].
struct OnDisk {
    content: Vec<u8>,
    modified: Option<SystemTime>,
}

/// A new or changed app file, parsed.
struct Changed {
    key: String,
    disk: OnDisk,
    parsed: Result<AppSpec, String>,
}

fn scan(dir: &Path, status_file: &Path) -> std::io::Result<BTreeMap<String, OnDisk>> {
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if !is_app_file(&path) || path == status_file {
            continue;
        }
        // Follows symlinks; a file that vanished since the listing is simply not there.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        match std::fs::read(&path) {
            Ok(content) => {
                found.insert(
                    path.display().to_string(),
                    OnDisk {
                        content,
                        modified: meta.modified().ok(),
                    },
                );
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(file = %path.display(), error = %err, "cannot read app file; ignoring it for now");
            }
        }
    }
    Ok(found)
}

impl Tauon {
    async fn rescan(&mut self) {
        let found = match scan(&self.dir, &self.status_file) {
            Ok(f) => f,
            Err(err) => {
                tracing::error!(dir = %self.dir.display(), error = %err, "cannot scan the app directory; apps keep running as they are");
                return;
            }
        };
        let mut removed: Vec<String> = self
            .files
            .keys()
            .filter(|k| !found.contains_key(*k))
            .cloned()
            .collect();
        // New or changed files, in name order, parsed.
        let mut changed: Vec<Changed> = Vec::new();
        for (key, disk) in found {
            if let Some(entry) = self.files.get(&key)
                && entry.content == disk.content
                && entry.modified == disk.modified
            {
                continue;
            }
            let parsed = match std::str::from_utf8(&disk.content) {
                Ok(text) => parse_app_file(Path::new(&key), text).map_err(|e| e.to_string()),
                Err(e) => Err(format!("{key}: not UTF-8 text: {e}")),
            };
            changed.push(Changed { key, disk, parsed });
        }

        // Renames: a file gone and a new one describing the same address and state_dir in the
        // same batch keep the running app, under its new key.
        for Changed { key, parsed, .. } in &changed {
            if self.files.contains_key(key) {
                continue;
            }
            let Ok(spec) = parsed else { continue };
            let Some(pos) = removed.iter().position(|r| {
                self.files
                    .get(r)
                    .and_then(|e| e.spec.as_ref())
                    .is_some_and(|old| {
                        old.address == spec.address && old.state_dir == spec.state_dir
                    })
            }) else {
                continue;
            };
            let old_key = removed[pos].clone();
            if self.reconciler.rename(old_key.as_str(), key.as_str()).await {
                removed.remove(pos);
                if let Some(entry) = self.files.remove(&old_key) {
                    tracing::info!(from = %old_key, to = %key, "app file renamed");
                    self.files.insert(key.clone(), entry);
                }
            }
        }

        for key in removed {
            if let Some(entry) = self.files.remove(&key) {
                if entry.spec.is_some() {
                    tracing::info!(file = %key, "app file deleted: stopping its app");
                }
                drop(self.reconciler.set(key, Desired::Absent));
            }
        }

        for Changed { key, disk, parsed } in changed {
            let entry = self.files.entry(key.clone()).or_insert_with(|| FileEntry {
                content: Vec::new(),
                modified: None,
                spec: None,
            });
            entry.content = disk.content;
            entry.modified = disk.modified;
            let desired = match parsed {
                Ok(spec) => {
                    entry.spec = Some(spec.clone());
                    Desired::App(spec)
                }
                Err(message) => Desired::Invalid(message),
            };
            // The outcome comes back through the reconciler's status.
            drop(self.reconciler.set(key, desired));
        }
    }

    fn file_label(&self, key: &str) -> String {
        Path::new(key)
            .strip_prefix(&self.dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| key.to_string())
    }

    /// The status file's entry for a running app.
    fn app_status(&self, s: &RunningAppStatus) -> AppStatus {
        AppStatus {
            file: self.file_label(&s.key),
            name: s.name.clone(),
            reference: s.reference.clone(),
            digest: s.digest.clone(),
            address: s.address.map(|a| a.to_string()).unwrap_or_default(),
            state_dir: s.state_dir.display().to_string(),
            routes: s.routes.clone(),
            triggers: s.triggers.clone(),
            from_cache_only: s.from_cache_only,
            limits: s.limits,
            load: LoadStatus::of(&s.load),
        }
    }

    /// Bring the running apps and errors of `keys` in line with `board`.
    fn update(&mut self, board: &StatusBoard, keys: impl IntoIterator<Item = String>) {
        for key in keys {
            let app = board.running_app(&key).map(|s| self.app_status(&s));
            let error = board
                .key(&key)
                .and_then(|k| k.error)
                .map(|error| FileError {
                    file: self.file_label(&key),
                    error,
                });
            self.unwritten |= replace(&mut self.apps, &key, app);
            self.unwritten |= replace(&mut self.errors, &key, error);
        }
    }

    /// Write the status file (atomically: a temp file renamed over it) if it changed.
    fn write_status(&mut self, running: bool) {
        if !self.unwritten {
            return;
        }
        let dir = self.dir.display().to_string();
        let status = Status {
            dir: &dir,
            running,
            apps: self.apps.values().collect(),
            errors: self.errors.values().collect(),
        };
        self.status_writer.write(&status);
        self.unwritten = false;
    }
}

/// Set (or with `None` remove) `map[key]`; whether that changed it.
fn replace<T: PartialEq>(map: &mut BTreeMap<String, T>, key: &str, value: Option<T>) -> bool {
    match value {
        Some(value) => {
            if map.get(key) == Some(&value) {
                return false;
            }
            map.insert(key.to_string(), value);
            true
        }
        None => map.remove(key).is_some(),
    }
}

/// What became of one status write (logged by [`StatusWriter::write`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusWrite {
    /// Written, as the previous one was.
    Written,
    /// Written after failures (logged).
    Recovered,
    /// Not written (logged: the first failure).
    Failed,
    /// Not written, as the previous one was not (not logged again).
    FailedAgain,
}

/// Writes the status file, logging a failure once (e.g. tauon's directory is a read-only
/// ConfigMap volume and no `--status-file` moved it) rather than at every change.
struct StatusWriter {
    path: PathBuf,
    failing: bool,
}

impl StatusWriter {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            failing: false,
        }
    }

    fn write(&mut self, status: &Status<'_>) -> StatusWrite {
        let outcome = match (write_atomically(&self.path, status), self.failing) {
            (Ok(()), false) => StatusWrite::Written,
            (Ok(()), true) => {
                tracing::info!(file = %self.path.display(), "the status file is written again");
                StatusWrite::Recovered
            }
            (Err(err), false) => {
                tracing::warn!(
                    file = %self.path.display(),
                    error = %err,
                    "cannot write the status file; tauon goes on without it (use --status-file \
                     for a writable place; not logged again until a write succeeds)"
                );
                StatusWrite::Failed
            }
            (Err(err), true) => {
                tracing::debug!(file = %self.path.display(), error = %err, "status file still not written");
                StatusWrite::FailedAgain
            }
        };
        self.failing = matches!(outcome, StatusWrite::Failed | StatusWrite::FailedAgain);
        outcome
    }
}

/// Write `status` to `path` through a temp file renamed over it; the temp file never stays.
fn write_atomically(path: &Path, status: &Status<'_>) -> std::io::Result<()> {
    let mut json = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    json.push(b'\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tauon-status.json".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests;
