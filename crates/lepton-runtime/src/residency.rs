//! Residency: which apps are loaded in memory, loading them when first needed and evicting the
//! ones not used.
//!
//! A [`Resident`] is one app version that is routable whether or not it is loaded. Its first
//! [`Resident::get`] starts the load (pull from the cache, compile or map the compiled code,
//! build the trigger) in a task of its own, and every concurrent caller waits for that one load;
//! a caller that gives up does not cancel it. A failed load is remembered for
//! [`FAILED_RETRY_AFTER`], so a broken app costs one load attempt per interval, not one per
//! request.
//!
//! A [`Residency`] holds every loaded resident (weakly) and evicts:
//! - **under a memory budget**: after each load, while the loaded footprints add up to more than
//!   the budget, the least recently used resident other than the one just loaded is evicted
//!   (idle ones — no request holds their value — before busy ones);
//! - **after an idle timeout**: a background sweep evicts residents unused for that long.
//!
//! A load may come back with a better one to follow ([`Loaded::reload_when`]: an app compiled
//! quickly by Winch, whose Cranelift code is being made): once that resolves, the resident
//! loads again in the background and swaps the new value in while requests go on on the old
//! one, which is freed when the last of them ends. Pinned residents are left as they are (their
//! triggers hold the value they started with).
//!
//! Evicting drops the resident's hold on its value: requests already running keep their own
//! `Arc` and finish on it, and the value is freed when the last one ends. The next request
//! loads it again. A footprint is what the loader reports (for apps: the size of their
//! compiled code), so the budget bounds what eviction can give back, not the process's RSS.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

/// How long a failed load is answered from memory before the next request tries again.
pub const FAILED_RETRY_AFTER: Duration = Duration::from_secs(2);

/// What a loader produces: the loaded value and what holding it costs.
pub struct Loaded<T> {
    /// The value requests use.
    pub value: Arc<T>,
    /// Bytes holding it costs (counted against the memory budget).
    pub footprint: u64,
    /// Load again, in the background, once this resolves to `true` (a better value can be
    /// made then: optimized code for quick code).
    pub reload_when: Option<BoxFuture<'static, bool>>,
}

/// Loads one resident's value. Called once per load (first use, and after each eviction).
pub type Loader<T> = Box<dyn Fn() -> BoxFuture<'static, Result<Loaded<T>, String>> + Send + Sync>;

/// A load that failed, as the callers waiting for it see it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("app `{app}` failed to load: {message}")]
pub struct LoadFailed {
    /// The app.
    pub app: Arc<str>,
    /// Why.
    pub message: Arc<str>,
}

/// Where a resident is, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResidentState {
    /// Routable, not loaded (never loaded, or evicted).
    Idle,
    /// A load is under way.
    Loading,
    /// Loaded; `footprint` bytes held.
    Loaded {
        /// Bytes counted against the budget.
        footprint: u64,
    },
    /// The last load failed; the next request after a short pause tries again.
    Failed {
        /// Why.
        message: String,
    },
}

impl ResidentState {
    /// The state's name as the status output shows it: `idle`, `loading`, `loaded` or
    /// `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Loading => "loading",
            Self::Loaded { .. } => "loaded",
            Self::Failed { .. } => "failed",
        }
    }
}

/// Eviction settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResidencyConfig {
    /// Evict least recently used residents while the loaded footprints exceed this many bytes.
    pub memory_budget: Option<u64>,
    /// Evict residents unused for this long.
    pub idle_timeout: Option<Duration>,
}

/// The loaded residents of one process, and their eviction. Cheap to clone (a handle).
#[derive(Clone)]
pub struct Residency {
    inner: Arc<ResidencyInner>,
}

struct ResidencyInner {
    config: ResidencyConfig,
    base: Instant,
    bytes: AtomicU64,
    members: Mutex<Vec<Weak<dyn Member>>>,
    loads: AtomicU64,
    evictions: AtomicU64,
    metrics: Option<lepton_metrics::ResidencyMetrics>,
}

/// What the residency needs of a loaded resident, whatever its value type.
trait Member: Send + Sync {
    fn last_used(&self) -> u64;
    /// Whether requests hold its value now.
    fn busy(&self) -> bool;
    fn is_loaded(&self) -> bool;
    /// Evict it (if loaded); returns whether it was.
    fn evict(&self, why: &'static str) -> bool;
}

impl Residency {
    /// A residency evicting by `config`; with an idle timeout, its sweep runs on the current
    /// tokio runtime until the last handle is dropped.
    pub fn new(config: ResidencyConfig) -> Self {
        Self::build(config, None)
    }

    /// [`Residency::new`], counting loads, evictions and what is loaded in `metrics`.
    pub fn with_metrics(
        config: ResidencyConfig,
        metrics: lepton_metrics::ResidencyMetrics,
    ) -> Self {
        Self::build(config, Some(metrics))
    }

