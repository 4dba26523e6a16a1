//! [`TestPostgres`]: a fresh PostgreSQL cluster with a password-protected user and database
//! (run as the `postgres` user when the tests run as root).

use super::*;

/// A running PostgreSQL cluster on `127.0.0.1:<port>` with user [`TestPostgres::user`] (password
/// [`TestPostgres::password`], scram-sha-256 over TCP) owning database [`TestPostgres::database`].
pub struct TestPostgres {
    server: Server,
    pub(super) bin: PathBuf,
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
