//! `[[trigger.<type>]]` entries → LockedTriggers, and `[application.trigger.<type>]` → the app's
//! global trigger settings (the locked app's `metadata.triggers`).
//!
//! The trigger types lepton knows are Spin's `http` and `redis` and the `spin-trigger-cron`
//! plugin's `cron`; any other type is refused, naming the field. Each entry is checked against its
//! type's fields as Spin checks them (`deny_unknown_fields`):
//! - `http`: `route`, `component` or `static_response`, `executor`, `id`;
//! - `redis`: `component`, `channel`, optional `address` (overriding
//!   `[application.trigger.redis] address`), `id`. `channel` and both addresses may hold
//!   `{{ variable }}` templates, kept raw in the lock and resolved when the trigger starts;
//! - `cron`: `component`, `cron_expression` (used verbatim, no templates), `id`.
//!
//! `trigger_config` is the entry's table minus `id`, as JSON, exactly as Spin's loader writes it.
//! Ids follow Spin's `normalize_trigger_ids` (`crates/manifest/src/normalize.rs`): explicit ids are
//! kept (and must be unique); a trigger without one gets `<component>-<type>-trigger` when that id
//! is still free, otherwise `<type>-trigger<N>` with a per-type counter starting at 1 that skips
//! ids in use.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use super::fields::{Fields, to_json};
use crate::{AppError, LockedComponent, LockedTrigger};

/// The trigger types a manifest may use.
const KNOWN_TYPES: &str = "http, redis and cron";

/// One validated trigger entry, before its id is normalised.
struct Parsed {
    /// `trigger.<type>[<i>]`, for error messages.
    field: String,
    trigger_type: String,
    /// The explicit, non-empty `id`, if any.
    id: Option<String>,
    /// The referenced component id, if any (static responses have none).
    component: Option<String>,
    trigger: LockedTrigger,
}

pub(crate) fn triggers(
    f: &Fields<'_>,
    doc: &Table,
    components: &[LockedComponent],
) -> Result<Vec<LockedTrigger>, AppError> {
    let Some(types) = f.table(doc, "", "trigger")? else {
        return Ok(Vec::new());
    };
    let default_redis_address = doc
        .get("application")
        .and_then(|a| a.get("trigger"))
        .and_then(|t| t.get("redis"))
        .and_then(|r| r.get("address"))
        .is_some();
    let mut parsed = Vec::new();
    for (ty, entries) in types {
        let field = format!("trigger.{ty}");
        if !matches!(ty.as_str(), "http" | "redis" | "cron") {
            return Err(f.unsupported(&field, Some(&unknown_type(ty))));
        }
        let Value::Array(entries) = entries else {
            return Err(f.wrong_type(
                &field,
                &format!("an array of tables ([[trigger.{ty}]])"),
                entries,
            ));
        };
        for (i, entry) in entries.iter().enumerate() {
            let field = format!("trigger.{ty}[{i}]");
            let Value::Table(entry) = entry else {
                return Err(f.wrong_type(&field, "a table", entry));
            };
            parsed.push(match ty.as_str() {
                "http" => http_trigger(f, field, entry, components)?,
                "redis" => redis_trigger(f, field, entry, components, default_redis_address)?,
                _ => cron_trigger(f, field, entry, components)?,
            });
        }
    }
    assign_ids(f, parsed)
}

/// `[application.trigger.<type>]` → `metadata.triggers` (`type -> settings`): `http` may set
/// `base = "/"` (deprecated; anything else is refused, as Spin refuses it), `redis` sets the
/// default `address`, `cron` has no settings.
pub(crate) fn global_settings(f: &Fields<'_>, app: &Table) -> Result<Map<String, Json>, AppError> {
    let mut global = Map::new();
    let Some(trigger) = f.table(app, "application", "trigger")? else {
        return Ok(global);
    };
    for (ty, settings) in trigger {
        let field = format!("application.trigger.{ty}");
        if !matches!(ty.as_str(), "http" | "redis" | "cron") {
            return Err(f.unsupported(&field, Some(&unknown_type(ty))));
        }
        let Value::Table(settings) = settings else {
            return Err(f.wrong_type(&field, "a table", settings));
        };
        match ty.as_str() {
            "http" => {
                f.check_keys(settings, &field, &["base"])?;
                if let Some(base) = f.string(settings, &field, "base")?
                    && base != "/"
                {
                    return Err(f.invalid(
                        &format!("{field}.base"),
                        format!(
                            "{base:?} is not supported (HTTP base is deprecated; only \"/\" is allowed)"
                        ),
                    ));
                }
            }
            "redis" => {
                f.check_keys(settings, &field, &["address"])?;
                if f.string(settings, &field, "address")?.is_none() {
                    return Err(f.invalid(
                        &format!("{field}.address"),
                        "missing (the default Redis server, e.g. \"redis://localhost:6379\")",
                    ));
                }
            }
            _ => f.check_keys(settings, &field, &[])?,
        }
        global.insert(ty.clone(), to_json(&Value::Table(settings.clone())));
    }
    Ok(global)
}

