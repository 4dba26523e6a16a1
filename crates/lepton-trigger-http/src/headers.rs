//! The `spin-*` request headers, exactly as Spin sets them (facts sheet §3.3).

use std::borrow::Cow;
use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::router::RouteMatch;

/// `spin-full-url`.
pub const FULL_URL: &str = "spin-full-url";
/// `spin-path-info`.
pub const PATH_INFO: &str = "spin-path-info";
/// `spin-matched-route`.
pub const MATCHED_ROUTE: &str = "spin-matched-route";
/// `spin-base-path`.
pub const BASE_PATH: &str = "spin-base-path";
/// `spin-raw-component-route`.
pub const RAW_COMPONENT_ROUTE: &str = "spin-raw-component-route";
/// `spin-component-route`.
pub const COMPONENT_ROUTE: &str = "spin-component-route";
/// `spin-client-addr`.
pub const CLIENT_ADDR: &str = "spin-client-addr";
/// Prefix of `spin-path-match-<name>`.
pub const PATH_MATCH_PREFIX: &str = "spin-path-match-";

/// The values Spin derives for one routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpinHeaders {
    /// Names are Spin's constants (borrowed) or `spin-path-match-*` (owned).
    values: Vec<(Cow<'static, str>, String)>,
}

impl SpinHeaders {
    /// Compute the headers for `m`, a request for `path_and_query` with authority `host` arriving
    /// from `client` on a listener speaking `scheme`.
    pub fn new(
        m: &RouteMatch<'_>,
        scheme: &str,
        host: &str,
        path_and_query: &str,
        client: SocketAddr,
    ) -> Self {
        let component_route = m.raw_route.strip_suffix("/...").unwrap_or(m.raw_route);
        let mut values = Vec::with_capacity(7 + m.captures.len());
        // Built at its exact length: a `String` whose capacity is its length becomes a
        // `HeaderValue` without another allocation.
        let mut full_url =
            String::with_capacity(scheme.len() + 3 + host.len() + path_and_query.len());
        for part in [scheme, "://", host, path_and_query] {
            full_url.push_str(part);
        }
        let mut client_addr = client.to_string();
        client_addr.shrink_to_fit();
        values.extend([
            (Cow::Borrowed(FULL_URL), full_url),
            (Cow::Borrowed(PATH_INFO), m.path_info.clone()),
            (Cow::Borrowed(MATCHED_ROUTE), m.based_route.to_string()),
            (Cow::Borrowed(BASE_PATH), "/".to_string()),
            (Cow::Borrowed(RAW_COMPONENT_ROUTE), m.raw_route.to_string()),
            (Cow::Borrowed(COMPONENT_ROUTE), component_route.to_string()),
            (Cow::Borrowed(CLIENT_ADDR), client_addr),
        ]);
        for (name, value) in &m.captures {
            values.push((Cow::Owned(path_match_header(name)), value.clone()));
        }
        Self { values }
    }

    /// The header (name, value) pairs.
    pub fn values(&self) -> &[(Cow<'static, str>, String)] {
        &self.values
    }

    /// Set these headers on `headers`, replacing any client-supplied value of the same name so
    /// the guest sees exactly one of each. Values are moved in, not copied, and Spin's own names
    /// need no parsing: per request on the hot path, where parsing every name and copying every
    /// value was 4% of lepton's CPU in a `perf` profile of hello-p3 on reused instances.
    pub fn apply(self, headers: &mut HeaderMap) {
        // One growth of the map instead of several (each rehashes it): growing it one insert at
        // a time was 2.6% of lepton's CPU in a `perf` profile of hello-p3.
        // (`try_`: a map at its size limit cannot panic the request task; the inserts below then
        // fail, and are skipped, the same way.)
        let _ = headers.try_reserve(self.values.len());
        for (name, value) in self.values {
            let name = match name {
                // Spin's constants, lowercase and valid (the tests apply every one).
                Cow::Borrowed(name) => Ok(HeaderName::from_static(name)),
                Cow::Owned(name) => HeaderName::try_from(name),
            };
            let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(value)) else {
                // Only a capture name outside the header-name alphabet can get here; Spin cannot
                // express it either, so the header is skipped rather than failing the request.
                tracing::debug!("skipping a spin header that is not a valid HTTP header");
                continue;
            };
            if headers.try_insert(name, value).is_err() {
                tracing::debug!("skipping a spin header: the request's header map is full");
            }
        }
    }
}

/// `:path_segment` → `spin-path-match-path-segment` (uppercased, then header-normalised).
fn path_match_header(name: &str) -> String {
    let normalised: String = name
        .to_uppercase()
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .collect();
    format!("{PATH_MATCH_PREFIX}{}", normalised.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Route, RouteTarget, Router};

    #[test]
    fn conformance_request_shape_headers() {
        let (router, _) = Router::new([Route::parse(
            "/base/:path_segment/:path_end/...",
            RouteTarget::Component("c".into()),
        )
        .expect("route")]);
        let m = router.route("/base/path/end/rest").expect("match");
        let headers = SpinHeaders::new(
            &m,
            "http",
            "example.com",
            "/base/path/end/rest?key=value",
            "127.0.0.1:5555".parse().expect("addr"),
        );
        let get = |n: &str| {
            headers
                .values()
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get(FULL_URL),
            Some("http://example.com/base/path/end/rest?key=value")
        );
        assert_eq!(get(PATH_INFO), Some("/rest"));
        assert_eq!(
            get(MATCHED_ROUTE),
            Some("/base/:path_segment/:path_end/...")
        );
        assert_eq!(
            get(RAW_COMPONENT_ROUTE),
            Some("/base/:path_segment/:path_end/...")
        );
        assert_eq!(get(COMPONENT_ROUTE), Some("/base/:path_segment/:path_end"));
        assert_eq!(get(BASE_PATH), Some("/"));
        assert_eq!(get(CLIENT_ADDR), Some("127.0.0.1:5555"));
        assert_eq!(get("spin-path-match-path-segment"), Some("path"));
        assert_eq!(get("spin-path-match-path-end"), Some("end"));
        assert_eq!(headers.values().len(), 9);
    }

    #[test]
    fn apply_replaces_client_supplied_spin_headers() {
        let (router, _) =
            Router::new([Route::parse("/...", RouteTarget::Component("c".into())).expect("r")]);
        let m = router.route("/x").expect("m");
        let mut map = HeaderMap::new();
        map.insert(PATH_INFO, HeaderValue::from_static("forged"));
        SpinHeaders::new(&m, "http", "h", "/x", "127.0.0.1:1".parse().expect("a")).apply(&mut map);
        assert_eq!(map.get_all(PATH_INFO).iter().count(), 1);
        assert_eq!(map.get(PATH_INFO).expect("h"), "/x");
        assert_eq!(map.get(COMPONENT_ROUTE).expect("h"), "");
        assert_eq!(map.get(MATCHED_ROUTE).expect("h"), "/...");
    }
}
