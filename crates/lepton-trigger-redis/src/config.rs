//! A version's `[[trigger.redis]]` entries, resolved: which component handles which channel on
//! which server.
//!
//! As Spin reads them (facts §8.2, `crates/trigger-redis/src/lib.rs`): the app-level settings
//! are `{address}` and each trigger's config `{component, channel, address?}`, both
//! `deny_unknown_fields`; a trigger's own `address` wins over the app's; the default address, a
//! trigger's address and its channel are `{{ variable }}` templates, resolved when the version
//! is prepared. Unlike Spin, a trigger with no address at all, an address redis-rs cannot parse,
//! a TLS address (`rediss://`, not built in) and an empty channel fail the version here, naming
//! the app, trigger and field, instead of failing later.

use lepton_app::LockedApp;
use lepton_trigger::TriggerError;
use serde::Deserialize;

/// The app-level settings, `metadata.triggers.redis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerMetadata {
    address: String,
}

/// One trigger's `trigger_config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerConfig {
    component: String,
    channel: String,
    #[serde(default)]
    address: Option<String>,
}

/// Where a trigger is settings-wise: the field its address came from.
const SETTINGS: &str = "metadata.triggers.redis";

/// One trigger, its templates resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The trigger id.
    pub(crate) trigger: String,
    /// The component it invokes.
    pub(crate) component: String,
    /// The server.
    pub(crate) address: Address,
    /// The channel (exact name; Spin has no patterns).
    pub(crate) channel: String,
}

/// A Redis server: the resolved URL (which may hold a password) and how it is shown in logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Address {
    /// The URL as resolved (the key; never logged).
    pub(crate) url: String,
    /// `host:port` (or the socket path), for logs.
    pub(crate) display: String,
}

impl Address {
    /// Parse a resolved URL the way the subscription will use it.
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("rediss://") || url.starts_with("valkeys://") {
            return Err("TLS (`rediss://`) is not supported by lepton's Redis trigger yet".into());
        }
        let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
        let info = client.get_connection_info();
        Ok(Self {
            url: url.to_string(),
            display: info.addr.to_string(),
        })
    }
}

