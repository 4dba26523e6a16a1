//! Running schedules, kept across an app's versions.
//!
//! Each schedule (a trigger id and its expression, [`ScheduleKey`]) has one loop task: it
//! sleeps until the next tick, then fires it on the version current at that moment. So:
//! - **one version per tick**: a tick loads the current version once ([`Current::load`]); a
//!   swap between two ticks hands every later tick to the new version, none to both, none lost;
//! - **never two runs of one schedule at once**: while a run of a schedule is still going, its
//!   next ticks are skipped and logged (the plugin starts them concurrently). The loop, and so
//!   this rule, outlives a swap: a new version's tick is skipped while the old version's run of
//!   the same schedule finishes;
//! - **no catching up**: ticks missed while the process was not scheduled (a suspended machine)
//!   are not run late; the loop goes on from the next tick after now, as the plugin does;
//! - a swap keeps the loops of schedules both versions have, starts the new ones and ends the
//!   ones the new version dropped.
//!
//! Time comes from a [`Clock`]: the system clock in production, one driven by tokio's clock in
//! tests, so `tokio::time::pause()` makes the schedules exact and instant to test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use lepton_trigger::Current;
use tokio::task::JoinHandle;

use crate::expression::CronExpression;

/// What identifies one schedule across versions: its trigger id and its expression.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScheduleKey {
    /// The trigger id.
    pub trigger: String,
    /// The `cron_expression`, as written.
    pub expression: String,
}

impl std::fmt::Display for ScheduleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.trigger, self.expression)
    }
}

/// Wall-clock time, in UTC.
pub trait Clock: Clone + Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One version's schedules, as the loops see them.
pub trait Schedules: Send + Sync + 'static {
    /// Every schedule of the version, with its parsed expression.
    fn schedules(&self) -> Vec<(ScheduleKey, CronExpression)>;

    /// Whether the version has the schedule `key`.
    fn has(&self, key: &ScheduleKey) -> bool;

    /// Fire `key` for `tick`: whatever must be counted as started (the version's in-flight
    /// work) is taken before this returns; the future is the run.
    fn fire(
        self: Arc<Self>,
        key: &ScheduleKey,
        tick: DateTime<Utc>,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// The running schedules of one app and the version they fire on.
pub struct Scheduler<V: Schedules, C: Clock> {
    app: Arc<str>,
    current: Current<V>,
    clock: C,
    loops: Mutex<BTreeMap<ScheduleKey, JoinHandle<()>>>,
}

impl<V: Schedules, C: Clock> Scheduler<V, C> {
    /// Start `version`'s schedules.
    pub fn start(app: Arc<str>, version: Arc<V>, clock: C) -> Self {
        let scheduler = Self {
            app,
            current: Current::new(version.clone()),
            clock,
            loops: Mutex::new(BTreeMap::new()),
        };
        scheduler.sync_loops(&mut scheduler.lock(), &version);
        scheduler
    }

    /// Make `next` the version later ticks fire on; returns the old one.
    pub fn swap(&self, next: Arc<V>) -> Arc<V> {
        // Swaps are serialized, so the loops always match the current version.
        let mut loops = self.lock();
        let old = self.current.replace(next.clone());
        self.sync_loops(&mut loops, &next);
        old
    }

    /// End every schedule; `empty` (a version without schedules) becomes current and the old
    /// one is returned.
    pub fn stop(&self, empty: Arc<V>) -> Arc<V> {
        let mut loops = self.lock();
        for (_, handle) in std::mem::take(&mut *loops) {
            handle.abort();
        }
        self.current.replace(empty)
    }

    /// The schedules running now.
    pub fn running(&self) -> Vec<ScheduleKey> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ScheduleKey, JoinHandle<()>>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.loops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start loops for `version`'s new schedules, end the ones it does not have.
    fn sync_loops(&self, loops: &mut BTreeMap<ScheduleKey, JoinHandle<()>>, version: &V) {
        let wanted = version.schedules();
        loops.retain(|key, handle| {
            let keep = wanted.iter().any(|(k, _)| k == key);
            if !keep {
                handle.abort();
            }
            keep
        });
        for (key, expression) in wanted {
            if loops.contains_key(&key) {
                continue;
            }
            let task = schedule_loop(
                self.app.clone(),
                key.clone(),
                expression,
                self.current.clone(),
                self.clock.clone(),
            );
            loops.insert(key, tokio::spawn(task));
        }
    }
}

impl<V: Schedules, C: Clock> Drop for Scheduler<V, C> {
    fn drop(&mut self) {
        for (_, handle) in
            std::mem::take(self.loops.get_mut().unwrap_or_else(PoisonError::into_inner))
        {
            handle.abort();
        }
    }
}

/// Clears a schedule's busy flag when its run ends, however it ends.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One schedule: sleep to each tick, fire it on the current version unless the previous run is
/// still going.
async fn schedule_loop<V: Schedules, C: Clock>(
    app: Arc<str>,
    key: ScheduleKey,
    expression: CronExpression,
    current: Current<V>,
    clock: C,
) {
    let busy = Arc::new(AtomicBool::new(false));
    let mut last = clock.now();
    loop {
        let now = clock.now();
        // Strictly after the last tick fired, so a tick is never fired twice even if the clock
        // reads a little behind it; and after now, so missed ticks are not run late.
        let Some(tick) = expression.next_after(last.max(now)) else {
            tracing::warn!(app = %app, schedule = %key, "cron schedule has no more ticks");
            return;
        };
        let wait = (tick - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        last = tick;
        let version = current.load();
        if !version.has(&key) {
            // The schedule was just dropped by a swap; its loop is being ended.
            continue;
        }
        if busy.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                app = %app,
                schedule = %key,
                tick = %tick,
                "cron tick skipped: the schedule's previous run is still going"
            );
            continue;
        }
        let guard = Busy(busy.clone());
        let run = version.fire(&key, tick);
        tokio::spawn(async move {
            let _busy = guard;
            run.await;
        });
    }
}

#[cfg(test)]
mod tests;
