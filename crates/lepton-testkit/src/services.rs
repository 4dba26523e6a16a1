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

/// A running `redis-server` on `127.0.0.1:<port>` (no persistence, no password).
pub struct TestRedis {
    server: Server,
}

impl TestRedis {
    /// Starts redis-server on a free port and waits until it answers `PING`.
    pub fn start() -> std::io::Result<TestRedis> {
        start_with_retries(|| {
            let mut server = Server::new("redis")?;
            server.port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--bind", "127.0.0.1", "--port"])
                .arg(server.port.to_string())
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(server.path());
            server.spawn(cmd, |s| redis_ping(s.port))?;
            Ok(TestRedis { server })
        })
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// Runs `redis-cli` with `args` against this server; its stdout, trimmed of the final newline.
    pub fn cli(&self, args: &[&str]) -> std::io::Result<String> {
        let out = run(
            Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p"])
                .arg(self.server.port.to_string())
                .args(args),
            "redis-cli",
        )?;
        Ok(out.trim_end_matches('\n').to_string())
    }

    /// The server's own log.
    pub fn log(&self) -> String {
        self.server.log_text()
    }
}

fn redis_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.server.stop(libc::SIGTERM);
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A running PostgreSQL cluster on `127.0.0.1:<port>` with user [`TestPostgres::user`] (password
/// [`TestPostgres::password`], scram-sha-256 over TCP) owning database [`TestPostgres::database`].
pub struct TestPostgres {
    server: Server,
    bin: PathBuf,
}

impl TestPostgres {
    /// Creates a cluster in a temp dir, starts it on a free port, and sets up the user and database.
    pub fn start() -> std::io::Result<TestPostgres> {
        let bin = postgres_bin_dir()?;
        start_with_retries(|| {
            let mut server = Server::new("postgres")?;
            server.port = free_port();
            let data = server.path().join("data");
            let socket_dir = server.path().join("sock");
            std::fs::create_dir(&socket_dir)?;
            if is_root() {
                // The cluster must belong to an unprivileged user: hand the temp dir to `postgres`.
                run(
                    Command::new("chown")
                        .arg("-R")
                        .arg("postgres:postgres")
                        .arg(server.path()),
                    "chown the PostgreSQL temp dir to postgres",
                )?;
            }
            run(
                postgres_command(&bin.join("initdb"))
                    .arg("-D")
                    .arg(&data)
                    .args([
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                    ]),
                "initdb",
            )?;
            let mut cmd = postgres_command(&bin.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(server.port.to_string())
                .arg("-k")
                .arg(&socket_dir)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "shared_buffers=16MB",
                    "-c",
                    "max_connections=50",
                ]);
            let pg_isready = bin.join("pg_isready");
            server.spawn(cmd, |s| {
                Command::new(&pg_isready)
                    .args(["-q", "-h", "127.0.0.1", "-p"])
                    .arg(s.port.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|st| st.success())
            })?;
            let pg = TestPostgres {
                server,
                bin: bin.clone(),
            };
            // Two statements: CREATE DATABASE cannot run inside psql -c's implicit transaction.
            pg.psql_in(
                "postgres",
                &format!("CREATE USER {DB_USER} PASSWORD '{DB_PASSWORD}'"),
            )?;
            pg.psql_in(
                "postgres",
                &format!("CREATE DATABASE {DB_NAME} OWNER {DB_USER}"),
            )?;
            Ok(pg)
        })
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// The application user's name.
    pub fn user(&self) -> &str {
        DB_USER
    }

    /// The application user's password.
    pub fn password(&self) -> &str {
        DB_PASSWORD
    }

    /// The application database.
    pub fn database(&self) -> &str {
        DB_NAME
    }

    /// `postgres://<user>:<password>@127.0.0.1:<port>/<database>`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{DB_USER}:{DB_PASSWORD}@{}/{DB_NAME}",
            self.addr()
        )
    }

