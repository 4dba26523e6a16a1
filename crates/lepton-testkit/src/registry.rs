//! [`TestRegistry`]: a real distribution registry (`docker-registry serve`) for tests, open or
//! behind htpasswd (HTTP Basic) authentication.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, http_get};

const REGISTRY_BIN: &str = "docker-registry";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// bcrypt's minimum cost: the registry checks the password on every request, and a test has no
/// use for a slow hash.
const BCRYPT_COST: u32 = 4;
const HTPASSWD_REALM: &str = "lepton-test";

/// A running `docker-registry` on `127.0.0.1:<port>`, storing blobs in a temp dir.
///
/// The child process is killed when this is dropped.
pub struct TestRegistry {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Whether the registry requires HTTP Basic credentials (htpasswd).
    auth: bool,
}

impl TestRegistry {
    /// Starts a registry on a free port and waits until `GET /v2/` answers.
    pub fn start() -> std::io::Result<TestRegistry> {
        let mut reg = TestRegistry::new(false)?;
        reg.write_config()?;
        reg.spawn()?;
        Ok(reg)
    }

    /// Starts a registry that requires HTTP Basic authentication as `user`/`pass` (distribution's
    /// `auth: htpasswd` with a bcrypt entry) and waits until `GET /v2/` answers with its 401
    /// challenge. Anonymous requests are refused.
    pub fn start_with_htpasswd(user: &str, pass: &str) -> std::io::Result<TestRegistry> {
        if user.is_empty() || user.contains(':') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("htpasswd user name {user:?} must be non-empty and contain no `:`"),
            ));
        }
        let hash = bcrypt::hash_with_result(pass, BCRYPT_COST)
            .map_err(|e| std::io::Error::other(format!("bcrypt: {e}")))?
            .format_for_version(bcrypt::Version::TwoY);
        let mut reg = TestRegistry::new(true)?;
        std::fs::write(reg.htpasswd_path(), format!("{user}:{hash}\n"))?;
        reg.write_config()?;
        reg.spawn()?;
        Ok(reg)
    }

    fn new(auth: bool) -> std::io::Result<TestRegistry> {
        let dir = tempfile::Builder::new()
            .prefix("lepton-registry-")
            .tempdir()?;
        Ok(TestRegistry {
            port: free_port(),
            dir,
            child: None,
            auth,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's storage directory (for tests that tamper with it).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's own log (stderr of every run, appended), for diagnosing a failing test.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
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

    fn htpasswd_path(&self) -> PathBuf {
        self.dir.path().join("htpasswd")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn write_config(&self) -> std::io::Result<()> {
        let storage = self.storage_dir();
        std::fs::create_dir_all(&storage)?;
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{}\n",
            storage.display(),
            self.port
        );
        if self.auth {
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: {HTPASSWD_REALM}\n    path: {}\n",
                self.htpasswd_path().display()
            ));
        }
        std::fs::write(self.config_path(), config)
    }

    /// Whether `GET /v2/` answered the way a ready registry does: 200, or 401 with a Basic
    /// challenge when it requires credentials.
    fn is_ready(&self) -> bool {
        match http_get(&self.addr(), "/v2/", None) {
            Ok(resp) if resp.status == 200 => !self.auth,
            Ok(resp) if resp.status == 401 => {
                self.auth
                    && resp
                        .header("www-authenticate")
                        .is_some_and(|c| c.starts_with("Basic"))
            }
            _ => false,
        }
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("failed to spawn {REGISTRY_BIN}: {e}"))
            })?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if self.is_ready() {
                self.child = Some(child);
                return Ok(());
            }
            let exited = child.try_wait()?.is_some();
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::other(format!(
                    "docker-registry on {} did not become ready ({}); its log:\n{}",
                    self.addr(),
                    if exited { "it exited" } else { "timed out" },
                    self.log()
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

    #[test]
    fn htpasswd_registry_refuses_anonymous_and_wrong_credentials() {
        use base64::Engine;
        let basic = |user_pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            )
        };
        let reg = TestRegistry::start_with_htpasswd("tester", "right-pass").unwrap();
        let addr = reg.addr();
        let anonymous = http_get(&addr, "/v2/", None).unwrap();
        assert_eq!(anonymous.status, 401, "{}", reg.log());
        assert_eq!(
            anonymous.header("www-authenticate"),
            Some("Basic realm=\"lepton-test\"")
        );
        let wrong = crate::http_get_with_headers(
            &addr,
            "/v2/",
            &[("Authorization", &basic("tester:wrong-pass"))],
        )
        .unwrap();
        assert_eq!(wrong.status, 401);
        let right = crate::http_get_with_headers(
            &addr,
            "/v2/",
            &[("Authorization", &basic("tester:right-pass"))],
        )
        .unwrap();
        assert_eq!(right.status, 200, "{}", reg.log());
        assert!(TestRegistry::start_with_htpasswd("a:b", "x").is_err());
    }
}
