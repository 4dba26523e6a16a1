//! The exports lepton's non-HTTP triggers call, and which components must have them.
//!
//! A component's HTTP handler is detected in [`crate::app`] (Spin's one-of rule). This module
//! names the others — the Redis handler in both shapes Spin's SDKs export, and the cron plugin's
//! handler — and works out which trigger types use each component, so that the load requires
//! exactly the exports a component's triggers will call ([`ComponentExports`]).

use lepton_app::LockedApp;
use wasmtime::component::{Component, InstancePre};

use crate::app::ComponentPre;
use crate::host::HostState;
use crate::{ComponentHandlerKind, RuntimeError};

/// The export name of the unversioned Redis handler interface (spin-sdk 2.x–5.x `#[redis_component]`,
/// Python spin-sdk 3 `spin-redis`).
pub const SPIN_INBOUND_REDIS: &str = "fermyon:spin/inbound-redis";

/// The export name of the current Redis handler interface (spin-sdk 6+ `#[redis_subscriber]`,
/// Python spin-sdk 5 `redis-trigger`); any `3.x` version matches.
pub const SPIN_INBOUND_REDIS_V3: &str = "spin:redis/inbound-redis@3.0.0";

/// The cron handler: a top-level function export of the `spin-trigger-cron` plugin's
/// `fermyon:spin-cron@2.0.0` world.
pub const CRON_HANDLER: &str = "handle-cron-event";

/// Which Redis handler interface a component exports (facts §8.3, §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisHandlerKind {
    /// [`SPIN_INBOUND_REDIS`]: `handle-message: func(payload) -> result<_, error>`, synchronous.
    V1,
    /// [`SPIN_INBOUND_REDIS_V3`]: `handle-message: async func(payload) -> result<_, error>`.
    V3,
}

/// What a component exports that lepton's triggers call, detected once at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ComponentExports {
    /// Its HTTP handler, or [`ComponentHandlerKind::Command`]; `None` for a component that only
    /// non-HTTP triggers use and that exports no (unambiguous) HTTP handler or command.
    pub http: Option<ComponentHandlerKind>,
    /// Its Redis handler, if it exports exactly one.
    pub redis: Option<RedisHandlerKind>,
    /// Whether it exports [`CRON_HANDLER`].
    pub cron: bool,
}

/// Which trigger types use a component (`trigger_config.component`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TriggerUses {
    pub(crate) http: bool,
    pub(crate) redis: bool,
    pub(crate) cron: bool,
}

impl TriggerUses {
    pub(crate) fn of(locked: &LockedApp, component: &str) -> Self {
        let mut uses = Self::default();
        for trigger in &locked.triggers {
            if trigger
                .trigger_config
                .get("component")
                .and_then(|c| c.as_str())
                != Some(component)
            {
                continue;
            }
            match trigger.trigger_type.as_str() {
                "http" => uses.http = true,
                "redis" => uses.redis = true,
                "cron" => uses.cron = true,
                _ => {}
            }
        }
        uses
    }

    /// HTTP detection is required unless only non-HTTP triggers use the component.
    pub(crate) fn needs_http(&self) -> bool {
        self.http || !(self.redis || self.cron)
    }
}

/// The Redis handler among a component's export names; exactly one is required when a Redis
/// trigger uses the component (Spin: "does not export a Redis interface" / "exports multiple").
pub(crate) fn detect_redis(
    id: &str,
    names: &[&str],
    required: bool,
) -> Result<Option<RedisHandlerKind>, RuntimeError> {
    let v1 = names.contains(&SPIN_INBOUND_REDIS);
    let v3 = names
        .iter()
        .any(|name| name.starts_with("spin:redis/inbound-redis@3."));
    let err = |reason: String| RuntimeError::Handler {
        component: id.to_string(),
        reason,
    };
    match (v1, v3) {
        (true, false) => Ok(Some(RedisHandlerKind::V1)),
        (false, true) => Ok(Some(RedisHandlerKind::V3)),
        (true, true) if required => Err(err(format!(
            "exports {SPIN_INBOUND_REDIS} and spin:redis/inbound-redis@3.x; exactly one Redis \
             handler export is allowed"
        ))),
        (false, false) if required => Err(err(format!(
            "is used by a Redis trigger but exports no Redis handler lepton supports: expected \
             {SPIN_INBOUND_REDIS} (spin-sdk 2.x–5.x) or {SPIN_INBOUND_REDIS_V3} (spin-sdk 6+)"
        ))),
        _ => Ok(None),
    }
}

