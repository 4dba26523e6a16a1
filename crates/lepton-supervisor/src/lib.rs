//! The control side of lepton: the desired set of apps ([`AppSpec`]s, read from a manifest by
//! [`spec`]) and the [`AppSupervisor`] that turns it into running apps.
//!
//! Data flows one way: control plane (a `lepton.json` today, a tauon directory or an admin API
//! later) → `Vec<AppSpec>` → supervisor → loader (`lepton-oci`) → runtime (`lepton-runtime`) →
//! HTTP trigger (`lepton-trigger-http`).

pub mod spec;
pub mod supervisor;

pub use spec::{AppSpec, ConfigError, Manifest};
pub use supervisor::{AppSupervisor, LoadFailure, RunningAppStatus, StartError, SupervisorConfig};
