//! [`StoreError`]: every way a store operation fails, each naming the database location (password
//! redacted) and the operation; [`BackendError`]: the database driver's own error inside it.

use std::error::Error as _;

use crate::Claim;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A put claimed something another app holds; nothing was written.
    #[error("{claim} is already claimed by app {app:?}")]
    Conflict {
        /// The app holding the claim.
        app: String,
        /// The contested claim.
        claim: Claim,
    },
    /// The database could not be opened or connected to.
    #[error("cannot open the store {location}: {source}")]
    Open {
        /// The database (password redacted).
        location: String,
        /// The driver's error.
        source: BackendError,
    },
    /// A schema migration failed; it was rolled back.
    #[error("store {location}: schema migration {version} failed: {source}")]
    Migrate {
        /// The database (password redacted).
        location: String,
        /// The migration's version.
        version: i64,
        /// The driver's error.
        source: BackendError,
    },
    /// The database was migrated by a newer lepton; this one refuses to touch it.
    #[error(
        "store {location} has schema version {found}, newer than version {known} this lepton \
         knows: upgrade lepton to use this database"
    )]
    SchemaTooNew {
        /// The database (password redacted).
        location: String,
        /// The database's schema version.
        found: i64,
        /// The newest schema version this build knows.
        known: i64,
    },
    /// A query or transaction failed.
    #[error("store {location}: {operation}: {source}")]
    Backend {
        /// The database (password redacted).
        location: String,
        /// What the store was doing, e.g. `put app "shop"`.
        operation: String,
        /// The driver's error.
        source: BackendError,
    },
    /// A JSON value (a stored spec or status) could not be decoded or encoded.
    #[error("store {location}: {operation}: invalid JSON: {source}")]
    Json {
        /// The database (password redacted).
        location: String,
        /// What the store was doing.
        operation: String,
        /// The decoding error.
        source: serde_json::Error,
    },
}

/// The database driver's error.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// From SQLite (`rusqlite`).
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// From PostgreSQL (`tokio-postgres`), shown with the server's message.
    #[error("PostgreSQL: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A file-system error (creating the SQLite file's directory).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Setting up TLS for PostgreSQL failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The single `revision` row is missing (the database was edited by hand).
    #[error("the revision row is missing")]
    MissingRevision,
    /// The blocking task running a SQLite call panicked or was cancelled.
    #[error("the database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// `tokio-postgres` prints "db error" for every server error: add the server's message (or the
/// underlying I/O error).
pub(crate) fn postgres_message(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{db}");
    }
    match error.source() {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// What a failing store operation is: its location and operation, to build [`StoreError`]s with.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    /// The database (password redacted).
    pub(crate) location: String,
    /// What the store is doing.
    pub(crate) operation: String,
}

impl Context {
    /// The context of `operation` on `location`.
    pub(crate) fn new(location: &str, operation: impl Into<String>) -> Context {
        Context {
            location: location.to_string(),
            operation: operation.into(),
        }
    }

    /// A [`StoreError::Backend`] in this context.
    pub(crate) fn backend(&self, source: impl Into<BackendError>) -> StoreError {
        StoreError::Backend {
            location: self.location.clone(),
            operation: self.operation.clone(),
            source: source.into(),
        }
    }

    /// A [`StoreError::Json`] in this context.
    pub(crate) fn json(&self, source: serde_json::Error) -> StoreError {
        StoreError::Json {
            location: self.location.clone(),
            operation: self.operation.clone(),
            source,
        }
    }
}

/// Attaches a [`Context`] to a driver's error.
pub(crate) trait ResultExt<T> {
    /// `Err(e)` becomes a [`StoreError::Backend`] of `ctx`.
    fn ctx(self, ctx: &Context) -> Result<T, StoreError>;
}

impl<T, E: Into<BackendError>> ResultExt<T> for Result<T, E> {
    fn ctx(self, ctx: &Context) -> Result<T, StoreError> {
        self.map_err(|e| ctx.backend(e))
    }
}
