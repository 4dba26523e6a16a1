//! An app's event triggers (Redis, cron) across its versions, driven through the
//! `lepton-trigger` seam ([`lepton_trigger::Trigger`]): prepared with the rest of a version
//! ([`EventTriggers::prepare`], so a version whose Redis channel or cron expression is wrong is
//! refused before it replaces one that runs), then, once the version is the app's current one,
//! started, swapped to or stopped per trigger type ([`AppTriggers::activate`]); each version
//! they leave is drained like an HTTP version ([`super::drain`]).
//!
//! HTTP is the third trigger type and follows the same lifecycle with its own mechanics:
//! prepare is `HttpApp::new`, swap is publishing the version in the app's `watch` channel (and
//! the host table), and the old version drains through the same primitive.
//!
//! A version with event triggers must run without requests, so it is prepared eagerly and
//! pinned in the residency (never evicted for idleness or the memory budget); a version that
//! loads on demand is probed for them once it is current ([`made_current`]).

use std::sync::Arc;
use std::time::Duration;

use lepton_app::LockedApp;
use lepton_runtime::{CutOff, RuntimeApp};
use lepton_trigger::{Retired, Trigger, TriggerContext, TriggerError};
use lepton_trigger_cron::{CronTrigger, CronVersion};
use lepton_trigger_redis::{RedisTrigger, RedisVersion};

use super::version::Version;
use super::{Inner, drain};

/// The trigger types started through the `lepton-trigger` seam.
const EVENT_TRIGGER_TYPES: [&str; 2] = [RedisTrigger::TYPE, CronTrigger::TYPE];

/// Whether `locked` has triggers that run without requests (Redis, cron).
pub(super) fn has_event_triggers(locked: &LockedApp) -> bool {
    locked
        .triggers
        .iter()
        .any(|t| EVENT_TRIGGER_TYPES.contains(&t.trigger_type.as_str()))
}

/// Whether `locked` has HTTP triggers.
pub(super) fn has_http_triggers(locked: &LockedApp) -> bool {
    locked.triggers_of("http").next().is_some()
}

/// One version's event triggers, validated and bound to its components, not started yet.
pub(super) struct EventTriggers {
    redis: Option<RedisVersion>,
    cron: Option<CronVersion>,
    /// The version's cut-off switch (what a drain that runs out of time pulls).
    cut_off: CutOff,
}

impl EventTriggers {
    /// The event triggers of one version, or `None` when it has none.
    pub fn prepare(
        app: &str,
        locked: &LockedApp,
        runtime: &RuntimeApp,
    ) -> Result<Option<Self>, TriggerError> {
        if !has_event_triggers(locked) {
            return Ok(None);
        }
        let ctx = TriggerContext {
            app,
            locked,
            runtime,
        };
        let redis = has_type(locked, RedisTrigger::TYPE)
            .then(|| RedisTrigger::prepare(&ctx))
            .transpose()?;
        let cron = has_type(locked, CronTrigger::TYPE)
            .then(|| CronTrigger::prepare(&ctx))
            .transpose()?;
        Ok(Some(Self {
            redis,
            cron,
            cut_off: runtime.cut_off().clone(),
        }))
    }
}

fn has_type(locked: &LockedApp, trigger_type: &str) -> bool {
    locked.triggers_of(trigger_type).next().is_some()
}

/// One app's running event triggers, kept across its versions (a Redis connection and its
/// subscriptions, the cron schedule loops), and which version they run.
#[derive(Default)]
pub(super) struct AppTriggers {
    /// The sequence number of the version activated last: an older version's load that ends
    /// late never takes over from a newer one.
    seq: u64,
    redis: Option<RedisTrigger>,
    cron: Option<CronTrigger>,
    /// The running version's cut-off switch.
    cut_off: Option<CutOff>,
}

