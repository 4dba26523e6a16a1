//! Expansion of a component's `files` / `exclude_files` into individual file mounts.
//!
//! Each mounted file becomes `(absolute host path, relative guest path)`: glob patterns keep
//! their path relative to the manifest directory; `{source, destination}` directories are walked
//! and prefixed with the destination.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use toml::Value;

use super::fields::Fields;
use crate::AppError;

/// One file to mount: where it is on the host and its relative guest path (forward slashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMount {
    pub(crate) host: PathBuf,
    pub(crate) guest: String,
}

/// Expands `files` (already fetched as raw TOML) for the component at `prefix`.
pub(crate) fn expand(
    f: &Fields<'_>,
    app_dir: &Path,
    prefix: &str,
    files: Option<&Value>,
    excludes: &[String],
) -> Result<Vec<FileMount>, AppError> {
    let field = format!("{prefix}.files");
    let Some(files) = files else {
        return Ok(Vec::new());
    };
    let Value::Array(entries) = files else {
        return Err(f.wrong_type(&field, "an array", files));
    };
    let exclude_field = format!("{prefix}.exclude_files");
    let excludes = excludes
        .iter()
        .map(|p| {
            glob::Pattern::new(p)
                .map_err(|e| f.invalid(&exclude_field, format!("invalid pattern {p:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Keyed by guest path so a later mount of the same path wins deterministically.
    let mut mounts: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry_field = format!("{field}[{i}]");
        let found = match entry {
            Value::String(pattern) => expand_pattern(f, app_dir, &entry_field, pattern)?,
            Value::Table(t) => {
                f.check_keys(t, &entry_field, &["source", "destination"])?;
                let source = f
                    .string(t, &entry_field, "source")?
                    .ok_or_else(|| f.invalid(&format!("{entry_field}.source"), "missing"))?;
                let dest = f
                    .string(t, &entry_field, "destination")?
                    .ok_or_else(|| f.invalid(&format!("{entry_field}.destination"), "missing"))?;
                expand_placement(f, app_dir, &entry_field, &source, &dest)?
            }
            other => return Err(f.wrong_type(&entry_field, "a string or a table", other)),
        };
        for (host, guest) in found {
            let rel = host.strip_prefix(app_dir).unwrap_or(&host);
            if excludes.iter().any(|p| p.matches_path(rel)) {
                continue;
            }
            mounts.insert(guest, host);
        }
    }
    Ok(mounts
        .into_iter()
        .map(|(guest, host)| FileMount { host, guest })
        .collect())
}

/// Glob pattern relative to the manifest directory; each matching file keeps its relative path.
fn expand_pattern(
    f: &Fields<'_>,
    app_dir: &Path,
    field: &str,
    pattern: &str,
) -> Result<Vec<(PathBuf, String)>, AppError> {
    if !is_plain_relative(Path::new(pattern)) {
        return Err(f.invalid(
            field,
            format!("pattern {pattern:?} must be relative to the manifest directory without `..`"),
        ));
    }
    let full = format!(
        "{}/{}",
        glob::Pattern::escape(&app_dir.to_string_lossy()),
        pattern
    );
    let paths = glob::glob(&full)
        .map_err(|e| f.invalid(field, format!("invalid pattern {pattern:?}: {e}")))?;
    let mut out = Vec::new();
    for path in paths {
        let path = path.map_err(|e| AppError::Io {
            path: e.path().to_path_buf(),
            source: std::io::Error::new(e.error().kind(), e.error().to_string()),
        })?;
        if !path.is_file() {
            continue;
        }
        let rel = path.strip_prefix(app_dir).unwrap_or(&path);
        out.push((path.clone(), guest_path(rel)));
    }
    Ok(out)
}

/// `{source = "dir", destination = "/x"}`: every file under `dir`, placed under `x`.
fn expand_placement(
    f: &Fields<'_>,
    app_dir: &Path,
    field: &str,
    source: &str,
    destination: &str,
) -> Result<Vec<(PathBuf, String)>, AppError> {
    let Some(dest) = destination.strip_prefix('/') else {
        return Err(f.invalid(
            &format!("{field}.destination"),
            format!("{destination:?} must be an absolute guest path (start with `/`)"),
        ));
    };
    if !is_plain_relative(Path::new(dest)) {
        return Err(f.invalid(
            &format!("{field}.destination"),
            format!("{destination:?} must not contain `..`"),
        ));
    }
    let dest = dest.trim_end_matches('/');
    let src = app_dir.join(source);
    let meta = std::fs::metadata(&src).map_err(|e| AppError::Io {
        path: src.clone(),
        source: e,
    })?;
    if meta.is_file() {
        if dest.is_empty() {
            return Err(f.invalid(
                &format!("{field}.destination"),
                "a single file needs a file destination, not `/`",
            ));
        }
        return Ok(vec![(src, dest.to_string())]);
    }
    let mut files = Vec::new();
    walk(&src, &mut files)?;
    Ok(files
        .into_iter()
        .map(|host| {
            let rel = guest_path(host.strip_prefix(&src).unwrap_or(&host));
            let guest = if dest.is_empty() {
                rel
            } else {
                format!("{dest}/{rel}")
            };
            (host, guest)
        })
        .collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AppError> {
    let io = |e| AppError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // Follow symlinks like Spin's copy does.
        let meta = std::fs::metadata(&path).map_err(|e| AppError::Io {
            path: path.clone(),
            source: e,
        })?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn is_plain_relative(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// A relative host path as a forward-slash guest path.
fn guest_path(rel: &Path) -> String {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}
