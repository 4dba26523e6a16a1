//! Debian's `pebble` ACME test server on loopback, for `lepton serve --acme-directory`.
//!
//! Pebble validates HTTP-01 challenges by connecting to the host name on its `httpPort`, which
//! is set to lepton's `--http` port; host names resolve through `pebble-challtestsrv`'s mock
//! DNS, which answers every A query with 127.0.0.1 (and no AAAA). Pebble's own HTTPS directory
//! needs a certificate: Debian ships none, so the test CA makes one for 127.0.0.1, and lepton
//! trusts that CA through `--acme-ca-root`. `PEBBLE_VA_NOSLEEP=1` skips pebble's random
//! validation delays and `PEBBLE_WFE_NONCEREJECT=0` its deliberate bad-nonce errors.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// A running pebble and its mock DNS; both killed on drop.
pub struct Pebble {
    children: Vec<Child>,
    /// The ACME directory URL.
    pub directory: String,
    /// Where pebble's management API is (its issuing root at `/roots/0`).
    management: String,
    /// The CA file that verifies pebble's own HTTPS certificate.
    ca_file: PathBuf,
    log: PathBuf,
}

impl Pebble {
    /// Start pebble in `dir` with `cert_pem`/`key_pem` as its HTTPS certificate (for
    /// 127.0.0.1, verified by `ca_file`), validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port`.
    pub fn start(
        dir: &Path,
        (cert_pem, key_pem): (&str, &str),
        ca_file: &Path,
        http_port: u16,
        tls_port: u16,
    ) -> Self {
        for tool in ["pebble", "pebble-challtestsrv"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing: run scripts/install-deps.sh (Debian's pebble package)"
            );
        }
        let dir = dir.join("pebble");
        std::fs::create_dir_all(&dir).expect("pebble dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, cert_pem).expect("cert");
        std::fs::write(&key, key_pem).expect("key");
        let (listen, management, dns) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_file = dir.join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).expect("config");
        let log = dir.join("pebble.log");
        let dns_log = std::fs::File::create(dir.join("challtestsrv.log")).expect("log");
        let mut children = Vec::new();
        children.push(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{}", free_port())])
                .stdout(dns_log.try_clone().expect("log"))
                .stderr(dns_log)
                .spawn()
                .expect("spawn pebble-challtestsrv"),
        );
        let out = std::fs::File::create(&log).expect("log");
        children.push(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_file)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdout(out.try_clone().expect("log"))
                .stderr(out)
                .spawn()
                .expect("spawn pebble"),
        );
        let pebble = Self {
            children,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: format!("https://127.0.0.1:{management}"),
            ca_file: ca_file.to_path_buf(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while pebble.fetch(&pebble.directory).is_none() {
            assert!(
                Instant::now() < deadline,
                "pebble never answered:\n{}",
                pebble.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pebble
    }

    /// GET `url` with curl, trusting the test CA; the body if it answered 2xx.
    fn fetch(&self, url: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sSf", "--max-time", "10", "--cacert"])
            .arg(&self.ca_file)
            .arg(url)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The root pebble issues under (PEM).
    pub fn root(&self) -> String {
        self.fetch(&format!("{}/roots/0", self.management))
            .unwrap_or_else(|| panic!("pebble's root:\n{}", self.log()))
    }

    /// What pebble logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
