//! `lepton serve` as a child process for the end-to-end tests: start it on a database, talk to
//! its admin API with the test token, request apps through its ingress by host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lepton_testkit::http_request_to_host;
use serde_json::Value;

use super::*;

/// The admin token every test server accepts.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A registry holding the hello app's two builds: (registry, `…/hello:p2`, `…/hello:p3`).
pub fn hello_registry() -> (TestRegistry, String, String) {
    require_guest_builds();
    let registry = TestRegistry::start().expect("registry");
    let reg = registry.addr();
    let (p2, p3) = (format!("{reg}/hello:p2"), format!("{reg}/hello:p3"));
    push("hello-p2", &p2);
    push("hello-p3", &p3);
    (registry, p2, p3)
}

/// A `lepton serve` child; killed on drop.
pub struct Serve {
    child: Child,
    stderr: PathBuf,
    pub admin: String,
    pub ingress: String,
}

impl Serve {
    /// Start `lepton serve` in `dir` on database `db` as node `node`; waits until ready.
    pub fn start(dir: &Path, db: &str, node: &str, admin: &str, ingress: &str) -> Self {
        Self::start_with_args(dir, db, node, admin, ingress, &[])
    }

    /// [`Serve::start`] with more arguments for `lepton serve` (`--https ADDR`, `--cert-dir`…).
    pub fn start_with_args(
        dir: &Path,
        db: &str,
        node: &str,
        admin: &str,
        ingress: &str,
        args: &[&str],
    ) -> Self {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let stderr = dir.join(format!("serve-{n}.stderr"));
        let child = Command::new(lepton_bin())
            .current_dir(dir)
            .args(["serve", "--db", db, "--node", node, "--state-root", "state"])
            .args(["--admin", admin, "--http", ingress])
            .args(args)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(["--drain-timeout", "2"])
            .env("LEPTON_ADMIN_TOKEN", TOKEN)
            .env("LEPTON_LOG", "info")
            .env("LEPTON_QUICK_COMPILE", super::quick_compile())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr"))
            .spawn()
            .expect("spawn lepton serve");
        let mut serve = Self {
            child,
            stderr,
            admin: admin.to_string(),
            ingress: ingress.to_string(),
        };
        serve.wait_ready();
        serve
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait until `/readyz` answers 200 (every stored app tried).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(res) = get(&self.admin, "/readyz")
                && res.status == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lepton serve exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "never ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An admin API request with the token; the status and the JSON answer.
    pub fn api(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let res = request(
            &self.admin,
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()));
        let json = serde_json::from_slice(&res.body).unwrap_or(Value::Null);
        (res.status, json)
    }

    /// `GET path` on the ingress for `host`.
    pub fn via(&self, host: &str, path: &str) -> HttpResponse {
        http_request_to_host(&self.ingress, host, "GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}\n{}", self.log()))
    }

    /// The hello app behind `host` answers as the `generation` (`p2`/`p3`) build.
    pub fn says(&self, host: &str, generation: &str) {
        let res = self.via(host, "/");
        assert_eq!(
            (res.status, res.text()),
            (200, format!("Hello from hello ({generation})\n")),
            "via {host}:\n{}",
            self.log()
        );
    }

    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(Instant::now() < deadline, "did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` every 10 ms until it holds (60 s at most, then fail with every node's log);
/// prints and returns how long it took.
pub fn converge(what: &str, nodes: &[&Serve], check: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: never converged\n{}",
            {
                let logs: Vec<String> = nodes.iter().map(|n| n.log()).collect();
                logs.join("\n---\n")
            }
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed();
    eprintln!("{what}: converged after {took:?}");
    took
}
