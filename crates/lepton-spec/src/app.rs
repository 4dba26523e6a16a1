//! App specs and the `lepton.json` manifest that lists them.
//!
//! ```json
//! { "apps": [ { "reference": "registry/repo:tag", "address": "127.0.0.1:4001", "state_dir": "app1" } ] }
//! ```
//!
//! Optional per-app fields: `name`, `variables` (a map of app variable values, the highest-priority
//! variables provider), `runtime_config` (a path to a Spin `runtime-config.toml`, resolved
//! against the manifest's directory) and `limits` (see [`crate::limits`]).
//!
//! tauon's app files ([`parse_app_file`]) hold one such entry each, named after the file.
//!
//! The whole file is validated before anything listens: every problem is reported (not just the
//! first), each naming the file, the field and the app. Relative `state_dir`s are resolved against
//! the manifest's directory, so a manifest means the same thing from any working directory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::limits::LimitOverrides;

/// One app the operator wants running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// A human label for logs: the `name` field, or `apps[i]`.
    pub name: String,
    /// The OCI reference to run.
    pub reference: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Where its data and logs live (absolute).
    pub state_dir: PathBuf,
    /// App variable values given by the operator (highest-priority provider).
    pub variables: BTreeMap<String, String>,
    /// A Spin `runtime-config.toml` for this app (absolute), if any.
    pub runtime_config: Option<PathBuf>,
    /// The limits this app sets; the rest come from the host-wide defaults.
    pub limits: LimitOverrides,
}

/// A problem with a manifest; the message names the file, the field and the app.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The manifest path.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("{file}: line {line}, column {column}: {message}")]
    Parse {
        /// The manifest path.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde said.
        message: String,
    },
    /// One or more apps are invalid.
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
}

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The manifest path.
    pub file: PathBuf,
    /// The app label (`apps[2] (name)`).
    pub app: String,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: `{}`: {}",
            self.file.display(),
            self.app,
            self.field,
            self.message
        )
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the app manifest:",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    apps: Vec<RawApp>,
}

/// The per-app JSON shape (shared with tauon's one-file-per-app directory).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    #[serde(default)]
    name: Option<String>,
    reference: String,
    address: String,
    state_dir: String,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    runtime_config: Option<String>,
    #[serde(default)]
    limits: Option<serde_json::Value>,
}

/// A parsed, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The apps, in file order.
    pub apps: Vec<AppSpec>,
}

