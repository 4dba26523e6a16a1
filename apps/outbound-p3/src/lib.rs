//! Test guest for lepton's outbound networking over WASIp3: a Spin HTTP service (spin-sdk 7,
//! `wasi:http/handler@0.3.0`) that makes the outbound request its caller asks for with the
//! `wasi:http@0.3` client and reports what it got back.
//!
//! Paths are matched after the component's route (`spin-path-info`):
//! - `/fetch`: GET the URL in the `x-url` header (absolute, or relative such as `/whoami`: a
//!   self request); answers `200 "<status>\n<body>"` relayed from the upstream, or
//!   `502 "error: <the ErrorCode the guest saw>"`.
//! - `/whoami`: `I am <COMPONENT_NAME> (p3)`.
//! - anything else: 404.

use bytes::Bytes;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, Request, Response};
use spin_sdk::http_service;

type Reply = Response<FullBody<Bytes>>;

#[http_service]
async fn handle(req: Request) -> spin_sdk::http::Result<Reply> {
    let path = req
        .headers()
        .get("spin-path-info")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| req.uri().path())
        .to_owned();
    match path.as_str() {
        "/fetch" => fetch(&req).await,
        "/whoami" => reply(
            200,
            format!(
                "I am {} (p3)\n",
                std::env::var("COMPONENT_NAME").unwrap_or_else(|_| "unnamed".to_owned())
            ),
        ),
        _ => reply(404, String::new()),
    }
}

async fn fetch(req: &Request) -> spin_sdk::http::Result<Reply> {
    let Some(url) = req.headers().get("x-url").and_then(|v| v.to_str().ok()) else {
        return reply(400, "missing x-url header\n".to_owned());
    };
    let outgoing = http::Request::builder()
        .method("GET")
        .uri(url)
        .body(FullBody::new(Bytes::new()))?;
    match spin_sdk::http::send(outgoing).await {
        Ok(res) => {
            let status = res.status().as_u16();
            match res.into_body().bytes().await {
                Ok(body) => reply(200, format!("{status}\n{}", String::from_utf8_lossy(&body))),
                Err(code) => reply(502, format!("body error: {code:?}\n")),
            }
        }
        Err(code) => reply(502, format!("error: {code:?}\n")),
    }
}

fn reply(status: u16, body: String) -> spin_sdk::http::Result<Reply> {
    Ok(http::Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(FullBody::new(Bytes::from(body)))?)
}
