//! Test guest for lepton: a Spin HTTP component exporting `wasi:http/incoming-handler@0.2.x`
//! (spin-sdk 5.2). Behaviour is chosen by the last segment of the request path; `hello-p3`
//! behaves identically over `wasi:http/handler@0.3.0`.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

const GENERATION: &str = "p2";

#[http_component]
fn handle(req: Request) -> Response {
    let last = req.path().rsplit('/').next().unwrap_or_default();
    match (last, req.method()) {
        ("trap", _) => panic!("boom"),
        ("headers", _) => text(headers_report(&req)),
        ("env", _) => text(format!("GREETING={}\n", env_or("GREETING", "unset"))),
        ("log", _) => {
            println!("log-line-stdout");
            eprintln!("log-line-stderr");
            text("logged\n".to_owned())
        }
        ("echo", Method::Post) => {
            let content_type = req
                .header("content-type")
                .and_then(|v| v.as_str())
                .unwrap_or("application/octet-stream")
                .to_owned();
            Response::builder()
                .status(200)
                .header("content-type", content_type)
                .body(req.into_body())
                .build()
        }
        _ => text(format!(
            "Hello from {} ({GENERATION})\n",
            env_or("COMPONENT_NAME", "hello")
        )),
    }
}

/// `spin-*` headers sorted by name, then the method and the URI as the SDK presents them.
fn headers_report(req: &Request) -> String {
    let mut spin: Vec<(&str, String)> = req
        .headers()
        .filter(|(name, _)| name.starts_with("spin-"))
        .map(|(name, value)| (name, String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    spin.sort();
    let mut out: String = spin.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
    out.push_str(&format!("method: {}\nuri: {}\n", req.method(), req.uri()));
    out
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn text(body: String) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(body)
        .build()
}
