//! lepton's desired state: which apps an operator wants served, as plain validated data. The
//! sources of desired state (`lepton.json`, a tauon directory of per-app files, later a
//! database) parse into [`AppSpec`]s here; the supervisor turns them into running apps.
//!
//! No runtime in here (no wasmtime, no sockets): every parser of operator input can be fuzzed and
//! reused by any source without pulling in the host.
//!
//! - [`app`]: one app's entry ([`AppSpec`]), the `lepton.json` [`Manifest`] and tauon's
//!   [`parse_app_file`], validated with file, app and field named.
//! - [`limits`]: the `limits` object ([`LimitOverrides`]) and the [`AppLimits`] an app runs with.
//! - [`hosts`]: host names on the shared ingress, and app names.
//! - [`tls`]: an app's `tls` object ([`AppTls`]), the certificate of its hosts on HTTPS.

pub mod app;
pub mod hosts;
pub mod limits;
pub mod tls;

pub use app::{AppSpec, ConfigError, Manifest, addresses_conflict, parse_api_app, parse_app_file};
pub use limits::{AppLimits, LIMIT_FIELDS, LimitField, LimitOverrides};
pub use tls::AppTls;
