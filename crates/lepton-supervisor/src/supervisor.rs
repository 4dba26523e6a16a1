//! [`AppSupervisor`]: turns a desired set of [`AppSpec`]s into running apps — start, stop and
//! zero-downtime replace — for the [`crate::Reconciler`], which every source of desired state
//! feeds (`lepton`'s manifest once, `tauon`'s directory and `lepton serve`'s database
//! continuously).
//!
//! Every app has a key (its identity: an entry of a manifest, or a tauon file). Each operation on
//! one key is serialized behind that key's lock, and a newer desired state for a key supersedes
//! older ones still waiting; operations on different keys run concurrently.
//!
//! Starting or replacing an app is: claim its address and state_dir (refused, naming the other
//! key, when another app holds either) → pull (through the content-addressed cache) → prepare its
//! components on the shared engine → instantiate each once as a check → build its HTTP router →
//! serve. That is a *preloaded* start (`"preload": true`, or the host's default); otherwise the
//! app is routable at once and all of that but the claims happens on its first request (see
//! [`lepton_runtime::residency`]: one load shared by concurrent first requests, idle versions
//! evicted under a memory budget and an idle timeout, loaded again on their next request). A
//! replace of a version that is loaded prepares the new one first either way, so a version that
//! cannot start never replaces one that serves. A replace on the same address publishes the new version in the listener's `watch`
//! channel: new requests see it at once while in-flight ones finish on the old version, which is
//! released when the last of them is done (waited for up to the drain timeout, after which the
//! requests still running on it are cut off). A replace that
//! moves the app binds the new address first and then stops the old listener (draining it).
//! Whatever fails, the version already serving keeps serving.
//!
//! Triggers: every trigger type follows one lifecycle (prepare with the version, switch when it
//! becomes current, drain the version left behind through [`drain`]). HTTP is switched through
//! the listeners' `watch` channels and the host table; Redis and cron through the
//! `lepton-trigger` seam, per app across its versions ([`triggers`]). A version with Redis or cron
//! triggers runs without requests, so it is loaded at once and pinned (never evicted); an app
//! that loads on demand is probed in the background (one pull) to find out. An app whose
//! triggers are all Redis or cron needs neither an address nor hosts.
//!
//! Apps with `hosts` are also served on the shared ingress: the supervisor publishes a
//! [`HostTable`] (host → the app's version channel, and the certificate files of its `tls`) that
//! `--http` and `--https` listeners route by, so a replace reaches them at once; an app may have
//! hosts, its own address, or both. Hosts are claimed like addresses: a host held by another key
//! is refused, naming it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lepton_oci::AppLoader;
use lepton_runtime::{AppLimits, CompileCache, Residency, ResidencyConfig, RuntimeEngine};
use lepton_trigger_http::{
    AppFront, ConnectionLimits, HostTable, HttpApp, HttpListener, ServeTarget,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod changes;
mod claims;
mod drain;
mod gc;
mod hosts;
mod prepare;
mod triggers;
mod version;

use crate::outcome::log_transition;
pub use crate::outcome::{LoadFailure, RunningAppStatus, StartError, Transition};
use claims::{ClaimBook, Claims};
pub use gc::GcConfig;
use hosts::{HostPublisher, publish_hosts, route_hosts};
use lepton_spec::AppSpec;
use prepare::{Check, prepare};
use triggers::{EventTriggers, SharedTriggers, made_current};
use version::{Version, pull};

/// How many apps that load on demand are probed for event triggers at once (each probe is one
/// pull, from the cache or the registry).
const PROBES: usize = 4;

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// How long in-flight requests get to finish when an app stops or is replaced.
    pub drain_timeout: Duration,
    /// Host-wide limits for apps that do not set their own.
    pub default_limits: AppLimits,
    /// Connection hygiene for every listener.
    pub connection_limits: ConnectionLimits,
    /// Where apps' request, pull and compile metrics go.
    pub metrics: lepton_metrics::Metrics,
    /// A shared plain-HTTP ingress that self requests of apps without an address of their own go
    /// through (with one of their hosts as `Host`); without one they are refused.
    pub self_ingress: Option<SocketAddr>,
    /// Whether apps that do not say (`preload`) load as soon as they are desired (`true`) or on
    /// their first request.
    pub preload_by_default: bool,
    /// When loaded apps are evicted.
    pub residency: ResidencyConfig,
    /// When the cache is kept alive and collected (`None`: never; see [`GcConfig`]).
    pub gc: Option<GcConfig>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
            default_limits: AppLimits::default(),
            connection_limits: ConnectionLimits::default(),
            metrics: lepton_metrics::Metrics::new(),
            self_ingress: None,
            preload_by_default: true,
            residency: ResidencyConfig::default(),
            gc: Some(GcConfig::default()),
        }
    }
}

