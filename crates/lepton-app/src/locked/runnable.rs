//! [`LockedApp::ensure_runnable`]: refuse apps whose semantics lepton cannot honour yet.
//!
//! A LockedApp may parse fine and still need features lepton lacks: component composition
//! (`dependencies`) and HTTP middleware (`trigger_dependencies`, or the `middleware` host
//! requirement). Serving such an app without them would silently change its behaviour (e.g.
//! skip an auth middleware), so the app is refused with an error naming the component or trigger.

use serde_json::{Map, Value};

use super::{HOST_REQ_MIDDLEWARE, HOST_REQ_OPTIONAL, LockedApp};
use crate::AppError;

impl LockedApp {
    /// Checks that lepton can run this app as written: no component has `dependencies` or
    /// `trigger_dependencies`, no trigger has `trigger_dependencies`, and neither the app's nor a
    /// component's `host_requirements` requires `middleware`.
    ///
    /// The first problem found is returned; per-component and per-trigger problems are reported
    /// before the app-level `middleware` requirement, because they name the culprit.
    pub fn ensure_runnable(&self) -> Result<(), AppError> {
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
