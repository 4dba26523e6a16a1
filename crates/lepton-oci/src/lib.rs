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

mod archive;
mod cache;
mod client;
mod digest;
mod error;
/// Wrappers around crate-private parsers for the fuzz targets in `fuzz/`; not a stable API.
#[doc(hidden)]
pub mod fuzzing;
mod loader;
mod locks;
mod media;
mod progress;
mod pull;
mod push;
mod resolve;

pub use cache::OciCache;
pub use error::{OciError, error_chain};
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
pub fn parse_reference(s: &str) -> Result<oci_client::Reference, OciError> {
    s.trim()
        .parse::<oci_client::Reference>()
        .map_err(|e| OciError::InvalidReference {
            reference: s.to_string(),
            message: e.to_string(),
        })
}
