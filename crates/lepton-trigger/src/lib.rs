//! The seam between the supervisor and lepton's non-HTTP triggers (`lepton-trigger-redis`,
//! `lepton-trigger-cron`), and what those triggers share.
//!
//! A trigger is driven per app, across the app's versions, through [`Trigger`] (the shape of
//! Spin's `spin_trigger::Trigger`, reduced to what a long-running, live-replacing host needs):
//!
//! 1. [`Trigger::prepare`] validates one app version's triggers of its type and binds them to
//!    that version's prepared components ([`TriggerContext`]: app name, `LockedApp`,
//!    `RuntimeApp`, and through them the app-level trigger settings and the variables resolver).
//!    Everything that can be wrong with the app's trigger configuration fails here, before the
//!    version replaces the one running.
//! 2. [`Trigger::start`] starts the first version.
//! 3. [`Trigger::swap`] makes a new version the one that handles events, without a gap and
//!    without handling any event twice (each trigger documents how), and hands back the old
//!    version as [`Retired`].
//! 4. [`Trigger::stop`] stops handling new events and hands back the current version as
//!    [`Retired`].
//!
//! A [`Retired`] version drains like an HTTP version: the supervisor awaits
//! [`Retired::drained`] for its drain timeout, then cuts the version's `RuntimeApp` off
//! (`RuntimeApp::cut_off`), which stops every guest it still runs at once.
//!
//! Modules: [`backoff`] (reconnect delays), [`inflight`] (counting a version's running work),
//! [`invoke`] (one guest call under the app's limits), [`current`] (the swappable version).

pub mod backoff;
pub mod current;
pub mod inflight;
pub mod invoke;

use lepton_app::LockedApp;
use lepton_runtime::RuntimeApp;

pub use backoff::Backoff;
pub use current::Current;
pub use inflight::{InFlight, InFlightGuard};
pub use invoke::{Gate, RunError, run_guest};

/// What a trigger is built from, for one version of one app.
#[derive(Clone, Copy)]
pub struct TriggerContext<'a> {
    /// The app's name (for errors and logs).
    pub app: &'a str,
    /// The version's locked app: its triggers and the app-level trigger settings.
    pub locked: &'a LockedApp,
    /// The version's prepared components, limits, cut-off and variables.
    pub runtime: &'a RuntimeApp,
}

impl TriggerContext<'_> {
    /// The app-level settings of trigger type `trigger_type` (`[application.trigger.<type>]`,
    /// the lock's `metadata.triggers.<type>`), as Spin finds them.
    pub fn settings(&self, trigger_type: &str) -> Option<serde_json::Value> {
        self.locked.trigger_metadata(trigger_type)
    }

    /// Render a `{{ variable }}` template against the app's variables (Spin's
    /// `resolve_expression`); `field` names what is rendered in the error.
    pub fn render(
        &self,
        trigger: &str,
        field: &str,
        template: &str,
    ) -> Result<String, TriggerError> {
        self.runtime
            .app_host()
            .variables()
            .render(template)
            .map_err(|e| TriggerError::config(self.app, trigger, field, e.to_string()))
    }
}

/// One trigger type, driven by the supervisor for one app across its versions (see the crate
/// doc for the lifecycle).
pub trait Trigger: Sized + Send + Sync + 'static {
    /// The `trigger_type` of the locked app's triggers this serves (`redis`, `cron`).
    const TYPE: &'static str;

    /// One app version's triggers of this type, validated and bound to its components.
    type Version: Send + Sync + 'static;

    /// Validate the version's triggers of [`Self::TYPE`] and bind them to its components.
    fn prepare(ctx: &TriggerContext<'_>) -> Result<Self::Version, TriggerError>;

    /// Start handling events with `version`.
    fn start(app: &str, version: Self::Version) -> impl Future<Output = Self> + Send;

    /// Make `next` the version that handles events from now on; the old one is returned to
    /// drain.
    fn swap(&self, next: Self::Version) -> impl Future<Output = Retired> + Send;

    /// Stop handling new events; the current version is returned to drain.
    fn stop(&self) -> impl Future<Output = Retired> + Send;
}

/// A version that no longer takes new events: what it still runs (and, for a Redis trigger,
/// messages it received before the swap and has queued) finishes on it.
#[must_use = "a retired version should be drained (and cut off at the drain timeout)"]
#[derive(Debug, Clone)]
pub struct Retired {
    in_flight: InFlight,
}

impl Retired {
    /// A retired version whose work is counted by `in_flight`.
    pub fn new(in_flight: InFlight) -> Self {
        Self { in_flight }
    }

    /// How many runs (and queued events) it still has.
    pub fn in_flight(&self) -> usize {
        self.in_flight.count()
    }

    /// Resolves once it has nothing left to run.
    pub async fn drained(&self) {
        self.in_flight.idle().await;
    }
}

/// Errors building a trigger from an app version: each names the app, the trigger (its id, or
/// the app-level settings) and the field.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// A trigger's configuration or the app's trigger settings are invalid.
    #[error("app `{app}`: trigger `{trigger}`: {field}: {message}")]
    Config {
        /// The app.
        app: String,
        /// The trigger id, or `metadata.triggers.<type>` for app-level settings.
        trigger: String,
        /// The field, e.g. `trigger_config.channel`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A trigger's component cannot be called the way the trigger calls it.
    #[error("app `{app}`: trigger `{trigger}`: component `{component}`: {message}")]
    Component {
        /// The app.
        app: String,
        /// The trigger id.
        trigger: String,
        /// The component id.
        component: String,
        /// What is wrong.
        message: String,
    },
}

impl TriggerError {
    /// A [`TriggerError::Config`].
    pub fn config(
        app: &str,
        trigger: &str,
        field: &str,
        message: impl Into<String>,
    ) -> TriggerError {
        TriggerError::Config {
            app: app.to_string(),
            trigger: trigger.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A [`TriggerError::Component`].
    pub fn component(
        app: &str,
        trigger: &str,
        component: &str,
        message: impl Into<String>,
    ) -> TriggerError {
        TriggerError::Component {
            app: app.to_string(),
            trigger: trigger.to_string(),
            component: component.to_string(),
            message: message.into(),
        }
    }
}

/// Deserialize one trigger's `trigger_config` into `T` (whose serde shape is Spin's,
/// `deny_unknown_fields`), naming the trigger in the error.
pub fn trigger_config<T: serde::de::DeserializeOwned>(
    app: &str,
    trigger: &lepton_app::LockedTrigger,
) -> Result<T, TriggerError> {
    serde_json::from_value(trigger.trigger_config.clone())
        .map_err(|e| TriggerError::config(app, &trigger.id, "trigger_config", e.to_string()))
}
