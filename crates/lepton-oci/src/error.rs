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
    /// The registry returned an error (or could not be reached) for this reference. The
    /// registry's own error is the [`source`](std::error::Error::source), not repeated here.
    #[error("registry error for {reference}{}", hint_suffix(.hint))]
    Registry {
        /// The fully qualified reference.
        reference: String,
        /// What to check, for authentication failures (401/403).
        hint: Option<String>,
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
    /// A blob is larger than its descriptor declares or than lepton accepts.
    #[error("content {digest} of {reference} has the wrong size: {detail}")]
    BlobSize {
        /// The blob digest.
        digest: String,
        /// The fully qualified reference.
        reference: String,
        /// Declared, received and allowed sizes.
        detail: String,
    },
    /// An archive layer could not be unpacked (malformed, escaping paths, or over the limits).
    #[error("archive layer {digest} of {reference} could not be unpacked")]
    Archive {
        /// The archive layer digest.
        digest: String,
        /// The fully qualified reference.
        reference: String,
        /// What went wrong (names the entry).
        #[source]
        source: std::io::Error,
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
    /// A filesystem operation failed (the OS error is the source).
    #[error("filesystem error at {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A digest is not a well-formed `sha256:<64 lowercase hex>` digest.
    #[error("{digest:?} is not a sha256 digest ({context})")]
    InvalidDigest {
        /// The digest as found.
        digest: String,
        /// Where it came from.
        context: String,
    },
    /// Building a component's archive layer failed.
    #[error("building the archive layer for component {component}")]
    ArchiveBuild {
        /// Component id.
        component: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising part of the artifact (manifest, image config) failed.
    #[error("serializing the {what}: {message}")]
    Serialize {
        /// What was being serialised.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// Background (blocking) work was cancelled before it finished, e.g. at runtime shutdown.
    #[error("{what} was cancelled before it finished")]
    Cancelled {
        /// What was being done.
        what: String,
    },
    /// The artifact or operation is not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_deref()
        .map(|h| format!("; {h}"))
        .unwrap_or_default()
}

/// Shorthand for [`OciError::Io`].
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OciError {
    let path = path.into();
    move |source| OciError::Io { path, source }
}

/// Runs synchronous cache work (hashing, fsync, copies, unpacking) on tokio's blocking pool,
/// so it never stalls the async workers already-serving apps share. Panics propagate.
pub(crate) async fn blocking<T, F>(what: &str, f: F) -> Result<T, OciError>
where
    F: FnOnce() -> Result<T, OciError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(OciError::Cancelled {
            what: what.to_string(),
        }),
    }
}

/// `err` and its causes, joined with `: ` (for logs and messages that embed an error).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Causes are reported once: as `source()`, not also in the message.
    #[test]
    fn causes_are_not_repeated() {
        let io = OciError::Io {
            path: PathBuf::from("/cache/x"),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(io.to_string(), "filesystem error at /cache/x");
        assert_eq!(
            error_chain(&io),
            "filesystem error at /cache/x: disk on fire"
        );

        let reg = OciError::Registry {
            reference: "r.example/app:v1".into(),
            hint: None,
            source: oci_client::errors::OciDistributionError::GenericError(Some("boom".into())),
        };
        let chain = error_chain(&reg);
        assert_eq!(chain.matches("boom").count(), 1, "{chain}");
        assert!(
            chain.starts_with("registry error for r.example/app:v1: "),
            "{chain}"
        );
    }
}
