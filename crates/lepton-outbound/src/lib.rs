//! lepton's outbound networking: Spin's `allowed_outbound_hosts` policy and the outbound clients
//! that obey it.
//!
//! - [`allowed`]: one entry's grammar (`<scheme>://<host>[:<port>]`) and matching.
//! - [`policy`]: a component's [`OutboundPolicy`] (templates resolved against app variables,
//!   Spin 1's `allowed_http_hosts`, `block_networks`) — the one "may this component connect to
//!   scheme/host/port?" question every client (HTTP, sockets, Redis, PostgreSQL, MySQL, MQTT)
//!   asks.
//! - [`http`]: outbound wasi-http 0.2 / 0.3 hooks (self requests, service chaining through
//!   [`LocalDispatch`], the default sender for everything else).
//! - [`legacy`]: Spin 1.x's unversioned `fermyon:spin/http` `send-request`.
//! - [`sockets`]: `wasi:sockets` permissions.

pub mod allowed;
pub mod http;
pub mod legacy;
pub mod policy;
pub mod sockets;

pub use allowed::{AllowedHost, EntryError, Target, default_port};
pub use http::{
    CallerDeadline, DispatchFuture, LocalDispatch, LocalDispatchSlot, OutboundHttp,
    OutboundHttpHooks, SelfOrigin, link_p2_relative_urls,
};
pub use legacy::{OutboundView, add_legacy_http_to_linker};
pub use policy::{BlockedNetworks, OutboundError, OutboundPolicy, VariableResolver, no_variables};
pub use sockets::configure_sockets;
