//! The error type returned by everything in `lepton-app`.

use std::path::PathBuf;

/// Errors from reading a LockedApp or converting a `spin.toml`.
///
/// Every variant names the file, field or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The LockedApp JSON could not be parsed.
    ///
    /// The serde error is part of this message (it says which field is wrong) and deliberately
    /// not also exposed as `source()`, so a printed cause chain shows it once.
    #[error("invalid locked app JSON: {0}")]
    InvalidLockedApp(serde_json::Error),
    /// `spin_lock_version` is newer than this host understands.
    #[error("unsupported spin_lock_version {0} (this host understands versions 0 and 1)")]
    UnsupportedLockVersion(u64),
    /// `must_understand` lists a feature this host does not implement.
    #[error("locked app must_understand contains unknown value {0:?}")]
    UnknownMustUnderstand(String),
    /// A host requirement this host cannot satisfy.
    #[error("locked app {field} contains unknown host requirement {key:?}")]
    UnknownHostRequirement {
        /// Where the requirement was found (`host_requirements` or `components[id].host_requirements`).
        field: String,
        /// The requirement key.
        key: String,
    },
    /// The LockedApp could not be serialized (message only; see [`AppError::InvalidLockedApp`]).
    #[error("failed to serialize locked app: {0}")]
    Serialize(serde_json::Error),
    /// A file the manifest refers to could not be read. The I/O error is only the `source()`,
    /// not part of this message, so a printed cause chain shows it once.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not valid TOML or does not match the expected shape.
    #[error("{}: {message}", path.display())]
    ManifestSyntax {
        /// The manifest file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A manifest field is invalid.
    #[error("{}: invalid field {field}: {message}", path.display())]
    InvalidField {
        /// The manifest file.
        path: PathBuf,
        /// The full dotted field path, e.g. `component.hello.source`.
        field: String,
        /// What was wrong.
        message: String,
    },
    /// A manifest field is known to Spin but not supported by lepton.
    #[error("{}: unsupported field {field}{}", path.display(), reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    UnsupportedField {
        /// The manifest file.
        path: PathBuf,
        /// The full dotted field path.
        field: String,
        /// Why, when it helps.
        reason: Option<String>,
    },
    /// A manifest field that neither Spin nor lepton knows.
    #[error("{}: unknown field {field}", path.display())]
    UnknownField {
        /// The manifest file.
        path: PathBuf,
        /// The full dotted field path.
        field: String,
    },
    /// A component has dependencies that would have to be composed into it before it can run.
    #[error(
        "component `{component}` has uncomposed dependencies ({}); lepton cannot compose components yet",
        backticked(dependencies)
    )]
    UncomposedDependencies {
        /// The component id.
        component: String,
        /// The dependency names (e.g. `pkg:name`), in lock order.
        dependencies: Vec<String>,
    },
    /// A trigger carries middleware that lepton cannot apply.
    #[error(
        "trigger `{trigger}` has middleware (trigger_dependencies) that lepton cannot apply yet; refusing to serve it without its middleware"
    )]
    TriggerMiddleware {
        /// The trigger id.
        trigger: String,
    },
    /// A component carries (loader-moved) middleware that lepton cannot apply.
    #[error(
        "component `{component}` has middleware (trigger_dependencies) that lepton cannot apply yet; refusing to serve it without its middleware"
    )]
    ComponentMiddleware {
        /// The component id.
        component: String,
    },
    /// A trigger's type is not one this host serves (yet).
    #[error(
        "trigger `{trigger}` is a `{trigger_type}` trigger, which lepton does not serve yet (it serves: {served}); refusing to run the app without it"
    )]
    TriggerNotServed {
        /// The trigger id.
        trigger: String,
        /// Its type, e.g. `redis`.
        trigger_type: String,
        /// The types served, comma-separated.
        served: String,
    },
    /// The app or a component requires the `middleware` host feature.
    #[error(
        "{field} requires `middleware`, which lepton cannot apply yet; refusing to serve the app without its middleware"
    )]
    MiddlewareRequired {
        /// `host_requirements`, or `component `<id>` host_requirements`.
        field: String,
    },
}

/// Formats names as a comma-separated list of backticked items: `` `a`, `b` ``.
fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
