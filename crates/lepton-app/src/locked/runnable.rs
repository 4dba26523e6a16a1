//! [`LockedApp::ensure_runnable`]: refuse apps whose semantics lepton cannot honour yet.
//!
//! A LockedApp may parse fine and still need features lepton lacks: component composition
//! (`dependencies`), HTTP middleware (`trigger_dependencies`, or the `middleware` host
//! requirement), or a trigger type the host does not serve. Serving such an app without them
//! would silently change its behaviour (e.g. skip an auth middleware, or never deliver its Redis
//! messages), so the app is refused with an error naming the component or trigger.
//!
//! Which trigger types are served is the caller's to say: [`LockedApp::ensure_runnable_with`]
//! takes the list, and [`LockedApp::ensure_runnable`] is it with [`SERVED_TRIGGER_TYPES`].

use serde_json::{Map, Value};

use super::{HOST_REQ_MIDDLEWARE, HOST_REQ_OPTIONAL, LockedApp};
use crate::AppError;

/// The trigger types lepton serves: HTTP (`lepton-trigger-http`), Redis
/// (`lepton-trigger-redis`) and cron (`lepton-trigger-cron`), all started, replaced and drained
/// by the supervisor.
pub const SERVED_TRIGGER_TYPES: &[&str] = &["http", "redis", "cron"];

impl LockedApp {
    /// [`Self::ensure_runnable_with`] the trigger types lepton serves ([`SERVED_TRIGGER_TYPES`]).
    pub fn ensure_runnable(&self) -> Result<(), AppError> {
        self.ensure_runnable_with(SERVED_TRIGGER_TYPES)
    }

    /// Checks that a host serving the trigger types `served` can run this app as written: every
    /// trigger's type is in `served`, no component has `dependencies` or
    /// `trigger_dependencies`, no trigger has `trigger_dependencies`, and neither the app's nor a
    /// component's `host_requirements` requires `middleware`.
    ///
    /// The first problem found is returned; per-trigger and per-component problems are reported
    /// before the app-level `middleware` requirement, because they name the culprit.
    pub fn ensure_runnable_with(&self, served: &[&str]) -> Result<(), AppError> {
        for t in &self.triggers {
            if !served.contains(&t.trigger_type.as_str()) {
                return Err(AppError::TriggerNotServed {
                    trigger: t.id.clone(),
                    trigger_type: t.trigger_type.clone(),
                    served: served.join(", "),
                });
            }
        }
        for c in &self.components {
            if !c.dependencies.is_empty() {
                return Err(AppError::UncomposedDependencies {
                    component: c.id.clone(),
                    dependencies: c.dependencies.keys().cloned().collect(),
                });
            }
            if !c.trigger_dependencies.is_empty() {
                return Err(AppError::ComponentMiddleware {
                    component: c.id.clone(),
                });
            }
        }
        for t in &self.triggers {
            if !t.trigger_dependencies.is_empty() {
                return Err(AppError::TriggerMiddleware {
                    trigger: t.id.clone(),
                });
            }
        }
        for c in &self.components {
            if requires_middleware(&c.host_requirements) {
                return Err(AppError::MiddlewareRequired {
                    field: format!("component `{}` host_requirements", c.id),
                });
            }
        }
        if requires_middleware(&self.host_requirements) {
            return Err(AppError::MiddlewareRequired {
                field: "host_requirements".into(),
            });
        }
        Ok(())
    }
}

/// Whether `middleware` is present and not `"optional"` (Spin drops optional ones on read; an app
/// built in memory may still carry them).
fn requires_middleware(reqs: &Map<String, Value>) -> bool {
    reqs.get(HOST_REQ_MIDDLEWARE)
        .is_some_and(|v| v.as_str() != Some(HOST_REQ_OPTIONAL))
}
