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
//! serve. A replace on the same address publishes the new version in the listener's `watch`
//! channel: new requests see it at once while in-flight ones finish on the old version, which is
//! released when the last of them is done (waited for up to the drain timeout, after which the
//! requests still running on it are cut off). A replace that
//! moves the app binds the new address first and then stops the old listener (draining it).
//! Whatever fails, the version already serving keeps serving.
//!
//! Apps with `hosts` are also served on the shared ingress: the supervisor publishes a
//! [`HostTable`] (host → the app's version channel, and the certificate files of its `tls`) that
//! `--http` and `--https` listeners route by, so a replace reaches them at once; an app may have
//! hosts, its own address, or both. Hosts are claimed like addresses: a host held by another key
//! is refused, naming it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lepton_oci::AppLoader;
use lepton_runtime::{AppLimits, CompileCache, RuntimeEngine};
use lepton_trigger_http::tls::TlsFiles;
use lepton_trigger_http::{
    AppFront, ConnectionLimits, HostTable, HttpApp, HttpListener, ServeTarget,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod prepare;

use crate::outcome::log_transition;
pub use crate::outcome::{LoadFailure, RunningAppStatus, StartError, Transition};
use lepton_spec::{AppSpec, addresses_conflict};
use prepare::prepare;

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
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
            default_limits: AppLimits::default(),
            connection_limits: ConnectionLimits::default(),
            metrics: lepton_metrics::Metrics::new(),
            self_ingress: None,
        }
    }
}

struct RunningApp {
    spec: AppSpec,
    status: RunningAppStatus,
    current: watch::Sender<Arc<HttpApp>>,
    /// Its own listener (stop switch and task), if it has an address.
    listener: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

/// What an app claims: its own address, its data and its hosts.
#[derive(Debug, Clone)]
struct Claims {
    address: Option<SocketAddr>,
    state_dir: PathBuf,
    hosts: Vec<String>,
}

impl Claims {
    fn of(spec: &AppSpec) -> Self {
        Self {
            address: spec.address,
            state_dir: spec.state_dir.clone(),
            hosts: spec.hosts.clone(),
        }
    }
}

/// What one key holds or is about to hold, for conflict checks.
#[derive(Debug, Clone, Default)]
struct Holdings {
    running: Option<Claims>,
    executing: Option<Claims>,
    latest: Option<Claims>,
}

impl Holdings {
    fn iter(&self) -> impl Iterator<Item = &Claims> {
        self.running
            .iter()
            .chain(self.executing.iter())
            .chain(self.latest.iter())
    }
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
    holdings: HashMap<String, Holdings>,
    running: HashMap<String, RunningApp>,
    /// Each app's gate and metrics, kept across its versions (and address moves).
    fronts: HashMap<String, AppFront>,
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
    digest: String,
    from_cache_only: bool,
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
        Self {
            inner: Arc::new(Inner {
                engine,
                loader,
                compile_cache,
                config,
                state: Mutex::new(State::default()),
                hosts: watch::Sender::new(Arc::new(HostTable::new())),
            }),
        }
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
        if let Some(h) = state.holdings.remove(from) {
            state.holdings.insert(to.to_string(), h);
        }
        if let Some(mut app) = state.running.remove(from) {
            app.status.key = to.to_string();
            tracing::info!(from, to, app = %app.status.name, reference = %app.status.reference, digest = %app.status.digest, "app renamed");
            state.running.insert(to.to_string(), app);
        }
        true
    }

