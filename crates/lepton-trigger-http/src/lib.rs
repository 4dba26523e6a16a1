//! The HTTP trigger: listeners, Spin's router and `spin-*` headers, and dispatch of each request
//! to a component instance (fresh per request; wasi:http 0.3 instances reused, see [`reuse`]).
//!
//! - [`router`]: route syntax and Spin's precedence.
//! - [`headers`]: the `spin-*` request headers.
//! - [`app`]: one app's request handling ([`HttpApp`]).
//! - [`executor`]: running a request through a component (wasi:http 0.2 and 0.3), or through
//!   [`spin_inbound`] (Spin 1.x `fermyon:spin/inbound-http`) or [`wagi`] (CGI over WASI).
//! - [`reuse`]: how many requests a wasi:http instance serves (one for 0.2; for 0.3 up to 128,
//!   16 at once, dropped after 1 s idle) and how each request's limits hold on a shared instance.
//! - [`chaining`]: `*.spin.internal` requests served in-process (the runtime's `LocalDispatch`).
//! - [`gate`]: an app's concurrency slots and FIFO wait queue ([`AppGate`]).
//! - [`stack`]: the per-app request stack (body limit, concurrency, deadline, cut-off) every
//!   request passes before reaching a component.
//! - [`server`]: the hyper listener ([`HttpListener`]) and its connection limits.
//! - [`ingress`]: the shared ingress's routing by host ([`HostTable`]).
//! - [`tls`]: TLS on the shared ingress: certificates by SNI, reloaded when their files change.

pub mod app;
pub mod chaining;
pub mod coalesce;
pub mod executor;
pub mod gate;
pub mod headers;
pub mod ingress;
pub mod reuse;
pub mod router;
pub mod server;
pub mod spin_inbound;
pub mod stack;
pub mod tls;
pub mod wagi;

pub use app::HttpApp;
pub use gate::{AppFront, AppGate};
pub use ingress::{HostTable, TlsRoute};
pub use server::{ConnectionLimits, HttpListener, ServeTarget};

/// Errors in an app's HTTP trigger configuration.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// A trigger is invalid.
    #[error("trigger `{trigger}`: {reason}")]
    Trigger {
        /// The trigger id.
        trigger: String,
        /// What is wrong.
        reason: String,
    },
    /// The app needs something lepton does not support.
    #[error("{0}")]
    Unsupported(String),
}