impl AppTriggers {
    /// Make version `seq`'s event triggers (`None`: it has none) the ones that run: each type is
    /// started, swapped to (without losing or doubling an event) or stopped; the version they
    /// leave drains in the background for up to `drain`, then is cut off.
    pub async fn activate(
        &mut self,
        key: &str,
        app: &str,
        seq: u64,
        next: Option<EventTriggers>,
        timeout: Duration,
    ) {
        if seq < self.seq {
            return;
        }
        self.seq = seq;
        let (redis, cron, cut_off) = match next {
            Some(n) => (n.redis, n.cron, Some(n.cut_off)),
            None => (None, None, None),
        };
        let mut retired = Vec::new();
        retired.extend(switch(&mut self.redis, app, redis).await);
        retired.extend(switch(&mut self.cron, app, cron).await);
        let old = std::mem::replace(&mut self.cut_off, cut_off);
        if let Some(old) = old {
            drain::in_background(
                key.to_string(),
                "event triggers",
                drained(retired),
                old,
                timeout,
            );
        }
    }

    /// Stop every trigger; returns what the running version still has to finish and its
    /// cut-off switch.
    pub async fn stop(&mut self) -> Option<(Vec<Retired>, CutOff)> {
        let mut retired = Vec::new();
        if let Some(t) = self.redis.take() {
            retired.push(t.stop().await);
        }
        if let Some(t) = self.cron.take() {
            retired.push(t.stop().await);
        }
        self.cut_off.take().map(|cut| (retired, cut))
    }
}

/// Start, swap to or stop one trigger type; the version it leaves, if any.
async fn switch<T: Trigger>(
    running: &mut Option<T>,
    app: &str,
    next: Option<T::Version>,
) -> Option<Retired> {
    match (running.as_ref(), next) {
        (Some(trigger), Some(next)) => Some(trigger.swap(next).await),
        (None, Some(next)) => {
            *running = Some(T::start(app, next).await);
            None
        }
        (Some(trigger), None) => {
            let retired = trigger.stop().await;
            *running = None;
            Some(retired)
        }
        (None, None) => None,
    }
}

/// Resolves once every retired trigger version has finished its work.
pub(super) async fn drained(retired: Vec<Retired>) {
    futures::future::join_all(retired.iter().map(Retired::drained)).await;
}

/// Once `version` is app `key`'s current version: start (or switch to) the event triggers an
/// eager load prepared, or probe a version that loads on demand for event triggers.
pub(super) async fn made_current(inner: &Arc<Inner>, key: &str, version: &Version, probe: bool) {
    let spec = inner.state().running.get(key).map(|r| r.spec.clone());
    let Some(spec) = spec else { return };
    if probe {
        version.probe(inner, &spec);
    }
    activate_triggers(inner, key, &spec.name, version.seq, version.take_events()).await;
}

/// Make version `seq` of app `key` run its event triggers `next` (`None`: it has none), if it is
/// still the app's current version; a version with event triggers is pinned in the residency.
pub(super) async fn activate_triggers(
    inner: &Inner,
    key: &str,
    app: &str,
    seq: u64,
    next: Option<EventTriggers>,
) {
    let shared = {
        let mut state = inner.state();
        let Some(running) = state.running.get(key).filter(|r| r.version.seq == seq) else {
            if next.is_some() {
                tracing::debug!(%key, seq, "a version that is no longer current loaded; its event triggers are not started");
            }
            return;
        };
        if next.is_some() {
            running.version.resident.pin();
        }
        match state.triggers.get(key) {
            Some(t) => t.clone(),
            None if next.is_some() => state.triggers.entry(key.to_string()).or_default().clone(),
            None => return,
        }
    };
    shared
        .lock()
        .await
        .activate(key, app, seq, next, inner.config.drain_timeout)
        .await;
}

/// A handle to one app's triggers, shared by the loads and operations that switch them.
pub(super) type SharedTriggers = Arc<tokio::sync::Mutex<AppTriggers>>;
