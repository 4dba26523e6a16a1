//! Test guest for lepton's outbound networking: a Spin HTTP component (spin-sdk 5.2, exporting
//! `wasi:http/incoming-handler@0.2.x`) that makes the outbound HTTP request its caller asks for
//! and reports exactly what it got back.
//!
//! The path the component sees (Spin's `spin-path-info`, so the same Wasm serves under any route
//! prefix) selects the behaviour:
//! - `/fetch`: GET the URL in the `x-url` request header with the SDK's own request type
//!   (a relative URL gets the SDK's `:80`/`:443` placeholder authority), or with an `http`
//!   crate request (no authority at all) when `x-builder: http` is set. Answers
//!   `200 "<status>\n<body>"` relayed from the upstream, or `502 "error: <what the guest saw>"`.
//! - `/whoami`: `I am <COMPONENT_NAME>` and the `spin-path-info` / `spin-matched-route` seen.
//! - `/services/...`: Redis / PostgreSQL / MySQL / MQTT routes, in [`services`].
//! - anything else: 404.

mod services;

use spin_sdk::http::{Method, Request, Response, SendError};
use spin_sdk::http_component;

#[http_component]
async fn handle(req: Request) -> Response {
    let path = req
        .header("spin-path-info")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| req.path().to_owned());
    match path.as_str() {
        "/fetch" => fetch(&req).await,
        "/whoami" => whoami(&req),
        p if p.starts_with("/services/") => services::handle(req).await,
        _ => reply(404, String::new()),
    }
}

async fn fetch(req: &Request) -> Response {
    let Some(url) = req.header("x-url").and_then(|v| v.as_str()) else {
        return reply(400, "missing x-url header\n".to_owned());
    };
    let use_http_crate = req.header("x-builder").and_then(|v| v.as_str()) == Some("http");
    let result: Result<Response, SendError> = if use_http_crate {
        match http::Request::builder().method("GET").uri(url).body(()) {
            Ok(outgoing) => spin_sdk::http::send(outgoing).await,
            Err(e) => return reply(400, format!("bad url: {e}\n")),
        }
    } else {
        spin_sdk::http::send(Request::new(Method::Get, url)).await
    };
    match result {
        Ok(res) => {
            let body = String::from_utf8_lossy(res.body()).into_owned();
            reply(200, format!("{}\n{body}", res.status()))
        }
        Err(SendError::Http(code)) => reply(502, format!("error: {code:?}\n")),
        Err(other) => reply(502, format!("error: {other}\n")),
    }
}

fn whoami(req: &Request) -> Response {
    let header = |name: &str| {
        req.header(name)
            .and_then(|v| v.as_str())
            .unwrap_or("-")
            .to_owned()
    };
    reply(
        200,
        format!(
            "I am {}\npath-info: {}\nmatched-route: {}\n",
            std::env::var("COMPONENT_NAME").unwrap_or_else(|_| "unnamed".to_owned()),
            header("spin-path-info"),
            header("spin-matched-route"),
        ),
    )
}

fn reply(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body)
        .build()
}
