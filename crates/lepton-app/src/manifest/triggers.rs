//! `[[trigger.<type>]]` entries → LockedTriggers.
//!
//! `trigger_config` is the entry's table minus `id`, as JSON. Ids follow Spin's
//! `normalize_trigger_ids` (`crates/manifest/src/normalize.rs`): explicit ids are kept (and must be
//! unique); a trigger without one gets `<component>-<type>-trigger` when that id is still free,
//! otherwise `<type>-trigger<N>` with a per-type counter starting at 1 that skips ids in use.

use std::collections::{HashMap, HashSet};

use toml::{Table, Value};

use super::fields::{Fields, to_json};
use crate::{AppError, LockedComponent, LockedTrigger};

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
    let mut parsed = Vec::new();
    for (ty, entries) in types {
        let field = format!("trigger.{ty}");
        if ty != "http" {
            return Err(f.unsupported(&field, Some("only HTTP triggers are supported")));
        }
        let Value::Array(entries) = entries else {
            return Err(f.wrong_type(&field, "an array of tables ([[trigger.http]])", entries));
        };
        for (i, entry) in entries.iter().enumerate() {
            let field = format!("trigger.{ty}[{i}]");
            let Value::Table(entry) = entry else {
                return Err(f.wrong_type(&field, "a table", entry));
            };
            parsed.push(http_trigger(f, field, entry, components)?);
        }
    }
    assign_ids(f, parsed)
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
    if entry.contains_key("components") {
        return Err(f.unsupported(
            &format!("{field}.components"),
            Some("trigger middleware/dependencies are not supported yet"),
        ));
    }
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

    let component = match entry.get("component") {
        None => None,
        Some(Value::String(id)) => {
            if !components.iter().any(|c| &c.id == id) {
                return Err(f.invalid(
                    &format!("{field}.component"),
                    format!("no [component.{id}] is defined"),
                ));
            }
            Some(id.clone())
        }
        Some(Value::Table(_)) => {
            return Err(f.unsupported(
                &format!("{field}.component"),
                Some("inline component tables are not supported; define [component.<id>] and reference it by id"),
            ));
        }
        Some(other) => {
            return Err(f.wrong_type(
                &format!("{field}.component"),
                "a component id string",
                other,
            ));
        }
    };
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

    // Spin treats a missing and an empty `id` alike: both get a generated id.
    let id = f.string(entry, field, "id")?.filter(|id| !id.is_empty());
    let mut config = entry.clone();
    config.remove("id");
    Ok(Parsed {
        field: field_path,
        trigger_type: "http".into(),
        id,
        component,
        trigger: LockedTrigger {
            id: String::new(),
            trigger_type: "http".into(),
            trigger_config: to_json(&Value::Table(config)),
            trigger_dependencies: Default::default(),
        },
    })
}
