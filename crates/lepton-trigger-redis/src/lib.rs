//! Spin's Redis trigger (`[[trigger.redis]]`) for lepton: each message published on a
//! subscribed channel invokes the components the app routes that channel to, each with a fresh
//! instance, under the app's limits.
//!
//! **Configuration** ([`config`]): Spin's, `address` per trigger or app-wide, `channel`, both
//! with `{{ variable }}` templates. **Handlers** ([`guest`]): `fermyon:spin/inbound-redis`
//! (spin-sdk 2.x–5.x) and `spin:redis/inbound-redis@3.0.0` (spin-sdk 6+). **Subscriptions**
//! ([`subscriber`]): one connection per server, reconnecting with backoff.
//!
//! **Semantics**, Spin's (facts §8.3) unless noted:
//! - one pub/sub connection per distinct server and one `SUBSCRIBE` per distinct channel, shared
//!   by every component routed to it; exact channel names, no patterns;
//! - on one server, messages are handled one at a time in arrival order; the components of one
//!   message run concurrently, and the next message waits for the slowest;
//! - a guest error or trap is logged (Spin: at INFO, so invisible by default; lepton: WARN) and
//!   the message dropped: no retry;
//! - limits, beyond Spin: each run takes a `max_concurrent_requests` slot (waiting at most
//!   `request_timeout_ms`), is stopped at `request_timeout_ms` (Spin has no timeout here), and is
//!   held to `memory_mib`; at most `max_queued_requests` messages wait per server, more are
//!   dropped;
//! - a dropped connection is re-established with backoff (Spin ends the trigger instead).
//!
//! **Delivery guarantee.** Redis pub/sub is at-most-once: a message published while no
//! subscriber is connected (Redis down, a reconnect in progress) is lost, with Spin as with
//! lepton. lepton gives at least that, and across a **live replace** exactly once: the
//! connection to each server is kept across versions ([`RedisTrigger::swap`] subscribes the new
//! version's channels before it unsubscribes the old version's), and each message is bound to
//! the version current when it arrives, so every message published during the switch on a
//! channel both versions use is handled once, by one of them. Messages the old version already
//! received finish on it while it drains.

mod config;
mod guest;
mod subscriber;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use lepton_runtime::AppLimits;
use lepton_trigger::{Current, Gate, InFlight, Retired, Trigger, TriggerContext, TriggerError};
use tokio::sync::Mutex;

use config::Address;
use guest::{Outcome, RedisHandler};
use subscriber::Subscriber;

/// How long a swap waits for a server to confirm the new version's subscriptions before it
/// switches anyway (the subscription still completes in the background).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);

/// One app version's Redis triggers: which components handle which channel on which server.
pub struct RedisVersion {
    app: Arc<str>,
    routes: BTreeMap<Address, BTreeMap<String, Vec<Route>>>,
    limits: AppLimits,
    gate: Gate,
    in_flight: InFlight,
}

/// One trigger: its id and its component's handler.
struct Route {
    trigger: String,
    handler: RedisHandler,
}

impl RedisVersion {
    /// A version with no triggers (what a stopped trigger dispatches to).
    fn empty(app: Arc<str>) -> Self {
        let limits = AppLimits::default();
        Self {
            app,
            routes: BTreeMap::new(),
            gate: Gate::new(&limits),
            limits,
            in_flight: InFlight::default(),
        }
    }

    /// The channels it subscribes to, by server.
    fn channels(&self) -> BTreeMap<Address, BTreeSet<String>> {
        self.routes
            .iter()
            .map(|(address, channels)| (address.clone(), channels.keys().cloned().collect()))
            .collect()
    }

    /// The triggers handling `channel` on `address`.
    fn route(&self, address: &Address, channel: &str) -> &[Route] {
        self.routes
            .get(address)
            .and_then(|channels| channels.get(channel))
            .map_or(&[], Vec::as_slice)
    }

    /// The version's work in flight (running and queued messages).
    fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// Handle one message with every component routed to its channel, concurrently.
    async fn dispatch(&self, address: &Address, channel: &str, payload: Vec<u8>) {
        let runs = self
            .route(address, channel)
            .iter()
            .map(|route| self.run(route, address, channel, payload.clone()));
        futures::future::join_all(runs).await;
    }

    /// One component's run, logged.
    async fn run(&self, route: &Route, address: &Address, channel: &str, payload: Vec<u8>) {
        let component = route.handler.component().id();
        let result = match self.gate.enter(self.limits.request_timeout()).await {
            Ok(_slot) => route.handler.handle(payload).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(Outcome::Handled) => tracing::debug!(
                app = %self.app, trigger = %route.trigger, component, redis = %address.display,
                channel, "redis message handled"
            ),
            Ok(Outcome::GuestError(error)) => tracing::warn!(
                app = %self.app, trigger = %route.trigger, component, redis = %address.display,
                channel, %error, "redis handler returned an error; message dropped"
            ),
            Err(e) => tracing::warn!(
                app = %self.app, trigger = %route.trigger, component, redis = %address.display,
                channel, limit = e.limit(), "redis handler failed: {e}; message dropped"
            ),
        }
    }
}

