//! The admin API: JSON over HTTP/1.1, described in `openapi.yaml` at the repository root.
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs (no token) |
//! | `GET /readyz` | 200 once every app of the desired state has been tried, else 503 (no token) |
//! | `GET /metrics` | Prometheus text |
//! | `GET /v1/apps` | every app: spec, generation, this node's status, every node's status |
//! | `GET /v1/apps/{name}` | one app; 404 if it is not in the desired state |
//! | `PUT /v1/apps/{name}` | store the app (400 naming the field — for `tls`, also when its files do not load, match or cover the hosts —, 409 naming the app holding a host or address), then wait until it serves (200) or failed (422, with the error); `?wait=false`: 202 at once |
//! | `DELETE /v1/apps/{name}` | remove it and wait until it stopped (200); 404 if absent |
//!
//! Every other request needs `Authorization: Bearer TOKEN` ([`crate::auth`]); without a valid
//! one it is a 401 with no hint why. Bodies are at most 1 MiB (413 past it).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use lepton_metrics::Metrics;
use lepton_spec::app::Problem;
use lepton_store::{Claim, StoreError, StoredApp};
use lepton_supervisor::{ConfigError, Transition};
use lepton_trigger_http::tls::{TlsFiles, check_certificate};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth::Tokens;
use crate::source::{DbSource, observe};

/// The largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// What the admin API needs besides the database source.
#[derive(Clone)]
pub struct AdminConfig {
    /// Accepted bearer tokens.
    pub tokens: Tokens,
    /// Metrics rendered on `/metrics`.
    pub metrics: Metrics,
}

/// The admin API over one [`DbSource`].
pub struct AdminApi {
    source: Arc<DbSource>,
    config: AdminConfig,
}

type Reply = Response<Full<Bytes>>;

impl AdminApi {
    /// The API over `source`.
    pub fn new(source: Arc<DbSource>, config: AdminConfig) -> Arc<Self> {
        Arc::new(Self { source, config })
    }