    fn build(config: ResidencyConfig, metrics: Option<lepton_metrics::ResidencyMetrics>) -> Self {
        let inner = Arc::new(ResidencyInner {
            config,
            base: Instant::now(),
            bytes: AtomicU64::new(0),
            members: Mutex::new(Vec::new()),
            loads: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            metrics,
        });
        if let Some(idle) = config.idle_timeout {
            let weak = Arc::downgrade(&inner);
            let every = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(inner) = weak.upgrade() else { return };
                    inner.evict_idle(idle);
                }
            });
        }
        Self { inner }
    }

    /// Bytes the loaded residents hold.
    pub fn resident_bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Loads completed so far (first loads and reloads).
    pub fn loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    /// Evictions so far.
    pub fn evictions(&self) -> u64 {
        self.inner.evictions.load(Ordering::Relaxed)
    }

    /// Evict every loaded resident nobody is using now (an operator's or a test's lever).
    pub fn evict_idle_now(&self) -> usize {
        let members = self.inner.live_members();
        members
            .iter()
            .filter(|m| !m.busy() && m.evict("asked"))
            .count()
    }

    /// A resident of app `app` that loads with `loader` when first used.
    pub fn resident<T: Send + Sync + 'static>(&self, app: &str, loader: Loader<T>) -> Resident<T> {
        Resident {
            shared: Arc::new(ResidentShared {
                app: app.into(),
                residency: self.clone(),
                loader,
                state: Mutex::new(State::Idle),
                last_used: AtomicU64::new(self.inner.now()),
                pinned: AtomicBool::new(false),
                superseded: Mutex::default(),
                on_change: OnceLock::new(),
            }),
        }
    }
}

impl ResidencyInner {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn members(&self) -> MutexGuard<'_, Vec<Weak<dyn Member>>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loaded members still alive (dropping the others from the list).
    fn live_members(&self) -> Vec<Arc<dyn Member>> {
        let mut members = self.members();
        let mut live = Vec::with_capacity(members.len());
        members.retain(|weak| match weak.upgrade() {
            Some(m) if m.is_loaded() => {
                live.push(m);
                true
            }
            _ => false,
        });
        live
    }

    /// `footprint` bytes more (or fewer) are loaded, in `delta_apps` apps more (or fewer).
    fn account(&self, delta_apps: i64, added: u64, removed: u64) {
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(removed, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.loaded.inc_by(delta_apps);
            m.code_bytes
                .set(i64::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        }
    }

    fn evict_idle(&self, idle: Duration) {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.now();
        for member in self.live_members() {
            if now.saturating_sub(member.last_used()) >= idle_ms && !member.busy() {
                member.evict("idle timeout");
            }
        }
    }

    /// Evict least recently used members (not `keep`) while over the budget: idle ones first,
    /// then busy ones.
    fn enforce_budget(&self, keep: *const ()) {
        let Some(budget) = self.config.memory_budget else {
            return;
        };
        if self.bytes.load(Ordering::Relaxed) <= budget {
            return;
        }
        let mut candidates: Vec<_> = self
            .live_members()
            .into_iter()
            .filter(|m| !std::ptr::addr_eq(Arc::as_ptr(m), keep))
            .map(|m| (m.busy(), m.last_used(), m))
            .collect();
        candidates.sort_by_key(|(busy, last, _)| (*busy, *last));
        for (_, _, member) in candidates {
            if self.bytes.load(Ordering::Relaxed) <= budget {
                return;
            }
            member.evict("memory budget");
        }
        if self.bytes.load(Ordering::Relaxed) > budget {
            tracing::warn!(
                resident_bytes = self.bytes.load(Ordering::Relaxed),
                budget,
                "over the app memory budget with nothing left to evict"
            );
        }
    }
}

/// One app version, routable whether loaded or not. Cheap to clone (a handle).
pub struct Resident<T> {
    shared: Arc<ResidentShared<T>>,
}

impl<T> Clone for Resident<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct ResidentShared<T> {
    app: Arc<str>,
    residency: Residency,
    loader: Loader<T>,
    state: Mutex<State<T>>,
    last_used: AtomicU64,
    /// Never evicted by the residency (idle timeout or budget): an app version whose non-HTTP
    /// triggers run without requests. [`Resident::evict`] still releases it.
    pinned: AtomicBool,
    /// Values let go while requests still ran on them (replaced by a reload on optimized code,
    /// or evicted busy under the budget): whoever retires the version drains them too.
    superseded: Mutex<Vec<Weak<T>>>,
    /// Called after each change of [`Resident::state`] (see [`Resident::on_change`]).
    on_change: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

type LoadFuture<T> = Shared<BoxFuture<'static, Result<Arc<T>, LoadFailed>>>;

enum State<T> {
    Idle,
    Loading(LoadFuture<T>),
    Loaded { value: Arc<T>, footprint: u64 },
    Failed { error: LoadFailed, until: Instant },
}

impl<T: Send + Sync + 'static> Resident<T> {
    /// The app's name.
    pub fn app(&self) -> &str {
        &self.shared.app
    }

