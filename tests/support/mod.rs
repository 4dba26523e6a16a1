//! Shared helpers for the end-to-end tests: built guest apps, pushing with the real `lepton`
//! binary, running `lepton` as a child process, and plain HTTP over loopback.

#![allow(dead_code)]

pub mod serve;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use lepton_testkit::{TestRegistry, free_port, repo_root};

/// The `lepton` binary under test.
pub fn lepton_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lepton"))
}

/// Fail with a helpful message if the guest components have not been built.
pub fn require_guest_builds() {
    let out = repo_root().join("apps/target/wasm32-wasip2/release");
    for name in [
        "hello_p2.wasm",
        "hello_p3.wasm",
        "fileserver.wasm",
        "kv_p2.wasm",
    ] {
        assert!(
            out.join(name).is_file(),
            "{} is missing: run scripts/build-apps.sh (scripts/test.sh does) before cargo test",
            out.join(name).display()
        );
    }
}

/// `lepton push <repo>/apps/<app>/spin.toml <reference>`; panics with lepton's output on failure.
pub fn push(app: &str, reference: &str) -> String {
    let toml = repo_root().join("apps").join(app).join("spin.toml");
    let out = Command::new(lepton_bin())
        .arg("push")
        .arg(&toml)
        .arg(reference)
        .env("LEPTON_LOG", "warn")
        .output()
        .expect("run lepton push");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "lepton push {app} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// [`push`], returning the digest the push reports.
pub fn push_digest(app: &str, reference: &str) -> String {
    let out = push(app, reference);
    out.lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("push output names the digest: {out}"))
        .to_string()
}

/// `lepton push <spin_toml> <reference>` with extra environment for the child (e.g.
/// `DOCKER_CONFIG`); returns the output whatever the exit status.
pub fn push_output(spin_toml: &Path, reference: &str, envs: &[(&str, &OsStr)]) -> Output {
    Command::new(lepton_bin())
        .arg("push")
        .arg(spin_toml)
        .arg(reference)
        .env("LEPTON_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run lepton push")
}

/// A running `lepton` process; killed on drop.
pub struct Lepton {
    child: Option<Child>,
    pub stderr_path: PathBuf,
    pub stdout_path: PathBuf,
}

impl Lepton {
    /// Start `lepton <manifest>` with the given cache directory.
    pub fn start(manifest: &Path, cache_dir: &Path, logs: &Path) -> Self {
        Self::start_with_env(manifest, cache_dir, logs, &[])
    }

    /// [`Lepton::start`] with extra environment for the child (e.g. `DOCKER_CONFIG`).
    pub fn start_with_env(
        manifest: &Path,
        cache_dir: &Path,
        logs: &Path,
        envs: &[(&str, &OsStr)],
    ) -> Self {
        Self::spawn(manifest, cache_dir, logs, envs, &[])
    }

    /// [`Lepton::start`] with extra command-line options (e.g. `--header-read-timeout-ms`).
    pub fn start_with_args(manifest: &Path, cache_dir: &Path, logs: &Path, args: &[&str]) -> Self {
        Self::spawn(manifest, cache_dir, logs, &[], args)
    }

    fn spawn(
        manifest: &Path,
        cache_dir: &Path,
        logs: &Path,
        envs: &[(&str, &OsStr)],
        args: &[&str],
    ) -> Self {
        std::fs::create_dir_all(logs).expect("log dir");
        let n = std::fs::read_dir(logs).map(|d| d.count()).unwrap_or(0);
        let stderr_path = logs.join(format!("lepton-{n}.stderr"));
        let stdout_path = logs.join(format!("lepton-{n}.stdout"));
        // Run from the manifest's directory, so a relative cache dir is resolved against it.
        let cwd = manifest.parent().unwrap_or(Path::new("."));
        let child = Command::new(lepton_bin())
            .current_dir(cwd)
            .arg(manifest)
            .arg("--cache-dir")
            .arg(cache_dir)
            .args(args)
            .env("LEPTON_LOG", "info")
            .env("LEPTON_QUICK_COMPILE", quick_compile())
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn lepton");
        Self {
            child: Some(child),
            stderr_path,
            stdout_path,
        }
    }

