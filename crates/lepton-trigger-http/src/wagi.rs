//! The WAGI executor (`executor = { type = "wagi" }`): CGI over WASI, with Spin's semantics
//! (facts §3.5). The component is a command; each request gets a fresh store and instance whose
//! `wasi:cli/run` is called with:
//!
//! - **argv** from the trigger's `argv` template (default `${SCRIPT_NAME} ${ARGS}`):
//!   `${SCRIPT_NAME}` → the request path, `${ARGS}` → the query string with `&` turned into
//!   spaces, then split on single spaces;
//! - **environment**: the component's `environment`, then the CGI variables, `HTTP_<NAME>` for
//!   each request header except `Authorization` and `Connection`, then the Spin request values
//!   under their WAGI names (`X_FULL_URL`, `PATH_INFO` (raw), `X_MATCHED_ROUTE`, …), which win;
//! - **stdin** the request body, **stdout** captured in memory.
//!
//! `proc_exit(0)` is success; any other exit or trap is an executor error (empty 500). The
//! response is parsed CGI-style from stdout ([`compose_response`]).
//!
//! The request reaches this executor with the `spin-*` headers already set by the router; they
//! are taken off the request here and become the `X_*` variables instead (WAGI guests do not see
//! them as `HTTP_SPIN_*`, as in Spin).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lepton_runtime::{HostState, PreparedComponent};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi_http::WasiBody;

use crate::headers;

/// The `argv` template Spin uses when a trigger sets none.
pub const DEFAULT_ARGV: &str = "${SCRIPT_NAME} ${ARGS}";

/// The body of the 500 sent when a WAGI response has no `Content-Type`, `Location` or `Status`.
pub const INSUFFICIENT_RESPONSE: &str =
    "Exactly one of 'location' or 'content-type' must be specified";

/// Runs requests through a WAGI component. One executor serves every WAGI trigger of a
/// component; each trigger's `argv` is looked up by its raw route.
#[derive(Clone)]
pub struct WagiExecutor {
    component: Arc<PreparedComponent>,
    pre: CommandPre<HostState>,
    argv_by_route: Arc<HashMap<String, String>>,
}

impl WagiExecutor {
    /// The executor for `component`, which must export `wasi:cli/run@0.2.x`; `argv_by_route`
    /// maps each raw trigger route to its `argv` template.
    pub fn new(
        component: Arc<PreparedComponent>,
        argv_by_route: HashMap<String, String>,
    ) -> wasmtime::Result<Self> {
        let pre = CommandPre::new(component.instance_pre().clone())?;
        Ok(Self {
            component,
            pre,
            argv_by_route: Arc::new(argv_by_route),
        })
    }

    /// Handle one request (with its `spin-*` headers set).
    pub async fn handle(
        &self,
        deadline: tokio::time::Instant,
        req: Request<WasiBody>,
    ) -> wasmtime::Result<Response<WasiBody>> {
        let (mut parts, body) = req.into_parts();
        let spin = take_spin_headers(&mut parts.headers);
        let template = spin
            .get(headers::RAW_COMPONENT_ROUTE)
            .and_then(|route| self.argv_by_route.get(route))
            .map_or(DEFAULT_ARGV, String::as_str);
        let argv = build_argv(template, parts.uri.path(), parts.uri.query());
        let body = body.collect().await?.to_bytes();
        let env = build_env(&parts, &spin, body.len());

        let stdout = MemoryOutputPipe::new(usize::MAX);
        let mut store = self.component.new_store_with(|wasi| {
            let env: Vec<(&String, &String)> = env.iter().collect();
            wasi.args(&argv)
                .envs(&env)
                .stdin(MemoryInputPipe::new(body))
                .stdout(stdout.clone());
        })?;
        store.data_mut().shorten_deadline(deadline.into_std());
        let command = self.pre.instantiate_async(&mut store).await?;
        match command.wasi_cli_run().call_run(&mut store).await {
            Ok(Ok(())) => {}
            Ok(Err(())) => {
                tracing::error!(component = %self.component.id(), "WAGI main function returned an unsuccessful result");
            }
            Err(err) => match err.root_cause().downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(wasmtime_wasi::I32Exit(0)) => {}
                _ => return Err(err),
            },
        }
        drop(store);
        let output = stdout.contents();
        if output.is_empty() {
            wasmtime::bail!(
                "the {:?} component is configured to use the WAGI executor but did not write to stdout",
                self.component.id()
            );
        }
        compose_response(&output)
    }
}

