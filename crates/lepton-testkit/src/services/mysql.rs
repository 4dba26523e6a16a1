//! [`TestMysql`]: a fresh MariaDB data dir with a password-protected user and database.

use super::*;

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
