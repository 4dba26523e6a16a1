//! `lepton serve`'s control plane: the desired state lives in a database (`lepton-store`), the
//! admin API writes it, and the database is a source of desired state for the one reconciler,
//! like a `lepton.json` or a tauon directory.
//!
//! - [`source`]: [`DbSource`] follows the database (its own writes and, with PostgreSQL, other
//!   nodes') and hands every app to the [`lepton_supervisor::Reconciler`]; it records what this
//!   node observes back into the database and into the metrics.
//! - [`api`]: the admin API (JSON over HTTP, `openapi.yaml` at the repository root), every
//!   request but `/healthz` and `/readyz` authenticated by [`auth`].
//! - [`auth`]: bearer tokens, compared in constant time.

pub mod api;
pub mod auth;
pub mod source;

pub use api::{AdminApi, AdminConfig};
pub use auth::{AuthError, Tokens};
pub use source::DbSource;