/// Remove the `spin-*` values the router set and return them by header name.
fn take_spin_headers(headers: &mut HeaderMap) -> BTreeMap<String, String> {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            [
                headers::FULL_URL,
                headers::PATH_INFO,
                headers::MATCHED_ROUTE,
                headers::BASE_PATH,
                headers::RAW_COMPONENT_ROUTE,
                headers::COMPONENT_ROUTE,
                headers::CLIENT_ADDR,
            ]
            .contains(&name)
                || name.starts_with(headers::PATH_MATCH_PREFIX)
        })
        .cloned()
        .collect();
    let mut values = BTreeMap::new();
    for name in names {
        if let Some(value) = headers.remove(&name) {
            values.insert(
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
    }
    values
}

/// `template` with `${SCRIPT_NAME}` and `${ARGS}` substituted, split on single spaces.
pub fn build_argv(template: &str, path: &str, query: Option<&str>) -> Vec<String> {
    let args = query.unwrap_or_default().replace('&', " ");
    template
        .replace("${SCRIPT_NAME}", path)
        .replace("${ARGS}", &args)
        .split(' ')
        .map(str::to_string)
        .collect()
}

/// The CGI environment, then the Spin values under their WAGI names (which override).
fn build_env(
    parts: &http::request::Parts,
    spin: &BTreeMap<String, String>,
    content_length: usize,
) -> BTreeMap<String, String> {
    let spin_value = |name: &str| spin.get(name).cloned().unwrap_or_default();
    let (server_name, server_port) = server_name_and_port(parts);
    let raw_path_info = spin_value(headers::PATH_INFO);
    let path_info = percent_decode_lossy(&raw_path_info);
    let matched_route = spin_value(headers::MATCHED_ROUTE);
    let client_ip = spin
        .get(headers::CLIENT_ADDR)
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.ip().to_string())
        .unwrap_or_default();

    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("AUTH_TYPE", String::new());
    set("CONTENT_LENGTH", content_length.to_string());
    // Spin looks this up under the header name `CONTENT_TYPE` (not `content-type`), so it is
    // empty unless a client sends a header literally named that; kept for byte compatibility.
    set(
        "CONTENT_TYPE",
        parts
            .headers
            .get("content_type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    );
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set(
        "QUERY_STRING",
        parts.uri.query().unwrap_or_default().to_string(),
    );
    set("REMOTE_ADDR", client_ip.clone());
    set("REMOTE_HOST", client_ip);
    set("REMOTE_USER", String::new());
    set("REQUEST_METHOD", parts.method.to_string());
    set(
        "SCRIPT_NAME",
        matched_route
            .strip_suffix("/...")
            .unwrap_or(&matched_route)
            .to_string(),
    );
    set("X_RAW_PATH_INFO", raw_path_info);
    set("PATH_TRANSLATED", path_info.clone());
    set("PATH_INFO", path_info);
    set("SERVER_NAME", server_name);
    set("SERVER_PORT", server_port);
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("SERVER_SOFTWARE", "WAGI/1".into());
    for (name, value) in &parts.headers {
        let key = format!("HTTP_{}", name.as_str().to_uppercase().replace('-', "_"));
        if key == "HTTP_AUTHORIZATION" || key == "HTTP_CONNECTION" {
            continue;
        }
        set(&key, value.to_str().unwrap_or("CORRUPT VALUE").to_string());
    }
    for (name, value) in spin {
        set(&wagi_name(name), value.clone());
    }
    env
}

/// `spin-path-info` → `PATH_INFO`; every other `spin-x-y` → `X_X_Y`.
fn wagi_name(spin_header: &str) -> String {
    if spin_header == headers::PATH_INFO {
        return "PATH_INFO".into();
    }
    let rest = spin_header.strip_prefix("spin-").unwrap_or(spin_header);
    format!("X_{}", rest.to_uppercase().replace('-', "_"))
}

/// `SERVER_NAME` and `SERVER_PORT` as Spin derives them: the URI's host and port (`localhost`,
/// `80`), then Spin's hard-coded default host `default_host`, then the `Host` header's parts.
fn server_name_and_port(parts: &http::request::Parts) -> (String, String) {
    let mut host = parts.uri.host().unwrap_or("localhost").to_string();
    let mut port = parts.uri.port_u16().unwrap_or(80).to_string();
    let mut apply = |value: &str| {
        let mut pieces = value.splitn(2, ':');
        if let Some(h) = pieces.next().filter(|h| !h.is_empty()) {
            host = h.to_string();
        }
        if let Some(p) = pieces.next().filter(|p| !p.is_empty()) {
            port = p.to_string();
        }
    };
    apply("default_host");
    if let Some(value) = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        apply(value);
    }
    (host, port)
}

/// Percent-decode `s`, replacing invalid UTF-8 with U+FFFD; malformed escapes stay as they are.
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Turn a WAGI guest's stdout into a response: headers up to the first blank line (CRs ignored
/// there), `Status: NNN [text]` sets the status (unparsable → 502), `Location` without `Status`
/// gives 302, other valid headers are copied; with none of `Content-Type`, `Location` or `Status`
/// the response is a 500 with [`INSUFFICIENT_RESPONSE`].
pub fn compose_response(stdout: &[u8]) -> wasmtime::Result<Response<WasiBody>> {
    let mut in_headers = true;
    let mut last = 0u8;
    let mut buffer = Vec::new();
    let mut header_block = Vec::new();
    for &byte in stdout {
        if in_headers && byte == b'\r' {
            continue;
        }
        if in_headers && byte == b'\n' && last == b'\n' {
            header_block = std::mem::take(&mut buffer);
            in_headers = false;
            continue;
        }
        last = byte;
        buffer.push(byte);
    }
    let header_block = String::from_utf8(header_block)?;
    // Later lines with the same name replace earlier ones, as in Spin's header map.
    let mut cgi_headers: Vec<(String, String)> = Vec::new();
    for line in header_block.trim().split('\n') {
        let Some((name, value)) = line.split_once(':') else {
            tracing::warn!(header = line, "corrupt WAGI header");
            continue;
        };
        let (name, value) = (name.trim().to_string(), value.trim().to_string());
        cgi_headers.retain(|(n, _)| *n != name);
        cgi_headers.push((name, value));
    }

    let mut res = full(StatusCode::OK, Bytes::from(buffer));
    let mut sufficient = false;
    let mut explicit_status = false;
    for (name, value) in &cgi_headers {
        match name.to_lowercase().as_str() {
            "content-type" => {
                sufficient = true;
                res.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_str(value)?);
            }
            "status" => {
                sufficient = true;
                explicit_status = true;
                let code = value.split_once(' ').map_or(value.as_str(), |(c, _)| c);
                *res.status_mut() = code.parse().unwrap_or_else(|e| {
                    tracing::warn!(status = code, error = %e, "unparsable WAGI status");
                    StatusCode::BAD_GATEWAY
                });
            }
            "location" => {
                sufficient = true;
                res.headers_mut()
                    .insert(LOCATION, HeaderValue::from_str(value)?);
                if !explicit_status {
                    *res.status_mut() = StatusCode::FOUND;
                }
            }
            lower => match HeaderName::from_lowercase(lower.as_bytes()) {
                Ok(header) => {
                    res.headers_mut()
                        .insert(header, HeaderValue::from_str(value)?);
                }
                Err(err) => {
                    tracing::error!(header = %name, error = %err, "invalid WAGI header name");
                }
            },
        }
    }
    if !sufficient {
        tracing::error!(
            error = INSUFFICIENT_RESPONSE,
            "WAGI response has no content type"
        );
        return Ok(full(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(INSUFFICIENT_RESPONSE.as_bytes()),
        ));
    }
    Ok(res)
}

