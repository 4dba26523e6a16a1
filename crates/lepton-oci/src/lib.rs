//! OCI registry support for lepton: publish Spin apps and run them straight from references.
//!
//! Data flow, top to bottom:
//! - [`push`] converts a `spin.toml` into Spin's OCI artifact (Wasm/data/archive layers plus the
//!   locked-app layer) and publishes it, byte-compatible with `spin registry push`.
//! - [`AppLoader::load`] fetches a reference into the content-addressed [`OciCache`] (Spin's cache
//!   layout), verifying every blob's sha256 on download *and* on every load, and falls back to the
//!   cache when the registry is unreachable.
//! - The result is a runnable [`lepton_app::LockedApp`] whose sources are `file://` URLs of
//!   verified content ([`LoadedApp`]).
//! - [`gc`] keeps what running apps use fresh and removes cache entries no process has used for
//!   a grace period, safely while other processes share the cache.

mod archive;
mod cache;
mod client;
mod digest;
mod error;
/// Wrappers around crate-private parsers for the fuzz targets in `fuzz/`; not a stable API.
#[doc(hidden)]
pub mod fuzzing;
pub mod gc;
mod loader;
mod locks;
mod media;
mod progress;
mod pull;
mod push;
mod resolve;

pub use cache::OciCache;
pub use error::{OciError, error_chain};
pub use gc::{GcReport, Keep};
pub use loader::{AppLoader, LoadSource, LoadedApp};
pub use media::{
    ARCHIVE_MEDIA_TYPE, DATA_MEDIA_TYPE, IMAGE_CONFIG_MEDIA_TYPE, LOCKED_APP_DIGEST_LABEL,
    OCI_MANIFEST_MEDIA_TYPE, SPIN_APPLICATION_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};
pub use push::{PushOptions, PushOutcome, push, push_with_options};

/// How to reach registries.
///
/// Loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`, any port) always use plain HTTP;
/// everything else uses HTTPS unless listed here.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) to reach over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Use plain HTTP for every registry.
    pub insecure_all: bool,
}

/// Parses an OCI reference such as `ghcr.io/jane/hello:0.1.0` or `localhost:5000/app@sha256:…`.
///
/// A `@digest` is checked here and only `name[:tag]` goes through the library's parser: its
/// reference regex is costly on long inputs the first time each thread uses it (regex's PikeVM
/// allocates and zeroes ~5 MB of cache: 2–4 ms, measured by `bench/serve.sh` as the first
/// digest-pinned `PUT` of a process taking 9–18 ms instead of ~2 ms), and a digest alone makes a
/// reference 71+ characters long. The result is the same [`oci_client::Reference`].
pub fn parse_reference(s: &str) -> Result<oci_client::Reference, OciError> {
    let invalid = |message: String| OciError::InvalidReference {
        reference: s.to_string(),
        message,
    };
    let trimmed = s.trim();
    let Some((name, digest)) = trimmed.rsplit_once('@') else {
        return trimmed
            .parse::<oci_client::Reference>()
            .map_err(|e| invalid(e.to_string()));
    };
    check_digest(digest).map_err(|m| invalid(m.to_string()))?;
    let base = name
        .parse::<oci_client::Reference>()
        .map_err(|e| invalid(e.to_string()))?;
    // The parser fills in `latest` when no tag is written; keep a tag only if it was.
    let tagged = name
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    let (registry, repository) = (base.registry().to_string(), base.repository().to_string());
    Ok(match base.tag().filter(|_| tagged) {
        Some(tag) => oci_client::Reference::with_tag_and_digest(
            registry,
            repository,
            tag.to_string(),
            digest.to_string(),
        ),
        None => oci_client::Reference::with_digest(registry, repository, digest.to_string()),
    })
}

/// A digest as the OCI reference grammar and its parser accept it: `sha256`, `sha384` or
/// `sha512`, `:`, and that many hex digits.
fn check_digest(digest: &str) -> Result<(), &'static str> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or("invalid digest format: expected <algorithm>:<hex>")?;
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != len {
        return Err("invalid digest length");
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid digest: not hexadecimal");
    }
    Ok(())
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn digest_references_parse_as_the_library_parses_them() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for s in [
            format!("127.0.0.1:5000/hello@{d}"),
            format!("127.0.0.1:5000/hello:v1@{d}"),
            format!("ghcr.io/jane/apps/hello@{d}"),
            format!("hello@{d}"),
            format!("localhost:5000/a/b:1.0@sha512:{}", "0f".repeat(64)),
            "ghcr.io/jane/hello:0.1.0".to_string(),
            "hello".to_string(),
        ] {
            let ours = parse_reference(&s).expect("valid");
            let theirs = s.parse::<oci_client::Reference>().expect("valid");
            assert_eq!(ours, theirs, "{s}");
        }
    }

    #[test]
    fn bad_digests_and_names_are_refused() {
        for s in [
            "hello@sha256:abc".to_string(),
            format!("hello@md5:{}", "a".repeat(32)),
            format!("hello@sha256:{}", "g".repeat(64)),
            format!("hello@{}", "a".repeat(64)),
            format!("Bad Name@sha256:{}", "a".repeat(64)),
            format!("@sha256:{}", "a".repeat(64)),
        ] {
            assert!(parse_reference(&s).is_err(), "{s} accepted");
            assert!(
                s.parse::<oci_client::Reference>().is_err(),
                "{s}: the library accepts it"
            );
        }
    }
}
