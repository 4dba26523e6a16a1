//! `[[trigger.http]]` entries → LockedTriggers.
//!
//! `trigger_config` is the entry's table minus `id`, as JSON. The id defaults to
//! `<component>-http-trigger` (or `http-trigger<N>` for component-less static responses).

use std::collections::HashSet;

use toml::{Table, Value};

use super::fields::{Fields, to_json};
use crate::{AppError, LockedComponent, LockedTrigger};

pub(crate) fn triggers(
    f: &Fields<'_>,
    doc: &Table,
    components: &[LockedComponent],
) -> Result<Vec<LockedTrigger>, AppError> {
    let mut out = Vec::new();
    let Some(types) = f.table(doc, "", "trigger")? else {
        return Ok(out);
    };
    let mut ids = HashSet::new();
    for (ty, entries) in types {
        let field = format!("trigger.{ty}");
        if ty != "http" {
            return Err(f.unsupported(&field, Some("only HTTP triggers are supported")));
        }
        let Value::Array(entries) = entries else {
            return Err(f.wrong_type(&field, "an array of tables ([[trigger.http]])", entries));
        };
        for (i, entry) in entries.iter().enumerate() {
            let field = format!("trigger.http[{i}]");
            let Value::Table(entry) = entry else {
                return Err(f.wrong_type(&field, "a table", entry));
            };
            let trigger = http_trigger(f, &field, i, entry, components)?;
            if !ids.insert(trigger.id.clone()) {
                return Err(f.invalid(
                    &format!("{field}.id"),
                    format!("duplicate trigger id {:?}", trigger.id),
                ));
            }
            out.push(trigger);
        }
    }
    Ok(out)
}

fn http_trigger(
    f: &Fields<'_>,
    field: &str,
    index: usize,
    entry: &Table,
    components: &[LockedComponent],
) -> Result<LockedTrigger, AppError> {
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

    let id = match f.string(entry, field, "id")? {
        Some(id) => id,
        None => match &component {
            Some(c) => format!("{c}-http-trigger"),
            None => format!("http-trigger{index}"),
        },
    };
    let mut config = entry.clone();
    config.remove("id");
    Ok(LockedTrigger {
        id,
        trigger_type: "http".into(),
        trigger_config: to_json(&Value::Table(config)),
        trigger_dependencies: Default::default(),
    })
}
