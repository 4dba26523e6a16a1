//! Spin's HTTP routing: route syntax, normalisation and precedence.
//!
//! Routes are normalised the way Spin does it: made absolute, with one trailing `/` stripped, so
//! `/` becomes the empty "based route". A route ending in `/...` (or the literal `/*`) is a
//! trailing wildcard; `:name` segments capture one path segment. Precedence does not depend on
//! declaration order: routes are compared segment by segment, a literal segment beating a `:name`
//! capture, which beats the wildcard tail, and an exact route beating a wildcard with the same
//! prefix — so exact beats wildcard and the longest wildcard prefix wins. Two triggers with the
//! same raw route: the last one wins (and the conflict is logged), as in Spin.

use std::cmp::Ordering;

/// What a route leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// A component, by id.
    Component(String),
    /// A static response, by index into the app's static responses.
    Static(usize),
}

/// A parsed, routable Spin route.
#[derive(Debug, Clone)]
pub struct Route {
    raw: String,
    based: String,
    segments: Vec<Segment>,
    wildcard: bool,
    target: RouteTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

/// Route syntax errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// A `:` segment without a name.
    #[error("route `{0}`: a `:` segment needs a name")]
    EmptyCapture(String),
    /// `...` or `*` somewhere other than the last segment.
    #[error("route `{0}`: a wildcard (`...`) may only be the last segment")]
    MisplacedWildcard(String),
}

/// The result of routing one request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The route's target.
    pub target: &'a RouteTarget,
    /// The raw route as written in the trigger.
    pub raw_route: &'a str,
    /// The normalised route (`""` for `/`).
    pub based_route: &'a str,
    /// The part of the path matched by the trailing wildcard (`""` for exact routes).
    pub path_info: String,
    /// `:name` captures, in route order.
    pub captures: Vec<(&'a str, String)>,
}

impl Route {
    /// Parse `raw` (as written in the trigger config) leading to `target`.
    pub fn parse(raw: &str, target: RouteTarget) -> Result<Self, RouteError> {
        let mut based = if raw.starts_with('/') {
            raw.to_string()
        } else {
            format!("/{raw}")
        };
        if based.ends_with('/') {
            based.pop();
        }
        let mut parts: Vec<&str> = based.split('/').skip(1).collect();
        let wildcard = matches!(parts.last(), Some(&"...") | Some(&"*"));
        if wildcard {
            parts.pop();
        }
        let mut segments = Vec::with_capacity(parts.len());
        for part in parts {
            if part == "..." || part == "*" {
                return Err(RouteError::MisplacedWildcard(raw.to_string()));
            }
            match part.strip_prefix(':') {
                Some("") => return Err(RouteError::EmptyCapture(raw.to_string())),
                Some(name) => segments.push(Segment::Capture(name.to_string())),
                None => segments.push(Segment::Literal(part.to_string())),
            }
        }
        Ok(Self {
            raw: raw.to_string(),
            based,
            segments,
            wildcard,
            target,
        })
    }

    /// The raw route as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Whether this route ends in a wildcard.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The target.
    pub fn target(&self) -> &RouteTarget {
        &self.target
    }

    fn matches<'a>(&'a self, path: &str) -> Option<RouteMatch<'a>> {
        // `path` starts with `/`; walk it segment by segment, remembering where we are.
        let mut rest = path;
        let mut captures = Vec::new();
        for segment in &self.segments {
            let after_slash = rest.strip_prefix('/')?;
            let end = after_slash.find('/').unwrap_or(after_slash.len());
            let value = &after_slash[..end];
            match segment {
                Segment::Literal(lit) if lit == value => {}
                Segment::Capture(name) if !value.is_empty() => {
                    captures.push((name.as_str(), value.to_string()));
                }
                _ => return None,
            }
            rest = &after_slash[end..];
        }
        let path_info = if self.wildcard {
            rest.to_string()
        } else if rest.bytes().all(|b| b == b'/') {
            String::new()
        } else {
            return None;
        };
        Some(RouteMatch {
            target: &self.target,
            raw_route: &self.raw,
            based_route: &self.based,
            path_info,
            captures,
        })
    }

    fn same_shape(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Capture(_), Segment::Capture(_)) => true,
                    _ => false,
                })
    }

    /// Specificity: compare segment by segment (literal > capture > end of route), then an exact
    /// end beats a wildcard tail.
    fn specificity(&self, other: &Self) -> Ordering {
        let rank = |s: Option<&Segment>| match s {
            Some(Segment::Literal(_)) => 2,
            Some(Segment::Capture(_)) => 1,
            None => 0,
        };
        let n = self.segments.len().max(other.segments.len());
        for i in 0..n {
            let ord = rank(self.segments.get(i)).cmp(&rank(other.segments.get(i)));
            if ord != Ordering::Equal {
                return ord;
            }
        }
        // Same shape: exact beats wildcard.
        other.wildcard.cmp(&self.wildcard)
    }
}

