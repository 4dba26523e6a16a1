//! [`TestRedis`]: Debian's `redis-server` without persistence on a free loopback port.

use super::*;

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