/// Detect every trigger export of a component, requiring the ones its triggers need (see the
/// module doc). The HTTP part is [`crate::app`]'s `detect_handler`, unchanged.
pub(crate) fn detect_exports(
    id: &str,
    engine: &wasmtime::Engine,
    compiled: &Component,
    instance_pre: &InstancePre<HostState>,
    exports_command: bool,
    uses: TriggerUses,
) -> Result<(ComponentHandlerKind, ComponentPre, ComponentExports), RuntimeError> {
    let component_type = compiled.component_type();
    let names: Vec<&str> = component_type
        .exports(engine)
        .map(|(name, _)| name)
        .collect();
    let redis = detect_redis(id, &names, uses.redis)?;
    let cron = names.contains(&CRON_HANDLER);
    if uses.cron && !cron {
        return Err(RuntimeError::Handler {
            component: id.to_string(),
            reason: format!(
                "is used by a cron trigger but does not export `{CRON_HANDLER}` (the \
                 spin-trigger-cron plugin's fermyon:spin-cron@2.0.0 `spin-cron` world)"
            ),
        });
    }
    let http = match crate::app::detect_handler(id, compiled, instance_pre, exports_command) {
        Ok(found) => Some(found),
        Err(e) if uses.needs_http() => return Err(e),
        Err(_) => None,
    };
    let exports = ComponentExports {
        http: http.as_ref().map(|(kind, _)| *kind),
        redis,
        cron,
    };
    let (kind, pre) = http.unwrap_or_else(|| {
        (
            ComponentHandlerKind::Command,
            ComponentPre::Plain(instance_pre.clone()),
        )
    });
    Ok((kind, pre, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_redis_export_is_found_and_required_only_when_used() {
        let v1 = [SPIN_INBOUND_REDIS, "wasi:http/incoming-handler@0.2.0"];
        let v3 = ["spin:redis/inbound-redis@3.0.1"];
        let both = [SPIN_INBOUND_REDIS, SPIN_INBOUND_REDIS_V3];
        let none = ["wasi:http/incoming-handler@0.2.0"];
        let found = |names: &[&str], required| detect_redis("c", names, required);
        assert_eq!(found(&v1, true).unwrap(), Some(RedisHandlerKind::V1));
        assert_eq!(found(&v3, true).unwrap(), Some(RedisHandlerKind::V3));
        assert_eq!(found(&both, false).unwrap(), None);
        assert_eq!(found(&none, false).unwrap(), None);
        let err = found(&both, true).unwrap_err().to_string();
        assert!(err.contains("exactly one Redis handler"), "{err}");
        let err = found(&none, true).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "component `c`: is used by a Redis trigger but exports no Redis handler"
            ),
            "{err}"
        );
        // Another major version is not this interface.
        assert_eq!(
            found(&["spin:redis/inbound-redis@4.0.0"], false).unwrap(),
            None
        );
    }

    #[test]
    fn http_detection_is_required_unless_only_other_triggers_use_the_component() {
        let uses = |http, redis, cron| TriggerUses { http, redis, cron };
        assert!(uses(false, false, false).needs_http(), "unused: as before");
        assert!(uses(true, true, false).needs_http());
        assert!(!uses(false, true, false).needs_http());
        assert!(!uses(false, false, true).needs_http());
    }
}