    /// Runs `sql` with `psql` as the superuser in the application database (unaligned, tuples only);
    /// its stdout, trimmed of the final newline.
    pub fn psql(&self, sql: &str) -> std::io::Result<String> {
        self.psql_in(DB_NAME, sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> std::io::Result<String> {
        let out = run(
            Command::new(self.bin.join("psql"))
                .arg("-h")
                .arg(self.server.path().join("sock"))
                .arg("-p")
                .arg(self.server.port.to_string())
                .args(["-U", "postgres", "-d", db, "-X", "-A", "-t", "-q"])
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql",
        )?;
        Ok(out.trim_end_matches('\n').to_string())
    }

    /// The server's own log.
    pub fn log(&self) -> String {
        self.server.log_text()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // SIGINT = PostgreSQL's "fast" shutdown.
        self.server.stop(libc::SIGINT);
    }
}

/// Debian's versioned PostgreSQL server binaries (`/usr/lib/postgresql/<major>/bin`), newest first.
fn postgres_bin_dir() -> std::io::Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{}: {e} (install Debian's postgresql: scripts/install-deps.sh)",
                    root.display()
                ),
            )
        })?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| other(format!("no PostgreSQL server under {}", root.display())))
}

/// A command for a PostgreSQL binary, run as the `postgres` system user when we are root (the
/// server refuses root). `setpriv` execs in place, so the child's pid is the server's.
fn postgres_command(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--reset-env",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

// ---------------------------------------------------------------------------------------------
// MySQL (MariaDB)

/// A running MariaDB server on `127.0.0.1:<port>` with user [`TestMysql::user`] (password
/// [`TestMysql::password`]) granted everything on database [`TestMysql::database`].
pub struct TestMysql {
    server: Server,
}

impl TestMysql {
    /// Creates a data dir, starts mariadbd on a free port, and sets up the user and database.
    pub fn start() -> std::io::Result<TestMysql> {
        start_with_retries(|| {
            let mut server = Server::new("mariadb")?;
            server.port = free_port();
            let data = server.path().join("data");
            // mariadbd refuses to run as root unless told to.
            let user: &[&str] = if is_root() { &["--user=root"] } else { &[] };
            let mut install = Command::new("mariadb-install-db");
            install
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(user)
                .args([
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ]);
            run(&mut install, "mariadb-install-db")?;
            let mut cmd = Command::new("mariadbd");
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", server.socket().display()))
                .arg(format!(
                    "--pid-file={}",
                    server.path().join("mariadb.pid").display()
                ))
                .arg(format!("--port={}", server.port))
                .args(user)
                .args([
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--skip-log-bin",
                ]);
            server.spawn(cmd, |s| {
                tcp_accepts(s.port) && mysql_client(s, "SELECT 1").is_ok_and(|o| o.trim() == "1")
            })?;
            let db = TestMysql { server };
            db.sql(&format!(
                "CREATE DATABASE {DB_NAME}; \
                 CREATE USER '{DB_USER}'@'%' IDENTIFIED BY '{DB_PASSWORD}'; \
                 CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; \
                 GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'%'; \
                 GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';"
            ))?;
            Ok(db)
        })
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// The application user's name.
    pub fn user(&self) -> &str {
        DB_USER
    }

    /// The application user's password.
    pub fn password(&self) -> &str {
        DB_PASSWORD
    }

    /// The application database.
    pub fn database(&self) -> &str {
        DB_NAME
    }

    /// `mysql://<user>:<password>@127.0.0.1:<port>/<database>`.
    pub fn url(&self) -> String {
        format!("mysql://{DB_USER}:{DB_PASSWORD}@{}/{DB_NAME}", self.addr())
    }

    /// Runs `sql` as root over the server's socket (batch mode, no column names); its stdout,
    /// trimmed of the final newline.
    pub fn sql(&self, sql: &str) -> std::io::Result<String> {
        Ok(mysql_client(&self.server, sql)?
            .trim_end_matches('\n')
            .to_string())
    }

    /// The server's own log.
    pub fn log(&self) -> String {
        self.server.log_text()
    }
}

impl Server {
    fn socket(&self) -> PathBuf {
        self.path().join("mariadb.sock")
    }
}

fn mysql_client(server: &Server, sql: &str) -> std::io::Result<String> {
    run(
        Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", server.socket().display()))
            .args(["-u", "root", "--batch", "--skip-column-names", "-e", sql]),
        "mariadb client",
    )
}

impl Drop for TestMysql {
    fn drop(&mut self) {
        self.server.stop(libc::SIGTERM);
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT (Mosquitto)

/// A running Mosquitto broker on `127.0.0.1:<port>` accepting anonymous clients.
pub struct TestMosquitto {
    server: Server,
}

impl TestMosquitto {
    /// Starts mosquitto on a free port and waits until it accepts connections.
    pub fn start() -> std::io::Result<TestMosquitto> {
        start_with_retries(|| {
            let mut server = Server::new("mosquitto")?;
            server.port = free_port();
            let conf = server.path().join("mosquitto.conf");
            let mut text = format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n",
                server.port
            );
            if is_root() {
                // Otherwise it drops to the `mosquitto` user, which cannot read our temp dir.
                text.push_str("user root\n");
            }
            std::fs::write(&conf, text)?;
            let mut cmd = Command::new("mosquitto");
            cmd.arg("-c").arg(&conf);
            server.spawn(cmd, |s| tcp_accepts(s.port))?;
            Ok(TestMosquitto { server })
        })
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr())
    }

    /// Starts `mosquitto_sub` on `topic` and returns once the broker has acknowledged the
    /// subscription, so a message published afterwards is received.
    pub fn subscribe(&self, topic: &str) -> std::io::Result<MqttSubscription> {
        // stdbuf: line-buffered stdout, or the pipe holds back the acknowledgement and messages.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
            .arg(self.server.port.to_string())
            .args(["-t", topic, "-d", "-F", "%t %x"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("mosquitto_sub: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| other("mosquitto_sub: no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || forward_lines(stdout, tx));
        let sub = MqttSubscription { child, lines: rx };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("Subscribed (mid") => return Ok(sub),
                Ok(_) => continue,
                Err(_) => {
                    return Err(other(
                        "mosquitto_sub: the subscription was not acknowledged",
                    ));
                }
            }
        }
    }

    /// The broker's own log.
    pub fn log(&self) -> String {
        self.server.log_text()
    }
}

impl Drop for TestMosquitto {
    fn drop(&mut self) {
        self.server.stop(libc::SIGTERM);
    }
}

fn forward_lines(stdout: ChildStdout, tx: mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        if tx.send(line).is_err() {
            return;
        }
    }
}

/// A live `mosquitto_sub` subscription (killed on drop).
pub struct MqttSubscription {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// One message a subscription received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMessage {
    /// The topic it was published to.
    pub topic: String,
    /// Its payload bytes.
    pub payload: Vec<u8>,
}

impl MqttSubscription {
    /// Waits up to `timeout` for the next message.
    pub fn next_message(&mut self, timeout: Duration) -> std::io::Result<MqttMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| other(format!("no MQTT message within {timeout:?}")))?;
            // `-d` debug lines start with "Client "; messages are "<topic> <hex payload>".
            if line.starts_with("Client ") || line.starts_with("Subscribed (mid") {
                continue;
            }
            let (topic, hex) = line.rsplit_once(' ').unwrap_or((line.as_str(), ""));
            let payload =
                decode_hex(hex).ok_or_else(|| other(format!("mosquitto_sub printed {line:?}")))?;
            return Ok(MqttMessage {
                topic: topic.to_string(),
                payload,
            });
        }
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Drop for MqttSubscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
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