    /// The apps now serving, sorted by key.
    pub fn status(&self) -> Vec<RunningAppStatus> {
        let state = self.inner.state();
        let mut all: Vec<_> = state.running.values().map(|r| r.status.clone()).collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Stop accepting on every app, let in-flight requests finish (bounded by the drain timeout),
    /// and return when all listeners are done. Operations still loading are abandoned when they
    /// finish.
    pub async fn shutdown(&self) {
        let apps: Vec<RunningApp> = {
            let mut state = self.inner.state();
            state.shutting_down = true;
            state.running.drain().map(|(_, app)| app).collect()
        };
        self.inner.hosts.send_replace(Arc::new(HostTable::new()));
        for app in &apps {
            if let Some((stop, _)) = &app.listener {
                let _ = stop.send(true);
            }
        }
        for app in apps {
            if let Some((_, task)) = app.listener
                && let Err(err) = task.await
            {
                tracing::warn!(app = %app.status.name, error = %err, "listener task ended abnormally");
            }
            tracing::info!(key = %app.status.key, app = %app.status.name, reference = %app.status.reference, digest = %app.status.digest, "app stopped (shutdown)");
        }
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
    if let Some(spec) = desired {
        for (other, holdings) in &state.holdings {
            if other == key {
                continue;
            }
            for held in holdings.iter() {
                if let (Some(want), Some(address)) = (spec.address, held.address)
                    && addresses_conflict(want, address)
                {
                    return Err(StartError::Conflict {
                        field: "address",
                        value: want.to_string(),
                        other: other.clone(),
                    });
                }
                if let Some(host) = spec.hosts.iter().find(|h| held.hosts.contains(h)) {
                    return Err(StartError::Conflict {
                        field: "hosts",
                        value: host.clone(),
                        other: other.clone(),
                    });
                }
                if spec.state_dir == held.state_dir {
                    return Err(StartError::Conflict {
                        field: "state_dir",
                        value: spec.state_dir.display().to_string(),
                        other: other.clone(),
                    });
                }
            }
        }
    }
    let slot = state.slots.entry(key.to_string()).or_default().clone();
    let generation = slot.generation.fetch_add(1, Ordering::SeqCst) + 1;
    slot.pending.fetch_add(1, Ordering::SeqCst);
    state.holdings.entry(key.to_string()).or_default().latest = desired.map(Claims::of);
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
        let mut state = inner.state();
        let h = state.holdings.entry(key.to_string()).or_default();
        h.executing = h.latest.take();
    }
    let result = execute(inner, key, desired).await;
    // Whatever happened, this key now holds exactly what it serves.
    let mut state = inner.state();
    let serving = state.running.get(key).map(|r| Claims::of(&r.spec));
    let h = state.holdings.entry(key.to_string()).or_default();
    h.executing = None;
    h.running = serving;
    if h.running.is_none()
        && h.latest.is_none()
        && slot.generation.load(Ordering::SeqCst) == generation
    {
        state.holdings.remove(key);
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
        let app = {
            let mut state = inner.state();
            state.fronts.remove(key);
            let app = state.running.remove(key);
            if let Some(app) = &app {
                inner.config.metrics.remove_app(&app.spec.name);
            }
            publish_hosts(inner, &state);
            app
        };
        return Ok(match app {
            Some(app) => {
                let status = app.status.clone();
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
        .map(|r| (r.spec.clone(), r.status.clone()));
    let pull = Instant::now();
    let loaded = inner.loader.load(&spec.reference).await;
    inner
        .config
        .metrics
        .pull_finished(&spec.name, pull.elapsed().as_secs_f64(), loaded.is_ok());
    let loaded = loaded?;
    if let Some((old_spec, old_status)) = &before
        && *old_spec == spec
        && old_status.digest == loaded.manifest_digest
    {
        return Ok(Transition::Unchanged(old_status.clone()));
    }
    let ready = prepare(inner, key, &spec, loaded).await?;
    let routes: Vec<String> = ready
        .http
        .router()
        .routes()
        .iter()
        .map(|r| r.raw().to_string())
        .collect();
    let status = RunningAppStatus {
        key: key.to_string(),
        name: spec.name.clone(),
        reference: spec.reference.clone(),
        digest: ready.digest,
        address: spec.address,
        hosts: spec.hosts.clone(),
        state_dir: spec.state_dir.clone(),
        routes,
        from_cache_only: ready.from_cache_only,
        limits: *ready.http.limits(),
    };
    match before {
        Some((old_spec, previous)) if old_spec.address == spec.address => {
            // Same address: publish the new version to the listener already serving.
            let mut status = status;
            // The address actually bound (port 0 picked one) stays the same.
            status.address = previous.address;
            let old = {
                let mut state = inner.state();
                if state.shutting_down {
                    return Err(StartError::ShuttingDown);
                }
                let Some(app) = state.running.get_mut(key) else {
                    return Err(StartError::ShuttingDown);
                };
                let old = app.current.send_replace(Arc::new(ready.http));
                app.spec = spec;
                app.status = status.clone();
                publish_hosts(inner, &state);
                old
            };
            release_when_drained(
                status.key.clone(),
                previous.digest.clone(),
                old,
                inner.config.drain_timeout,
            );
            Ok(Transition::Replaced {
                previous,
                current: status,
            })
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
            let (current, current_rx) = watch::channel(Arc::new(ready.http));
            let old = {
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
                let old = state.running.insert(
                    key.to_string(),
                    RunningApp {
                        spec,
                        status: status.clone(),
                        current,
                        listener,
                    },
                );
                publish_hosts(inner, &state);
                old
            };
            match (before, old) {
                (Some((_, previous)), Some(old)) => {
                    stop_app(old, inner.config.drain_timeout).await;
                    Ok(Transition::Replaced {
                        previous,
                        current: status,
                    })
                }
                _ => Ok(Transition::Started(status)),
            }
        }
    }
}

/// Stop an app that is no longer routed to: stop its own listener (if any) and wait for its
/// in-flight requests there (bounded by the drain timeout), then let the requests still using
/// its version (on the shared ingress) finish in the background, cutting off whatever still
/// runs at the drain timeout (a loop, a request whose client left).
async fn stop_app(app: RunningApp, drain: Duration) {
    if let Some((stop, task)) = app.listener {
        let _ = stop.send(true);
        if let Err(err) = task.await {
            tracing::warn!(app = %app.status.name, error = %err, "listener task ended abnormally");
        }
    }
    let version = app.current.borrow().clone();
    drop(app.current);
    release_when_drained(app.status.key, app.status.digest, version, drain);
}

/// Republish the shared ingress's host table from what runs now.
fn publish_hosts(inner: &Inner, state: &State) {
    let mut table = HostTable::new();
    for app in state.running.values() {
        let tls = app.spec.tls.as_ref().map(|tls| TlsFiles {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
        });
        for host in &app.spec.hosts {
            table.insert(host, app.current.subscribe(), tls.clone());
        }
    }
    inner.hosts.send_replace(Arc::new(table));
}

/// Wait (in the background, up to `drain`) for the requests still using a replaced version to
/// finish, then log its release; past `drain`, cut off the ones still running.
fn release_when_drained(key: String, digest: String, old: Arc<HttpApp>, drain: Duration) {
    let weak = Arc::downgrade(&old);
    drop(old);
    tokio::spawn(async move {
        let deadline = Instant::now() + drain;
        let mut cut = false;
        loop {
            let in_flight = weak.strong_count();
            if in_flight == 0 {
                tracing::info!(%key, %digest, cut_off = cut, "previous version released: its in-flight requests finished");
                return;
            }
            if cut && Instant::now() >= deadline + Duration::from_secs(5) {
                tracing::warn!(%key, %digest, in_flight, "previous version still referenced 5 s after its requests were cut off");
                return;
            }
            if !cut && Instant::now() >= deadline {
                tracing::warn!(%key, %digest, in_flight, "drain timeout: cutting off the previous version's remaining requests");
                if let Some(old) = weak.upgrade() {
                    old.cut_off();
                }
                cut = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[cfg(test)]
pub(crate) mod tests;