/// An app's Redis trigger, kept across its versions: its subscriptions and the version they
/// dispatch to.
pub struct RedisTrigger {
    app: Arc<str>,
    current: Current<RedisVersion>,
    /// The subscriptions by server; the lock serializes swaps and stops.
    subscribers: Mutex<BTreeMap<Address, Subscriber>>,
}

impl RedisTrigger {
    /// The servers it is subscribed to (`host:port`) and their channels.
    pub async fn subscriptions(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.subscribers
            .lock()
            .await
            .iter()
            .map(|(address, s)| (address.display.clone(), s.channels().clone()))
            .collect()
    }

    /// Subscribe every server of `version` to its channels plus `keep` (the channels a previous
    /// version still needs until the switch), starting subscriptions for new servers; waits
    /// (up to [`SUBSCRIBE_WAIT`] each) until they are subscribed or found down.
    async fn subscribe_all(
        &self,
        subscribers: &mut BTreeMap<Address, Subscriber>,
        version: &RedisVersion,
    ) {
        let mut waits = Vec::new();
        for (address, channels) in version.channels() {
            let wait = match subscribers.get_mut(&address) {
                Some(subscriber) => {
                    let both = subscriber.channels().union(&channels).cloned().collect();
                    subscriber.set_channels(both)
                }
                None => {
                    let (subscriber, ready) = Subscriber::spawn(
                        self.app.clone(),
                        address.clone(),
                        channels,
                        self.current.clone(),
                        version.limits.max_queued_requests as usize,
                    );
                    subscribers.insert(address.clone(), subscriber);
                    ready
                }
            };
            waits.push((address, wait));
        }
        for (address, wait) in waits {
            if tokio::time::timeout(SUBSCRIBE_WAIT, wait).await.is_err() {
                tracing::warn!(app = %self.app, redis = %address.display, "redis trigger: the server did not confirm the subscriptions in time; switching anyway");
            }
        }
    }

    /// After a switch to `version`: drop the channels and servers it does not use.
    fn prune(&self, subscribers: &mut BTreeMap<Address, Subscriber>, version: &RedisVersion) {
        let wanted = version.channels();
        let servers: Vec<Address> = subscribers.keys().cloned().collect();
        for address in servers {
            match wanted.get(&address) {
                Some(channels) => {
                    if let Some(subscriber) = subscribers.get_mut(&address)
                        && subscriber.channels() != channels
                    {
                        // Unsubscribing needs no wait: the version no longer routes them.
                        drop(subscriber.set_channels(channels.clone()));
                    }
                }
                None => {
                    if let Some(subscriber) = subscribers.remove(&address) {
                        drop(subscriber.close());
                    }
                }
            }
        }
    }
}

impl Trigger for RedisTrigger {
    const TYPE: &'static str = "redis";
    type Version = RedisVersion;

    fn prepare(ctx: &TriggerContext<'_>) -> Result<RedisVersion, TriggerError> {
        let render =
            |trigger: &str, field: &str, template: &str| ctx.render(trigger, field, template);
        let resolved = config::resolve(ctx.app, ctx.locked, &render)?;
        let mut routes: BTreeMap<Address, BTreeMap<String, Vec<Route>>> = BTreeMap::new();
        for r in resolved {
            let component = ctx.runtime.component(&r.component).ok_or_else(|| {
                TriggerError::config(
                    ctx.app,
                    &r.trigger,
                    "trigger_config.component",
                    format!(
                        "refers to component `{}`, which the app does not define",
                        r.component
                    ),
                )
            })?;
            let handler = RedisHandler::new(component.clone())
                .map_err(|e| TriggerError::component(ctx.app, &r.trigger, &r.component, e))?;
            routes
                .entry(r.address)
                .or_default()
                .entry(r.channel)
                .or_default()
                .push(Route {
                    trigger: r.trigger,
                    handler,
                });
        }
        let limits = *ctx.runtime.limits();
        Ok(RedisVersion {
            app: ctx.app.into(),
            routes,
            gate: Gate::new(&limits),
            limits,
            in_flight: InFlight::default(),
        })
    }

    async fn start(app: &str, version: RedisVersion) -> Self {
        let app: Arc<str> = app.into();
        let version = Arc::new(version);
        let trigger = RedisTrigger {
            app: app.clone(),
            current: Current::new(version.clone()),
            subscribers: Mutex::new(BTreeMap::new()),
        };
        {
            let mut subscribers = trigger.subscribers.lock().await;
            trigger.subscribe_all(&mut subscribers, &version).await;
        }
        trigger
    }

    async fn swap(&self, next: RedisVersion) -> Retired {
        let next = Arc::new(next);
        let mut subscribers = self.subscribers.lock().await;
        // 1. The new version's channels are subscribed (the old ones still are).
        self.subscribe_all(&mut subscribers, &next).await;
        // 2. From the next message on, the new version handles them.
        let old = self.current.replace(next.clone());
        // 3. Only then do the old version's channels go.
        self.prune(&mut subscribers, &next);
        Retired::new(old.in_flight.clone())
    }

    async fn stop(&self) -> Retired {
        let mut subscribers = self.subscribers.lock().await;
        for (_, subscriber) in std::mem::take(&mut *subscribers) {
            drop(subscriber.close());
        }
        let old = self
            .current
            .replace(Arc::new(RedisVersion::empty(self.app.clone())));
        Retired::new(old.in_flight.clone())
    }
}
