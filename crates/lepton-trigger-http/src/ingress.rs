//! The shared ingress's routing: which app a request is for, by its host.
//!
//! A [`HostTable`] maps host patterns (normalised by `lepton_spec::hosts`: lowercase, no port,
//! `*.example.com` wildcards of exactly one label) to each app's version channel — the same
//! `watch` channel its own listener (if it has one) follows — so a replace publishes the new
//! version to both at once, and in-flight requests finish on the version they started with. A
//! version is a [`Resident`]: routable whether or not it is loaded.
//!
//! The host is the request URI's authority (HTTP/2 `:authority`, absolute-form HTTP/1) or else
//! its `Host` header, without the port and a trailing dot, lowercased. An exact pattern wins
//! over a wildcard; no match is a 404 (answered by the listener).
//!
//! The table also carries the certificate files an app brings for its hosts (its `tls`), which
//! the HTTPS ingress looks up by the TLS client's SNI with the same exact-then-wildcard rule
//! ([`HostTable::tls_route`]).

use std::sync::Arc;

use imbl::HashMap;

use http::header;
use tokio::sync::watch;

use lepton_runtime::Resident;

use crate::app::HttpApp;
use crate::tls::TlsFiles;

/// An app's current version, as its supervisor publishes it.
pub type AppVersion = watch::Receiver<Resident<HttpApp>>;

/// Host patterns → apps, for one or more shared listeners. Published as a whole in a `watch`
/// channel whenever an app with hosts starts, moves or stops; its maps are persistent (`imbl`),
/// so a clone is O(1) and an insert or removal O(log n): the supervisor keeps one table, changes
/// the entries of the app that changed, and publishes a clone.
#[derive(Default, Clone)]
pub struct HostTable {
    patterns: Patterns<Route>,
}

/// What one pattern routes to.
#[derive(Clone)]
struct Route {
    app: AppVersion,
    /// The pattern itself, for logs.
    pattern: Arc<str>,
    tls: Option<Arc<TlsFiles>>,
}

/// What the HTTPS ingress needs to know about the host a TLS client asks for (its SNI).
#[derive(Debug, Clone, Copy)]
pub struct TlsRoute<'a> {
    /// The pattern routing the host (`shop.example.com` or `*.example.com`).
    pub pattern: &'a str,
    /// The certificate the app brings for its hosts, if it does.
    pub files: Option<&'a TlsFiles>,
}

impl HostTable {
    /// An empty table (every request is a 404).
    pub fn new() -> Self {
        Self::default()
    }

    /// Route `pattern` (normalised: `shop.example.com` or `*.example.com`) to `app`, served over
    /// HTTPS with `tls` if the app brings a certificate, replacing what it routed to before.
    pub fn insert(&mut self, pattern: &str, app: AppVersion, tls: Option<TlsFiles>) {
        let route = Route {
            app,
            pattern: pattern.into(),
            tls: tls.map(Arc::new),
        };
        self.patterns.insert(pattern, route);
    }

    /// Stop routing `pattern`.
    pub fn remove(&mut self, pattern: &str) {
        self.patterns.remove(pattern);
    }

    /// Number of patterns routed.
    pub fn len(&self) -> usize {
        self.patterns.exact.len() + self.patterns.wildcard.len()
    }

    /// Whether nothing is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The app serving `host` (as sent: any case, maybe with a port or a trailing dot).
    pub fn resolve(&self, host: &str) -> Option<Resident<HttpApp>> {
        self.patterns
            .find(host)
            .map(|route| route.app.borrow().clone())
    }

    /// Every routed pattern with the certificate its app brings, if any.
    pub fn tls_routes(&self) -> impl Iterator<Item = TlsRoute<'_>> {
        self.patterns
            .exact
            .values()
            .chain(self.patterns.wildcard.values())
            .map(|route| TlsRoute {
                pattern: &route.pattern,
                files: route.tls.as_deref(),
            })
    }

    /// The pattern routing `host` (a TLS client's SNI) and the certificate its app brings;
    /// `None` when no app serves `host`.
    pub fn tls_route(&self, host: &str) -> Option<TlsRoute<'_>> {
        self.patterns.find(host).map(|route| TlsRoute {
            pattern: &route.pattern,
            files: route.tls.as_deref(),
        })
    }

    /// The app a request is for: by its URI authority, else its `Host` header.
    pub fn resolve_request<B>(&self, req: &http::Request<B>) -> Option<Resident<HttpApp>> {
        let host = req.uri().authority().map(|a| a.host()).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })?;
        self.resolve(host)
    }
}

/// Exact and wildcard patterns to values.
#[derive(Clone)]
struct Patterns<T> {
    exact: HashMap<String, T>,
    /// Keyed by the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, T>,
}

impl<T> Default for Patterns<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T: Clone> Patterns<T> {
    fn insert(&mut self, pattern: &str, value: T) {
        match pattern.strip_prefix("*.") {
            Some(suffix) => self.wildcard.insert(suffix.to_string(), value),
            None => self.exact.insert(pattern.to_string(), value),
        };
    }

    fn remove(&mut self, pattern: &str) {
        match pattern.strip_prefix("*.") {
            Some(suffix) => self.wildcard.remove(suffix),
            None => self.exact.remove(pattern),
        };
    }

    /// Exact match first, then a wildcard one label up.
    fn find(&self, host: &str) -> Option<&T> {
        let host = bare_host(host);
        if let Some(value) = self.exact.get(host.as_str()) {
            return Some(value);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent)
    }
}

/// `Shop.Example.com.:8080` → `shop.example.com`; `[::1]:80` → `[::1]`.
fn bare_host(host: &str) -> String {
    let without_port = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(ip, _)| &host[..ip.len() + 1])
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_case_and_trailing_dot() {
        assert_eq!(bare_host("Shop.Example.COM.:8080"), "shop.example.com");
        assert_eq!(bare_host("shop.example.com"), "shop.example.com");
        assert_eq!(bare_host("[::1]:8080"), "[::1]");
        assert_eq!(bare_host("127.0.0.1:80"), "127.0.0.1");
    }

    #[test]
    fn an_exact_host_wins_over_a_wildcard_of_one_label() {
        let mut p = Patterns::default();
        p.insert("*.example.com", "wild");
        p.insert("shop.example.com", "shop");
        assert_eq!(p.find("SHOP.example.com:8080"), Some(&"shop"));
        assert_eq!(p.find("blog.example.com"), Some(&"wild"));
        assert_eq!(p.find("a.blog.example.com"), None);
        assert_eq!(p.find("example.com"), None);
        assert_eq!(p.find("other.org"), None);
        p.remove("shop.example.com");
        assert_eq!(p.find("shop.example.com"), Some(&"wild"));
        p.remove("*.example.com");
        assert_eq!(p.find("shop.example.com"), None);
    }
}