fn unknown_type(ty: &str) -> String {
    format!("trigger type `{ty}` is not supported; lepton knows {KNOWN_TYPES} triggers")
}

/// Applies Spin's trigger id normalisation; explicit duplicate ids are an error.
fn assign_ids(f: &Fields<'_>, parsed: Vec<Parsed>) -> Result<Vec<LockedTrigger>, AppError> {
    // Explicit ids first, so generated ids never collide with them.
    let mut taken = HashSet::new();
    for p in &parsed {
        if let Some(id) = &p.id
            && !taken.insert(id.clone())
        {
            return Err(f.invalid(
                &format!("{}.id", p.field),
                format!("duplicate trigger id {id:?}"),
            ));
        }
    }
    // Spin keeps one counter per trigger type, starting at 1.
    let mut counters: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(parsed.len());
    for p in parsed {
        let Parsed {
            trigger_type,
            id,
            component,
            mut trigger,
            ..
        } = p;
        trigger.id = match id {
            Some(id) => id,
            None => {
                let natural = component
                    .map(|c| format!("{c}-{trigger_type}-trigger"))
                    .filter(|candidate| !taken.contains(candidate));
                let id = match natural {
                    Some(id) => id,
                    None => {
                        let counter = counters.entry(trigger_type.clone()).or_insert(1);
                        loop {
                            let candidate = format!("{trigger_type}-trigger{counter}");
                            if !taken.contains(&candidate) {
                                break candidate;
                            }
                            *counter += 1;
                        }
                    }
                };
                taken.insert(id.clone());
                id
            }
        };
        out.push(trigger);
    }
    Ok(out)
}

fn http_trigger(
    f: &Fields<'_>,
    field_path: String,
    entry: &Table,
    components: &[LockedComponent],
) -> Result<Parsed, AppError> {
    let field = field_path.as_str();
    refuse_middleware(f, field, entry)?;
    f.check_keys(
        entry,
        field,
        &["route", "component", "id", "executor", "static_response"],
    )?;

    match entry.get("route") {
        Some(Value::String(_)) => {}
        Some(Value::Table(t)) => {
            let route_field = format!("{field}.route");
            f.check_keys(t, &route_field, &["private"])?;
            if !f.boolean(t, &route_field, "private")? {
                return Err(f.invalid(
                    &route_field,
                    "must be a route string or `{ private = true }`",
                ));
            }
        }
        Some(other) => {
            return Err(f.wrong_type(
                &format!("{field}.route"),
                "a string or { private = true }",
                other,
            ));
        }
        None => return Err(f.invalid(&format!("{field}.route"), "missing")),
    }

    let component = component_ref(f, field, entry, components)?;
    match (&component, entry.get("static_response")) {
        (Some(_), Some(_)) => {
            return Err(f.invalid(
                field,
                "set exactly one of `component` or `static_response`, not both",
            ));
        }
        (None, None) => return Err(f.invalid(&format!("{field}.component"), "missing")),
        (None, Some(Value::Table(_))) | (Some(_), None) => {}
        (None, Some(other)) => {
            return Err(f.wrong_type(&format!("{field}.static_response"), "a table", other));
        }
    }
    if let Some(exec) = entry.get("executor")
        && !matches!(exec, Value::Table(_))
    {
        return Err(f.wrong_type(&format!("{field}.executor"), "a table", exec));
    }

    parsed(f, field_path, "http", entry, component)
}

