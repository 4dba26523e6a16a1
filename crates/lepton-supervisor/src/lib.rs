//! The control side of lepton: the desired set of apps ([`AppSpec`]s, read from a manifest by
//! [`spec`] or from a watched directory by [`tauon`]) and the [`AppSupervisor`] that turns it into
//! running apps, replacing versions without dropping requests.
//!
//! Data flows one way: control plane (a `lepton.json`, or a tauon directory of one file per app)
//! → `AppSpec`s → supervisor → loader (`lepton-oci`) → runtime (`lepton-runtime`) → HTTP trigger
//! (`lepton-trigger-http`).

pub mod limits;
mod outcome;
pub mod spec;
pub mod supervisor;
pub mod tauon;

pub use limits::LimitOverrides;
pub use spec::{AppSpec, ConfigError, Manifest, parse_app_file};
pub use supervisor::{
    AppSupervisor, LoadFailure, RunningAppStatus, StartError, SupervisorConfig, Transition,
};
