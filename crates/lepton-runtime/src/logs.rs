//! Capture of component stdout/stderr, per app.
//!
//! Following Spin's layout, each component's streams are appended to
//! `<state_dir>/logs/<component id>_stdout.txt` and `_stderr.txt`. Files are opened once per app
//! version in append mode and shared by every request's store, so concurrent requests interleave
//! whole writes rather than clobbering each other.
//!
//! Size-based rotation keeps a guest from filling the disk: once a file would pass
//! [`MAX_LOG_BYTES`], it is renamed to `….txt.1` (older ones shift to `.2`, …, up to
//! [`KEEP_ROTATED`]; the oldest is removed) and a new file is started. A guest can therefore use
//! at most `(KEEP_ROTATED + 1) × MAX_LOG_BYTES` per stream.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::RuntimeError;

/// The size at which a component's log file is rotated.
pub const MAX_LOG_BYTES: u64 = 16 << 20;
/// How many rotated files are kept per stream.
pub const KEEP_ROTATED: usize = 3;

/// The stdout and stderr sinks of one component.
#[derive(Clone)]
pub struct ComponentLogs {
    pub(crate) stdout: RotatingLog,
    pub(crate) stderr: RotatingLog,
}

impl ComponentLogs {
    /// Open (creating if needed) the log files of `component_id` under `log_dir`.
    pub fn open(log_dir: &Path, component_id: &str) -> Result<Self, RuntimeError> {
        let io = |path: PathBuf| {
            move |source| RuntimeError::Io {
                component: component_id.to_string(),
                what: "cannot open log file",
                path,
                source,
            }
        };
        std::fs::create_dir_all(log_dir).map_err(io(log_dir.to_path_buf()))?;
        let name = sanitize(component_id);
        let stdout_path = log_dir.join(format!("{name}_stdout.txt"));
        let stderr_path = log_dir.join(format!("{name}_stderr.txt"));
        let stdout = RotatingLog::open(stdout_path.clone(), MAX_LOG_BYTES, KEEP_ROTATED)
            .map_err(io(stdout_path))?;
        let stderr = RotatingLog::open(stderr_path.clone(), MAX_LOG_BYTES, KEEP_ROTATED)
            .map_err(io(stderr_path))?;
        Ok(Self { stdout, stderr })
    }
}

/// An append-only log file rotated by size, shared by every store of a component.
#[derive(Clone)]
pub struct RotatingLog(Arc<Mutex<LogFile>>);

struct LogFile {
    path: PathBuf,
    file: File,
    written: u64,
    max: u64,
    keep: usize,
}

impl RotatingLog {
    /// Append to `path` (created if absent), rotating past `max` bytes and keeping `keep` old files.
    pub fn open(path: PathBuf, max: u64, keep: usize) -> std::io::Result<Self> {
        let file = append(&path)?;
        let written = file.metadata()?.len();
        Ok(Self(Arc::new(Mutex::new(LogFile {
            path,
            file,
            written,
            max,
            keep,
        }))))
    }

    fn write(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.written > 0 && log.written + buf.len() as u64 > log.max {
            log.rotate()?;
        }
        log.file.write_all(buf)?;
        log.written += buf.len() as u64;
        Ok(())
    }
}

impl LogFile {
    fn rotate(&mut self) -> std::io::Result<()> {
        let rotated = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            self.file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(rotated(n), rotated(n + 1));
            }
            std::fs::rename(&self.path, rotated(1))?;
            self.file = append(&self.path)?;
        }
        self.written = 0;
        Ok(())
    }
}

impl IsTerminal for RotatingLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for RotatingLog {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for RotatingLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Small appends to a local file, as wasmtime's own OutputFile does.
        Poll::Ready(self.write(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c_stdout.txt");
        let log = RotatingLog::open(path.clone(), 10, 2).expect("open");
        for line in [
            "aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n",
        ] {
            log.write(line.as_bytes()).expect("write");
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(&path), "gggg\n");
        assert_eq!(read(&dir.path().join("c_stdout.txt.1")), "eeee\nffff\n");
        assert_eq!(read(&dir.path().join("c_stdout.txt.2")), "cccc\ndddd\n");
        assert!(!dir.path().join("c_stdout.txt.3").exists());
        // Reopened, it counts what the file already holds.
        drop(log);
        let log = RotatingLog::open(path.clone(), 10, 2).expect("reopen");
        log.write(b"hhhh\niiii\n").expect("write");
        assert_eq!(read(&path), "hhhh\niiii\n");
        assert_eq!(read(&dir.path().join("c_stdout.txt.1")), "gggg\n");
    }

    #[test]
    fn sanitize_keeps_ids_inside_the_log_dir() {
        assert_eq!(sanitize("hello-world"), "hello-world");
        assert_eq!(sanitize("../../etc/passwd"), "______etc_passwd");
    }
}
