//! Capture of component stdout/stderr, per app.
//!
//! Following Spin's layout, each component's streams are appended to
//! `<state_dir>/logs/<component id>_stdout.txt` and `_stderr.txt`.
//!
//! **No file descriptor while idle.** A loaded app holds no open log file: each guest stream
//! (one per instance, see [`LogWriter`]) buffers its output in memory and appends it to the file
//! with open + write + close — at the first flush of a quiet stream, then at most once per
//! [`FLUSH_DELAY`] (a timer, so a long-running or reused instance's output still shows up
//! promptly), when [`BUFFER_BYTES`] are buffered, and when the instance ends (the stream is
//! dropped). Earlier, every loaded component held its two files open for as long as it was
//! loaded: 2 fds per component, so ~10,000 loaded apps exhausted a 20,000-fd limit and requests
//! to *every* app failed. Now an idle loaded app holds 0 fds, and an active one holds 1 fd only
//! for the microseconds of an append.
//!
//! Measured on the 2-core dev VM (ext4, `/tmp`, busy with a build; µs per append, median of 4
//! runs of a std-only micro-benchmark):
//!
//! | bytes per append | held fd `write` | open + `write` + close | open + fstat + `write` + close |
//! |------------------|-----------------|------------------------|--------------------------------|
//! | 64 (one line)    | 1.2             | 5.5                    | 7.8                            |
//! | 4 KiB            | 5.6             | 9.2                    | 12.0                           |
//! | 64 KiB           | 30 – 160        | 27 – 44                | 22 – 33                        |
//!
//! So opening per *line* would cost ~5× a held-fd write, but opening per *buffer* costs ~6–8 µs
//! about twice per instance (or per [`FLUSH_DELAY`], or per 16 KiB), less than the one `write`
//! per line the held-fd design made: a request printing 10 lines now costs two opens + fstats +
//! writes + closes (~15 µs) instead of 10 writes (~12 µs), and one printing 100 lines ~15 µs
//! instead of ~120 µs.
//!
//! **Whole lines.** Several instances of a component write at once; each appends only whole
//! lines (up to its last newline) under the file's lock, so lines never interleave mid-line. A
//! line longer than [`BUFFER_BYTES`] without a newline, and an instance's unterminated last
//! line when it ends, are written as they are.
//!
//! **Rotation.** Size-based rotation keeps a guest from filling the disk: once a file would pass
//! [`MAX_LOG_BYTES`], it is renamed to `….txt.1` (older ones shift to `.2`, …, up to
//! [`KEEP_ROTATED`]; the oldest is removed) and a new file is started. A guest can therefore use
//! at most `(KEEP_ROTATED + 1) × MAX_LOG_BYTES` per stream. The size is read (fstat) at each
//! append, so a file deleted or rotated by another version of the app is seen as it is.
//!
//! **Failures** (disk full, log directory deleted) never fail the guest's write or its request:
//! the bytes are dropped and a warning is logged at most once per [`WARN_EVERY`] per file,
//! counting what was dropped. A deleted log directory is created again.

mod writer;

#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use writer::LogWriter;

use crate::RuntimeError;

/// The size at which a component's log file is rotated.
pub const MAX_LOG_BYTES: u64 = 16 << 20;
/// How many rotated files are kept per stream.
pub const KEEP_ROTATED: usize = 3;
/// How much output one guest stream buffers before appending it to the file.
pub const BUFFER_BYTES: usize = 16 << 10;
/// How long buffered output waits at most (while its instance lives) before it is appended.
pub const FLUSH_DELAY: Duration = Duration::from_millis(100);
/// The least time between two warnings about one log file that cannot be written.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// The stdout and stderr sinks of one component.
#[derive(Clone)]
pub struct ComponentLogs {
    pub(crate) stdout: RotatingLog,
    pub(crate) stderr: RotatingLog,
}

