//! `lepton serve --https`: the shared ingress over TLS, checked with real TLS clients (curl,
//! and rustls in-process) that verify the chain against a test CA made here with rcgen.
//!
//! Three apps get their certificates three ways — an app's own `tls` files (a chain through an
//! intermediate), a wildcard `.crt`/`.key` pair in `--cert-dir`, and a `.pem` in `--cert-dir` —
//! and are served by SNI over HTTP/2 and HTTP/1.1 with `https` in `spin-full-url`. A host no app
//! serves and an app's host without a certificate fail the handshake (the latter logged once);
//! a certificate replaced on disk is served from the next handshake while a connection made
//! before keeps working; a silent or half-sent handshake is closed at the header read
//! timeout; the admin API refuses `tls` files that are missing, mismatched or do not cover
//! the app's hosts, naming `tls.cert` / `tls.key`.
//!
//! With `--acme-directory` pointing at Debian's pebble ([`pebble`]), a host without a
//! certificate gets one over HTTP-01, kept across restarts, and renewed when it is due.

#[path = "serve_tls/pebble.rs"]
mod pebble;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lepton_testkit::http_request_to_host;
use pebble::Pebble;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use support::serve::{Serve, hello_registry};
use support::*;

/// A test root CA and an intermediate that signs the leaves.
struct TestCa {
    root_pem: String,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl TestCa {
    fn new() -> Self {
        let root = CertifiedIssuer::self_signed(
            ca_params("lepton test root"),
            KeyPair::generate().expect("key"),
        )
        .expect("root");
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("lepton test intermediate"),
            KeyPair::generate().expect("key"),
            &root,
        )
        .expect("intermediate");
        Self {
            root_pem: root.pem(),
            intermediate,
        }
    }

