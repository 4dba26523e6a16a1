//! App specs and the `lepton.json` manifest that lists them.
//!
//! ```json
//! { "apps": [ { "reference": "registry/repo:tag", "address": "127.0.0.1:4001", "state_dir": "app1" } ] }
//! ```
//!
//! Optional per-app fields: `name`, `variables` (a map of app variable values, the highest-priority
//! variables provider), `runtime_config` (a path to a Spin `runtime-config.toml`, resolved
//! against the manifest's directory), `limits` (see [`crate::limits`]), `hosts` (names the
//! app answers to on a shared ingress, see [`crate::hosts`]), `preload` (`true`: load the app
//! as soon as it is in the desired state; `false`: on its first request; absent: the host's
//! `--load` default) and, for `lepton serve` only, `tls` (the certificate its hosts are served
//! with over HTTPS, see [`crate::tls`]).
//!
//! tauon's app files ([`parse_app_file`]) hold one such entry each, named after the file. The
//! admin API's `PUT /v1/apps/{name}` body ([`parse_api_app`]) is the same object, where
//! `state_dir` is optional too. `address` is optional everywhere: an app with HTTP triggers needs
//! an address or some hosts, which is checked once its triggers are known (when it is pulled);
//! an app whose triggers are all Redis or cron needs neither.
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
use crate::tls::AppTls;

/// One app the operator wants running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// A human label for logs: the `name` field, or `apps[i]`.
    pub name: String,
    /// The OCI reference to run.
    pub reference: String,
    /// Where it listens on its own, if anywhere.
    pub address: Option<SocketAddr>,
    /// The host names it answers to on the shared ingress (normalised, sorted, no duplicates).
    pub hosts: Vec<String>,
    /// The certificate its hosts are served with on the HTTPS ingress, if it brings its own.
    pub tls: Option<AppTls>,
    /// Where its data and logs live (absolute).
    pub state_dir: PathBuf,
    /// App variable values given by the operator (highest-priority provider).
    pub variables: BTreeMap<String, String>,
    /// A Spin `runtime-config.toml` for this app (absolute), if any.
    pub runtime_config: Option<PathBuf>,
    /// The limits this app sets; the rest come from the host-wide defaults.
    pub limits: LimitOverrides,
    /// Load at once (`true`) or on first request (`false`); `None`: the host's default.
    pub preload: Option<bool>,
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
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    state_dir: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    tls: Option<serde_json::Value>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    runtime_config: Option<String>,
    #[serde(default)]
    limits: Option<serde_json::Value>,
    #[serde(default)]
    preload: Option<bool>,
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
            let checked = check_app(
                app,
                path,
                &base,
                &label,
                fallback,
                Mode::File,
                &mut problems,
            );
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

/// Which source an entry comes from: files need `state_dir`; the admin API defaults it to
/// `<state_root>/<name>`.
#[derive(Clone, Copy)]
enum Mode<'a> {
    File,
    Api { state_root: &'a Path },
}

