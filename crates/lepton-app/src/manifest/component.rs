//! `[component.<id>]` tables → LockedComponents with local `file://` content references.

use std::path::Path;

use serde_json::{Map, Value as Json};
use toml::{Table, Value};

use super::fields::Fields;
use super::files;
use crate::locked::{HOST_REQ_LOCAL_SERVICE_CHAINING, HOST_REQ_REQUIRED, WASM_CONTENT_TYPE};
use crate::{AppError, ContentPath, ContentRef, LockedComponent, LockedComponentSource, file_url};

const ALLOWED_KEYS: &[&str] = &[
    "source",
    "description",
    "files",
    "exclude_files",
    "environment",
    "allowed_outbound_hosts",
    "key_value_stores",
    "sqlite_databases",
    "ai_models",
    "variables",
    "build",
    "tool",
];

pub(crate) fn components(
    f: &Fields<'_>,
    doc: &Table,
    app_dir: &Path,
) -> Result<Vec<LockedComponent>, AppError> {
    let Some(table) = f.table(doc, "", "component")? else {
        return Ok(Vec::new());
    };
    table
        .iter()
        .map(|(id, def)| {
            let field = format!("component.{id}");
            let Value::Table(def) = def else {
                return Err(f.wrong_type(&field, "a table", def));
            };
            component(f, app_dir, id, def)
        })
        .collect()
}

fn component(
    f: &Fields<'_>,
    app_dir: &Path,
    id: &str,
    def: &Table,
) -> Result<LockedComponent, AppError> {
    let prefix = format!("component.{id}");
    if id.is_empty()
        || id.starts_with('-')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(f.invalid(
            &prefix,
            "component ids may contain only letters, digits, `-` and `_`",
        ));
    }
    for key in ["dependencies", "dependencies_inherit_configuration"] {
        if def.contains_key(key) {
            return Err(f.unsupported(
                &format!("{prefix}.{key}"),
                Some("composition is not supported yet"),
            ));
        }
    }
    if def.contains_key("allowed_http_hosts") {
        return Err(f.unsupported(
            &format!("{prefix}.allowed_http_hosts"),
            Some("use allowed_outbound_hosts"),
        ));
    }
    f.check_keys(def, &prefix, ALLOWED_KEYS)?;

    let source = wasm_source(f, app_dir, &prefix, def)?;
    let excludes = f.string_array(def, &prefix, "exclude_files")?;
    let mounts = files::expand(f, app_dir, &prefix, def.get("files"), &excludes)?;
    let files = mounts
        .into_iter()
        .map(|m| ContentPath {
            content: ContentRef {
                source: Some(file_url::from_path(&m.host)),
                ..Default::default()
            },
            path: m.guest,
        })
        .collect();

    let mut metadata = Map::new();
    if let Some(d) = f.string(def, &prefix, "description")? {
        metadata.insert("description".into(), Json::String(d));
    }
    let hosts = f.string_array(def, &prefix, "allowed_outbound_hosts")?;
    let chaining = hosts.iter().any(|h| h.contains(".spin.internal"));
    for (key, meta_key) in [
        ("allowed_outbound_hosts", "allowed_outbound_hosts"),
        ("key_value_stores", "key_value_stores"),
        ("sqlite_databases", "databases"),
        ("ai_models", "ai_models"),
    ] {
        let values = f.string_array(def, &prefix, key)?;
        if !values.is_empty() {
            metadata.insert(meta_key.into(), values.into());
        }
    }
    if let Some(build) = build_metadata(f, &prefix, def)? {
        metadata.insert("build".into(), build);
    }
    let mut host_requirements = Map::new();
    if chaining {
        host_requirements.insert(
            HOST_REQ_LOCAL_SERVICE_CHAINING.into(),
            Json::String(HOST_REQ_REQUIRED.into()),
        );
    }

    Ok(LockedComponent {
        id: id.to_string(),
        metadata,
        source,
        env: f.string_map(def, &prefix, "environment")?,
        files,
        config: f.string_map(def, &prefix, "variables")?,
        dependencies: Map::new(),
        trigger_dependencies: Map::new(),
        host_requirements,
    })
}

/// `[component.<id>.build]` → the `build` metadata value, serialized as Spin's
/// `ComponentBuildConfig`: `command` (string or array of strings), then `workdir` if set and
/// `watch` if non-empty. Unknown keys are rejected, as Spin's `deny_unknown_fields` does.
fn build_metadata(f: &Fields<'_>, prefix: &str, def: &Table) -> Result<Option<Json>, AppError> {
    let Some(build) = f.table(def, prefix, "build")? else {
        return Ok(None);
    };
    let field = format!("{prefix}.build");
    f.check_keys(build, &field, &["command", "workdir", "watch"])?;
    let command = match build.get("command") {
        Some(Value::String(c)) => Json::String(c.clone()),
        Some(Value::Array(_)) => f.string_array(build, &field, "command")?.into(),
        Some(other) => {
            return Err(f.wrong_type(
                &format!("{field}.command"),
                "a string or an array of strings",
                other,
            ));
        }
        None => return Err(f.invalid(&format!("{field}.command"), "missing")),
    };
    let mut out = Map::new();
    out.insert("command".into(), command);
    if let Some(workdir) = f.string(build, &field, "workdir")? {
        out.insert("workdir".into(), Json::String(workdir));
    }
    let watch = f.string_array(build, &field, "watch")?;
    if !watch.is_empty() {
        out.insert("watch".into(), watch.into());
    }
    Ok(Some(Json::Object(out)))
}

fn wasm_source(
    f: &Fields<'_>,
    app_dir: &Path,
    prefix: &str,
    def: &Table,
) -> Result<LockedComponentSource, AppError> {
    let field = format!("{prefix}.source");
    let path = match def.get("source") {
        Some(Value::String(p)) => p,
        Some(Value::Table(_)) => {
            return Err(f.unsupported(&field, Some("url/registry sources")));
        }
        Some(other) => return Err(f.wrong_type(&field, "a path string", other)),
        None => return Err(f.invalid(&field, "missing")),
    };
    let abs: std::path::PathBuf = app_dir
        .join(path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if !abs.is_file() {
        return Err(f.invalid(
            &field,
            format!("Wasm file {} does not exist", abs.display()),
        ));
    }
    Ok(LockedComponentSource {
        content_type: WASM_CONTENT_TYPE.into(),
        content: ContentRef {
            source: Some(file_url::from_path(&abs)),
            ..Default::default()
        },
    })
}
