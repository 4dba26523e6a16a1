//! Minimal static file server for lepton's tests: serves the file named by the
//! `spin-path-info` header from the component's filesystem root.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request) -> Response {
    let info = req
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let rel = info.trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    if rel.split('/').any(|seg| seg == "..") {
        return not_found();
    }
    match std::fs::read(format!("/{rel}")) {
        Ok(bytes) => Response::builder()
            .status(200)
            .header("content-type", content_type(rel))
            .body(bytes)
            .build(),
        Err(_) => not_found(),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("txt") => "text/plain",
        Some("html") => "text/html",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn not_found() -> Response {
    Response::new(404, ())
}
