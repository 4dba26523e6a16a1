//! [`TestRegistry`]: a real distribution registry (`docker-registry serve`) for tests.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, http_get};

const REGISTRY_BIN: &str = "docker-registry";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry` on `127.0.0.1:<port>`, storing blobs in a temp dir.
///
/// The child process is killed when this is dropped.
pub struct TestRegistry {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl TestRegistry {
    /// Starts a registry on a free port and waits until `GET /v2/` answers.
    pub fn start() -> std::io::Result<TestRegistry> {
        let dir = tempfile::Builder::new()
            .prefix("lepton-registry-")
            .tempdir()?;
        let mut reg = TestRegistry {
            port: free_port(),
            dir,
            child: None,
        };
        reg.write_config()?;
        reg.spawn()?;
        Ok(reg)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's storage directory (for tests that tamper with it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Kills the registry and waits for it to exit. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (if running) and starts again on the same port with the same storage.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    fn write_config(&self) -> std::io::Result<()> {
        let storage = self.storage_dir();
        std::fs::create_dir_all(&storage)?;
        let config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{}\n",
            storage.display(),
            self.port
        );
        std::fs::write(self.config_path(), config)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("failed to spawn {REGISTRY_BIN}: {e}"))
            })?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(resp) = http_get(&self.addr(), "/v2/", None)
                && resp.status == 200
            {
                // Drain stderr in the background so the registry never blocks on a full pipe.
                if let Some(mut err) = child.stderr.take() {
                    std::thread::spawn(move || {
                        let mut sink = Vec::new();
                        let _ = err.read_to_end(&mut sink);
                    });
                }
                self.child = Some(child);
                return Ok(());
            }
            let exited = child.try_wait()?.is_some();
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                return Err(std::io::Error::other(format!(
                    "docker-registry on {} did not become ready ({}); stderr:\n{stderr}",
                    self.addr(),
                    if exited { "it exited" } else { "timed out" }
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_stops_and_restarts_on_same_port() {
        let mut reg = TestRegistry::start().unwrap();
        let addr = reg.addr();
        assert_eq!(http_get(&addr, "/v2/", None).unwrap().status, 200);
        reg.stop();
        assert!(http_get(&addr, "/v2/", None).is_err());
        reg.restart().unwrap();
        assert_eq!(reg.addr(), addr);
        assert_eq!(http_get(&addr, "/v2/", None).unwrap().status, 200);
    }
}