/// Resolve every Redis trigger of `locked`, rendering templates with `render` (the app's
/// variables).
pub(crate) fn resolve(
    app: &str,
    locked: &LockedApp,
    render: &dyn Fn(&str, &str, &str) -> Result<String, TriggerError>,
) -> Result<Vec<Resolved>, TriggerError> {
    let default_address = match locked.trigger_metadata("redis") {
        Some(settings) => {
            let meta: TriggerMetadata = serde_json::from_value(settings)
                .map_err(|e| TriggerError::config(app, SETTINGS, SETTINGS, e.to_string()))?;
            Some(render(
                SETTINGS,
                &format!("{SETTINGS}.address"),
                &meta.address,
            )?)
        }
        None => None,
    };
    let mut out = Vec::new();
    for trigger in locked.triggers_of("redis") {
        let config: TriggerConfig = lepton_trigger::trigger_config(app, trigger)?;
        let id = trigger.id.as_str();
        let (field, url) = match &config.address {
            Some(own) => {
                let field = "trigger_config.address";
                (field, render(id, field, own)?)
            }
            None => match &default_address {
                Some(url) => (SETTINGS, url.clone()),
                None => {
                    return Err(TriggerError::config(
                        app,
                        id,
                        "trigger_config.address",
                        format!("missing, and the app sets no default ({SETTINGS}.address)"),
                    ));
                }
            },
        };
        if url.is_empty() {
            return Err(TriggerError::config(app, id, field, "the address is empty"));
        }
        let address = Address::parse(&url).map_err(|e| TriggerError::config(app, id, field, e))?;
        let channel = render(id, "trigger_config.channel", &config.channel)?;
        if channel.is_empty() {
            return Err(TriggerError::config(
                app,
                id,
                "trigger_config.channel",
                "the channel is empty",
            ));
        }
        out.push(Resolved {
            trigger: trigger.id.clone(),
            component: config.component,
            address,
            channel,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn locked(metadata: serde_json::Value, triggers: serde_json::Value) -> LockedApp {
        LockedApp::from_json(
            json!({
                "spin_lock_version": 0,
                "metadata": metadata,
                "triggers": triggers,
                "components": [],
            })
            .to_string()
            .as_bytes(),
        )
        .expect("lock")
    }

    /// `{{ host }}` → `db`, `{{ chan }}` → `news`, anything else undefined.
    fn render(trigger: &str, field: &str, template: &str) -> Result<String, TriggerError> {
        if template.contains("{{ missing }}") {
            return Err(TriggerError::config(
                "app",
                trigger,
                field,
                "undefined variable: missing",
            ));
        }
        Ok(template
            .replace("{{ host }}", "db")
            .replace("{{ chan }}", "news"))
    }

    fn trigger(id: &str, config: serde_json::Value) -> serde_json::Value {
        json!({"id": id, "trigger_type": "redis", "trigger_config": config})
    }

    #[test]
    fn addresses_and_channels_resolve_like_spin() {
        let app = locked(
            json!({"triggers": {"redis": {"address": "redis://{{ host }}:6379"}}}),
            json!([
                trigger("t1", json!({"component": "a", "channel": "{{ chan }}"})),
                trigger("t2", json!({"component": "b", "channel": "x", "address": "redis://:secret@other:7000/2"})),
                trigger("t3", json!({"component": "c", "channel": "news"})),
                {"id": "h", "trigger_type": "http", "trigger_config": {"route": "/", "component": "a"}},
            ]),
        );
        let resolved = resolve("app", &app, &render).expect("resolves");
        let summary: Vec<(&str, &str, &str, &str)> = resolved
            .iter()
            .map(|r| {
                (
                    r.trigger.as_str(),
                    r.component.as_str(),
                    r.address.display.as_str(),
                    r.channel.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("t1", "a", "db:6379", "news"),
                ("t2", "b", "other:7000", "x"),
                ("t3", "c", "db:6379", "news"),
            ]
        );
        // The password stays in the key, never in what is logged.
        assert_eq!(resolved[1].address.url, "redis://:secret@other:7000/2");
        assert_eq!(resolved[0].address, resolved[2].address);
    }

    #[test]
    fn the_legacy_single_type_metadata_gives_the_default() {
        let app = locked(
            json!({"trigger": {"type": "redis", "address": "redis://legacy:1"}}),
            json!([trigger("t", json!({"component": "a", "channel": "c"}))]),
        );
        let resolved = resolve("app", &app, &render).expect("resolves");
        assert_eq!(resolved[0].address.display, "legacy:1");
    }

    #[test]
    fn bad_configurations_name_app_trigger_and_field() {
        let err = |metadata: serde_json::Value, config: serde_json::Value| {
            resolve(
                "shop",
                &locked(metadata, json!([trigger("t", config)])),
                &render,
            )
            .unwrap_err()
            .to_string()
        };
        let no_default = json!({"triggers": {}});
        let with_default = json!({"triggers": {"redis": {"address": "redis://db"}}});
        let cases = [
            (
                err(
                    no_default.clone(),
                    json!({"component": "a", "channel": "c"}),
                ),
                "app `shop`: trigger `t`: trigger_config.address: missing, and the app sets no default",
            ),
            (
                err(
                    with_default.clone(),
                    json!({"component": "a", "channel": "c", "queue": 1}),
                ),
                "app `shop`: trigger `t`: trigger_config: unknown field `queue`",
            ),
            (
                err(with_default.clone(), json!({"component": "a"})),
                "trigger_config: missing field `channel`",
            ),
            (
                err(
                    with_default.clone(),
                    json!({"component": "a", "channel": "{{ missing }}"}),
                ),
                "trigger `t`: trigger_config.channel: undefined variable: missing",
            ),
            (
                err(
                    with_default.clone(),
                    json!({"component": "a", "channel": "c", "address": "http://x"}),
                ),
                "trigger `t`: trigger_config.address: not a Redis URL",
            ),
            (
                err(
                    with_default.clone(),
                    json!({"component": "a", "channel": "c", "address": "rediss://x:6380"}),
                ),
                "trigger_config.address: TLS (`rediss://`) is not supported",
            ),
            (
                err(
                    json!({"triggers": {"redis": {"address": "redis://db", "password": "p"}}}),
                    json!({"component": "a", "channel": "c"}),
                ),
                "trigger `metadata.triggers.redis`: metadata.triggers.redis: unknown field `password`",
            ),
            (
                err(
                    json!({"triggers": {"redis": {"address": ""}}}),
                    json!({"component": "a", "channel": "c"}),
                ),
                "trigger `t`: metadata.triggers.redis: the address is empty",
            ),
        ];
        for (got, want) in cases {
            assert!(got.contains(want), "{got:?} should contain {want:?}");
        }
    }
}
