//! HTTP trigger routes ([`Route::parse`]) and request routing ([`Router::route`]), through the
//! public API only (lepton-trigger-http's `router.rs`, compiled by `lepton_fuzz`). Input: route
//! lines, a blank line, then request paths. Checks: no panic; `path_info` is a suffix of the
//! path; captures are single non-empty segments; an exact literal route always matches its own
//! path.
#![no_main]

use lepton_fuzz::lines;
use lepton_fuzz::router::{Route, RouteTarget, Router};
use libfuzzer_sys::fuzz_target;

/// The request path that a literal, non-wildcard route `raw` stands for.
fn own_path(raw: &str) -> String {
    let mut based = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("/{raw}")
    };
    if based.ends_with('/') {
        based.pop();
    }
    if based.is_empty() { "/".into() } else { based }
}

fuzz_target!(|data: &[u8]| {
    let lines = lines(data);
    let split = lines
        .iter()
        .position(String::is_empty)
        .unwrap_or(lines.len());
    let (route_lines, path_lines) = lines.split_at(split);
    let mut routes = Vec::new();
    let mut literal = Vec::new();
    for (i, raw) in route_lines.iter().enumerate() {
        if let Ok(route) = Route::parse(raw, RouteTarget::Component(i.to_string())) {
            let is_literal =
                !route.is_wildcard() && !own_path(raw).split('/').any(|s| s.starts_with(':'));
            if is_literal {
                literal.push(own_path(raw));
            }
            routes.push(route);
        }
    }
    let (router, _replaced) = Router::new(routes);
    for path in path_lines.iter().skip(1).chain(&literal) {
        let Some(m) = router.route(path) else {
            assert!(
                !literal.contains(path),
                "literal route {path:?} does not match itself"
            );
            continue;
        };
        let path = if path.is_empty() { "/" } else { path.as_str() };
        assert!(
            path.ends_with(&m.path_info),
            "path_info {:?} is not a suffix of {path:?}",
            m.path_info
        );
        for (name, value) in &m.captures {
            assert!(!name.is_empty() && !value.is_empty() && !value.contains('/'));
        }
    }
});
