//! Real database and broker servers for tests: Debian's `redis-server`, PostgreSQL, MariaDB and
//! Mosquitto, each started as a child process on a free `127.0.0.1` port with its data in a temp
//! dir, waited on until it answers, and stopped (then its dir removed) on drop.
//!
//! - [`TestRedis`]: `redis-server` without persistence; [`TestRedis::cli`] runs `redis-cli`.
//! - [`TestPostgres`]: a fresh cluster (`initdb`) with a password-protected user and database
//!   ([`TestPostgres::user`], [`TestPostgres::password`], [`TestPostgres::database`]);
//!   [`TestPostgres::psql`] runs SQL as the superuser. PostgreSQL refuses to run as root, so when
//!   the tests run as root the cluster belongs to the `postgres` system user (`setpriv`).
//! - [`TestMysql`]: a fresh MariaDB data dir (`mariadb-install-db`) with a password-protected user
//!   and database; [`TestMysql::sql`] runs SQL as root over the server's socket.
//! - [`TestMosquitto`]: an anonymous MQTT broker; [`TestMosquitto::subscribe`] starts a real
//!   `mosquitto_sub` and returns once its subscription is acknowledged.
//!
//! The packages come from `scripts/install-deps.sh`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;

mod mosquitto;
mod mysql;
mod postgres;
mod redis;

pub use mosquitto::{MqttMessage, MqttSubscription, TestMosquitto};
pub use mysql::TestMysql;
pub use postgres::TestPostgres;
pub use redis::TestRedis;

/// How long a server may take to become ready (MariaDB's first start on a busy 2-core machine is
/// the slowest). A readiness bound, not a measurement.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to stop gracefully before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts at starting on a fresh free port (another process may take the port in between).
const START_ATTEMPTS: usize = 3;

/// The user, password and database the PostgreSQL and MySQL servers are set up with.
const DB_USER: &str = "lepton";
const DB_PASSWORD: &str = "lepton-pass";
const DB_NAME: &str = "lepton";

fn other(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd` to completion; an error (with its output) when it cannot start or exits non-zero.
fn run(cmd: &mut Command, what: &str) -> std::io::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{what}: failed to start: {e}")))?;
    if !out.status.success() {
        return Err(other(format!(
            "{what}: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tcp_accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// A server child process plus the temp dir holding its data and log.
struct Server {
    name: &'static str,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    fn new(name: &'static str) -> std::io::Result<Server> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("lepton-{name}-"))
            .tempdir()?;
        let log = dir.path().join(format!("{name}.log"));
        Ok(Server {
            name,
            port: 0,
            dir,
            child: None,
            log,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Spawns `cmd` (stdout/stderr appended to the log) and polls `ready` until it holds.
    fn spawn(
        &mut self,
        mut cmd: Command,
        mut ready: impl FnMut(&Server) -> bool,
    ) -> std::io::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("failed to spawn {}: {e}", self.name))
            })?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if ready(self) {
                self.child = Some(child);
                return Ok(());
            }
            let exited = child.try_wait()?.is_some();
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(other(format!(
                    "{} on 127.0.0.1:{} did not become ready ({}); its log:\n{}",
                    self.name,
                    self.port,
                    if exited { "it exited" } else { "timed out" },
                    self.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the server to stop with `signal`, waits a bounded time, then kills it. Idempotent.
    fn stop(&mut self, signal: libc::c_int) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: plain kill(2) on our own child's pid, which has not been reaped yet.
            unsafe { libc::kill(pid, signal) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts a server, retrying on a fresh port when the attempt fails (e.g. the port was taken).
fn start_with_retries<T>(mut attempt: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        match attempt() {
            Ok(server) => return Ok(server),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| other("no start attempt was made")))
}

// ---------------------------------------------------------------------------------------------
// Redis

#[cfg(test)]
mod tests {
    use super::mosquitto::decode_hex;
    use super::*;

    #[test]
    fn redis_serves_commands_and_stops_on_drop() {
        let redis = TestRedis::start().unwrap();
        let port = redis.port();
        assert_eq!(redis.cli(&["SET", "k", "v1"]).unwrap(), "OK");
        assert_eq!(redis.cli(&["GET", "k"]).unwrap(), "v1");
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}"));
        drop(redis);
        assert!(!tcp_accepts(port));
    }

    #[test]
    fn postgres_has_a_password_protected_user_and_database() {
        let pg = TestPostgres::start().unwrap();
        let port = pg.port();
        pg.psql("CREATE TABLE t (id int, name text); INSERT INTO t VALUES (1, 'one');")
            .unwrap();
        assert_eq!(pg.psql("SELECT id, name FROM t").unwrap(), "1|one");
        // The app user logs in over TCP with its password and owns the database.
        let psql = pg.bin.join("psql");
        let login = |password: &str| {
            Command::new(&psql)
                .env("PGPASSWORD", password)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-U", pg.user(), "-d", pg.database(), "-X", "-A", "-t"])
                .args(["-c", "SELECT current_user || '@' || current_database()"])
                .output()
                .unwrap()
        };
        let ok = login(pg.password());
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "lepton@lepton");
        assert!(!login("wrong").status.success());
        drop(pg);
        assert!(!tcp_accepts(port));
    }

    #[test]
    fn mysql_has_a_password_protected_user_and_database() {
        let db = TestMysql::start().unwrap();
        let port = db.port();
        db.sql(
            "CREATE TABLE lepton.t (id INT, name TEXT); INSERT INTO lepton.t VALUES (7, 'seven');",
        )
        .unwrap();
        assert_eq!(db.sql("SELECT id, name FROM lepton.t").unwrap(), "7\tseven");
        let login = |password: &str| {
            Command::new("mariadb")
                .arg("--no-defaults")
                .args(["-h", "127.0.0.1", "-P", &port.to_string()])
                .args(["-u", db.user()])
                .arg(format!("-p{password}"))
                .args([db.database(), "-N", "-B", "-e", "SELECT COUNT(*) FROM t"])
                .output()
                .unwrap()
        };
        let ok = login(db.password());
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "1");
        assert!(!login("wrong").status.success());
        drop(db);
        assert!(!tcp_accepts(port));
    }

    #[test]
    fn mosquitto_delivers_to_a_subscriber() {
        let broker = TestMosquitto::start().unwrap();
        let mut sub = broker.subscribe("lepton/test").unwrap();
        run(
            Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
                .args(["-t", "lepton/test", "-m", "hello mqtt"]),
            "mosquitto_pub",
        )
        .unwrap();
        let msg = sub.next_message(Duration::from_secs(30)).unwrap();
        assert_eq!(msg.topic, "lepton/test");
        assert_eq!(msg.payload, b"hello mqtt");
        assert!(decode_hex("4").is_none());
    }
}