/// A `[[trigger.redis]]` entry: `component` and `channel` required, `address` optional when the
/// app sets a default (`[application.trigger.redis] address`).
fn redis_trigger(
    f: &Fields<'_>,
    field_path: String,
    entry: &Table,
    components: &[LockedComponent],
    default_address: bool,
) -> Result<Parsed, AppError> {
    let field = field_path.as_str();
    refuse_middleware(f, field, entry)?;
    f.check_keys(entry, field, &["component", "channel", "address", "id"])?;
    let component = component_ref(f, field, entry, components)?
        .ok_or_else(|| f.invalid(&format!("{field}.component"), "missing"))?;
    match f.string(entry, field, "channel")? {
        Some(channel) if !channel.is_empty() => {}
        Some(_) => return Err(f.invalid(&format!("{field}.channel"), "must not be empty")),
        None => return Err(f.invalid(&format!("{field}.channel"), "missing")),
    }
    if f.string(entry, field, "address")?.is_none() && !default_address {
        return Err(f.invalid(
            &format!("{field}.address"),
            "missing, and [application.trigger.redis] sets no default `address`",
        ));
    }
    parsed(f, field_path, "redis", entry, Some(component))
}

/// A `[[trigger.cron]]` entry (the spin-trigger-cron plugin's): `component` and
/// `cron_expression` required. The expression is checked by the cron trigger when it starts.
fn cron_trigger(
    f: &Fields<'_>,
    field_path: String,
    entry: &Table,
    components: &[LockedComponent],
) -> Result<Parsed, AppError> {
    let field = field_path.as_str();
    refuse_middleware(f, field, entry)?;
    f.check_keys(entry, field, &["component", "cron_expression", "id"])?;
    let component = component_ref(f, field, entry, components)?
        .ok_or_else(|| f.invalid(&format!("{field}.component"), "missing"))?;
    match f.string(entry, field, "cron_expression")? {
        Some(expr) if !expr.trim().is_empty() => {}
        Some(_) => {
            return Err(f.invalid(&format!("{field}.cron_expression"), "must not be empty"));
        }
        None => return Err(f.invalid(&format!("{field}.cron_expression"), "missing")),
    }
    parsed(f, field_path, "cron", entry, Some(component))
}

/// Spin's trigger-level `components` (middleware) is refused for every type.
fn refuse_middleware(f: &Fields<'_>, field: &str, entry: &Table) -> Result<(), AppError> {
    if entry.contains_key("components") {
        return Err(f.unsupported(
            &format!("{field}.components"),
            Some("trigger middleware/dependencies are not supported yet"),
        ));
    }
    Ok(())
}

/// The entry's `component`: an id naming a `[component.<id>]`, or absent.
fn component_ref(
    f: &Fields<'_>,
    field: &str,
    entry: &Table,
    components: &[LockedComponent],
) -> Result<Option<String>, AppError> {
    match entry.get("component") {
        None => Ok(None),
        Some(Value::String(id)) => {
            if !components.iter().any(|c| &c.id == id) {
                return Err(f.invalid(
                    &format!("{field}.component"),
                    format!("no [component.{id}] is defined"),
                ));
            }
            Ok(Some(id.clone()))
        }
        Some(Value::Table(_)) => Err(f.unsupported(
            &format!("{field}.component"),
            Some("inline component tables are not supported; define [component.<id>] and reference it by id"),
        )),
        Some(other) => Err(f.wrong_type(
            &format!("{field}.component"),
            "a component id string",
            other,
        )),
    }
}

/// The validated entry as a LockedTrigger of `trigger_type`, its id still to be assigned.
fn parsed(
    f: &Fields<'_>,
    field_path: String,
    trigger_type: &str,
    entry: &Table,
    component: Option<String>,
) -> Result<Parsed, AppError> {
    // Spin treats a missing and an empty `id` alike: both get a generated id.
    let id = f
        .string(entry, &field_path, "id")?
        .filter(|id| !id.is_empty());
    let mut config = entry.clone();
    config.remove("id");
    Ok(Parsed {
        field: field_path,
        trigger_type: trigger_type.into(),
        id,
        component,
        trigger: LockedTrigger {
            id: String::new(),
            trigger_type: trigger_type.into(),
            trigger_config: to_json(&Value::Table(config)),
            trigger_dependencies: Default::default(),
        },
    })
}