    /// A leaf for `names`: (PEM chain leaf + intermediate, PEM key).
    fn leaf(&self, names: &[&str], common_name: &str) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.intermediate).expect("leaf");
        (
            format!("{}{}", cert.pem(), self.intermediate.pem()),
            key.serialize_pem(),
        )
    }

    /// A rustls client trusting only the test root, speaking HTTP/1.1, each handshake a full
    /// one (a resumed TLS session would not show the server's certificate again).
    fn client(&self) -> Arc<ClientConfig> {
        let mut config = Arc::unwrap_or_clone(self.resuming_client());
        config.resumption = Resumption::disabled();
        Arc::new(config)
    }

    /// [`TestCa::client`] resuming sessions (rustls's default).
    fn resuming_client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.root_pem.as_bytes()).expect("root"))
            .expect("add root");
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn leaf_der(chain_pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(chain_pem.as_bytes())
        .expect("pem")
        .to_vec()
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A verified TLS connection to `addr` for `sni`.
fn connect(config: &Arc<ClientConfig>, addr: &str, sni: &str) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = ServerName::try_from(sni.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The leaf certificate a connection was made with.
fn peer_leaf(tls: &Tls) -> Vec<u8> {
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

/// `GET path` for `host` on a kept-alive HTTP/1.1 connection: (status, body).
fn get_on(tls: &mut Tls, host: &str, path: &str) -> (u16, String) {
    write!(tls, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("write");
    tls.flush().expect("flush");
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line.trim().is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().expect("length");
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        }
    }
    let mut body = Vec::new();
    if !chunked {
        body.resize(length, 0);
        reader.read_exact(&mut body).expect("body");
    }
    while chunked {
        line.clear();
        reader.read_line(&mut line).expect("chunk size");
        let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).expect("chunk");
        body.extend_from_slice(&chunk[..size]);
        chunked = size > 0;
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// curl over HTTPS to `host` at the ingress, verifying against `ca`: (exit ok, stdout, stderr).
fn curl(ca: &Path, https: &str, host: &str, path: &str, http: &str) -> (bool, String, String) {
    let port = https.rsplit(':').next().expect("port");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", http, "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What both tests start from: the hello app's builds in a registry, a temporary directory,
/// and a test CA whose root is in `ca.pem` there.
struct Setup {
    _registry: TestRegistry,
    p2: String,
    p3: String,
    tmp: tempfile::TempDir,
    ca: TestCa,
    ca_file: PathBuf,
}

fn setup() -> Setup {
    let (registry, p2, p3) = hello_registry();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.root_pem).expect("ca");
    Setup {
        _registry: registry,
        p2,
        p3,
        tmp,
        ca,
        ca_file,
    }
}

#[test]
fn https_ingress_serves_apps_by_sni_over_h2_and_reloads_certificates() {
    // `_registry` is bound, not left to `..`: the registry must outlive the test.
    let Setup {
        _registry,
        p2,
        p3,
        tmp,
        ca,
        ca_file,
        ..
    } = setup();
    let (certs, own) = (tmp.path().join("certs"), tmp.path().join("own"));
    std::fs::create_dir_all(&certs).expect("certs");
    std::fs::create_dir_all(&own).expect("own");

    // shop: its own files (a chain); blog: a wildcard pair in --cert-dir; api: one .pem there.
    let (shop_cert, shop_key) = (own.join("shop.crt"), own.join("shop.key"));
    let (chain, key) = ca.leaf(&["shop.example.com"], "shop v1");
    write_atomically(&shop_cert, &chain);
    write_atomically(&shop_key, &key);
    let shop_v1 = leaf_der(&chain);
    let (chain, key) = ca.leaf(&["*.blog.example.com"], "blog");
    write_atomically(&certs.join("_.blog.example.com.crt"), &chain);
    write_atomically(&certs.join("_.blog.example.com.key"), &key);
    let (chain, key) = ca.leaf(&["api.example.com"], "api");
    write_atomically(&certs.join("api.example.com.pem"), &format!("{chain}{key}"));

    let (admin, http, https) = (free_addr(), free_addr(), free_addr());
    let cert_dir = certs.display().to_string();
    let serve = Serve::start_with_args(
        tmp.path(),
        "lepton.db",
        "node-a",
        &admin,
        &http,
        &[
            "--https",
            &https,
            "--cert-dir",
            &cert_dir,
            "--header-read-timeout-ms",
            "5000",
        ],
    );
    let put = |name: &str, body: String| {
        let (status, json) = serve.api("PUT", &format!("/v1/apps/{name}"), &body);
        assert_eq!(status, 200, "PUT {name}: {json}\n{}", serve.log());
        assert_eq!(json["status"]["state"], "serving", "{json}");
    };
    put(
        "shop",
        format!(
            r#"{{"reference":"{p2}","hosts":["shop.example.com"],"tls":{{"cert":"{}","key":"{}"}}}}"#,
            shop_cert.display(),
            shop_key.display()
        ),
    );
    put(
        "blog",
        format!(r#"{{"reference":"{p3}","hosts":["*.blog.example.com"]}}"#),
    );
    put(
        "api",
        format!(r#"{{"reference":"{p2}","hosts":["api.example.com"]}}"#),
    );
    put(
        "bare",
        format!(r#"{{"reference":"{p2}","hosts":["bare.example.com"]}}"#),
    );

    // curl verifies each chain against the test root, negotiates HTTP/2 by ALPN, and the apps
    // see `https` with the authority curl sent.
    let port = https.rsplit(':').next().expect("port").to_string();
    for (host, generation) in [
        ("shop.example.com", "p2"),
        ("en.blog.example.com", "p3"),
        ("api.example.com", "p2"),
    ] {
        let (ok, out, err) = curl(&ca_file, &https, host, "/", "--http2");
        assert!(ok, "curl {host}: {err}\n{}", serve.log());
        assert_eq!(
            out,
            format!("Hello from hello ({generation})\n\n2"),
            "{host} over h2"
        );
        let (ok, out, err) = curl(&ca_file, &https, host, "/x/headers", "--http1.1");
        assert!(ok, "curl {host}: {err}");
        assert!(
            out.contains(&format!("spin-full-url: https://{host}:{port}/x/headers"))
                && out.ends_with("\n1.1"),
            "{host} over HTTP/1.1:\n{out}"
        );
    }
    // The plain ingress still serves the same apps with `http`.
    let plain = http_request_to_host(&http, "shop.example.com", "GET", "/x/headers", &[], b"")
        .expect("plain http");
    assert!(
        plain
            .text()
            .contains("spin-full-url: http://shop.example.com/x/headers"),
        "{}",
        plain.text()
    );

    // No app for the host, or an app without a certificate: the handshake fails, the latter
    // logged once however often it is tried; the ingress keeps serving.
    let (ok, _, err) = curl(&ca_file, &https, "nobody.example.com", "/", "--http2");
    assert!(!ok, "a host no app serves must not complete a handshake");
    eprintln!("unknown SNI: {}", err.trim());
    for _ in 0..2 {
        let (ok, _, _) = curl(&ca_file, &https, "bare.example.com", "/", "--http2");
        assert!(
            !ok,
            "a host without a certificate must not complete a handshake"
        );
    }
    assert_eq!(
        serve.log().matches("no certificate for this host").count(),
        1,
        "{}",
        serve.log()
    );
    let client = ca.client();
    assert!(connect(&client, &https, "bare.example.com").is_err());

    // Handshake cost (TCP connect + TLS 1.3, ECDSA P-256), by where the certificate comes
    // from, full and resumed.
    let resuming = ca.resuming_client();
    for host in ["shop.example.com", "api.example.com", "en.blog.example.com"] {
        for (kind, config) in [("full", &client), ("resumed", &resuming)] {
            let rounds = 200;
            let started = Instant::now();
            for _ in 0..rounds {
                connect(config, &https, host).expect("handshake");
            }
            eprintln!(
                "{kind} handshake to {host}: {:?} mean over {rounds}",
                started.elapsed() / rounds
            );
        }
    }

    // Replace shop's certificate on disk, certificate first and key second: in between, the new
    // certificate does not match the old key and the old pair stays; then the next handshake
    // presents the new one, while a connection made before keeps serving.
    let mut before = connect(&client, &https, "shop.example.com").expect("connect");
    assert_eq!(peer_leaf(&before), shop_v1);
    assert_eq!(
        get_on(&mut before, "shop.example.com", "/"),
        (200, "Hello from hello (p2)\n".to_string())
    );
    let (chain, key) = ca.leaf(&["shop.example.com"], "shop v2");
    let shop_v2 = leaf_der(&chain);
    let replaced = Instant::now();
    write_atomically(&shop_cert, &chain);
    let between = connect(&client, &https, "shop.example.com").expect("between");
    assert_eq!(
        peer_leaf(&between),
        shop_v1,
        "a half-replaced pair is not used"
    );
    write_atomically(&shop_key, &key);
    let after = connect(&client, &https, "shop.example.com").expect("after");
    eprintln!(
        "replaced certificate served {:?} after the files were written",
        replaced.elapsed()
    );
    assert_eq!(peer_leaf(&after), shop_v2);
    assert_eq!(
        get_on(&mut before, "shop.example.com", "/"),
        (200, "Hello from hello (p2)\n".to_string()),
        "a connection from before the reload keeps working"
    );
    assert!(
        serve.log().contains("certificate reloaded"),
        "{}",
        serve.log()
    );
    let (ok, _, err) = curl(&ca_file, &https, "shop.example.com", "/", "--http2");
    assert!(ok, "curl after the reload: {err}");

    // Slowloris over TLS: a silent connection and a half-sent ClientHello are both closed at
    // the header read timeout.
    for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02][..]] {
        let mut tcp = TcpStream::connect(&https).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        tcp.write_all(partial).expect("write");
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let read = tcp.read(&mut buf);
        assert!(
            matches!(read, Ok(0))
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
            "the ingress closes a stalled handshake: {read:?}"
        );
        eprintln!(
            "stalled handshake ({} bytes sent) closed after {:?}",
            partial.len(),
            started.elapsed()
        );
    }

    check_tls_validation(&serve, &ca, &own, &p2);
}

/// PUT refuses `tls` that cannot be served, naming the field.
fn check_tls_validation(serve: &Serve, ca: &TestCa, dir: &Path, reference: &str) {
    let (chain, key) = ca.leaf(&["other.example.com"], "other");
    let (other_cert, other_key) = (dir.join("other.crt"), dir.join("other.key"));
    write_atomically(&other_cert, &chain);
    write_atomically(&other_key, &key);
    let (_, wrong_key) = ca.leaf(&["other.example.com"], "other");
    let wrong = dir.join("wrong.key");
    write_atomically(&wrong, &wrong_key);
    let missing: PathBuf = dir.join("missing.crt");
    let cases = [
        (
            "other.example.com",
            &missing,
            &other_key,
            "tls.cert",
            "cannot read",
        ),
        (
            "other.example.com",
            &other_cert,
            &wrong,
            "tls.key",
            "is not the key",
        ),
        (
            "nope.example.com",
            &other_cert,
            &other_key,
            "tls.cert",
            "does not cover host nope.example.com",
        ),
        (
            "*.example.com",
            &other_cert,
            &other_key,
            "tls.cert",
            "does not cover host *.example.com",
        ),
    ];
    for (host, cert, key, field, message) in cases {
        let body = format!(
            r#"{{"reference":"{reference}","hosts":["{host}"],"tls":{{"cert":"{}","key":"{}"}}}}"#,
            cert.display(),
            key.display()
        );
        let (status, json) = serve.api("PUT", "/v1/apps/other", &body);
        assert_eq!(status, 400, "{host}: {json}");
        assert_eq!(json["problems"][0]["field"], field, "{json}");
        assert!(
            json["problems"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains(message)),
            "{json}"
        );
    }
    let (status, json) = serve.api(
        "PUT",
        "/v1/apps/other",
        &format!(
            r#"{{"reference":"{reference}","address":"127.0.0.1:0","tls":{{"cert":"{}","key":"{}"}}}}"#,
            other_cert.display(),
            other_key.display()
        ),
    );
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["problems"][0]["field"], "tls", "{json}");
    let (status, json) = serve.api("GET", "/v1/apps/other", "");
    assert_eq!(status, 404, "nothing was stored: {json}");
}

#[test]
fn acme_issues_certificates_from_pebble_over_http01_and_renews_due_ones() {
    let Setup {
        _registry,
        p2,
        tmp,
        ca,
        ca_file,
        ..
    } = setup();
    let (admin, http, https) = (free_addr(), free_addr(), free_addr());
    let port = |addr: &str| -> u16 {
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    };
    let (chain, key) = ca.leaf(&["127.0.0.1", "localhost"], "pebble");
    let pebble = Pebble::start(
        tmp.path(),
        (&chain, &key),
        &ca_file,
        port(&http),
        port(&https),
    );
    let ca_arg = ca_file.display().to_string();
    let args = [
        "--https",
        &https,
        "--acme-directory",
        &pebble.directory,
        "--acme-email",
        "ops@example.com",
        "--acme-ca-root",
        &ca_arg,
    ];
    let start = || Serve::start_with_args(tmp.path(), "lepton.db", "node-a", &admin, &http, &args);
    let mut serve = start();
    let put = Instant::now();
    for (name, host) in [("shop", "shop.example.com"), ("wild", "*.wild.example.com")] {
        let body = format!(r#"{{"reference":"{p2}","hosts":["{host}"]}}"#);
        let (status, json) = serve.api("PUT", &format!("/v1/apps/{name}"), &body);
        assert_eq!(status, 200, "PUT {name}: {json}\n{}", serve.log());
    }
    let root = tmp.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.root()).expect("root");
    // The certificate is issued in the background: wait (bounded) for a verified handshake.
    let verified = |serve: &Serve| {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = String::new();
        while Instant::now() < deadline {
            let (ok, out, err) = curl(&root, &https, "shop.example.com", "/", "--http2");
            if ok {
                assert_eq!(out, "Hello from hello (p2)\n\n2");
                return;
            }
            last = err;
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no verified handshake: {last}\n{}\npebble:\n{}",
            serve.log(),
            pebble.log()
        );
    };
    verified(&serve);
    eprintln!(
        "ACME (pebble, HTTP-01): PUT answered to the first verified HTTPS response in {:?}",
        put.elapsed()
    );
    let log = serve.log();
    let issued: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("certificate issued"))
        .collect();
    eprintln!("{}", issued.join("\n"));
    assert_eq!(issued.len(), 1, "{log}");
    assert!(log.contains("ACME account created"), "{log}");
    assert!(log.contains("ACME HTTP-01 cannot issue wildcards"), "{log}");
    let acme = tmp.path().join("state/acme");
    let stored = acme.join("certs/shop.example.com.pem");
    for file in [acme.join("account.json"), stored.clone()] {
        let mode = std::fs::metadata(&file)
            .expect("stored")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }

    // A restart serves what is stored: the same account, nothing issued again.
    serve.terminate();
    drop(serve);
    let mut serve = start();
    verified(&serve);
    let log = serve.log();
    assert!(!log.contains("certificate issued"), "{log}");
    assert!(!log.contains("ACME account created"), "{log}");

    // A stored certificate past its renewal time (here: long expired, from another CA) is
    // replaced at once by a new one from pebble.
    serve.terminate();
    drop(serve);
    let mut params = CertificateParams::new(vec!["shop.example.com".to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 4, 1);
    let old_key = KeyPair::generate().expect("key");
    let old = params.signed_by(&old_key, &ca.intermediate).expect("old");
    std::fs::write(&stored, format!("{}{}", old.pem(), old_key.serialize_pem())).expect("old");
    let serve = start();
    verified(&serve);
    assert!(
        serve.log().contains("certificate issued"),
        "{}",
        serve.log()
    );
}