fn full(status: StatusCode, body: Bytes) -> Response<WasiBody> {
    let mut res = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(res: Response<WasiBody>) -> Vec<u8> {
        res.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec()
    }

    #[test]
    fn argv_follows_the_template() {
        assert_eq!(
            build_argv(DEFAULT_ARGV, "/cgi/x", Some("a=1&b")),
            ["/cgi/x", "a=1", "b"]
        );
        assert_eq!(build_argv(DEFAULT_ARGV, "/cgi", None), ["/cgi", ""]);
        assert_eq!(
            build_argv("${SCRIPT_NAME}  fixed ${ARGS}", "/p", Some("q")),
            ["/p", "", "fixed", "q"]
        );
    }

    #[tokio::test]
    async fn content_type_and_crlf_headers() {
        let res = compose_response(b"Content-Type: text/plain\r\nX-A: 1\r\n\r\nhello\r\n")
            .expect("response");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "text/plain");
        assert_eq!(res.headers()["x-a"], "1");
        assert_eq!(body_of(res).await, b"hello\r\n");
    }

    #[tokio::test]
    async fn status_and_location() {
        let res = compose_response(b"Status: 404 Not Found\nContent-Type: text/html\n\nnope")
            .expect("response");
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = compose_response(b"Location: /x\n\n").expect("response");
        assert_eq!(res.status(), StatusCode::FOUND);
        assert_eq!(res.headers()["location"], "/x");
        let res = compose_response(b"Location: /x\nStatus: 301\n\n").expect("response");
        assert_eq!(res.status(), StatusCode::MOVED_PERMANENTLY);
        let res = compose_response(b"Status: abc\n\n").expect("response");
        assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn insufficient_headers_give_spins_500() {
        for out in [&b"X-Only: 1\n\nbody"[..], b"no blank line at all"] {
            let res = compose_response(out).expect("response");
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(res.headers().is_empty());
            assert_eq!(body_of(res).await, INSUFFICIENT_RESPONSE.as_bytes());
        }
    }

    #[test]
    fn wagi_names_and_decoding() {
        assert_eq!(wagi_name("spin-full-url"), "X_FULL_URL");
        assert_eq!(wagi_name("spin-path-info"), "PATH_INFO");
        assert_eq!(wagi_name("spin-path-match-user-id"), "X_PATH_MATCH_USER_ID");
        assert_eq!(percent_decode_lossy("/a%20b%2Fc%zz%4"), "/a b/c%zz%4");
    }

    #[test]
    fn server_name_and_port_follow_spin() {
        let req = Request::builder()
            .uri("http://example.com:8080/x")
            .header("host", "example.com:8080")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        assert_eq!(
            server_name_and_port(&parts),
            ("example.com".into(), "8080".into())
        );
        let req = Request::builder()
            .uri("http://example.com/x")
            .body(())
            .expect("request");
        let (parts, ()) = req.into_parts();
        assert_eq!(
            server_name_and_port(&parts),
            ("default_host".into(), "80".into())
        );
    }
}