impl ComponentLogs {
    /// The log files of `component_id` under `log_dir`. The directory is created now (an error
    /// here fails the load); the files only when there is output, and are not kept open.
    pub fn open(log_dir: &Path, component_id: &str) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(log_dir).map_err(|source| RuntimeError::Io {
            component: component_id.to_string(),
            what: "cannot create log directory",
            path: log_dir.to_path_buf(),
            source,
        })?;
        let name = sanitize(component_id);
        let log = |stream: &str| {
            RotatingLog::new(
                log_dir.join(format!("{name}_{stream}.txt")),
                MAX_LOG_BYTES,
                KEEP_ROTATED,
            )
        };
        Ok(Self {
            stdout: log("stdout"),
            stderr: log("stderr"),
        })
    }
}

/// An append-only log file rotated by size, shared by every store of a component. It holds no
/// open file: [`RotatingLog::append`] opens, writes and closes. Guest streams are
/// [`LogWriter`]s, which buffer in front of it.
#[derive(Clone)]
pub struct RotatingLog(Arc<Shared>);

struct Shared {
    path: PathBuf,
    max: u64,
    keep: usize,
    /// Serializes appends and rotation (and counts failures).
    state: Mutex<Failures>,
}

/// Write failures of one file, for rate-limited warnings.
#[derive(Default)]
struct Failures {
    last_warned: Option<Instant>,
    /// Bytes dropped since the last warning.
    dropped: u64,
    /// Warnings logged so far.
    warnings: u64,
}

impl RotatingLog {
    /// The log at `path`, rotated past `max` bytes keeping `keep` old files. Nothing is opened
    /// or created until the first append.
    pub fn new(path: PathBuf, max: u64, keep: usize) -> Self {
        Self(Arc::new(Shared {
            path,
            max,
            keep,
            state: Mutex::new(Failures::default()),
        }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// A fresh buffered stream for one guest instance (what WASI's stdout/stderr hand out).
    pub fn writer(&self) -> LogWriter {
        LogWriter::new(self.clone())
    }

    /// Append `bytes` as one write (rotating first if they would pass the size limit). A failure
    /// drops them and is logged (rate-limited); it is returned for tests and callers that care.
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let mut failures = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.append_locked(bytes);
        if let Err(e) = &result {
            failures.record(&self.0.path, e, bytes.len() as u64);
        }
        result
    }

    /// How many warnings about this file's write failures have been logged.
    pub fn warnings(&self) -> u64 {
        self.0
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .warnings
    }

    fn append_locked(&self, bytes: &[u8]) -> std::io::Result<()> {
        let shared = &*self.0;
        let mut file = open_append(&shared.path)?;
        let len = file.metadata()?.len();
        if len > 0 && len + bytes.len() as u64 > shared.max {
            drop(file);
            rotate(&shared.path, shared.keep)?;
            file = open_append(&shared.path)?;
        }
        file.write_all(bytes)
    }
}

impl Failures {
    fn record(&mut self, path: &Path, error: &std::io::Error, bytes: u64) {
        self.dropped += bytes;
        let now = Instant::now();
        if self
            .last_warned
            .is_some_and(|at| now.duration_since(at) < WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            path = %path.display(),
            %error,
            dropped_bytes = self.dropped,
            "cannot write a component log file; its output is dropped (warned at most once a minute)"
        );
        self.last_warned = Some(now);
        self.dropped = 0;
        self.warnings += 1;
    }
}

/// Shift `path` to `path.1`, `.1` to `.2`, … keeping `keep` old files (none: truncate).
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let rotated = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    let missing_ok = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    if keep == 0 {
        return missing_ok(std::fs::remove_file(path));
    }
    let _ = std::fs::remove_file(rotated(keep));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(rotated(n), rotated(n + 1));
    }
    missing_ok(std::fs::rename(path, rotated(1)))
}

/// Open `path` for appending, creating it (and its directory, if it was deleted).
fn open_append(path: &Path) -> std::io::Result<File> {
    let open = || OpenOptions::new().create(true).append(true).open(path);
    match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            open()
        }
        other => other,
    }
}

/// Component ids are kebab-case already; anything else is replaced so a hostile id cannot escape
/// the log directory.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