struct RunningApp {
    spec: AppSpec,
    /// Its status but for what loading finds (digest, routes) and its load state.
    status: RunningAppStatus,
    version: Version,
    current: watch::Sender<lepton_runtime::Resident<HttpApp>>,
    /// Its own listener (stop switch and task), if it has an address.
    listener: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

/// Per-key serialization.
#[derive(Default)]
struct Slot {
    lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    pending: AtomicUsize,
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Arc<Slot>>,
    holdings: ClaimBook,
    running: HashMap<String, RunningApp>,
    /// Each app's gate and metrics, kept across its versions (and address moves).
    fronts: HashMap<String, AppFront>,
    /// Each app's running event triggers (Redis, cron), kept across its versions.
    triggers: HashMap<String, SharedTriggers>,
    /// The shared ingress's host table, kept in step with `running` (one app's entries change
    /// per operation) and published as a clone, which is O(1).
    hosts: HostTable,
    shutting_down: bool,
}

struct Inner {
    engine: Arc<RuntimeEngine>,
    loader: Arc<AppLoader>,
    compile_cache: CompileCache,
    config: SupervisorConfig,
    state: Mutex<State>,
    /// Hosts → apps, for the shared ingress; republished whenever a running app changes.
    hosts: watch::Sender<Arc<HostTable>>,
    /// Asks for (and reports) republishing `hosts`, one rebuild for a burst of changes.
    publisher: HostPublisher,
    /// Which versions are loaded; evicts idle ones.
    residency: Residency,
    /// The last version number given out ([`Version::seq`]).
    versions: AtomicU64,
    /// Bounds the background probes of apps that load on demand.
    probes: tokio::sync::Semaphore,
    /// Probes started and not finished.
    probing: Arc<AtomicUsize>,
    load_changes: Arc<changes::LoadChanges>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the publisher task.
        self.publisher.wake.notify_one();
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts, replaces, tracks and stops apps on one shared engine. Cheap to clone (a handle).
#[derive(Clone)]
pub struct AppSupervisor {
    inner: Arc<Inner>,
}

struct ReadyApp {
    /// Its Redis and cron triggers, if any (started once it is current).
    events: Option<EventTriggers>,
    /// The trigger types it has, in the order they first appear.
    trigger_types: Vec<String>,
    digest: String,
    from_cache_only: bool,
    /// Bytes of compiled code it maps (its weight in the memory budget).
    footprint: u64,
    /// On quick (Winch) code: resolves when its optimized code is ready to load.
    optimized: Option<futures::future::BoxFuture<'static, bool>>,
    http: HttpApp,
}

impl AppSupervisor {
    /// A supervisor with nothing running.
    pub fn new(
        engine: Arc<RuntimeEngine>,
        loader: Arc<AppLoader>,
        compile_cache: CompileCache,
        config: SupervisorConfig,
    ) -> Self {
        let residency = Residency::with_metrics(config.residency, config.metrics.residency());
        let inner = Arc::new(Inner {
            engine,
            loader,
            compile_cache,
            config,
            state: Mutex::new(State::default()),
            hosts: watch::Sender::new(Arc::new(HostTable::new())),
            publisher: HostPublisher::default(),
            residency,
            versions: AtomicU64::new(0),
            probes: tokio::sync::Semaphore::new(PROBES),
            probing: Arc::default(),
            load_changes: Arc::default(),
        });
        hosts::spawn_publisher(&inner);
        gc::spawn(&inner);
        Self { inner }
    }

