//! Test guest for lepton: a Spin 1.x-style component exporting the unversioned
//! `fermyon:spin/inbound-http` interface, bound with `wit-bindgen` against the WIT in `wit/`.
//! It reports the request exactly as the host delivered it; `?status=N` picks the response
//! status, `/llm` calls the unversioned `fermyon:spin/llm` import and `/loop` loops forever
//! without calling the host (for the request-deadline tests).

wit_bindgen::generate!({
    world: "legacy-http",
    path: "wit",
});

use exports::fermyon::spin::inbound_http::{Guest, Request, Response};
use fermyon::spin::http_types::Method;
use fermyon::spin::llm;

struct Legacy;

impl Guest for Legacy {
    fn handle_request(req: Request) -> Response {
        if req.uri.starts_with("/legacy/loop") {
            loop_forever();
        }
        if req.uri.starts_with("/legacy/llm") {
            let text = match llm::infer("llama2-chat", "hi", None) {
                Ok(res) => format!("inferred: {}\n", res.text),
                Err(err) => format!("llm error: {err:?}\n"),
            };
            return text_response(200, text);
        }
        let status = req
            .uri
            .split_once("status=")
            .and_then(|(_, rest)| rest.split('&').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let method = match req.method {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        };
        let mut headers: Vec<String> = req
            .headers
            .iter()
            .filter(|(name, _)| name.starts_with("spin-") || name.starts_with("x-"))
            .map(|(name, value)| format!("{name}: {value}\n"))
            .collect();
        headers.sort();
        let body = match &req.body {
            Some(bytes) => format!("some({})", String::from_utf8_lossy(bytes)),
            None => "none".to_owned(),
        };
        let report = format!(
            "method: {method}\nuri: {}\nparams: {}\nbody: {body}\n{}",
            req.uri,
            req.params.len(),
            headers.concat()
        );
        text_response(status, report)
    }
}

/// Never returns, never yields and never calls the host: only the host's request deadline (an
/// epoch interruption) can stop it. `black_box` keeps the loop from being optimised away.
fn loop_forever() -> ! {
    let mut i: u64 = 0;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

fn text_response(status: u16, body: String) -> Response {
    Response {
        status,
        headers: Some(vec![
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("x-legacy".to_owned(), "1".to_owned()),
        ]),
        body: Some(body.into_bytes()),
    }
}

export!(Legacy);
