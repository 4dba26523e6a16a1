//! Spin manifest v2 (`spin.toml`) → LockedApp, matching what Spin's local loader produces.
//!
//! Content is referenced locally: component sources and each mounted file become `file://`
//! URLs, and files carry their relative guest path (destination prefix applied). Every field
//! that lepton does not support (URL/registry sources, composition, trigger types other than
//! `http`, `redis` and `cron`, ...) and every unknown field is an error naming the full dotted
//! field path and the manifest file.

mod component;
mod fields;
mod files;
mod triggers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use crate::locked::{
    HOST_REQ_LOCAL_SERVICE_CHAINING, HOST_REQ_REQUIRED,
    MUST_UNDERSTAND_COMPONENT_HOST_REQUIREMENTS, MUST_UNDERSTAND_HOST_REQUIREMENTS,
};
use crate::{AppError, LockedApp, LockedVariable};
use fields::Fields;

/// Reads `spin.toml` at `path` and converts it to a local LockedApp.
pub fn load_manifest(path: &Path) -> Result<LockedApp, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| AppError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let abs = std::path::absolute(path).map_err(|e| AppError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    from_toml_str(&text, &abs)
}

/// Converts manifest text to a local LockedApp. `manifest_path` is used for error messages, and
/// its directory is the base for relative `source` and `files` paths.
pub fn from_toml_str(text: &str, manifest_path: &Path) -> Result<LockedApp, AppError> {
    let f = Fields {
        manifest: manifest_path,
    };
    let doc: Table = toml::from_str(text).map_err(|e| AppError::ManifestSyntax {
        path: manifest_path.to_path_buf(),
        message: e.to_string(),
    })?;
    f.check_keys(
        &doc,
        "",
        &[
            "spin_manifest_version",
            "application",
            "variables",
            "trigger",
            "component",
        ],
    )?;
    match doc.get("spin_manifest_version") {
        Some(Value::Integer(2)) => {}
        Some(Value::String(s)) if s == "2" => {}
        Some(other) => {
            return Err(f.invalid(
                "spin_manifest_version",
                format!("only manifest version 2 is supported, found {other}"),
            ));
        }
        None => return Err(f.invalid("spin_manifest_version", "missing (expected 2)")),
    }
    let app_dir = manifest_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));

    let mut metadata = application_metadata(&f, &doc)?;
    let variables = variables(&f, &doc)?;
    let components = component::components(&f, &doc, &app_dir)?;
    let triggers = triggers::triggers(&f, &doc, &components)?;

    let mut types: Vec<&str> = triggers.iter().map(|t| t.trigger_type.as_str()).collect();
    types.dedup();
    if let [only] = types.as_slice() {
        let mut legacy = Map::new();
        legacy.insert("type".into(), Json::String(only.to_string()));
        if let Some(Json::Object(global)) = metadata.get("triggers").and_then(|t| t.get(*only)) {
            for (k, v) in global {
                legacy.insert(k.clone(), v.clone());
            }
        }
        metadata.insert("trigger".into(), Json::Object(legacy));
    }
    metadata.insert(
        "origin".into(),
        Json::String(crate::file_url::from_path(manifest_path)),
    );

    let mut app = LockedApp {
        spin_lock_version: 0,
        metadata,
        variables,
        triggers,
        components,
        ..Default::default()
    };
    if app.components.iter().any(|c| {
        c.host_requirements
            .contains_key(HOST_REQ_LOCAL_SERVICE_CHAINING)
    }) {
        app.host_requirements.insert(
            HOST_REQ_LOCAL_SERVICE_CHAINING.into(),
            Json::String(HOST_REQ_REQUIRED.into()),
        );
        app.must_understand = vec![
            MUST_UNDERSTAND_HOST_REQUIREMENTS.into(),
            MUST_UNDERSTAND_COMPONENT_HOST_REQUIREMENTS.into(),
        ];
        app.spin_lock_version = 1;
    }
    Ok(app)
}

/// `[application]` → app metadata (`name`, `version`, `description`, `authors`, `triggers`).
fn application_metadata(f: &Fields<'_>, doc: &Table) -> Result<Map<String, Json>, AppError> {
    let app = f
        .table(doc, "", "application")?
        .ok_or_else(|| f.invalid("application", "missing [application] table"))?;
    f.check_keys(
        app,
        "application",
        &[
            "name",
            "version",
            "description",
            "authors",
            "trigger",
            "targets",
            "tool",
        ],
    )?;
    let mut meta = Map::new();
    let name = f
        .string(app, "application", "name")?
        .ok_or_else(|| f.invalid("application.name", "missing"))?;
    meta.insert("name".into(), Json::String(name));
    for key in ["version", "description"] {
        if let Some(v) = f.string(app, "application", key)?
            && !v.is_empty()
        {
            meta.insert(key.into(), Json::String(v));
        }
    }
    let authors = f.string_array(app, "application", "authors")?;
    if !authors.is_empty() {
        meta.insert("authors".into(), authors.into());
    }
    let global = triggers::global_settings(f, app)?;
    meta.insert("triggers".into(), Json::Object(global));
    Ok(meta)
}

/// `[variables]` → app variables.
fn variables(f: &Fields<'_>, doc: &Table) -> Result<BTreeMap<String, LockedVariable>, AppError> {
    let mut out = BTreeMap::new();
    let Some(vars) = f.table(doc, "", "variables")? else {
        return Ok(out);
    };
    for (name, def) in vars {
        let field = format!("variables.{name}");
        let Value::Table(def) = def else {
            return Err(f.wrong_type(&field, "a table", def));
        };
        f.check_keys(
            def,
            &field,
            &["default", "required", "secret", "description"],
        )?;
        let default = f.string(def, &field, "default")?;
        let required = f.boolean(def, &field, "required")?;
        match (&default, required) {
            (Some(_), true) => {
                return Err(f.invalid(
                    &field,
                    "a variable cannot have both `default` and `required = true`",
                ));
            }
            (None, false) => {
                return Err(f.invalid(
                    &field,
                    "a variable must have either a `default` or `required = true`",
                ));
            }
            _ => {}
        }
        out.insert(
            name.clone(),
            LockedVariable {
                description: f.string(def, &field, "description")?,
                default,
                secret: f.boolean(def, &field, "secret")?,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
