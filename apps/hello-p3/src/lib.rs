//! Test guest for lepton: a Spin HTTP service exporting `wasi:http/handler@0.3.0`
//! (spin-sdk 7, WASIp3). Behaves like `hello-p2` except for the generation word.

use bytes::Bytes;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{FullBody, Method, Request, Response};
use spin_sdk::http_service;

const GENERATION: &str = "p3";

type Reply = Response<FullBody<Bytes>>;

#[http_service]
async fn handle(req: Request) -> spin_sdk::http::Result<Reply> {
    let path = req.uri().path().to_owned();
    let last = path.rsplit('/').next().unwrap_or_default();
    Ok(match last {
        "trap" => panic!("boom"),
        "headers" => text(headers_report(&req))?,
        "env" => text(format!("GREETING={}\n", env_or("GREETING", "unset")))?,
        "log" => {
            println!("log-line-stdout");
            eprintln!("log-line-stderr");
            text("logged\n".to_owned())?
        }
        "echo" if req.method() == Method::POST => {
            let content_type = req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(http::HeaderValue::from_static("application/octet-stream"));
            let body = req.into_body().bytes().await?;
            http::Response::builder()
                .status(200)
                .header(http::header::CONTENT_TYPE, content_type)
                .body(FullBody::new(body))?
        }
        _ => text(format!(
            "Hello from {} ({GENERATION})\n",
            env_or("COMPONENT_NAME", "hello")
        ))?,
    })
}

/// `spin-*` headers sorted by name, then the method and the URI as the SDK presents them.
fn headers_report(req: &Request) -> String {
    let mut spin: Vec<(&str, String)> = req
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("spin-"))
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    spin.sort();
    let mut out: String = spin.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
    out.push_str(&format!("method: {}\nuri: {}\n", req.method(), req.uri()));
    out
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn text(body: String) -> Result<Reply, http::Error> {
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(FullBody::new(Bytes::from(body)))
}