    /// Which versions are loaded, and their eviction.
    pub fn residency(&self) -> &Residency {
        &self.inner.residency
    }

    /// Hosts → apps, for shared ingress listeners ([`ServeTarget::Hosts`]).
    pub fn host_table(&self) -> watch::Receiver<Arc<HostTable>> {
        self.inner.hosts.subscribe()
    }

    /// Make app `key` match `desired`: `None` stops it; `Some(spec)` starts it, replaces the
    /// version serving (zero downtime), or does nothing when the same digest and settings are
    /// already serving.
    ///
    /// The address and state_dir claim is checked when this is called (not when the returned
    /// future first runs), so calls made in order claim in order.
    pub fn apply(
        &self,
        key: String,
        desired: Option<AppSpec>,
    ) -> impl Future<Output = Result<Transition, LoadFailure>> + Send + 'static {
        let inner = self.inner.clone();
        let claimed = claim(&inner, &key, desired.as_ref());
        async move {
            let (slot, generation) = match claimed {
                Ok(c) => c,
                Err(error) => return Err(failure(&key, desired.as_ref(), error)),
            };
            let result = run_op(&inner, &slot, &key, desired.clone(), generation).await;
            slot.pending.fetch_sub(1, Ordering::SeqCst);
            match result {
                Ok(t) => {
                    log_transition(&key, &t);
                    Ok(t)
                }
                Err(error) => {
                    let f = failure(&key, desired.as_ref(), error);
                    tracing::error!(key = %f.key, app = %f.app, reference = %f.reference, error = %f.describe(), "app failed to start or update; the version serving (if any) keeps serving");
                    Err(f)
                }
            }
        }
    }

    /// Move app `from` to key `to` without touching what serves (a renamed tauon file). Returns
    /// `false`, changing nothing, when `from` has operations in flight or `to` is in use.
    pub fn rename(&self, from: &str, to: &str) -> bool {
        let mut state = self.inner.state();
        if state.slots.contains_key(to) || state.running.contains_key(to) {
            return false;
        }
        let Some(slot) = state.slots.get(from).cloned() else {
            return false;
        };
        if slot.pending.load(Ordering::SeqCst) != 0 || slot.lock.try_lock().is_err() {
            return false;
        }
        state.slots.remove(from);
        state.slots.insert(to.to_string(), slot);
        state.holdings.rename(from, to);
        if let Some(triggers) = state.triggers.remove(from) {
            state.triggers.insert(to.to_string(), triggers);
        }
        if let Some(mut app) = state.running.remove(from) {
            app.status.key = to.to_string();
            tracing::info!(from, to, app = %app.status.name, reference = %app.status.reference, digest = %app.status.digest, "app renamed");
            state.running.insert(to.to_string(), app);
        }
        true
    }

    /// The app with key `key`, if it is serving.
    pub fn app_status(&self, key: &str) -> Option<RunningAppStatus> {
        self.inner.state().running.get(key).map(RunningApp::report)
    }

