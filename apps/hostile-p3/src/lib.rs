//! Test guest for lepton's per-app resource limits: a Spin HTTP service exporting
//! `wasi:http/handler@0.3.0` (spin-sdk 7, WASIp3) that misbehaves on demand. Serves the same
//! routes as `hostile-p2` (see its lib.rs; the CPU, memory and stack work is the shared
//! `misbehave` module); here `/sleep` and the pauses of `/stream` are async
//! (`spin_sdk::time::sleep`, i.e. `wasi:clocks/monotonic-clock@0.3.0#wait-for`), `/echo` returns
//! the incoming body as the response body (streamed frame by frame by the SDK), and `/stream` is a
//! `StreamBody` over a `futures` stream.
//!
//! Per-instance state, for the instance reuse tests: `/seen?ms=N` counts the requests this
//! instance has taken (a counter in a static) and those it is running, sleeps N ms (logging
//! `seen <id> <count> sleeping N ms` to stderr first when N > 0) and answers
//! `<instance id> <count> <running>`, where `running` counts the `/seen` requests the instance
//! was running when this one started, itself included. The instance id is random, drawn once per
//! instance. `/trap` logs `trap in <id> after <count> requests` to stderr, then panics.

#[path = "../../hostile-p2/src/misbehave.rs"]
mod misbehave;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body::Frame;
use http_body_util::StreamBody;
use misbehave::param;
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{BoxBody, FullBody, Method, Request, Response, box_body};
use spin_sdk::http_service;
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Requests this instance has taken on `/seen`.
static SEEN: AtomicU64 = AtomicU64::new(0);
/// `/seen` requests this instance is running.
static RUNNING: AtomicU64 = AtomicU64::new(0);
/// This instance's random id.
static INSTANCE: OnceLock<u64> = OnceLock::new();

fn instance_id() -> u64 {
    // std seeds `RandomState` from wasi:random, so each instance draws its own.
    *INSTANCE.get_or_init(|| RandomState::new().hash_one(0u8))
}

type Reply = Response<BoxBody>;

#[http_service]
async fn handle(req: Request) -> spin_sdk::http::Result<Reply> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let (path, query) = misbehave::split_target(&target);
    let n = |key| param(query, key);
    match (req.method().clone(), path) {
        (Method::GET, "/ok") => text(200, "ok".to_owned()),
        (Method::GET, "/seen") => {
            let (id, count) = (instance_id(), SEEN.fetch_add(1, Ordering::Relaxed) + 1);
            let running = RUNNING.fetch_add(1, Ordering::Relaxed) + 1;
            let ms = n("ms");
            if ms > 0 {
                eprintln!("seen {id:016x} {count} sleeping {ms} ms");
                spin_sdk::time::sleep(Duration::from_millis(ms)).await;
            }
            RUNNING.fetch_sub(1, Ordering::Relaxed);
            text(200, format!("{id:016x} {count} {running}"))
        }
        (Method::GET, "/trap") => {
            let (id, count) = (instance_id(), SEEN.load(Ordering::Relaxed));
            eprintln!("trap in {id:016x} after {count} requests");
            panic!("trap requested")
        }
        (Method::GET, "/loop") => misbehave::loop_forever(),
        (Method::GET, "/spin") => {
            misbehave::spin_for(n("ms"));
            text(200, format!("spun {}", n("ms")))
        }
        (Method::GET, "/alloc") => {
            let (status, body) = misbehave::alloc(n("mib"));
            text(status, body)
        }
        (Method::GET, "/sleep") => {
            spin_sdk::time::sleep(Duration::from_millis(n("ms"))).await;
            text(200, format!("slept {}", n("ms")))
        }
        (Method::GET, "/recurse") => {
            misbehave::recurse(n("depth"));
            text(200, format!("depth {}", n("depth")))
        }
        (Method::POST, "/echo") => Ok(http::Response::builder()
            .status(200)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(box_body(req.into_body()))?),
        (Method::POST, "/count") => {
            let mut chunks = req.into_body().stream();
            let mut count = 0;
            while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
                count += chunk?.len();
            }
            text(200, count.to_string())
        }
        (Method::GET, "/stream") => {
            let (chunks, ms) = (n("chunks"), n("ms"));
            let frames = futures::stream::unfold(0, move |i| async move {
                if i == chunks {
                    return None;
                }
                if i > 0 {
                    spin_sdk::time::sleep(Duration::from_millis(ms)).await;
                }
                let frame = Frame::data(Bytes::from_static(b"chunk\n"));
                Some((Ok::<_, Infallible>(frame), i + 1))
            });
            Ok(http::Response::builder()
                .status(200)
                .header(CONTENT_TYPE, "text/plain")
                .body(box_body(StreamBody::new(frames)))?)
        }
        _ => text(404, "not found".to_owned()),
    }
}

fn text(status: u16, body: String) -> spin_sdk::http::Result<Reply> {
    Ok(http::Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain")
        .body(box_body(FullBody::new(Bytes::from(body))))?)
}
