//! Test guest for lepton: a Spin 1.x-style component (unversioned `fermyon:spin/inbound-http`
//! export) making outbound requests with the unversioned `fermyon:spin/http` `send-request`.
//! GETs the URL in the `x-url` header and answers `200 "<status>\n<body>"`, or
//! `502 "error: <the http-error name the guest saw>"`.

wit_bindgen::generate!({
    world: "outbound-legacy",
    path: "wit",
});

use exports::fermyon::spin::inbound_http::{Guest, Request, Response};
use fermyon::spin::http;
use fermyon::spin::http_types::Method;

struct OutboundLegacy;

impl Guest for OutboundLegacy {
    fn handle_request(req: Request) -> Response {
        let Some(url) = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-url"))
            .map(|(_, v)| v.clone())
        else {
            return text(400, "missing x-url header\n".to_owned());
        };
        let outgoing = http::Request {
            method: Method::Get,
            uri: url,
            headers: Vec::new(),
            params: Vec::new(),
            body: None,
        };
        match http::send_request(&outgoing) {
            Ok(res) => {
                let body = String::from_utf8_lossy(&res.body.unwrap_or_default()).into_owned();
                text(200, format!("{}\n{body}", res.status))
            }
            Err(err) => text(502, format!("error: {}\n", err.name())),
        }
    }
}

fn text(status: u16, body: String) -> Response {
    Response {
        status,
        headers: Some(vec![("content-type".to_owned(), "text/plain".to_owned())]),
        body: Some(body.into_bytes()),
    }
}

export!(OutboundLegacy);
