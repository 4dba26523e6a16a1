//! The `spin-trigger-cron` plugin's cron trigger (`[[trigger.cron]]`) for lepton: each
//! `cron_expression` tick invokes its component's `handle-cron-event` with a fresh instance,
//! under the app's limits.
//!
//! **Configuration**: the plugin's, `{component, cron_expression}` per trigger
//! (`deny_unknown_fields`), no app-level settings, the expression used verbatim (no templates)
//! and parsed as the plugin parses it ([`expression`]: six fields with seconds, UTC).
//! **Handler** ([`guest`]): `handle-cron-event(metadata {timestamp})`, the tick's Unix time in
//! seconds. **Scheduling** ([`schedule`]): one loop per schedule, kept across versions.
//!
//! **Semantics**, the plugin's (facts §8.5) unless noted:
//! - a fresh instance per tick; a guest error is logged (the plugin logs it at ERROR; a trap it
//!   does not log at all; lepton logs both at WARN) and the schedule goes on, no retry;
//! - **never two runs of one schedule at once**, beyond the plugin (which starts overlapping
//!   runs concurrently): a tick that comes while the schedule's previous run is still going is
//!   skipped and logged;
//! - limits, beyond the plugin (whose runs have no timeout): a run is stopped at
//!   `request_timeout_ms`, held to `memory_mib`, and takes a `max_concurrent_requests` slot; a
//!   tick finding none free is skipped and logged with `limit = max_concurrent_requests`;
//! - a **live replace** hands every tick after the switch to the new version, exactly once: the
//!   schedule loops outlive the swap and load the current version at each tick.
//! - a tick whose component still runs from the old version (same trigger id and expression) is
//!   skipped until that run ends, so the one-run rule holds across the switch too.

mod expression;
mod guest;
pub mod schedule;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lepton_runtime::AppLimits;
use lepton_trigger::{Gate, InFlight, Retired, Trigger, TriggerContext, TriggerError};
use serde::Deserialize;

pub use expression::CronExpression;
use guest::CronHandler;
use schedule::{ScheduleKey, Scheduler, Schedules, SystemClock};

/// One trigger's `trigger_config`, as the plugin reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CronTriggerConfig {
    component: String,
    cron_expression: String,
}

/// One app version's cron triggers, bound to its components.
pub struct CronVersion {
    app: Arc<str>,
    jobs: Vec<Job>,
    gate: Gate,
    in_flight: InFlight,
}

struct Job {
    key: ScheduleKey,
    expression: CronExpression,
    handler: CronHandler,
}

impl CronVersion {
    /// A version with no schedules (what a stopped trigger holds).
    fn empty(app: Arc<str>) -> Self {
        Self {
            app,
            jobs: Vec::new(),
            gate: Gate::new(&AppLimits::default()),
            in_flight: InFlight::default(),
        }
    }
}

impl Schedules for CronVersion {
    fn schedules(&self) -> Vec<(ScheduleKey, CronExpression)> {
        self.jobs
            .iter()
            .map(|job| (job.key.clone(), job.expression.clone()))
            .collect()
    }

    fn has(&self, key: &ScheduleKey) -> bool {
        self.jobs.iter().any(|job| &job.key == key)
    }

    fn fire(
        self: Arc<Self>,
        key: &ScheduleKey,
        tick: DateTime<Utc>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let in_flight = self.in_flight.enter();
        let handler = self
            .jobs
            .iter()
            .find(|job| &job.key == key)
            .map(|job| job.handler.clone());
        let slot = self.gate.try_enter();
        let key = key.clone();
        async move {
            let _in_flight = in_flight;
            let Some(handler) = handler else {
                return;
            };
            let component = handler.component().id().to_string();
            let _slot = match slot {
                Ok(slot) => slot,
                Err(e) => {
                    tracing::warn!(app = %self.app, schedule = %key, component, tick = %tick, limit = e.limit(), "cron tick skipped: {e}");
                    return;
                }
            };
            let timestamp = u64::try_from(tick.timestamp()).unwrap_or_default();
            match handler.run(timestamp).await {
                Ok(Ok(())) => {
                    tracing::debug!(app = %self.app, schedule = %key, component, tick = %tick, "cron run done");
                }
                Ok(Err(error)) => {
                    tracing::warn!(app = %self.app, schedule = %key, component, tick = %tick, %error, "cron handler returned an error");
                }
                Err(e) => {
                    tracing::warn!(app = %self.app, schedule = %key, component, tick = %tick, limit = e.limit(), "cron run failed: {e}");
                }
            }
        }
    }
}

/// An app's cron trigger, kept across its versions: its schedules and the version they fire on.
pub struct CronTrigger {
    app: Arc<str>,
    scheduler: Scheduler<CronVersion, SystemClock>,
}

impl CronTrigger {
    /// The schedules running now.
    pub fn schedules(&self) -> Vec<ScheduleKey> {
        self.scheduler.running()
    }
}

impl Trigger for CronTrigger {
    const TYPE: &'static str = "cron";
    type Version = CronVersion;

    fn prepare(ctx: &TriggerContext<'_>) -> Result<CronVersion, TriggerError> {
        let mut jobs = Vec::new();
        for trigger in ctx.locked.triggers_of(Self::TYPE) {
            let config: CronTriggerConfig = lepton_trigger::trigger_config(ctx.app, trigger)?;
            let expression = CronExpression::parse(&config.cron_expression).map_err(|e| {
                TriggerError::config(
                    ctx.app,
                    &trigger.id,
                    "trigger_config.cron_expression",
                    format!("`{}`: {e}", config.cron_expression),
                )
            })?;
            if expression.next_after(Utc::now()).is_none() {
                tracing::warn!(app = ctx.app, trigger = %trigger.id, expression = %config.cron_expression, "cron expression never fires");
            }
            let component = ctx.runtime.component(&config.component).ok_or_else(|| {
                TriggerError::config(
                    ctx.app,
                    &trigger.id,
                    "trigger_config.component",
                    format!(
                        "refers to component `{}`, which the app does not define",
                        config.component
                    ),
                )
            })?;
            let handler = CronHandler::new(component.clone())
                .map_err(|e| TriggerError::component(ctx.app, &trigger.id, &config.component, e))?;
            jobs.push(Job {
                key: ScheduleKey {
                    trigger: trigger.id.clone(),
                    expression: config.cron_expression,
                },
                expression,
                handler,
            });
        }
        Ok(CronVersion {
            app: ctx.app.into(),
            jobs,
            gate: Gate::new(ctx.runtime.limits()),
            in_flight: InFlight::default(),
        })
    }

    async fn start(app: &str, version: CronVersion) -> Self {
        let app: Arc<str> = app.into();
        Self {
            scheduler: Scheduler::start(app.clone(), Arc::new(version), SystemClock),
            app,
        }
    }

    async fn swap(&self, next: CronVersion) -> Retired {
        let old = self.scheduler.swap(Arc::new(next));
        Retired::new(old.in_flight.clone())
    }

    async fn stop(&self) -> Retired {
        let old = self
            .scheduler
            .stop(Arc::new(CronVersion::empty(self.app.clone())));
        Retired::new(old.in_flight.clone())
    }
}
