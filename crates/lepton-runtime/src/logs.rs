//! Capture of component stdout/stderr, per app.
//!
//! Following Spin's layout, each component's streams are appended to
//! `<state_dir>/logs/<component id>_stdout.txt` and `_stderr.txt`. Files are opened once per app
//! version in append mode and shared by every request's store, so concurrent requests interleave
//! whole writes rather than clobbering each other.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use wasmtime_wasi::cli::OutputFile;

use crate::RuntimeError;

/// The stdout and stderr sinks of one component.
#[derive(Clone)]
pub struct ComponentLogs {
    pub(crate) stdout: OutputFile,
    pub(crate) stderr: OutputFile,
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
        let stdout = append(&stdout_path).map_err(io(stdout_path.clone()))?;
        let stderr = append(&stderr_path).map_err(io(stderr_path.clone()))?;
        Ok(Self {
            stdout: OutputFile::new(stdout),
            stderr: OutputFile::new(stderr),
        })
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
    fn sanitize_keeps_ids_inside_the_log_dir() {
        assert_eq!(sanitize("hello-world"), "hello-world");
        assert_eq!(sanitize("../../etc/passwd"), "______etc_passwd");
    }
}
