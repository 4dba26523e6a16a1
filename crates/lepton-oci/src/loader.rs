//! [`AppLoader`]: reference → runnable app. Tags prefer the registry and fall back to the
//! verified cache when the registry cannot be reached (or fails with 5xx); digest-pinned
//! references are immutable, so a verified cached copy is used without the network.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oci_client::RegistryOperation;
use tracing::{debug, info, warn};

use crate::cache::{CacheHold, OciCache};
use crate::client::{Session, is_unreachable};
use crate::error::{OciError, blocking, error_chain};
use crate::locks::KeyedLocks;
use crate::pull::{self, CacheMiss};
use crate::{RegistryOptions, resolve};

/// Where a loaded app came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadSource {
    /// The manifest was fetched from the registry (layers may still have come from the cache).
    Registry,
    /// The app was loaded from the cache alone, without the registry: either the registry was
    /// unreachable (or failing), or the reference is digest-pinned and was already cached.
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
    /// Serialises materialising one locked app's assets (and committing one manifest dir)
    /// across concurrent loads; shared by clones.
    locks: KeyedLocks,
    /// Whether this process has removed the temp files killed loads left in the cache (once is
    /// enough: later ones can only come from other processes); shared by clones.
    swept: Arc<AtomicBool>,
}

impl AppLoader {
    /// A loader using `cache` and registry options `opts`.
    pub fn new(cache: OciCache, opts: RegistryOptions) -> Self {
        AppLoader {
            cache,
            opts,
            locks: KeyedLocks::default(),
            swept: Arc::default(),
        }
    }

    /// The cache this loader uses.
    pub fn cache(&self) -> &OciCache {
        &self.cache
    }

    /// Fetches (or reads from the cache) `reference` and returns its runnable form.
    ///
    /// - Digest-pinned references (`repo@sha256:…`) are immutable: a complete, verified cached
    ///   copy is used without contacting the registry; the network is used only when it is not
    ///   cached (or no longer verifies).
    /// - Tags go to the registry first and fall back to the cache when the registry cannot be
    ///   reached or answers with a server error (5xx).
    pub async fn load(&self, reference: &str) -> Result<LoadedApp, OciError> {
        let parsed = crate::parse_reference(reference)?;
        let name = parsed.whole();
        let _hold = self.hold().await?;
        if parsed.digest().is_some() {
            match self.read_cached(&parsed).await? {
                Ok(fetched) => match self.runnable(&name, fetched).await {
                    Ok((fetched, locked)) => {
                        let loaded = self.loaded(name, fetched, locked, LoadSource::CacheOnly);
                        return Ok(self.keep_alive(&parsed, loaded).await);
                    }
                    Err(e) => {
                        warn!(reference = %name, error = %error_chain(&e), "cached copy of the pinned app is unusable; fetching it from the registry");
                    }
                },
                Err(CacheMiss::NotCached(detail)) => {
                    debug!(reference = %name, %detail, "pinned app not cached; fetching it from the registry");
                }
                Err(CacheMiss::Invalid(e)) => {
                    warn!(reference = %name, error = %error_chain(&e), "cached copy of the pinned app is invalid; fetching it from the registry");
                }
            }
        }
        let online = match Session::connect(&parsed, &self.opts, RegistryOperation::Pull).await {
            Ok(session) => pull::fetch(&self.cache, &session, &self.locks).await,
            Err(e) => Err(e),
        };
        let (fetched, source) = match online {
            Ok(f) => (f, LoadSource::Registry),
            Err(e) if is_unreachable(&e) => {
                let cause = error_chain(&e);
                warn!(reference = %name, error = %cause, "registry unreachable or failing; loading the app from the cache");
                match self.read_cached(&parsed).await? {
                    Ok(f) => (f, LoadSource::CacheOnly),
                    Err(CacheMiss::NotCached(detail)) => {
                        return Err(OciError::Offline {
                            reference: name,
                            cause,
                            detail,
                        });
                    }
                    Err(CacheMiss::Invalid(err)) => return Err(err),
                }
            }
            Err(e) => return Err(e),
        };
        let (fetched, locked) = self.runnable(&name, fetched).await?;
        let loaded = self.loaded(name, fetched, locked, source);
        Ok(self.keep_alive(&parsed, loaded).await)
    }

    /// Marks what `loaded` uses in the cache as used now, while the load still holds the cache:
    /// another process's collection never takes what a load just read (see [`crate::gc`]).
    async fn keep_alive(&self, reference: &oci_client::Reference, loaded: LoadedApp) -> LoadedApp {
        let cache = self.cache.clone();
        let mut keep = crate::gc::Keep::new();
        keep.add_reference(reference.clone()).loaded(&loaded);
        // Best effort: a failure to touch only makes the entries look older than they are.
        let _ = blocking("marking the app's cache entries used", move || {
            cache.keep_alive(&keep);
            Ok(())
        })
        .await;
        loaded
    }

    /// A shared hold on the cache for one load (its temp files are safe from other processes'
    /// sweeps); until one succeeds, first sweep what loads killed mid-write left behind.
    async fn hold(&self) -> Result<CacheHold, OciError> {
        let (cache, swept) = (self.cache.clone(), self.swept.clone());
        blocking("locking the cache", move || {
            let (hold, did) = cache.hold(!swept.load(Ordering::Relaxed));
            if did {
                swept.store(true, Ordering::Relaxed);
            }
            Ok(hold)
        })
        .await
    }

    /// [`pull::read_cached`] on the blocking pool (it hashes files).
    async fn read_cached(
        &self,
        reference: &oci_client::Reference,
    ) -> Result<Result<pull::Fetched, CacheMiss>, OciError> {
        let (cache, reference) = (self.cache.clone(), reference.clone());
        blocking("reading the cache", move || {
            Ok(pull::read_cached(&cache, &reference))
        })
        .await
    }

    /// Resolves `fetched` into its runnable form (hashing, copies and fsyncs on the blocking
    /// pool), one load of a given app at a time.
    async fn runnable(
        &self,
        name: &str,
        fetched: pull::Fetched,
    ) -> Result<(pull::Fetched, lepton_app::LockedApp), OciError> {
        let _guard = self
            .locks
            .lock(&format!("assets:{}", fetched.locked_digest))
            .await;
        let (cache, name) = (self.cache.clone(), name.to_string());
        blocking("resolving the app", move || {
            let locked = resolve::runnable(&cache, &name, &fetched)?;
            Ok((fetched, locked))
        })
        .await
    }

    fn loaded(
        &self,
        reference: String,
        fetched: pull::Fetched,
        locked: lepton_app::LockedApp,
        source: LoadSource,
    ) -> LoadedApp {
        info!(%reference, manifest_digest = %fetched.manifest_digest, ?source, "loaded app");
        LoadedApp {
            reference,
            manifest_digest: fetched.manifest_digest,
            locked,
            source,
        }
    }
}
