//! The error type returned by everything in `lepton-app`.

use std::path::PathBuf;

/// Errors from reading a LockedApp or converting a `spin.toml`.
///
/// Every variant names the file, field or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The LockedApp JSON could not be parsed.
    #[error("invalid locked app JSON: {0}")]
    InvalidLockedApp(#[source] serde_json::Error),
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
    /// The LockedApp could not be serialized.
    #[error("failed to serialize locked app: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A file the manifest refers to could not be read.
    #[error("{}: {source}", path.display())]
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
}