    /// lepton's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// lepton's stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Wait until every address answers its health check (or panic with lepton's output).
    pub fn wait_healthy(&mut self, addrs: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(180);
        for addr in addrs {
            loop {
                if let Ok(res) = get(addr, "/.well-known/spin/health")
                    && res.status == 200
                {
                    break;
                }
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!(
                        "lepton exited early ({status}) while waiting for {addr}:\n{}",
                        self.stderr()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{addr} never became healthy:\n{}",
                    self.stderr()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Wait until lepton's stdout contains `needle` (bounded; panics with lepton's output, or
    /// as soon as lepton exits without printing it).
    pub fn wait_stdout_contains(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !self.stdout().contains(needle) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                && !self.stdout().contains(needle)
            {
                panic!(
                    "lepton exited ({status}) without printing `{needle}`:\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "lepton never printed `{needle}`:\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (up to 10 minutes: big components compile slowly on 2 cores) until lepton has
    /// reported the outcome of its start: `Ok(stdout)` once it printed its `N of M apps serving`
    /// line, `Err(its error lines)` if it exited before that (e.g. no app could start).
    pub fn wait_started(&mut self) -> Result<String, String> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if self.stdout().contains(" apps serving") {
                return Ok(self.stdout());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                && !self.stdout().contains(" apps serving")
            {
                let stderr = self.stderr();
                let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
                return Err(format!(
                    "lepton exited ({status}):\n{}\n\nstderr:\n{stderr}",
                    errors.join("\n")
                ));
            }
            assert!(
                Instant::now() < deadline,
                "lepton never reported its apps:\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the process to exit on its own (bounded).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("child");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "lepton did not exit within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id of the running `lepton`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// The exit status, if the process has exited (without waiting).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// SIGKILL (no chance to clean up, as on an OOM kill or `kill -9`) and reap the process.
    pub fn kill_hard(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("child");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait")
    }

    /// Send SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("child").id();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for Lepton {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub use lepton_testkit::HttpResponse;

/// `GET path` on `addr`.
pub fn get(addr: &str, path: &str) -> std::io::Result<HttpResponse> {
    lepton_testkit::http_request(addr, "GET", path, &[], b"")
}

/// Send one request with `Connection: close` and read the whole response.
#[allow(unused_imports)]
pub use lepton_testkit::http_request as request;

/// Whether the lepton processes this test binary starts compile first with Winch (lepton's
/// default). The tests whose subject is the compiled-code cache itself (what is compiled, and
/// stored, and collected, once) turn it off: with it, each component is compiled twice, once
/// per engine, by design (covered by `tests/lazy.rs` and the runtime's unit tests).
pub static QUICK_COMPILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// `LEPTON_QUICK_COMPILE` for the processes tests start.
pub fn quick_compile() -> &'static str {
    if QUICK_COMPILE.load(std::sync::atomic::Ordering::Relaxed) {
        "1"
    } else {
        "0"
    }
}

/// A free loopback address.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The `tauon` binary under test.
pub fn tauon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tauon"))
}

/// Write `text` to `path` the way careful tools do: a hidden temp file in the same directory,
/// then an atomic rename over the target.
pub fn write_atomically(path: &Path, text: &str) {
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename temp file");
}

/// A running `tauon` process watching a directory; killed on drop.
pub struct Tauon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub stderr_path: PathBuf,
    pub status_path: PathBuf,
}

impl Tauon {
    /// Start `tauon <dir> --cache-dir <cache> <extra...>`, logging into `logs`.
    pub fn start(dir: &Path, cache_dir: &Path, logs: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(logs).expect("log dir");
        let n = std::fs::read_dir(logs).map(|d| d.count()).unwrap_or(0);
        let stderr_path = logs.join(format!("tauon-{n}.stderr"));
        let child = Command::new(tauon_bin())
            .arg(dir)
            .arg("--cache-dir")
            .arg(cache_dir)
            .args(extra)
            .env("LEPTON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn tauon");
        Self {
            child: Some(child),
            dir: dir.to_path_buf(),
            stderr_path,
            status_path: dir.join(".tauon-status.json"),
        }
    }

    /// tauon's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The status file, if written and complete.
    pub fn status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.status_path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Wait (bounded) until the status file satisfies `pred`; panics with tauon's log otherwise.
    pub fn wait_status(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.status()
                && pred(&status)
            {
                return status;
            }
            if let Some(exit) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tauon exited ({exit}) while waiting for {what}:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what}; status: {}\nlog:\n{}",
                self.status().map(|s| s.to_string()).unwrap_or_default(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Wait (bounded) until tauon's log contains `needle`.
    pub fn wait_log(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "tauon never logged `{needle}`:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Send SIGTERM (without waiting).
    pub fn signal_term(&self) {
        let pid = self.child.as_ref().expect("child").id();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Wait for the process to exit on its own (bounded).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("child");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tauon did not exit within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tauon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The running app of tauon status `status` whose file is `file`, if any.
pub fn status_app<'a>(status: &'a serde_json::Value, file: &str) -> Option<&'a serde_json::Value> {
    status["apps"]
        .as_array()?
        .iter()
        .find(|a| a["file"] == file)
}

/// The digest `file`'s app is running, if it runs.
pub fn status_digest(status: &serde_json::Value, file: &str) -> Option<String> {
    status_app(status, file).and_then(|a| a["digest"].as_str().map(str::to_string))
}

/// The error reported for `file`, if any.
pub fn status_error(status: &serde_json::Value, file: &str) -> Option<String> {
    status["errors"]
        .as_array()?
        .iter()
        .find(|e| e["file"] == file)
        .and_then(|e| e["error"].as_str().map(str::to_string))
}

/// Seconds of CPU process `pid` has used (user + system), from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (in parentheses): state is index 0, utime 11, stime 12.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Write `<dir>/lepton.json` listing one app `name` from `reference` on `addr` (state in
/// `<dir>/state`); its path.
pub fn one_app_manifest(dir: &Path, name: &str, reference: &str, addr: &str) -> PathBuf {
    let manifest = dir.join("lepton.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{ "apps": [ {{ "name": "{name}", "reference": "{reference}", "address": "{addr}", "state_dir": "state" }} ] }}"#
        ),
    )
    .expect("manifest");
    manifest
}
