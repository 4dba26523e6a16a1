//! Test guest for lepton: the classic Spin app shape, spin-sdk 5.2 built for `wasm32-wasip1`.
//! The output is a core module carrying wit-bindgen's `component-type` section; lepton turns it
//! into a component at load. `/llm` calls `fermyon:spin/llm@2.0.0`, which lepton cannot serve, and
//! reports the error the host returned.

use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::llm;

#[http_component]
fn handle(req: Request) -> Response {
    let last = req.path().rsplit('/').next().unwrap_or_default();
    let body = match last {
        "llm" => match llm::infer(llm::InferencingModel::Llama2Chat, "hello") {
            Ok(res) => format!("inferred: {}\n", res.text),
            Err(err) => format!("llm error: {err:?}\n"),
        },
        "embed" => match llm::generate_embeddings(llm::EmbeddingModel::AllMiniLmL6V2, &["a".to_owned()]) {
            Ok(res) => format!("embeddings: {}\n", res.embeddings.len()),
            Err(err) => format!("llm error: {err:?}\n"),
        },
        _ => format!(
            "Hello from a core module ({}) {} {}\n",
            std::env::var("GREETING").unwrap_or_else(|_| "unset".to_owned()),
            req.method(),
            req.uri()
        ),
    };
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(body)
        .build()
}