/// Validate one app entry on its own (no cross-app checks), pushing every problem found.
fn check_app(
    app: RawApp,
    file: &Path,
    base: &Path,
    label: &str,
    fallback_name: String,
    mode: Mode<'_>,
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
    // `None`: invalid; `Some(None)`: not given.
    let address = match app.address.as_deref().map(str::parse::<SocketAddr>) {
        Some(Ok(a)) => Some(Some(a)),
        Some(Err(e)) => {
            problem(
                "address",
                format!(
                    "{:?} is not an IP:port socket address ({e})",
                    app.address.as_deref().unwrap_or_default()
                ),
            );
            None
        }
        // Whether the app needs an address (or hosts) depends on its triggers, which are known
        // only once it is pulled: an app with HTTP triggers and neither is refused then, naming
        // `address`; an app whose triggers are all Redis or cron needs neither.
        None => Some(None),
    };
    let mut hosts = Vec::new();
    let mut hosts_ok = true;
    if matches!(mode, Mode::File) && !app.hosts.is_empty() {
        problem(
            "hosts",
            "only `lepton serve` has a shared ingress to route hosts on; give the app an `address`"
                .into(),
        );
        hosts_ok = false;
    }
    for (i, raw) in app.hosts.iter().enumerate() {
        match crate::hosts::normalize_host_pattern(raw) {
            Ok(h) => hosts.push(h),
            Err(message) => {
                problem("hosts", format!("[{i}]: {message}"));
                hosts_ok = false;
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    // `None`: invalid; `Some(None)`: not given.
    let tls = match (&app.tls, mode) {
        (None, _) => Some(None),
        (Some(_), Mode::File) => {
            problem(
                "tls",
                "only `lepton serve` has an HTTPS ingress (--https) to serve certificates on"
                    .into(),
            );
            None
        }
        (Some(_), Mode::Api { .. }) if app.hosts.is_empty() => {
            problem(
                "tls",
                "needs `hosts`: a certificate is served on the shared HTTPS ingress for the app's hosts"
                    .into(),
            );
            None
        }
        (Some(value), Mode::Api { .. }) => match crate::tls::parse_tls(value, base, normalize) {
            Ok(tls) => Some(Some(tls)),
            Err(found) => {
                for (field, message) in found {
                    problem(field, message);
                }
                None
            }
        },
    };
    let state_dir_text = match (app.state_dir, mode) {
        (Some(dir), _) => Some(dir),
        (None, Mode::File) => {
            problem("state_dir", "missing (where the app keeps its data)".into());
            None
        }
        (None, Mode::Api { state_root }) => Some(
            state_root
                .join(app.name.as_deref().unwrap_or(&fallback_name))
                .display()
                .to_string(),
        ),
    };
    let state_dir = match state_dir_text {
        None => None,
        Some(dir) if dir.is_empty() => {
            problem("state_dir", "must not be empty".into());
            None
        }
        Some(dir) => Some(dir),
    };
    let state_dir = if let Some(state_dir) = state_dir {
        let dir = normalize(&base.join(&state_dir));
        if dir.exists() && !dir.is_dir() {
            problem(
                "state_dir",
                format!("{} exists and is not a directory", dir.display()),
            );
        }
        Some(dir)
    } else {
        None
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
    let spec = match (address, &state_dir, runtime_config, limits, tls) {
        (Some(address), Some(state_dir), Some(runtime_config), Some(limits), Some(tls))
            if !app.name.as_deref().is_some_and(str::is_empty) && hosts_ok =>
        {
            Some(AppSpec {
                name: app.name.clone().unwrap_or(fallback_name),
                reference: app.reference,
                address,
                hosts,
                tls,
                state_dir: state_dir.clone(),
                variables: app.variables,
                runtime_config,
                limits,
                preload: app.preload,
            })
        }
        _ => None,
    };
    Checked {
        address: address.flatten(),
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
    let checked = check_app(
        raw,
        path,
        &base,
        &label,
        fallback,
        Mode::File,
        &mut problems,
    );
    match checked.spec {
        Some(spec) if problems.is_empty() => Ok(spec),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

/// The body of the admin API's `PUT /v1/apps/{name}`: a tauon app file's object where `address`
/// and `state_dir` are optional (`state_dir` defaults to `<state_root>/<name>`; relative paths
/// are resolved against `state_root`), plus `hosts` and `tls`. A `name` in the body must be
/// `name`.
/// Errors name `/v1/apps/{name}` as the file.
pub fn parse_api_app(name: &str, text: &str, state_root: &Path) -> Result<AppSpec, ConfigError> {
    let file = PathBuf::from(format!("/v1/apps/{name}"));
    if let Err(message) = crate::hosts::check_app_name(name) {
        return Err(ConfigError::Invalid(vec![Problem {
            file,
            app: name.to_string(),
            field: "name",
            message,
        }]));
    }
    let raw: RawApp = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
        file: file.clone(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let mut problems = Vec::new();
    if raw.name.as_deref().is_some_and(|n| n != name) {
        problems.push(Problem {
            file: file.clone(),
            app: name.to_string(),
            field: "name",
            message: format!(
                "{:?} differs from the name in the URL",
                raw.name.as_deref().unwrap_or_default()
            ),
        });
    }
    let checked = check_app(
        raw,
        &file,
        state_root,
        name,
        name.to_string(),
        Mode::Api { state_root },
        &mut problems,
    );
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
mod tests;