impl Manifest {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validate `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawManifest = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            file: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        let mut problems = Vec::new();
        let mut apps = Vec::new();
        let mut seen_addr: HashMap<SocketAddr, String> = HashMap::new();
        let mut seen_state: HashMap<PathBuf, String> = HashMap::new();
        let mut seen_name: HashMap<String, String> = HashMap::new();
        for (i, app) in raw.apps.into_iter().enumerate() {
            let label = match &app.name {
                Some(n) => format!("apps[{i}] ({n})"),
                None => format!("apps[{i}] ({})", app.reference),
            };
            let mut problem = |field, message: String| {
                problems.push(Problem {
                    file: path.to_path_buf(),
                    app: label.clone(),
                    field,
                    message,
                })
            };
            if let Some(n) = &app.name
                && !n.is_empty()
                && let Some(other) = seen_name.insert(n.clone(), label.clone())
            {
                problem("name", format!("`{n}` is already used by {other}"));
            }
            let fallback = default_name(&app.reference, i);
            let checked = check_app(app, path, &base, &label, fallback, &mut problems);
            let mut problem = |field, message: String| {
                problems.push(Problem {
                    file: path.to_path_buf(),
                    app: label.clone(),
                    field,
                    message,
                })
            };
            if let Some(a) = checked.address {
                if let Some((b, other)) = seen_addr.iter().find(|(b, _)| addresses_conflict(a, **b))
                {
                    problem("address", format!("{a} is already used by {other} ({b})"));
                }
                seen_addr.insert(a, label.clone());
            }
            if let Some(dir) = checked.state_dir
                && let Some(other) = seen_state.insert(dir.clone(), label.clone())
            {
                problem(
                    "state_dir",
                    format!(
                        "{} is already used by {other}; apps must not share data",
                        dir.display()
                    ),
                );
            }
            if let Some(spec) = checked.spec {
                apps.push(spec);
            }
        }
        if problems.is_empty() {
            Ok(Self { apps })
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// What [`check_app`] could make of one app entry.
struct Checked {
    address: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
    spec: Option<AppSpec>,
}

/// Validate one app entry on its own (no cross-app checks), pushing every problem found.
fn check_app(
    app: RawApp,
    file: &Path,
    base: &Path,
    label: &str,
    fallback_name: String,
    problems: &mut Vec<Problem>,
) -> Checked {
    let mut problem = |field, message: String| {
        problems.push(Problem {
            file: file.to_path_buf(),
            app: label.to_string(),
            field,
            message,
        })
    };
    if let Some(n) = &app.name
        && n.is_empty()
    {
        problem("name", "must not be empty".into());
    }
    if let Err(e) = lepton_oci::parse_reference(&app.reference) {
        problem("reference", e.to_string());
    }
    let address = match app.address.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => {
            problem(
                "address",
                format!("{:?} is not an IP:port socket address ({e})", app.address),
            );
            None
        }
    };
    let state_dir = if app.state_dir.is_empty() {
        problem("state_dir", "must not be empty".into());
        None
    } else {
        let dir = normalize(&base.join(&app.state_dir));
        if dir.exists() && !dir.is_dir() {
            problem(
                "state_dir",
                format!("{} exists and is not a directory", dir.display()),
            );
        }
        Some(dir)
    };
    let runtime_config = match app.runtime_config.as_deref() {
        None => Some(None),
        Some("") => {
            problem("runtime_config", "must not be empty".into());
            None
        }
        Some(path) => {
            let path = normalize(&base.join(path));
            if path.is_file() {
                Some(Some(path))
            } else {
                problem(
                    "runtime_config",
                    format!("{} does not exist or is not a file", path.display()),
                );
                None
            }
        }
    };
    let limits = match app.limits.as_ref().map(LimitOverrides::from_json) {
        None => Some(LimitOverrides::default()),
        Some(Ok(limits)) => Some(limits),
        Some(Err(found)) => {
            for (field, message) in found {
                problem(field, message);
            }
            None
        }
    };
    let spec = match (address, &state_dir, runtime_config, limits) {
        (Some(address), Some(state_dir), Some(runtime_config), Some(limits))
            if !app.name.as_deref().is_some_and(str::is_empty) =>
        {
            Some(AppSpec {
                name: app.name.clone().unwrap_or(fallback_name),
                reference: app.reference,
                address,
                state_dir: state_dir.clone(),
                variables: app.variables,
                runtime_config,
                limits,
            })
        }
        _ => None,
    };
    Checked {
        address,
        state_dir,
        spec,
    }
}

/// One tauon app file: the per-app shape of a `lepton.json` entry, alone in its own file.
///
/// The app's `name` defaults to the file stem, and relative paths are resolved against the
/// file's directory.
pub fn parse_app_file(path: &Path, text: &str) -> Result<AppSpec, ConfigError> {
    let raw: RawApp = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
        file: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = raw.name.clone().unwrap_or_else(|| stem.clone());
    let fallback = if stem.is_empty() {
        default_name(&raw.reference, 0)
    } else {
        stem
    };
    let mut problems = Vec::new();
    let checked = check_app(raw, path, &base, &label, fallback, &mut problems);
    match checked.spec {
        Some(spec) if problems.is_empty() => Ok(spec),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// Two listen addresses collide when they share a port (other than 0, which picks a free one)
/// and either the IPs are equal or one is a wildcard (`0.0.0.0`, `[::]`) of the same family or,
/// for `[::]`, any family (dual-stack sockets).
pub fn addresses_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (x, y) = (a.ip(), b.ip());
    x == y
        || (x.is_unspecified() && (x.is_ipv6() || y.is_ipv4()))
        || (y.is_unspecified() && (y.is_ipv6() || x.is_ipv4()))
}

/// `registry/ns/repo:tag` → `repo`, falling back to `app<i>`.
fn default_name(reference: &str, i: usize) -> String {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo = last.split(':').next().unwrap_or(last);
    if repo.is_empty() {
        format!("app{i}")
    } else {
        repo.to_string()
    }
}

/// Make `path` absolute and drop `.` components, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    abs.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Manifest, ConfigError> {
        Manifest::parse(Path::new("/etc/lepton/lepton.json"), json)
    }

    #[test]
    fn valid_manifest_resolves_state_dirs_against_the_file() {
        let m = parse(r#"{"apps":[{"reference":"127.0.0.1:5000/hello:v1","address":"127.0.0.1:4001","state_dir":"app1"}]}"#)
            .expect("valid");
        assert_eq!(m.apps[0].state_dir, PathBuf::from("/etc/lepton/app1"));
        assert_eq!(m.apps[0].name, "hello");
        assert_eq!(m.apps[0].address, "127.0.0.1:4001".parse().expect("addr"));
    }

    #[test]
    fn every_problem_is_reported_naming_file_field_and_app() {
        let err = parse(
            r#"{"apps":[
                {"reference":"127.0.0.1:5000/a:v1","address":"127.0.0.1:4001","state_dir":"a"},
                {"reference":"127.0.0.1:5000/b:v1","address":"127.0.0.1:4001","state_dir":"b"},
                {"reference":"Not A Reference!","address":"nowhere","state_dir":"a"}
            ]}"#,
        )
        .expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.contains("4 problems"), "{msg}");
        assert!(msg.contains("/etc/lepton/lepton.json: apps[1] (127.0.0.1:5000/b:v1): `address`: 127.0.0.1:4001 is already used by apps[0]"), "{msg}");
        assert!(
            msg.contains("apps[2] (Not A Reference!): `reference`"),
            "{msg}"
        );
        assert!(
            msg.contains("apps[2] (Not A Reference!): `address`"),
            "{msg}"
        );
        assert!(
            msg.contains("apps[2] (Not A Reference!): `state_dir`"),
            "{msg}"
        );
    }

    #[test]
    fn wildcard_addresses_conflict_with_specific_ones_on_the_same_port() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(addresses_conflict(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(addresses_conflict(addr("127.0.0.1:80"), addr("0.0.0.0:80")));
        assert!(addresses_conflict(addr("[::]:80"), addr("127.0.0.1:80")));
        assert!(!addresses_conflict(
            addr("127.0.0.1:80"),
            addr("127.0.0.2:80")
        ));
        assert!(!addresses_conflict(
            addr("127.0.0.1:80"),
            addr("127.0.0.1:81")
        ));
        assert!(!addresses_conflict(
            addr("127.0.0.1:0"),
            addr("127.0.0.1:0")
        ));
    }

    #[test]
    fn an_app_file_is_one_entry_named_after_its_file() {
        let spec = parse_app_file(
            Path::new("/srv/tauon/shop.json"),
            r#"{"reference":"127.0.0.1:5000/hello:v1","address":"127.0.0.1:4001","state_dir":"data/shop","variables":{"k":"v"}}"#,
        )
        .expect("valid");
        assert_eq!(spec.name, "shop");
        assert_eq!(spec.state_dir, PathBuf::from("/srv/tauon/data/shop"));
        assert_eq!(spec.variables.get("k").map(String::as_str), Some("v"));
        let named = parse_app_file(
            Path::new("/srv/tauon/shop.json"),
            r#"{"name":"store","reference":"r.io/hello:v1","address":"127.0.0.1:4001","state_dir":"s"}"#,
        )
        .expect("valid");
        assert_eq!(named.name, "store");
    }

    #[test]
    fn app_file_errors_name_the_file_line_and_field() {
        let err = parse_app_file(
            Path::new("/srv/tauon/shop.json"),
            "{\n \"reference\": \"r.io/a:1\",\n oops }",
        )
        .expect_err("invalid");
        assert!(
            err.to_string().starts_with("/srv/tauon/shop.json: line 3"),
            "{err}"
        );
        let err = parse_app_file(
            Path::new("/srv/tauon/shop.json"),
            r#"{"reference":"r.io/a:1","address":"nowhere","state_dir":""}"#,
        )
        .expect_err("invalid");
        let msg = err.to_string();
        assert!(
            msg.contains("/srv/tauon/shop.json: shop: `address`"),
            "{msg}"
        );
        assert!(
            msg.contains("/srv/tauon/shop.json: shop: `state_dir`"),
            "{msg}"
        );
        let err = parse_app_file(
            Path::new("/srv/tauon/half.json"),
            "{\"reference\": \"r.io/a",
        )
        .expect_err("a half-written file is an error");
        assert!(
            err.to_string().starts_with("/srv/tauon/half.json: line 1"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_fields_point_at_the_line() {
        let err = parse("{\"apps\": [\n {\"reference\": \"r/x:1\", \"adress\": \"x\"}]}")
            .expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/lepton/lepton.json: line 2"), "{msg}");
        assert!(msg.contains("adress"), "{msg}");
    }
}