    /// The loaded value, loading it first if needed (concurrent callers share one load).
    pub async fn get(&self) -> Result<Arc<T>, LoadFailed> {
        self.touch();
        let (load, started) = {
            let mut state = self.shared.state();
            match &*state {
                State::Loaded { value, .. } => return Ok(value.clone()),
                State::Loading(load) => (load.clone(), false),
                State::Failed { error, until } if Instant::now() < *until => {
                    return Err(error.clone());
                }
                State::Idle | State::Failed { .. } => {
                    let load = self.start_load();
                    *state = State::Loading(load.clone());
                    (load, true)
                }
            }
        };
        if started {
            self.shared.changed();
        }
        load.await
    }

    /// Start loading now (if idle or failed) without waiting: the operator's `preload`.
    pub fn preload(&self) {
        let mut state = self.shared.state();
        if matches!(&*state, State::Idle | State::Failed { .. }) {
            *state = State::Loading(self.start_load());
            drop(state);
            self.shared.changed();
        }
    }

    /// Call `f` after every change of its [`Resident::state`] (a load starts, ends or fails;
    /// an eviction), outside any lock of the resident's: how a status that shows load states
    /// learns of them when they happen. Set once; later calls are ignored.
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.shared.on_change.set(Box::new(f));
    }

    /// Install a value loaded elsewhere (a version validated before it replaced another) as if
    /// this resident had loaded it.
    pub fn install(&self, loaded: Loaded<T>) {
        self.touch();
        let _ = self.shared.settle(Ok(loaded));
    }

    /// The loaded value, if loaded, counted as a use (the request path's fast path: a loaded
    /// app that keeps serving stays recently used). Does not load.
    pub fn hit(&self) -> Option<Arc<T>> {
        let value = self.loaded();
        if value.is_some() {
            self.touch();
        }
        value
    }

    /// The loaded value, if loaded (does not load, does not count as a use).
    pub fn loaded(&self) -> Option<Arc<T>> {
        match &*self.shared.state() {
            State::Loaded { value, .. } => Some(value.clone()),
            _ => None,
        }
    }

    /// Where it is now.
    pub fn state(&self) -> ResidentState {
        match &*self.shared.state() {
            State::Idle => ResidentState::Idle,
            State::Loading(_) => ResidentState::Loading,
            State::Loaded { footprint, .. } => ResidentState::Loaded {
                footprint: *footprint,
            },
            State::Failed { error, .. } => ResidentState::Failed {
                message: error.message.to_string(),
            },
        }
    }

    /// Keep it loaded from now on: the residency no longer evicts it for idleness or the memory
    /// budget (its weight still counts in the budget). For versions that must run without
    /// requests (Redis and cron triggers).
    pub fn pin(&self) {
        self.shared.pinned.store(true, Ordering::Relaxed);
    }

    /// Whether [`Resident::pin`] was called.
    pub fn pinned(&self) -> bool {
        self.shared.pinned.load(Ordering::Relaxed)
    }

    /// Drop the hold on the loaded value (requests holding it finish on it); the next
    /// [`Resident::get`] loads it again. Returns the value it held, if loaded.
    pub fn evict(&self) -> Option<Arc<T>> {
        self.shared.take("evicted")
    }

    /// Earlier values of this resident that requests still run on (it let go of them while
    /// they were in use: replaced by a reload, or evicted under the budget). Retiring a version
    /// drains these as well as the one [`Resident::evict`] returns.
    pub fn superseded(&self) -> Vec<Arc<T>> {
        let mut list = self
            .shared
            .superseded
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        list.drain(..).filter_map(|w| w.upgrade()).collect()
    }

    fn touch(&self) {
        let now = self.shared.residency.inner.now();
        self.shared.last_used.store(now, Ordering::Relaxed);
    }

    fn start_load(&self) -> LoadFuture<T> {
        let shared = self.shared.clone();
        let load = (shared.loader)();
        let task = tokio::spawn(async move {
            let result = load.await;
            shared.settle(result)
        });
        let app = self.shared.app.clone();
        async move {
            match task.await {
                Ok(result) => result,
                Err(err) => Err(LoadFailed {
                    app,
                    message: format!("the load task ended abnormally: {err}").into(),
                }),
            }
        }
        .boxed()
        .shared()
    }
}

