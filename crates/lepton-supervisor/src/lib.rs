//! The control side of lepton: the desired set of apps ([`AppSpec`]s, read from a manifest by
//! [`spec`] or from a watched directory by [`tauon`]), the one [`Reconciler`] every source of
//! desired state feeds, and the [`AppSupervisor`] that turns it into running apps, replacing
//! versions without dropping requests.
//!
//! Data flows one way: sources (a `lepton.json`, a tauon directory of one file per app, the
//! admin API's database) → `AppSpec`s → reconciler → supervisor → loader (`lepton-oci`) →
//! runtime (`lepton-runtime`) → HTTP trigger (`lepton-trigger-http`).

mod outcome;
pub mod reconciler;
pub mod supervisor;
pub mod tauon;

pub use lepton_runtime::{Residency, ResidencyConfig, ResidentState};
pub use lepton_spec::{AppSpec, ConfigError, LimitOverrides, Manifest, parse_app_file};
/// The desired-state model (re-exported from `lepton-spec`).
pub use lepton_spec::{app as spec, limits};
pub use reconciler::{
    Desired, KeyState, KeyStatus, Outcome, ReconcileStatus, Reconciler, Refusal, StatusBoard,
    StatusChanges, StatusStream,
};
pub use supervisor::{
    AppSupervisor, LoadFailure, RunningAppStatus, StartError, SupervisorConfig, Transition,
};
