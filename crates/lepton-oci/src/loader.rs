//! [`AppLoader`]: reference → runnable app, preferring the registry and falling back to the
//! verified cache when the registry cannot be reached.

use oci_client::RegistryOperation;
use tracing::{info, warn};

use crate::cache::OciCache;
use crate::client::{Session, is_unreachable};
use crate::error::OciError;
use crate::pull::{self, CacheMiss};
use crate::{RegistryOptions, resolve};

/// Where a loaded app came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// The manifest was fetched from the registry (layers may still have come from the cache).
    Registry,
    /// The registry was unreachable; the app was loaded from the cache alone.
    CacheOnly,
}

/// A runnable app loaded from a registry reference.
#[derive(Clone, Debug)]
pub struct LoadedApp {
    /// The fully qualified reference, e.g. `docker.io/library/x:latest`.
    pub reference: String,
    /// `sha256:` digest of the OCI manifest.
    pub manifest_digest: String,
    /// The runnable LockedApp: `file://` sources of verified content.
    pub locked: lepton_app::LockedApp,
    /// Registry or cache.
    pub source: LoadSource,
}

/// Loads apps from registries through an [`OciCache`].
#[derive(Clone, Debug)]
pub struct AppLoader {
    cache: OciCache,
    opts: RegistryOptions,
}

impl AppLoader {
    /// A loader using `cache` and registry options `opts`.
    pub fn new(cache: OciCache, opts: RegistryOptions) -> Self {
        AppLoader { cache, opts }
    }

    /// The cache this loader uses.
    pub fn cache(&self) -> &OciCache {
        &self.cache
    }

    /// Fetches (or reads from the cache) `reference` and returns its runnable form.
    pub async fn load(&self, reference: &str) -> Result<LoadedApp, OciError> {
        let parsed = crate::parse_reference(reference)?;
        let name = parsed.whole();
        let online = match Session::connect(&parsed, &self.opts, RegistryOperation::Pull).await {
            Ok(session) => pull::fetch(&self.cache, &session).await,
            Err(e) => Err(e),
        };
        let (fetched, source) = match online {
            Ok(f) => (f, LoadSource::Registry),
            Err(e) if is_unreachable(&e) => {
                warn!(reference = %name, error = %e, "registry unreachable; loading the app from the cache");
                match pull::read_cached(&self.cache, &parsed) {
                    Ok(f) => (f, LoadSource::CacheOnly),
                    Err(CacheMiss::NotCached(detail)) => {
                        return Err(OciError::Offline {
                            reference: name,
                            cause: e.to_string(),
                            detail,
                        });
                    }
                    Err(CacheMiss::Invalid(err)) => return Err(err),
                }
            }
            Err(e) => return Err(e),
        };
        let locked = resolve::runnable(&self.cache, &name, &fetched)?;
        info!(reference = %name, manifest_digest = %fetched.manifest_digest, ?source, "loaded app");
        Ok(LoadedApp {
            reference: name,
            manifest_digest: fetched.manifest_digest,
            locked,
            source,
        })
    }
}
