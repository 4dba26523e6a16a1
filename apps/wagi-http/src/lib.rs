//! Test guest for lepton: one component exporting both an HTTP handler
//! (`wasi:http/incoming-handler@0.2.0`) and `wasi:cli/run@0.2.0`, so one app can route some
//! paths to it through the WAGI executor and others through its HTTP export (see `spin.toml`).
//!
//! - HTTP export: `200 text/plain` `http export: <method> path-info=<spin-path-info>`.
//! - `wasi:cli/run` (WAGI): CGI output, `Content-Type: text/plain`, then
//!   `wagi run: argv=<argv> PATH_INFO=<…> X_MATCHED_ROUTE=<…>`.

use std::io::Write;

use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Component;

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_info = request
            .headers()
            .get(&"spin-path-info".to_string())
            .into_iter()
            .next()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Post => "POST".to_string(),
            other => format!("{other:?}"),
        };
        let body = format!("http export: {method} path-info={path_info}\n");
        let headers = Fields::new();
        let _ = headers.append(&"content-type".to_string(), &b"text/plain".to_vec());
        let response = OutgoingResponse::new(headers);
        let Ok(outgoing) = response.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(response));
        if let Ok(stream) = outgoing.write() {
            let _ = stream.blocking_write_and_flush(body.as_bytes());
        }
        let _ = OutgoingBody::finish(outgoing, None);
    }
}

impl wasi::exports::cli::run::Guest for Component {
    fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().collect();
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "Content-Type: text/plain\n\nwagi run: argv={args:?} PATH_INFO={} X_MATCHED_ROUTE={}\n",
            var("PATH_INFO"),
            var("X_MATCHED_ROUTE")
        );
        out.flush().map_err(|_| ())
    }
}

wasi::http::proxy::export!(Component);
wasi::cli::command::export!(Component);
