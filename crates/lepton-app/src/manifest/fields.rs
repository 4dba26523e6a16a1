//! Field access on raw TOML tables with errors that name the manifest file and the full dotted
//! field path (e.g. `component.hello.files[1].destination`).

use std::collections::BTreeMap;
use std::path::Path;

use toml::{Table, Value};

use crate::AppError;

/// Reads fields of one manifest, producing path-qualified errors.
pub(crate) struct Fields<'a> {
    pub(crate) manifest: &'a Path,
}

impl Fields<'_> {
    pub(crate) fn invalid(&self, field: &str, message: impl Into<String>) -> AppError {
        AppError::InvalidField {
            path: self.manifest.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(&self, field: &str, reason: Option<&str>) -> AppError {
        AppError::UnsupportedField {
            path: self.manifest.to_path_buf(),
            field: field.to_string(),
            reason: reason.map(str::to_string),
        }
    }

    /// Rejects any key of `table` not in `allowed`.
    pub(crate) fn check_keys(
        &self,
        table: &Table,
        prefix: &str,
        allowed: &[&str],
    ) -> Result<(), AppError> {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(AppError::UnknownField {
                    path: self.manifest.to_path_buf(),
                    field: join(prefix, key),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn table<'t>(
        &self,
        parent: &'t Table,
        prefix: &str,
        key: &str,
    ) -> Result<Option<&'t Table>, AppError> {
        match parent.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(other) => Err(self.wrong_type(&join(prefix, key), "a table", other)),
        }
    }

    pub(crate) fn string(
        &self,
        parent: &Table,
        prefix: &str,
        key: &str,
    ) -> Result<Option<String>, AppError> {
        match parent.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong_type(&join(prefix, key), "a string", other)),
        }
    }

    pub(crate) fn boolean(
        &self,
        parent: &Table,
        prefix: &str,
        key: &str,
    ) -> Result<bool, AppError> {
        match parent.get(key) {
            None => Ok(false),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(self.wrong_type(&join(prefix, key), "a boolean", other)),
        }
    }

    pub(crate) fn string_array(
        &self,
        parent: &Table,
        prefix: &str,
        key: &str,
    ) -> Result<Vec<String>, AppError> {
        let field = join(prefix, key);
        match parent.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.wrong_type(&format!("{field}[{i}]"), "a string", other)),
                })
                .collect(),
            Some(other) => Err(self.wrong_type(&field, "an array of strings", other)),
        }
    }

    pub(crate) fn string_map(
        &self,
        parent: &Table,
        prefix: &str,
        key: &str,
    ) -> Result<BTreeMap<String, String>, AppError> {
        let field = join(prefix, key);
        let Some(table) = self.table(parent, prefix, key)? else {
            return Ok(BTreeMap::new());
        };
        table
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(self.wrong_type(&join(&field, k), "a string", other)),
            })
            .collect()
    }

    pub(crate) fn wrong_type(&self, field: &str, expected: &str, got: &Value) -> AppError {
        self.invalid(
            field,
            format!("expected {expected}, found {}", got.type_str()),
        )
    }
}

/// Joins a dotted prefix and a key.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Converts a TOML value into the equivalent JSON value.
pub(crate) fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}