/// A set of routes with Spin's precedence.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Build a router. Later routes with an identical raw route replace earlier ones (Spin's
    /// "last one wins"); the replaced targets are returned so the caller can report them.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> (Self, Vec<(String, RouteTarget)>) {
        let mut kept: Vec<Route> = Vec::new();
        let mut replaced = Vec::new();
        for route in routes {
            // Routes matching exactly the same paths (`/a/:x` and `/a/:y` too) are duplicates.
            if let Some(existing) = kept.iter_mut().find(|r| r.same_shape(&route)) {
                replaced.push((existing.raw.clone(), existing.target.clone()));
                *existing = route;
            } else {
                kept.push(route);
            }
        }
        (Self { routes: kept }, replaced)
    }

    /// The best route for `path` (the request path, without query), if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let path = if path.is_empty() { "/" } else { path };
        let mut best: Option<(&Route, RouteMatch<'_>)> = None;
        for route in &self.routes {
            if let Some(m) = route.matches(path) {
                let better = match &best {
                    None => true,
                    Some((current, _)) => route.specificity(current) == Ordering::Greater,
                };
                if better {
                    best = Some((route, m));
                }
            }
        }
        best.map(|(_, m)| m)
    }

    /// The routes, in declaration order (after duplicate removal).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router {
        Router::new(
            routes
                .iter()
                .map(|r| Route::parse(r, RouteTarget::Component(r.to_string())).expect("route")),
        )
        .0
    }

    fn hit(router: &Router, path: &str) -> Option<(String, String)> {
        router.route(path).map(|m| match m.target {
            RouteTarget::Component(c) => (c.clone(), m.path_info),
            RouteTarget::Static(_) => unreachable!(),
        })
    }

    #[test]
    fn wildcard_path_info_keeps_trailing_slash() {
        let r = router(&["/foo/..."]);
        assert_eq!(hit(&r, "/foo"), Some(("/foo/...".into(), "".into())));
        assert_eq!(hit(&r, "/foo/"), Some(("/foo/...".into(), "/".into())));
        assert_eq!(
            hit(&r, "/foo/x/y"),
            Some(("/foo/...".into(), "/x/y".into()))
        );
        assert_eq!(
            hit(&r, "/foo/x/y/"),
            Some(("/foo/...".into(), "/x/y/".into()))
        );
        assert_eq!(hit(&r, "/foobar"), None);
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins_regardless_of_order() {
        let r = router(&["/...", "/a/b/...", "/a/...", "/a"]);
        assert_eq!(hit(&r, "/a").map(|h| h.0), Some("/a".into()));
        assert_eq!(hit(&r, "/a/").map(|h| h.0), Some("/a".into()));
        assert_eq!(hit(&r, "/a/x").map(|h| h.0), Some("/a/...".into()));
        assert_eq!(hit(&r, "/a/b/c").map(|h| h.0), Some("/a/b/...".into()));
        assert_eq!(hit(&r, "/z"), Some(("/...".into(), "/z".into())));
        assert_eq!(hit(&r, "/"), Some(("/...".into(), "/".into())));
    }

    #[test]
    fn root_route_is_exact_and_based_route_is_empty() {
        let r = router(&["/"]);
        let m = r.route("/").expect("match");
        assert_eq!(m.based_route, "");
        assert_eq!(m.path_info, "");
        assert!(r.route("/x").is_none());
    }

    #[test]
    fn named_segments_capture_and_rank_below_literals() {
        let r = router(&["/users/:id/...", "/users/admin/..."]);
        let m = r.route("/users/42/posts").expect("match");
        assert_eq!(m.raw_route, "/users/:id/...");
        assert_eq!(m.captures, vec![("id", "42".to_string())]);
        assert_eq!(m.path_info, "/posts");
        assert_eq!(
            r.route("/users/admin/x").expect("match").raw_route,
            "/users/admin/..."
        );
        // A capture needs a non-empty segment.
        assert!(
            r.route("/users//x").is_none()
                || r.route("/users//x").expect("m").raw_route != "/users/:id/..."
        );
    }

    #[test]
    fn conformance_request_shape_route() {
        let r = router(&["/base/:path_segment/:path_end/..."]);
        let m = r.route("/base/path/end/rest").expect("match");
        assert_eq!(m.path_info, "/rest");
        assert_eq!(
            m.captures,
            vec![("path_segment", "path".into()), ("path_end", "end".into())]
        );
    }

    #[test]
    fn duplicate_raw_routes_last_wins() {
        let (r, replaced) = Router::new([
            Route::parse("/dup", RouteTarget::Component("first".into())).expect("r"),
            Route::parse("/dup/", RouteTarget::Component("second".into())).expect("r"),
        ]);
        assert_eq!(
            r.route("/dup").expect("m").target,
            &RouteTarget::Component("second".into())
        );
        assert_eq!(replaced.len(), 1);

        // Same shape, different capture names: still the same route; the last wins.
        let (r, replaced) = Router::new([
            Route::parse("/a/:x", RouteTarget::Component("first".into())).expect("r"),
            Route::parse("/a/:y", RouteTarget::Component("second".into())).expect("r"),
        ]);
        let m = r.route("/a/1").expect("m");
        assert_eq!(m.target, &RouteTarget::Component("second".into()));
        assert_eq!(m.captures, vec![("y", "1".to_string())]);
        assert_eq!(replaced.len(), 1);
    }

    #[test]
    fn repeated_trailing_slashes_still_match_exact_routes() {
        let r = router(&["/foo", "/foo/..."]);
        assert_eq!(hit(&r, "/foo//"), Some(("/foo".into(), "".into())));
        assert_eq!(hit(&r, "/foo//x"), Some(("/foo/...".into(), "//x".into())));
    }

    #[test]
    fn bad_routes_are_rejected() {
        assert!(Route::parse("/a/.../b", RouteTarget::Static(0)).is_err());
        assert!(Route::parse("/a/:/b", RouteTarget::Static(0)).is_err());
    }
}
