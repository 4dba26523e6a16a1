//! The application model shared by every lepton crate.
//!
//! - [`locked`] owns the serde model of Spin's `spin.lock` ("LockedApp") JSON, byte-compatible with
//!   what `spin registry push` stores in an OCI artifact and what the runtime consumes.
//!   [`LockedApp::ensure_runnable`] refuses apps needing composition or middleware, which lepton
//!   cannot provide yet.
//! - [`manifest`] turns a Spin manifest v2 (`spin.toml`) into the LockedApp that Spin's local
//!   loader would produce, with local `file://` content references.
//! - [`AppError`] is the single error type at this crate's boundary.

mod error;
pub mod file_stamp;
pub mod file_url;
pub mod locked;
pub mod manifest;

pub use error::AppError;
pub use locked::{
    ContentPath, ContentRef, LockedApp, LockedComponent, LockedComponentSource, LockedTrigger,
    LockedVariable,
};
