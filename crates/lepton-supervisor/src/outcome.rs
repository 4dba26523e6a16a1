//! What the supervisor reports: why an app could not start ([`StartError`], [`LoadFailure`]),
//! what happened to it ([`Transition`], logged with app, reference and digest), and what is
//! running ([`RunningAppStatus`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use lepton_oci::error_chain;

/// Why an app could not be started or replaced.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Pulling or resolving the app failed.
    #[error(transparent)]
    Load(#[from] lepton_oci::OciError),
    /// The app needs something lepton cannot do yet.
    #[error("the app cannot run on lepton: {0}")]
    NotRunnable(#[from] lepton_app::AppError),
    /// The app's state directory could not be created.
    #[error("cannot create state_dir {path}")]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A component could not be prepared.
    #[error(transparent)]
    Runtime(#[from] lepton_runtime::RuntimeError),
    /// A prepared component failed its instantiation check.
    #[error("component `{component}` cannot be instantiated: {message}")]
    Instantiate {
        /// The component id.
        component: String,
        /// What wasmtime said.
        message: String,
    },
    /// The HTTP triggers are invalid.
    #[error(transparent)]
    Trigger(#[from] lepton_trigger_http::TriggerError),
    /// The Redis or cron triggers are invalid.
    #[error(transparent)]
    EventTrigger(#[from] lepton_trigger::TriggerError),
    /// The app has HTTP triggers but nowhere to serve them.
    #[error(
        "`address`: the app has HTTP triggers but neither an `address` nor `hosts` to serve \
         them on (only an app whose triggers are all Redis or cron needs neither)"
    )]
    Unreachable,
    /// The address could not be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another app already holds this app's address or state_dir.
    #[error("`{field}`: {value} is already used by {other}")]
    Conflict {
        /// `address` or `state_dir`.
        field: &'static str,
        /// The contested value.
        value: String,
        /// The key of the app holding it.
        other: String,
    },
    /// The app's limits do not fit this host.
    #[error("`limits.{field}`: {message}")]
    Limits {
        /// The limit.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The supervisor is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// The load task panicked (a bug in lepton, reported instead of taking the process down).
    #[error("internal error while loading: {0}")]
    Internal(String),
}

/// An app that could not be started or replaced, and why.
#[derive(Debug)]
pub struct LoadFailure {
    /// The app's key.
    pub key: String,
    /// The app's name.
    pub app: String,
    /// Its reference.
    pub reference: String,
    /// What went wrong.
    pub error: StartError,
}

impl LoadFailure {
    /// The error with its whole cause chain, on one line.
    pub fn describe(&self) -> String {
        error_chain(&self.error)
    }
}

/// A running app, as reported to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningAppStatus {
    /// The app's key (its manifest entry or tauon file).
    pub key: String,
    /// The app's name.
    pub name: String,
    /// The reference it was started from.
    pub reference: String,
    /// The manifest digest it resolved to (empty until its first load).
    pub digest: String,
    /// The address it serves on by itself, if any.
    pub address: Option<SocketAddr>,
    /// The hosts it answers to on the shared ingress.
    pub hosts: Vec<String>,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Its routes, as written (empty until its first load).
    pub routes: Vec<String>,
    /// The trigger types it runs (`http`, `redis`, `cron`; empty until its first load).
    pub triggers: Vec<String>,
    /// Whether it was served from the cache because the registry was unreachable.
    pub from_cache_only: bool,
    /// The limits it runs with (its own over the host-wide defaults).
    pub limits: lepton_runtime::AppLimits,
    /// Whether it is loaded: `idle` (routable; loads on its next request), `loading`,
    /// `loaded` or `failed` (its last load failed; requests get 503 and retry it).
    pub load: lepton_runtime::ResidentState,
}

/// What an [`AppSupervisor::apply`] did.
#[derive(Debug, Clone)]
// One per start/replace/stop, never on the request path: the size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Transition {
    /// The app was not running and now serves.
    Started(RunningAppStatus),
    /// A new version replaced the one serving.
    Replaced {
        /// The version that was serving.
        previous: RunningAppStatus,
        /// The version now serving.
        current: RunningAppStatus,
    },
    /// The same digest and settings were already serving; nothing changed.
    Unchanged(RunningAppStatus),
    /// The app was stopped.
    Stopped(RunningAppStatus),
    /// Asked to stop an app that was not running.
    NotRunning,
    /// A newer desired state for the same key arrived before this one ran; it was skipped.
    Superseded,
}

pub(crate) fn log_transition(key: &str, t: &Transition) {
    match t {
        Transition::Started(s) => {
            tracing::info!(%key, app = %s.name, reference = %s.reference, digest = %s.digest, address = ?s.address, hosts = ?s.hosts, "app started")
        }
        Transition::Replaced { previous, current } => {
            tracing::info!(%key, app = %current.name, reference = %current.reference, digest = %current.digest, previous_reference = %previous.reference, previous_digest = %previous.digest, address = ?current.address, previous_address = ?previous.address, hosts = ?current.hosts, "app replaced")
        }
        Transition::Unchanged(s) => {
            tracing::info!(%key, app = %s.name, reference = %s.reference, digest = %s.digest, "app unchanged: same digest and settings")
        }
        Transition::Stopped(s) => {
            tracing::info!(%key, app = %s.name, reference = %s.reference, digest = %s.digest, address = ?s.address, "app stopped")
        }
        Transition::NotRunning | Transition::Superseded => {
            tracing::debug!(%key, transition = ?t, "nothing to do")
        }
    }
}
