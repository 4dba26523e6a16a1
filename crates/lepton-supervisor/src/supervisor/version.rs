//! One app version as the supervisor holds it: a [`Resident`] HTTP trigger — routable whether
//! or not it is loaded — what its last load found (digest, routes), and its event triggers
//! (Redis, cron) until they are started.
//!
//! A version's loader pulls the app once (through the verified cache) and keeps the runnable
//! locked app in memory, so a version loaded again after an eviction only prepares its
//! components again (mapping their compiled code from the compile cache), without the registry.
//! A version prepared eagerly (preloaded, or replacing a loaded one) is installed already
//! loaded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use futures::FutureExt;
use lepton_oci::{LoadSource, LoadedApp, error_chain};
use lepton_runtime::{Loaded, Resident};
use lepton_spec::AppSpec;
use lepton_trigger_http::HttpApp;

use super::prepare::{Check, prepare};
use super::triggers::{EventTriggers, activate_triggers, has_event_triggers};
use super::{Inner, ReadyApp};
use crate::outcome::StartError;

/// What a version's load found.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub digest: String,
    pub routes: Vec<String>,
    pub triggers: Vec<String>,
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
            triggers: ready.trigger_types.clone(),
            from_cache_only: ready.from_cache_only,
        }
    }
}

/// One version of one app.
#[derive(Clone)]
pub(super) struct Version {
    /// Its number, increasing with every version the supervisor makes (event triggers never go
    /// back to an older version whose load ends late).
    pub seq: u64,
    pub resident: Resident<HttpApp>,
    /// Its event triggers, prepared with an eager load and started once it is current.
    events: Arc<Mutex<Option<EventTriggers>>>,
    facts: Arc<Mutex<Option<Facts>>>,
    /// The app as pulled (kept for loads after an eviction), once it has been.
    pulled: Arc<Mutex<Option<LoadedApp>>>,
}

impl Version {
    /// A version of `spec` for `key` that loads when first used, from `pulled` when the app was
    /// already pulled.
    pub fn new(inner: &Arc<Inner>, key: &str, spec: &AppSpec, pulled: Option<LoadedApp>) -> Self {
        let seq = inner.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let report = super::changes::reporter(inner, key);
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
                    let mut ready = prepare(&inner, &key, &spec, loaded, Check::OnFirstRequest)
                        .await
                        .map_err(|e| error_chain(&e))?;
                    *lock(&found) = Some(Facts::of(&ready));
                    // A version loaded on demand (or after a probe found event triggers) starts
                    // them itself, if it is still the app's current version.
                    let events = ready.events.take();
                    activate_triggers(&inner, &key, &spec.name, seq, events).await;
                    Ok(Loaded {
                        footprint: ready.footprint,
                        reload_when: ready.optimized.take(),
                        value: Arc::new(ready.http),
                    })
                }
                .boxed()
            }),
        );
        resident.on_change(report);
        Self {
            seq,
            resident,
            events: Arc::default(),
            facts,
            pulled,
        }
    }

    /// For a version that loads on demand: find out in the background (one pull, at most
    /// [`PROBES`] at once) whether the app has event triggers, which must run without requests;
    /// if it has, keep the pull, pin the version and load it now.
    pub fn probe(&self, inner: &Arc<Inner>, spec: &AppSpec) {
        let (weak, version, spec) = (Arc::downgrade(inner), self.clone(), spec.clone());
        let probing = Probing::start(&inner.probing);
        tokio::spawn(async move {
            let _probing = probing;
            let Some(inner) = weak.upgrade() else { return };
            let Ok(_permit) = inner.probes.acquire().await else {
                return;
            };
            if version.resident.loaded().is_some() || lock(&version.pulled).is_some() {
                return;
            }
            // A failed pull is left to the first request, which reports it.
            let Ok(loaded) = pull(&inner, &spec).await else {
                return;
            };
            if has_event_triggers(&loaded.locked) {
                tracing::info!(app = %spec.name, "the app has event triggers: loading it now and keeping it loaded");
                *lock(&version.pulled) = Some(loaded);
                version.resident.pin();
                version.resident.preload();
            }
        });
    }

    /// Calls `f` with the app as pulled, if it has been (what the cache collector keeps).
    pub fn with_pulled(&self, f: impl FnOnce(&LoadedApp)) {
        if let Some(loaded) = lock(&self.pulled).as_ref() {
            f(loaded);
        }
    }

    /// Serve `ready` (prepared and checked already) without another load; its event triggers
    /// wait for [`Version::take_events`].
    pub fn install(&self, mut ready: ReadyApp) {
        *lock(&self.facts) = Some(Facts::of(&ready));
        if let Some(events) = ready.events.take() {
            self.resident.pin();
            *lock(&self.events) = Some(events);
        }
        self.resident.install(Loaded {
            footprint: ready.footprint,
            reload_when: ready.optimized.take(),
            value: Arc::new(ready.http),
        });
    }

    /// The event triggers [`Version::install`] kept, to start now that it is current.
    pub fn take_events(&self) -> Option<EventTriggers> {
        lock(&self.events).take()
    }

    /// What its last load found, if it has been loaded.
    pub fn facts(&self) -> Option<Facts> {
        lock(&self.facts).clone()
    }
}

/// Counts a probe from its start to its end.
struct Probing(Arc<AtomicUsize>);

impl Probing {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Probing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
