//! [`OciError`]: every failure of push, pull, cache and resolution, naming the reference,
//! digest, file or field involved.

use std::path::PathBuf;

/// Errors from `lepton-oci`.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference string could not be parsed.
    #[error("invalid OCI reference {reference:?}: {message}")]
    InvalidReference {
        /// The string as given.
        reference: String,
        /// Why it is invalid.
        message: String,
    },
    /// The registry returned an error (or could not be reached) for this reference.
    #[error("registry error for {reference}: {source}")]
    Registry {
        /// The fully qualified reference.
        reference: String,
        /// The transport/registry error.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// The registry could not be reached and nothing usable is cached.
    #[error("registry for {reference} is unreachable ({cause}) and {detail}")]
    Offline {
        /// The fully qualified reference.
        reference: String,
        /// The transport error.
        cause: String,
        /// What is missing from the cache.
        detail: String,
    },
    /// Content does not match its digest.
    #[error(
        "content {digest} of {reference} has digest {actual}; refusing to run unverified content"
    )]
    DigestMismatch {
        /// The expected digest.
        digest: String,
        /// The digest of the bytes actually found.
        actual: String,
        /// The fully qualified reference.
        reference: String,
    },
    /// Content referenced by the app is neither cached nor fetchable.
    #[error("content {digest} of {reference} is not available: {detail}")]
    MissingContent {
        /// The digest.
        digest: String,
        /// The fully qualified reference.
        reference: String,
        /// Why it could not be obtained.
        detail: String,
    },
    /// The OCI manifest (from the registry or cache) is malformed.
    #[error("invalid manifest {path}: {message}")]
    Manifest {
        /// The reference or cache file the manifest came from.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The locked app inside the artifact is invalid.
    #[error("invalid locked app in {reference}: {message}")]
    InvalidLockedApp {
        /// The fully qualified reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// A component's `files[].path` is not a plain relative path.
    #[error(
        "component {component} of {reference} has invalid file path {path:?}: must be relative with no `..`"
    )]
    InvalidFilePath {
        /// Component id.
        component: String,
        /// The offending path.
        path: String,
        /// The fully qualified reference.
        reference: String,
    },
    /// Building the app from `spin.toml` failed.
    #[error(transparent)]
    App(#[from] lepton_app::AppError),
    /// A filesystem operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The artifact or operation is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Shorthand for [`OciError::Io`].
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.into();
    move |source| OciError::Io { path, source }
}
