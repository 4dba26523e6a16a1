//! Test guest for lepton: a Spin HTTP component (spin-sdk 5.2, `wasi:http@0.2`) that uses Spin's
//! key-value store and variables, so it imports `fermyon:spin/key-value@2.0.0` and
//! `fermyon:spin/variables@2.0.0`. lepton does not provide those yet and must refuse it at load,
//! naming the interface; the handler below exists so the imports are real, not dead code.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let greeting = spin_sdk::variables::get("greeting")?;
    let store = Store::open_default()?;
    let hits = store
        .get("hits")?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    store.set("hits", hits.to_string().as_bytes())?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(format!("{greeting} {} (hit {hits})\n", req.path()))
        .build())
}