impl<T: Send + Sync + 'static> ResidentShared<T> {
    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a finished load (registering it with the residency, then keeping to the budget).
    fn settle(self: &Arc<Self>, result: Result<Loaded<T>, String>) -> Result<Arc<T>, LoadFailed> {
        let inner = &self.residency.inner;
        match result {
            Ok(mut loaded) => {
                let value = loaded.value.clone();
                if let Some(when) = loaded.reload_when.take() {
                    self.reload_when(when, &value);
                }
                let previous = {
                    let mut state = self.state();
                    std::mem::replace(
                        &mut *state,
                        State::Loaded {
                            value: loaded.value,
                            footprint: loaded.footprint,
                        },
                    )
                };
                if let State::Loaded { footprint, .. } = previous {
                    inner.account(0, loaded.footprint, footprint);
                } else {
                    let member: Arc<dyn Member> = self.clone();
                    inner.members().push(Arc::downgrade(&member));
                    inner.account(1, loaded.footprint, 0);
                }
                inner.loads.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &inner.metrics {
                    m.loads.inc();
                }
                tracing::debug!(app = %self.app, footprint = loaded.footprint, "app loaded");
                self.changed();
                inner.enforce_budget(Arc::as_ptr(self).cast());
                Ok(value)
            }
            Err(message) => {
                let error = LoadFailed {
                    app: self.app.clone(),
                    message: message.into(),
                };
                tracing::error!(app = %self.app, error = %error.message, "app failed to load; requests get 503 until a load succeeds");
                *self.state() = State::Failed {
                    error: error.clone(),
                    until: Instant::now() + FAILED_RETRY_AFTER,
                };
                self.changed();
                Err(error)
            }
        }
    }

    /// Once `when` resolves to `true`, load again and swap the result in, if `value` is still
    /// the loaded one and the resident is not pinned.
    fn reload_when(self: &Arc<Self>, when: BoxFuture<'static, bool>, value: &Arc<T>) {
        let (weak, old) = (Arc::downgrade(self), Arc::downgrade(value));
        tokio::spawn(async move {
            if !when.await {
                return;
            }
            let current = |shared: &Arc<Self>| {
                !shared.pinned.load(Ordering::Relaxed)
                    && matches!(&*shared.state(), State::Loaded { value, .. }
                        if std::ptr::eq(Arc::as_ptr(value), old.as_ptr()))
            };
            let load = match weak.upgrade() {
                Some(shared) if current(&shared) => (shared.loader)(),
                _ => return,
            };
            let loaded = load.await;
            let Some(shared) = weak.upgrade() else { return };
            match loaded {
                Ok(loaded) if current(&shared) => {
                    tracing::info!(app = %shared.app, "app reloaded on optimized code");
                    if let Some(old) = old.upgrade() {
                        shared.supersede(&old);
                    }
                    let _ = shared.settle(Ok(loaded));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(app = %shared.app, %error, "reloading the app on optimized code failed; it stays on the code it runs");
                }
            }
        });
    }

    /// Remember `value`, let go of while requests may still run on it (see `superseded`).
    fn supersede(&self, value: &Arc<T>) {
        let mut list = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(value));
    }

    fn changed(&self) {
        if let Some(f) = self.on_change.get() {
            f();
        }
    }

    fn take(&self, why: &'static str) -> Option<Arc<T>> {
        let held = {
            let mut state = self.state();
            if !matches!(&*state, State::Loaded { .. }) {
                return None;
            }
            std::mem::replace(&mut *state, State::Idle)
        };
        let State::Loaded { value, footprint } = held else {
            return None;
        };
        let inner = &self.residency.inner;
        inner.account(-1, 0, footprint);
        inner.evictions.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &inner.metrics {
            m.evictions.inc();
        }
        tracing::debug!(app = %self.app, footprint, why, "app evicted");
        self.changed();
        Some(value)
    }
}

impl<T: Send + Sync + 'static> Member for ResidentShared<T> {
    fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    fn busy(&self) -> bool {
        match &*self.state() {
            State::Loaded { value, .. } => Arc::strong_count(value) > 1,
            _ => false,
        }
    }

    fn is_loaded(&self) -> bool {
        matches!(&*self.state(), State::Loaded { .. })
    }

    fn evict(&self, why: &'static str) -> bool {
        if self.pinned.load(Ordering::Relaxed) {
            return false;
        }
        match self.take(why) {
            Some(value) => {
                if Arc::strong_count(&value) > 1 {
                    self.supersede(&value);
                }
                true
            }
            None => false,
        }
    }
}

impl<T> Drop for ResidentShared<T> {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let State::Loaded { footprint, .. } = state {
            self.residency.inner.account(-1, 0, *footprint);
        }
    }
}

#[cfg(test)]
mod tests;
