//! Tests of certificate loading, the checks the admin API runs, the reloading cache and the
//! certificate directories' names, on certificates made by rcgen.

use std::path::Path;
use std::time::Instant;

use tokio::sync::watch;

use super::cache::CertCache;
use super::resolver::SniResolver;
use super::*;
use crate::ingress::HostTable;

/// A self-signed certificate for `names`: (cert PEM, key PEM).
fn self_signed(names: &[&str]) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).expect("rcgen");
    (made.cert.pem(), made.signing_key.serialize_pem())
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// Replace `path` atomically (a new inode, as `mv` or certbot's links do).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    write(&tmp, text);
    std::fs::rename(&tmp, path).expect("rename");
}

fn pair(dir: &Path, stem: &str, names: &[&str]) -> TlsFiles {
    let (cert, key) = self_signed(names);
    let files = TlsFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    write(&files.cert, &cert);
    write(&files.key, &key);
    files
}

fn leaf(certified: &CertifiedKey) -> Vec<u8> {
    certified.cert[0].to_vec()
}

#[test]
fn a_pair_loads_from_two_files_or_one_and_problems_name_their_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = pair(dir.path(), "shop", &["shop.example.com"]);
    let certified = load_certified_key(&files.cert, &files.key).expect("loads");
    assert_eq!(certified.cert.len(), 1);

    // One .pem with both, key first: the certificate and the key are each found.
    let both = dir.path().join("both.pem");
    let (cert, key) = self_signed(&["both.example.com"]);
    write(&both, &format!("{key}{cert}"));
    load_certified_key(&both, &both).expect("one file");

    let other = pair(dir.path(), "other", &["other.example.com"]);
    let err = load_certified_key(&files.cert, &other.key).expect_err("mismatch");
    assert_eq!(err.field(), "tls.key");
    assert!(
        err.to_string()
            .contains("is not the key of the certificate"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.crt");
    write(&garbage, "not a certificate\n");
    let err = load_certified_key(&garbage, &files.key).expect_err("no PEM");
    assert_eq!(err.field(), "tls.cert");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );

    let err = load_certified_key(&files.cert, &garbage).expect_err("no key");
    assert_eq!(err.field(), "tls.key");
    assert!(
        err.to_string().contains("holds no PEM private key"),
        "{err}"
    );

    let err = load_certified_key(&dir.path().join("absent.crt"), &files.key).expect_err("gone");
    assert_eq!(err.field(), "tls.cert");
    assert!(err.to_string().contains("cannot read"), "{err}");
}

#[test]
fn a_certificate_must_cover_every_host_and_wildcards_only_by_a_wildcard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = pair(
        dir.path(),
        "multi",
        &["shop.example.com", "*.blog.example.com"],
    );
    let hosts = |h: &[&str]| h.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    assert!(
        check_certificate(
            &files,
            &hosts(&[
                "shop.example.com",
                "*.blog.example.com",
                "en.blog.example.com"
            ])
        )
        .is_empty()
    );
    let problems = check_certificate(
        &files,
        &hosts(&["shop.example.com", "api.example.com", "*.example.com"]),
    );
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("does not cover host api.example.com")
            && messages[0].contains("shop.example.com, *.blog.example.com"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("does not cover host *.example.com"),
        "{messages:?}"
    );
    assert!(problems.iter().all(|p| p.field() == "tls.cert"));
    // A pair that does not load is one problem, about its file.
    let other = pair(dir.path(), "other", &["shop.example.com"]);
    let mixed = TlsFiles {
        cert: files.cert.clone(),
        key: other.key,
    };
    let problems = check_certificate(&mixed, &hosts(&["shop.example.com"]));
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].field(), "tls.key");
}

#[test]
fn the_cache_reloads_a_replaced_pair_and_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = pair(dir.path(), "shop", &["shop.example.com"]);
    let cache = CertCache::new();
    let first = cache.get(&files).expect("loads");
    assert!(Arc::ptr_eq(&first, &cache.get(&files).expect("cached")));

    let started = Instant::now();
    let rounds = 10_000;
    for _ in 0..rounds {
        cache.get(&files);
    }
    eprintln!(
        "an unchanged pair's lookup (two stats and a map lookup): {:?}",
        started.elapsed() / rounds
    );

    // The certificate and then the key replaced: in between, the new certificate does not
    // match the old key, and the old pair keeps being served.
    let (cert, key) = self_signed(&["shop.example.com"]);
    replace(&files.cert, &cert);
    let between = cache.get(&files).expect("previous kept");
    assert_eq!(leaf(&between), leaf(&first));
    replace(&files.key, &key);
    let second = cache.get(&files).expect("reloaded");
    assert_ne!(leaf(&second), leaf(&first));
    assert_eq!(second.cert[0].as_ref(), pem_der(&cert));

    // Rewritten in place (same inode) with garbage: still the last good one.
    write(&files.cert, "-----BEGIN CERTIFICATE-----\nAAAA\n");
    assert_eq!(leaf(&cache.get(&files).expect("kept")), leaf(&second));

    // Gone: no certificate.
    std::fs::remove_file(&files.cert).expect("remove");
    assert!(cache.get(&files).is_none());
}

fn pem_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

#[test]
fn directories_are_searched_for_the_host_then_its_wildcard_crt_before_pem() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let (_, table) = watch::channel(Arc::new(HostTable::new()));
    let resolver = SniResolver::new(
        table,
        vec![first.path().to_path_buf(), second.path().to_path_buf()],
    );
    let der = |files: &TlsFiles| pem_der(&std::fs::read_to_string(&files.cert).expect("read"));
    let found = |host: &str| resolver.dir_lookup(host).map(|c| leaf(&c));

    assert_eq!(found("a.example.com"), None);
    // A wildcard `.pem` in the second directory.
    let (cert, key) = self_signed(&["*.example.com"]);
    let wildcard_pem = second.path().join("_.example.com.pem");
    write(&wildcard_pem, &format!("{cert}{key}"));
    assert_eq!(found("a.example.com"), Some(pem_der(&cert)));
    assert_eq!(found("a.b.example.com"), None, "one label only");
    // The wildcard in the first directory wins over the second's.
    let wild_first = pair(first.path(), "_.example.com", &["*.example.com"]);
    assert_eq!(found("a.example.com"), Some(der(&wild_first)));
    // The exact host wins over the wildcard, `.crt` + `.key` over `.pem`.
    let (cert, key) = self_signed(&["a.example.com"]);
    write(
        &second.path().join("a.example.com.pem"),
        &format!("{cert}{key}"),
    );
    assert_eq!(found("a.example.com"), Some(pem_der(&cert)));
    let exact = pair(second.path(), "a.example.com", &["a.example.com"]);
    assert_eq!(found("a.example.com"), Some(der(&exact)));
    // Names that are not plain hosts never become paths.
    assert_eq!(found("../a.example.com"), None);
    // And the resolver itself only serves hosts some app serves.
    assert!(resolver.certificate("a.example.com").is_none());
}
