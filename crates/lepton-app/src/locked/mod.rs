//! The LockedApp (`spin.lock`) model: serde types matching Spin's lock schema exactly.
//!
//! Reading enforces the compatibility rules of Spin's schema: `spin_lock_version` ≤ 1, every
//! `must_understand` value known, host requirements known (`"optional"` ones dropped).
//! [`LockedApp::ensure_runnable`] then refuses what parses but lepton cannot serve faithfully
//! (composition dependencies, middleware, trigger types not served yet).

mod content;
mod runnable;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use content::{ContentPath, ContentRef, decode_inline, encode_inline};
pub use runnable::SERVED_TRIGGER_TYPES;

use crate::AppError;

/// Media type of a component's Wasm source in a LockedApp.
pub const WASM_CONTENT_TYPE: &str = "application/wasm";
/// `must_understand` value: the app has top-level `host_requirements`.
pub const MUST_UNDERSTAND_HOST_REQUIREMENTS: &str = "host_requirements";
/// `must_understand` value: some component has `host_requirements`.
pub const MUST_UNDERSTAND_COMPONENT_HOST_REQUIREMENTS: &str = "component_host_requirements";
/// Host requirement: outbound calls to `*.spin.internal` must be served in-process.
pub const HOST_REQ_LOCAL_SERVICE_CHAINING: &str = "local_service_chaining";
/// Host requirement: HTTP middleware support.
pub const HOST_REQ_MIDDLEWARE: &str = "middleware";
/// The value marking a host requirement as required.
pub const HOST_REQ_REQUIRED: &str = "required";
const HOST_REQ_OPTIONAL: &str = "optional";
const KNOWN_HOST_REQUIREMENTS: &[&str] = &[HOST_REQ_LOCAL_SERVICE_CHAINING, HOST_REQ_MIDDLEWARE];

/// A whole Spin application, as stored in `spin.lock` or an OCI artifact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LockedApp {
    /// Lock schema version (0, or 1 when `must_understand`/`host_requirements` are used).
    pub spin_lock_version: u64,
    /// Features a host must implement to run this app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<String>,
    /// App metadata (`name`, `version`, `origin`, `trigger`, `triggers`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// App-level host requirements (`key -> "required"`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub host_requirements: Map<String, Value>,
    /// Application variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, LockedVariable>,
    /// Triggers (routes etc.).
    pub triggers: Vec<LockedTrigger>,
    /// Components.
    pub components: Vec<LockedComponent>,
}

/// An application variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedVariable {
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default value; `None` means the variable is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Whether the value is secret (only emitted when true).
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A trigger: binds a component (or static response) to an event source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockedTrigger {
    /// Trigger id, e.g. `hello-http-trigger`.
    pub id: String,
    /// Trigger type, e.g. `http`.
    pub trigger_type: String,
    /// Type-specific configuration (`{"component": ..., "route": ...}` for HTTP).
    pub trigger_config: Value,
    /// Trigger-level dependencies (middleware), if any.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub trigger_dependencies: Map<String, Value>,
}

/// A component: Wasm source plus its runtime configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockedComponent {
    /// Component id.
    pub id: String,
    /// Component metadata (`allowed_outbound_hosts`, `key_value_stores`, `databases`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// The Wasm source.
    pub source: LockedComponentSource,
    /// WASI environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Files mounted into the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ContentPath>,
    /// Component variables (`key -> template`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Component dependencies (composition), kept verbatim.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub dependencies: Map<String, Value>,
    /// Trigger dependencies (middleware) the loader moved onto this component, kept verbatim
    /// (`role -> [dependency]`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub trigger_dependencies: Map<String, Value>,
    /// Component-level host requirements.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub host_requirements: Map<String, Value>,
}

/// A component's Wasm source: a content type plus a flattened [`ContentRef`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedComponentSource {
    /// Always `application/wasm` in practice.
    pub content_type: String,
    /// Where the Wasm comes from.
    #[serde(flatten)]
    pub content: ContentRef,
}

impl LockedApp {
    /// Parses a LockedApp from JSON, enforcing the lock version and `must_understand` rules.
    pub fn from_json(bytes: &[u8]) -> Result<LockedApp, AppError> {
        let mut app: LockedApp =
            serde_json::from_slice(bytes).map_err(AppError::InvalidLockedApp)?;
        if app.spin_lock_version > 1 {
            return Err(AppError::UnsupportedLockVersion(app.spin_lock_version));
        }
        for m in &app.must_understand {
            if m != MUST_UNDERSTAND_HOST_REQUIREMENTS
                && m != MUST_UNDERSTAND_COMPONENT_HOST_REQUIREMENTS
            {
                return Err(AppError::UnknownMustUnderstand(m.clone()));
            }
        }
        check_host_requirements(&mut app.host_requirements, "host_requirements")?;
        for c in &mut app.components {
            let field = format!("components[{}].host_requirements", c.id);
            check_host_requirements(&mut c.host_requirements, &field)?;
        }
        Ok(app)
    }

    /// Serializes to compact JSON (the form stored in registries and `spin.lock`).
    pub fn to_json_vec(&self) -> Result<Vec<u8>, AppError> {
        serde_json::to_vec(self).map_err(AppError::Serialize)
    }

    /// Serializes to pretty JSON, for human-readable `spin.lock` files.
    pub fn to_json_pretty(&self) -> Result<Vec<u8>, AppError> {
        serde_json::to_vec_pretty(self).map_err(AppError::Serialize)
    }

    /// Looks up a component by id.
    pub fn component(&self, id: &str) -> Option<&LockedComponent> {
        self.components.iter().find(|c| c.id == id)
    }

    /// The app-level settings of trigger type `trigger_type`, as Spin's
    /// `App::get_trigger_metadata` finds them: `metadata.triggers.<type>` when the app has a
    /// `triggers` map (new style), else the legacy single-type `metadata.trigger` when its `type`
    /// is `trigger_type` (without that `type` key). `None` when the app sets none.
    pub fn trigger_metadata(&self, trigger_type: &str) -> Option<Value> {
        if let Some(triggers) = self.metadata.get("triggers") {
            return triggers.get(trigger_type).cloned();
        }
        let legacy = self.metadata.get("trigger")?.as_object()?;
        if legacy.get("type").and_then(Value::as_str) != Some(trigger_type) {
            return None;
        }
        let mut settings = legacy.clone();
        settings.remove("type");
        Some(Value::Object(settings))
    }

    /// The triggers of type `trigger_type`, in lock order.
    pub fn triggers_of<'a>(
        &'a self,
        trigger_type: &'a str,
    ) -> impl Iterator<Item = &'a LockedTrigger> + 'a {
        self.triggers
            .iter()
            .filter(move |t| t.trigger_type == trigger_type)
    }
}

/// Drops `"optional"` requirements and rejects unknown required ones, as Spin does on read.
fn check_host_requirements(reqs: &mut Map<String, Value>, field: &str) -> Result<(), AppError> {
    reqs.retain(|_, v| v.as_str() != Some(HOST_REQ_OPTIONAL));
    for key in reqs.keys() {
        if !KNOWN_HOST_REQUIREMENTS.contains(&key.as_str()) {
            return Err(AppError::UnknownHostRequirement {
                field: field.to_string(),
                key: key.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
