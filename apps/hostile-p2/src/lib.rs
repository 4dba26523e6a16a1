//! Test guest for lepton's per-app resource limits: a Spin HTTP component exporting
//! `wasi:http/incoming-handler@0.2.x` (spin-sdk 5.2) that misbehaves on demand. `hostile-p3`
//! serves the same routes over `wasi:http/handler@0.3.0`. Numbers in the query default to 0.
//!
//! - `GET /ok`: `200 "ok"`.
//! - `GET /loop`: loops forever without yielding or calling the host.
//! - `GET /spin?ms=N`: busy-loops N ms (reading the clock every 100k iterations), `200 "spun N"`.
//! - `GET /alloc?mib=N`: allocates and touches N MiB in 1 MiB chunks, `200 "allocated N"` or
//!   `507 "alloc failed after K MiB"` when `memory.grow` is refused.
//! - `GET /sleep?ms=N`: `std::thread::sleep` (wasi monotonic-clock), `200 "slept N"`.
//! - `GET /recurse?depth=N`: recursion N deep, `200 "depth N"`; a huge N traps (stack overflow).
//! - `POST /echo`: streams the request body back chunk by chunk as it arrives.
//! - `POST /count`: reads the whole body, `200 "<bytes>"`.
//! - `GET /stream?chunks=N&ms=M`: sends the 200 head, then N `chunk\n` chunks, M ms apart.
//! - `GET /chain?wait=N&to=<target>` (p2 only): service chaining. Sleeps N ms, then GETs
//!   `http://hostile.spin.internal<target>` (this same component; everything after `to=` is the
//!   target, its own query included, so `to` comes last) and relays the status it got, with the
//!   body `relayed <status> retry-after=<value or ->`; `502 "chain error: <what the guest saw>"`
//!   if the request failed. Needs `allowed_outbound_hosts = ["http://hostile.spin.internal"]`.
//! - anything else: 404.

mod misbehave;

use futures::{Sink, SinkExt, StreamExt};
use misbehave::param;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;
use std::time::Duration;

#[http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let target = req.path_with_query().unwrap_or_default();
    let (path, query) = misbehave::split_target(&target);
    let n = |key| param(query, key);
    match (req.method(), path) {
        (Method::Get, "/ok") => reply(out, 200, "ok".to_owned()).await,
        (Method::Get, "/loop") => misbehave::loop_forever(),
        (Method::Get, "/spin") => {
            misbehave::spin_for(n("ms"));
            reply(out, 200, format!("spun {}", n("ms"))).await
        }
        (Method::Get, "/alloc") => {
            let (status, body) = misbehave::alloc(n("mib"));
            reply(out, status, body).await
        }
        (Method::Get, "/sleep") => {
            std::thread::sleep(Duration::from_millis(n("ms")));
            reply(out, 200, format!("slept {}", n("ms"))).await
        }
        (Method::Get, "/recurse") => {
            misbehave::recurse(n("depth"));
            reply(out, 200, format!("depth {}", n("depth"))).await
        }
        (Method::Post, "/echo") => {
            let mut input = std::pin::pin!(req.into_body_stream());
            let mut output = start(out, 200, "application/octet-stream");
            while let Some(Ok(chunk)) = input.next().await {
                if output.send(chunk).await.is_err() {
                    break;
                }
            }
        }
        (Method::Post, "/count") => {
            let mut input = std::pin::pin!(req.into_body_stream());
            let mut count = 0;
            while let Some(Ok(chunk)) = input.next().await {
                count += chunk.len();
            }
            reply(out, 200, count.to_string()).await
        }
        (Method::Get, "/stream") => {
            let mut output = start(out, 200, "text/plain");
            for i in 0..n("chunks") {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(n("ms")));
                }
                if output.send(b"chunk\n".to_vec()).await.is_err() {
                    break;
                }
            }
        }
        (Method::Get, "/chain") => {
            std::thread::sleep(Duration::from_millis(n("wait")));
            let (status, body) = chain(query).await;
            reply(out, status, body).await
        }
        _ => reply(out, 404, "not found".to_owned()).await,
    }
}

/// `GET http://hostile.spin.internal<target>`, `target` being everything after `to=` in `query`
/// (`/ok` if absent); the status to relay and a body saying what came back.
async fn chain(query: &str) -> (u16, String) {
    let target = query
        .split_once("to=")
        .map_or("/ok", |(_, target)| target)
        .to_owned();
    let url = format!("http://hostile.spin.internal{target}");
    let sent: Result<spin_sdk::http::Response, _> =
        spin_sdk::http::send(spin_sdk::http::Request::new(Method::Get, url)).await;
    match sent {
        Ok(res) => {
            let status = *res.status();
            let retry_after = res
                .header("retry-after")
                .and_then(|v| v.as_str())
                .unwrap_or("-")
                .to_owned();
            (status, format!("relayed {status} retry-after={retry_after}"))
        }
        Err(err) => (502, format!("chain error: {err:?}")),
    }
}

/// Sends the response head and returns the body; dropping it finishes the body.
fn start(out: ResponseOutparam, status: u16, content_type: &str) -> impl Sink<Vec<u8>> + Unpin {
    let headers = Fields::from_list(&[("content-type".to_owned(), content_type.into())]).unwrap();
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).unwrap();
    let body = response.take_body();
    out.set(response);
    body
}

async fn reply(out: ResponseOutparam, status: u16, text: String) {
    let _ = start(out, status, "text/plain").send(text.into_bytes()).await;
}