    /// Serve on `listener` until `shutdown` resolves (connections in flight then get up to
    /// 5 s to finish).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, client) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::warn!(error = %err, "admin API: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let api = self.clone();
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(api.handle(req, client).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(%client, error = %err, "admin API connection ended with an error");
                }
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    }

    /// Answer one request.
    pub async fn handle(&self, req: Request<Incoming>, client: SocketAddr) -> Reply {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method.clone(), path.as_str()) {
            (Method::GET, "/healthz") => {
                return json_reply(StatusCode::OK, &json!({"status": "ok"}));
            }
            (Method::GET, "/readyz") => {
                return if self.source.ready() {
                    json_reply(StatusCode::OK, &json!({"status": "ready"}))
                } else {
                    json_reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"status": "not ready: not every app of the desired state has been tried yet"}),
                    )
                };
            }
            _ => {}
        }
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !self.config.tokens.allows(authorization) {
            tracing::warn!(%client, %method, %path, "admin API: unauthorized request");
            let mut res = error(StatusCode::UNAUTHORIZED, "unauthorized");
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return res;
        }
        let res = match (method.clone(), path.as_str()) {
            (Method::GET, "/metrics") => {
                let mut res = Response::new(Full::new(Bytes::from(self.config.metrics.render())));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(lepton_metrics::CONTENT_TYPE),
                );
                res
            }
            (Method::GET, "/v1/apps") => self.list().await,
            (_, p) if p.starts_with("/v1/apps/") => {
                let name = &p["/v1/apps/".len()..];
                match method {
                    Method::GET => self.get(name).await,
                    Method::PUT => {
                        let wait = !req
                            .uri()
                            .query()
                            .is_some_and(|q| q.split('&').any(|kv| kv == "wait=false"));
                        match read_body(req).await {
                            Ok(body) => self.put(name, &body, wait).await,
                            Err(res) => res,
                        }
                    }
                    Method::DELETE => self.delete(name).await,
                    _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET, PUT or DELETE"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
        };
        tracing::info!(%client, %method, %path, status = res.status().as_u16(), "admin API request");
        res
    }

    async fn list(&self) -> Reply {
        match self.source.store().list().await {
            Ok(apps) => {
                let mut docs = Vec::with_capacity(apps.len());
                for app in &apps {
                    docs.push(self.document(app).await);
                }
                json_reply(StatusCode::OK, &json!({ "apps": docs }))
            }
            Err(err) => store_error(&err),
        }
    }

    async fn get(&self, name: &str) -> Reply {
        match self.source.store().get(name).await {
            Ok(Some(app)) => json_reply(StatusCode::OK, &self.document(&app).await),
            Ok(None) => error(StatusCode::NOT_FOUND, &format!("no app named {name:?}")),
            Err(err) => store_error(&err),
        }
    }

    async fn put(&self, name: &str, body: &[u8], wait: bool) -> Reply {
        let Ok(text) = std::str::from_utf8(body) else {
            return error(StatusCode::BAD_REQUEST, "the body is not UTF-8 JSON");
        };
        let spec = match lepton_spec::parse_api_app(name, text, self.source.state_root()) {
            Ok(spec) => spec,
            Err(err) => return bad_request(&err),
        };
        if let Err(res) = check_tls(name, &spec).await {
            return res;
        }
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return error(StatusCode::BAD_REQUEST, "the body is not JSON");
        };
        let mut claims: Vec<Claim> = spec.hosts.iter().cloned().map(Claim::Host).collect();
        if let Some(address) = spec.address {
            claims.push(Claim::Address(address.to_string()));
        }
        let stored = match self.source.store().put(name, &value, &claims).await {
            Ok(stored) => stored,
            Err(StoreError::Conflict { app, claim }) => {
                return json_reply(
                    StatusCode::CONFLICT,
                    &json!({
                        "error": format!("{claim} is already used by app {app:?}"),
                        "app": app,
                        "claim": claim.to_string(),
                    }),
                );
            }
            Err(err) => return store_error(&err),
        };
        let outcome = self.source.apply(&stored);
        if !wait {
            return json_reply(StatusCode::ACCEPTED, &self.document(&stored).await);
        }
        let outcome = outcome.await;
        let doc = self.document(&stored).await;
        match outcome {
            Ok(Transition::Superseded) => json_reply(StatusCode::ACCEPTED, &doc),
            Ok(_) => json_reply(StatusCode::OK, &doc),
            Err(refusal) => json_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "error": refusal.to_string(), "app": doc }),
            ),
        }
    }

    async fn delete(&self, name: &str) -> Reply {
        match self.source.store().delete(name).await {
            Ok(true) => {
                let outcome = self.source.remove(name).await;
                match outcome {
                    Ok(_) => json_reply(StatusCode::OK, &json!({ "deleted": name })),
                    Err(refusal) => json_reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &json!({ "error": refusal.to_string() }),
                    ),
                }
            }
            Ok(false) => error(StatusCode::NOT_FOUND, &format!("no app named {name:?}")),
            Err(err) => store_error(&err),
        }
    }

    /// An app's document: what is stored, what this node observes, what every node recorded.
    async fn document(&self, app: &StoredApp) -> Value {
        let board = self.source.reconciler().board();
        // Live: digest, routes and load state change as the app loads and is evicted.
        let live = self.source.reconciler().supervisor().app_status(&app.name);
        let local = board.key(&app.name).map(|key| {
            let running = live.as_ref();
            let observed = observe(&key, board.running_app(&app.name).as_ref());
            let load = running.map(|r| match &r.load {
                lepton_supervisor::ResidentState::Failed { message } => {
                    json!({ "state": "failed", "error": message })
                }
                other => json!({ "state": other.name() }),
            });
            json!({
                "state": observed.state,
                "load": load,
                "digest": running.map(|r| r.digest.clone()).filter(|d| !d.is_empty()).or(observed.digest),
                "error": observed.error,
                "address": running.and_then(|r| r.address).map(|a| a.to_string()),
                "hosts": running.map(|r| r.hosts.clone()).unwrap_or_default(),
                "routes": running.map(|r| r.routes.clone()).unwrap_or_default(),
                "triggers": running.map(|r| r.triggers.clone()).unwrap_or_default(),
                "limits": running.map(|r| serde_json::to_value(r.limits).unwrap_or(Value::Null)),
            })
        });
        let nodes = match self.source.store().statuses(&app.name).await {
            Ok(nodes) => nodes
                .into_iter()
                .map(|(node, s)| json!({ "node": node, "status": s }))
                .collect(),
            Err(err) => {
                tracing::warn!(app = %app.name, error = %err, "cannot read recorded statuses");
                Vec::new()
            }
        };
        json!({
            "name": app.name,
            "spec": app.spec,
            "generation": app.generation,
            "updated_at_unix_ms": app.updated_at_unix_ms,
            "status": local.unwrap_or_else(|| json!({ "state": "loading" })),
            "nodes": nodes,
        })
    }
}

/// An app's `tls` files must exist, parse, match and cover its hosts (a 400 naming `tls.cert`
/// or `tls.key` otherwise). Checked here, where it is put, rather than in the spec parser: a
/// stored app whose files later change or vanish keeps serving its hosts over HTTP, and the
/// HTTPS ingress reports the certificate when it cannot load it.
async fn check_tls(name: &str, spec: &lepton_spec::AppSpec) -> Result<(), Reply> {
    let Some(tls) = &spec.tls else { return Ok(()) };
    let files = TlsFiles {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    };
    let hosts = spec.hosts.clone();
    let problems = tokio::task::spawn_blocking(move || check_certificate(&files, &hosts))
        .await
        .map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("checking the certificate failed: {e}"),
            )
        })?;
    if problems.is_empty() {
        return Ok(());
    }
    let problems = problems
        .iter()
        .map(|p| Problem {
            file: PathBuf::from(format!("/v1/apps/{name}")),
            app: name.to_string(),
            field: p.field(),
            message: p.to_string(),
        })
        .collect();
    Err(bad_request(&ConfigError::Invalid(problems)))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than 1 MiB",
        )),
        Err(err) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("cannot read the body: {err}"),
        )),
    }
}

fn bad_request(err: &ConfigError) -> Reply {
    let problems: Vec<Value> = match err {
        ConfigError::Invalid(problems) => problems
            .iter()
            .map(|p| json!({ "field": p.field, "message": p.message }))
            .collect(),
        ConfigError::Parse { message, .. } => {
            vec![json!({ "field": Value::Null, "message": message })]
        }
        ConfigError::Read { .. } => Vec::new(),
    };
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({ "error": err.to_string(), "problems": problems }),
    )
}

fn store_error(err: &StoreError) -> Reply {
    tracing::error!(error = %err, "admin API: store error");
    error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
