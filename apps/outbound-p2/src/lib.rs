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
//! - `/tcp`: over `wasi:sockets/tcp`, connect to the `x-addr` header's `ipv4:port`, send
//!   `GET /tcp HTTP/1.0` and answer `200` with the raw reply, or `502 "tcp error: <error-code name>"`.
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
        "/tcp" => tcp(&req),
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

fn tcp(req: &Request) -> Response {
    let Some(addr) = req
        .header("x-addr")
        .and_then(|v| v.as_str())
        .and_then(|a| a.parse::<std::net::SocketAddrV4>().ok())
    else {
        return reply(400, "missing or bad x-addr header (ipv4:port)\n".to_owned());
    };
    match tcp_exchange(addr) {
        Ok(raw) => reply(200, raw),
        Err(e) => reply(502, format!("tcp error: {e}\n")),
    }
}

/// Connect with `wasi:sockets/tcp`, send `GET /tcp HTTP/1.0`, read until the peer closes.
fn tcp_exchange(addr: std::net::SocketAddrV4) -> Result<String, String> {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    let network = wasi::sockets::instance_network::instance_network();
    let socket = wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| e.name().to_owned())?;
    let [a, b, c, d] = addr.ip().octets();
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: addr.port(),
        address: (a, b, c, d),
    });
    socket
        .start_connect(&network, remote)
        .map_err(|e| e.name().to_owned())?;
    let (input, output) = loop {
        match socket.finish_connect() {
            Ok(streams) => break streams,
            Err(wasi::sockets::network::ErrorCode::WouldBlock) => socket.subscribe().block(),
            Err(e) => return Err(e.name().to_owned()),
        }
    };
    output
        .blocking_write_and_flush(b"GET /tcp HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("{e:?}"))?;
    let mut raw = Vec::new();
    loop {
        match input.blocking_read(4096) {
            Ok(chunk) => raw.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Ok(String::from_utf8_lossy(&raw).into_owned())
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