    /// The apps now serving, sorted by key.
    pub fn status(&self) -> Vec<RunningAppStatus> {
        let state = self.inner.state();
        let mut all: Vec<_> = state.running.values().map(RunningApp::report).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Stop accepting on every app, let in-flight requests finish (bounded by the drain timeout),
    /// and return when all listeners are done. Operations still loading are abandoned when they
    /// finish.
    pub async fn shutdown(&self) {
        let (apps, triggers): (Vec<RunningApp>, Vec<(String, SharedTriggers)>) = {
            let mut state = self.inner.state();
            state.shutting_down = true;
            state.hosts = HostTable::new();
            (
                state.running.drain().map(|(_, app)| app).collect(),
                state.triggers.drain().collect(),
            )
        };
        // Event triggers stop taking events first, then finish what they run (bounded by the
        // drain timeout) alongside the listeners' requests.
        let drain_timeout = self.inner.config.drain_timeout;
        let stopped = futures::future::join_all(triggers.into_iter().map(|(key, t)| async move {
            if let Some((retired, cut)) = t.lock().await.stop().await {
                drain::wait(
                    &key,
                    "event triggers",
                    triggers::drained(retired),
                    &cut,
                    drain_timeout,
                )
                .await;
            }
        }));
        self.inner.hosts.send_replace(Arc::new(HostTable::new()));
        for app in &apps {
            if let Some((stop, _)) = &app.listener {
                let _ = stop.send(true);
            }
        }
        let listeners = async {
            for app in apps {
                if let Some((_, task)) = app.listener
                    && let Err(err) = task.await
                {
                    tracing::warn!(app = %app.status.name, error = %err, "listener task ended abnormally");
                }
                tracing::info!(key = %app.status.key, app = %app.status.name, reference = %app.status.reference, digest = %app.status.digest, "app stopped (shutdown)");
            }
        };
        futures::future::join(stopped, listeners).await;
    }
}

fn failure(key: &str, desired: Option<&AppSpec>, error: StartError) -> LoadFailure {
    LoadFailure {
        key: key.to_string(),
        app: desired.map(|s| s.name.clone()).unwrap_or_default(),
        reference: desired.map(|s| s.reference.clone()).unwrap_or_default(),
        error,
    }
}

/// Check `desired`'s address and state_dir against every other key's holdings, record it as
/// this key's latest target, and take a generation number.
fn claim(
    inner: &Inner,
    key: &str,
    desired: Option<&AppSpec>,
) -> Result<(Arc<Slot>, u64), StartError> {
    let mut state = inner.state();
    if state.shutting_down {
        return Err(StartError::ShuttingDown);
    }
    if let Some(spec) = desired
        && let Some(conflict) = state.holdings.conflict(key, spec)
    {
        return Err(conflict);
    }
    let slot = state.slots.entry(key.to_string()).or_default().clone();
    let generation = slot.generation.fetch_add(1, Ordering::SeqCst) + 1;
    slot.pending.fetch_add(1, Ordering::SeqCst);
    state
        .holdings
        .update(key, |h| h.latest = desired.map(Claims::of));
    Ok((slot, generation))
}

async fn run_op(
    inner: &Arc<Inner>,
    slot: &Slot,
    key: &str,
    desired: Option<AppSpec>,
    generation: u64,
) -> Result<Transition, StartError> {
    let _serial = slot.lock.lock().await;
    if slot.generation.load(Ordering::SeqCst) != generation {
        return Ok(Transition::Superseded);
    }
    {
        inner
            .state()
            .holdings
            .update(key, |h| h.executing = h.latest.take());
    }
    let result = execute(inner, key, desired).await;
    // Whatever happened, this key now holds exactly what it serves.
    let mut state = inner.state();
    let serving = state.running.get(key).map(|r| Claims::of(&r.spec));
    let empty = state.holdings.update(key, |h| {
        h.executing = None;
        h.running = serving;
    });
    if empty && slot.generation.load(Ordering::SeqCst) == generation {
        state.slots.remove(key);
    }
    result
}

async fn execute(
    inner: &Arc<Inner>,
    key: &str,
    desired: Option<AppSpec>,
) -> Result<Transition, StartError> {
    let Some(spec) = desired else {
        let (app, triggers) = {
            let mut state = inner.state();
            state.fronts.remove(key);
            let app = state.running.remove(key);
            if let Some(app) = &app {
                inner.config.metrics.remove_app(&app.spec.name);
                for host in &app.spec.hosts {
                    state.hosts.remove(host);
                }
            }
            (app, state.triggers.remove(key))
        };
        if let Some(triggers) = triggers
            && let Some((retired, cut)) = triggers.lock().await.stop().await
        {
            let drained = triggers::drained(retired);
            drain::in_background(
                key.to_string(),
                "event triggers",
                drained,
                cut,
                inner.config.drain_timeout,
            );
        }
        return Ok(match app {
            Some(app) => {
                if !app.spec.hosts.is_empty() {
                    publish_hosts(inner).await;
                }
                let status = app.report();
                stop_app(app, inner.config.drain_timeout).await;
                Transition::Stopped(status)
            }
            None => Transition::NotRunning,
        });
    };
    let before = inner
        .state()
        .running
        .get(key)
        .map(|r| (r.spec.clone(), r.report(), r.version.clone()));
    // An app nothing can send a request to (no address, no hosts: all its triggers are Redis
    // or cron) is loaded at once.
    let preload = spec.preload.unwrap_or(inner.config.preload_by_default)
        || (spec.address.is_none() && spec.hosts.is_empty());
    let probe = !preload;
    let old_loaded = before
        .as_ref()
        .is_some_and(|(_, _, v)| v.resident.loaded().is_some());
    let version = if preload || old_loaded {
        // Prepared (and checked) before it serves: preloaded, or replacing a loaded version
        // that must keep serving if this one cannot start.
        let loaded = pull(inner, &spec).await?;
        if let Some((old_spec, old_status, old_version)) = &before
            && *old_spec == spec
            && old_version
                .facts()
                .is_some_and(|f| f.digest == loaded.manifest_digest)
        {
            if preload {
                old_version.resident.preload();
            }
            return Ok(Transition::Unchanged(old_status.clone()));
        }
        let ready = prepare(inner, key, &spec, loaded.clone(), Check::Now).await?;
        let version = Version::new(inner, key, &spec, Some(loaded));
        version.install(ready);
        version
    } else {
        if let Some((old_spec, old_status, _)) = &before
            && *old_spec == spec
        {
            return Ok(Transition::Unchanged(old_status.clone()));
        }
        Version::new(inner, key, &spec, None)
    };
    let status = RunningAppStatus {
        key: key.to_string(),
        name: spec.name.clone(),
        reference: spec.reference.clone(),
        digest: String::new(),
        address: spec.address,
        hosts: spec.hosts.clone(),
        state_dir: spec.state_dir.clone(),
        routes: Vec::new(),
        triggers: Vec::new(),
        from_cache_only: false,
        limits: spec.limits.over(&inner.config.default_limits),
        load: lepton_runtime::ResidentState::Idle,
    };
    let started = version.clone();
    let routed_hosts = !spec.hosts.is_empty()
        || before
            .as_ref()
            .is_some_and(|(old_spec, _, _)| !old_spec.hosts.is_empty());
    match before {
        Some((old_spec, previous, _)) if old_spec.address == spec.address => {
            // Same address: publish the new version to the listener already serving.
            let mut status = status;
            // The address actually bound (port 0 picked one) stays the same.
            status.address = previous.address;
            let (old, current) = {
                let mut state = inner.state();
                if state.shutting_down {
                    return Err(StartError::ShuttingDown);
                }
                let State { running, hosts, .. } = &mut *state;
                let Some(app) = running.get_mut(key) else {
                    return Err(StartError::ShuttingDown);
                };
                let old = app.current.send_replace(version.resident.clone());
                let old_spec = std::mem::replace(&mut app.spec, spec);
                app.status = status;
                app.version = version;
                route_hosts(hosts, &old_spec.hosts, app);
                (old, app.report())
            };
            if routed_hosts {
                publish_hosts(inner).await;
            }
            retire(&previous, &old, inner.config.drain_timeout);
            made_current(inner, key, &started, probe).await;
            Ok(Transition::Replaced { previous, current })
        }
        before => {
            // New app, or moving: bind the new address before releasing the old one.
            let listener = match spec.address {
                Some(address) => Some(
                    HttpListener::bind(address)
                        .await
                        .map_err(|source| StartError::Listen { address, source })?,
                ),
                None => None,
            };
            // The address actually bound (port 0 picks one).
            let mut status = status;
            status.address = listener.as_ref().map(HttpListener::local_addr);
            let (current, current_rx) = watch::channel(version.resident.clone());
            let (old, report) = {
                let mut state = inner.state();
                if state.shutting_down {
                    return Err(StartError::ShuttingDown);
                }
                let listener = listener.map(|listener| {
                    let (stop, stop_rx) = watch::channel(false);
                    let task = tokio::spawn(listener.serve(
                        ServeTarget::App(current_rx),
                        stop_rx,
                        inner.config.drain_timeout,
                        inner.config.connection_limits,
                    ));
                    (stop, task)
                });
                let app = RunningApp {
                    spec,
                    status,
                    version,
                    current,
                    listener,
                };
                let report = app.report();
                let old_hosts = state
                    .running
                    .get(key)
                    .map(|old| old.spec.hosts.clone())
                    .unwrap_or_default();
                route_hosts(&mut state.hosts, &old_hosts, &app);
                (state.running.insert(key.to_string(), app), report)
            };
            if routed_hosts {
                publish_hosts(inner).await;
            }
            made_current(inner, key, &started, probe).await;
            match (before, old) {
                (Some((_, previous, _)), Some(old)) => {
                    stop_app(old, inner.config.drain_timeout).await;
                    Ok(Transition::Replaced {
                        previous,
                        current: report,
                    })
                }
                _ => Ok(Transition::Started(report)),
            }
        }
    }
}

impl RunningApp {
    /// Its status now: what its version's last load found, and where its load is.
    fn report(&self) -> RunningAppStatus {
        let mut status = self.status.clone();
        if let Some(facts) = self.version.facts() {
            status.digest = facts.digest;
            status.routes = facts.routes;
            status.triggers = facts.triggers;
            status.from_cache_only = facts.from_cache_only;
        }
        status.load = self.version.resident.state();
        status
    }
}

/// Let the requests still running on a replaced version finish (up to `drain`), then cut off
/// what remains; a version that was not loaded has nothing to wait for.
fn retire(previous: &RunningAppStatus, old: &lepton_runtime::Resident<HttpApp>, drain: Duration) {
    // Values the version let go of while requests ran on them (a reload on optimized code, a
    // busy eviction) are drained and cut off like the loaded one.
    // One drain for all of them: released when the last request on any lets go; past the
    // timeout, every one is cut off.
    let values: Vec<_> = old.evict().into_iter().chain(old.superseded()).collect();
    if values.is_empty() {
        return;
    }
    let cut_off = lepton_runtime::CutOff::default();
    let switches: Vec<_> = values.iter().map(|v| v.cut_off_switch().clone()).collect();
    drain::forward_cut(&cut_off, switches, drain + Duration::from_secs(1));
    let released = futures::future::join_all(values.into_iter().map(drain::http_released));
    let key = format!("{} ({})", previous.key, previous.digest);
    drain::in_background(
        key,
        "http",
        async move {
            released.await;
        },
        cut_off,
        drain,
    );
}

/// Stop an app that is no longer routed to: stop its own listener (if any) and wait for its
/// in-flight requests there (bounded by the drain timeout), then let the requests still using
/// its version (on the shared ingress) finish in the background, cutting off whatever still
/// runs at the drain timeout (a loop, a request whose client left).
async fn stop_app(app: RunningApp, drain: Duration) {
    let status = app.report();
    if let Some((stop, task)) = app.listener {
        let _ = stop.send(true);
        if let Err(err) = task.await {
            tracing::warn!(app = %app.status.name, error = %err, "listener task ended abnormally");
        }
    }
    let old = app.current.borrow().clone();
    drop(app.current);
    drop(app.version);
    retire(&status, &old, drain);
}

#[cfg(test)]
pub(crate) mod tests;
