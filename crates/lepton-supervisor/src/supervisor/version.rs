//! One app version as the supervisor holds it: a [`Resident`] HTTP trigger — routable whether
//! or not it is loaded — and what its last load found (digest, routes).
//!
//! A version's loader pulls the app once (through the verified cache) and keeps the runnable
//! locked app in memory, so a version loaded again after an eviction only prepares its
//! components again (mapping their compiled code from the compile cache), without the registry.
//! A version prepared eagerly (preloaded, or replacing a loaded one) is installed already
//! loaded.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use futures::FutureExt;
use lepton_oci::{LoadSource, LoadedApp, error_chain};
use lepton_runtime::{Loaded, Resident};
use lepton_spec::AppSpec;
use lepton_trigger_http::HttpApp;

use super::prepare::{Check, prepare};
use super::{Inner, ReadyApp};
use crate::outcome::StartError;

/// What a version's load found.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub digest: String,
    pub routes: Vec<String>,
    pub from_cache_only: bool,
}

impl Facts {
    fn of(ready: &ReadyApp) -> Self {
        Self {
            digest: ready.digest.clone(),
            routes: ready
                .http
                .router()
                .routes()
                .iter()
                .map(|r| r.raw().to_string())
                .collect(),
            from_cache_only: ready.from_cache_only,
        }
    }
}

/// One version of one app.
#[derive(Clone)]
pub(super) struct Version {
    pub resident: Resident<HttpApp>,
    facts: Arc<Mutex<Option<Facts>>>,
    /// The app as pulled (kept for loads after an eviction), once it has been.
    pulled: Arc<Mutex<Option<LoadedApp>>>,
}

impl Version {
    /// A version of `spec` for `key` that loads when first used, from `pulled` when the app was
    /// already pulled.
    pub fn new(inner: &Arc<Inner>, key: &str, spec: &AppSpec, pulled: Option<LoadedApp>) -> Self {
        let facts: Arc<Mutex<Option<Facts>>> = Arc::default();
        let memo = Arc::new(Mutex::new(pulled));
        let pulled = memo.clone();
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let (key, spec, found) = (key.to_string(), spec.clone(), facts.clone());
        let resident = inner.residency.resident(
            &spec.name.clone(),
            Box::new(move || {
                let (weak, memo, found) = (weak.clone(), memo.clone(), found.clone());
                let (key, spec) = (key.clone(), spec.clone());
                async move {
                    let Some(inner) = weak.upgrade() else {
                        return Err("lepton is shutting down".to_string());
                    };
                    let pulled = lock(&memo).clone();
                    let loaded = match pulled {
                        Some(loaded) => loaded,
                        None => {
                            let loaded = pull(&inner, &spec).await.map_err(|e| error_chain(&e))?;
                            *lock(&memo) = Some(loaded.clone());
                            loaded
                        }
                    };
                    let ready = prepare(&inner, &key, &spec, loaded, Check::OnFirstRequest)
                        .await
                        .map_err(|e| error_chain(&e))?;
                    *lock(&found) = Some(Facts::of(&ready));
                    Ok(Loaded {
                        footprint: ready.footprint,
                        value: Arc::new(ready.http),
                    })
                }
                .boxed()
            }),
        );
        Self {
            resident,
            facts,
            pulled,
        }
    }

    /// Calls `f` with the app as pulled, if it has been (what the cache collector keeps).
    pub fn with_pulled(&self, f: impl FnOnce(&LoadedApp)) {
        if let Some(loaded) = lock(&self.pulled).as_ref() {
            f(loaded);
        }
    }

    /// Serve `ready` (prepared and checked already) without another load.
    pub fn install(&self, ready: ReadyApp) {
        *lock(&self.facts) = Some(Facts::of(&ready));
        self.resident.install(Loaded {
            footprint: ready.footprint,
            value: Arc::new(ready.http),
        });
    }

    /// What its last load found, if it has been loaded.
    pub fn facts(&self) -> Option<Facts> {
        lock(&self.facts).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pull `spec`'s reference (through the verified cache), counted in the app's metrics.
pub(super) async fn pull(inner: &Inner, spec: &AppSpec) -> Result<LoadedApp, StartError> {
    let pull = Instant::now();
    let loaded = inner.loader.load(&spec.reference).await;
    inner
        .config
        .metrics
        .pull_finished(&spec.name, pull.elapsed().as_secs_f64(), loaded.is_ok());
    Ok(loaded?)
}

/// Whether a load came from the cache alone.
pub(super) fn cache_only(loaded: &LoadedApp) -> bool {
    matches!(loaded.source, LoadSource::CacheOnly)
}
