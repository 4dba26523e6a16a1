//! One app's HTTP request handling: Spin's reserved `/.well-known/spin/` paths, routing, the
//! `spin-*` headers, static responses, and dispatch to the component executors. The executor is
//! chosen per trigger, so one component can serve some routes as WAGI and others through its
//! HTTP export (`RouteExecutors`).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use lepton_app::LockedApp;
use lepton_runtime::{AppLimits, CutOff, PreparedComponent, RuntimeApp};
use serde::Deserialize;
use wasmtime_wasi_http::WasiBody;

use crate::TriggerError;
use crate::chaining::ChainDispatch;
use crate::executor::{ComponentExecutor, Ticket, executor};
use crate::gate::{AppFront, AppGate};
use crate::headers::SpinHeaders;
use crate::router::{Route, RouteTarget, Router};
use crate::wagi::{self, WagiExecutor};

const WELL_KNOWN: &str = "/.well-known/spin/";

/// `trigger_config` of an HTTP trigger (Spin's `deny_unknown_fields` shape).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTriggerConfig {
    route: RouteConfig,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    static_response: Option<StaticResponseConfig>,
    #[serde(default)]
    executor: Option<ExecutorConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RouteConfig {
    Route(String),
    Private { private: bool },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ExecutorConfig {
    #[serde(alias = "spin")]
    Http,
    Wagi {
        #[serde(default)]
        argv: Option<String>,
        #[serde(default)]
        entrypoint: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticResponseConfig {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

struct StaticResponse {
    status: StatusCode,
    headers: Vec<(http::HeaderName, HeaderValue)>,
    body: Bytes,
}

/// Collects, trigger by trigger, which executor serves each route of each component, then
/// builds them ([`RouteExecutors::build`]). The choice is per trigger, as the manifest states
/// it: one component may serve some routes through its HTTP export and others as WAGI (a
/// component exporting both `wasi:cli/run` and an HTTP handler). Spin 4.1 loads such an app
/// too, but keeps one trigger configuration per component (the last in the manifest), so all
/// of the component's routes get that trigger's executor; lepton honours each trigger's own.
#[derive(Default)]
struct RouteExecutors {
    /// HTTP-executor executors by component, built at the component's first such trigger.
    http: HashMap<String, ComponentExecutor>,
    /// Components with WAGI triggers: the component and each WAGI route's `argv` (a private
    /// trigger's under `/...`, the route chained requests arrive on).
    wagi: HashMap<String, (Arc<PreparedComponent>, HashMap<String, String>)>,
    /// The public routes served by WAGI, by component; a later trigger with the same route and
    /// component replaces an earlier one, as the router keeps the later route.
    wagi_routes: HashMap<String, HashSet<String>>,
    /// The executor of each component's last private trigger: what chained requests use.
    private: HashMap<String, ExecutorKind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExecutorKind {
    Http,
    Wagi,
}

impl RouteExecutors {
    /// Record a trigger of `component` on `route` (`None`: private) with the WAGI executor
    /// (`wagi_argv`) or the HTTP one.
    fn add_trigger(
        &mut self,
        app: &Arc<str>,
        component: &str,
        prepared: &Arc<PreparedComponent>,
        route: Option<&str>,
        wagi_argv: Option<String>,
    ) -> Result<(), String> {
        let kind = match wagi_argv {
            Some(argv) => {
                self.wagi
                    .entry(component.to_string())
                    .or_insert_with(|| (prepared.clone(), HashMap::new()))
                    .1
                    .insert(route.unwrap_or("/...").to_string(), argv);
                ExecutorKind::Wagi
            }
            None => {
                if !self.http.contains_key(component) {
                    let built = executor(app.clone(), prepared.clone())?;
                    self.http.insert(component.to_string(), built);
                }
                ExecutorKind::Http
            }
        };
        match route {
            Some(raw) => {
                let routes = self.wagi_routes.entry(component.to_string()).or_default();
                if kind == ExecutorKind::Wagi {
                    routes.insert(raw.to_string());
                } else {
                    routes.remove(raw);
                }
            }
            None => {
                self.private.insert(component.to_string(), kind);
            }
        }
        Ok(())
    }

    /// Build the WAGI executors; returns the executors by route and those of chained requests
    /// (a component's last private trigger's executor, else its HTTP executor, else WAGI).
    fn build(self) -> Result<(ByRoute, HashMap<String, ComponentExecutor>), TriggerError> {
        let mut wagi = HashMap::new();
        for (component, (prepared, argv_by_route)) in self.wagi {
            if !prepared.exports_command() {
                return Err(TriggerError::Unsupported(format!(
                    "component `{component}` is used with the WAGI executor but does not export \
                     wasi:cli/run (build it as a WASI command with `_start`)"
                )));
            }
            let built = WagiExecutor::new(prepared, argv_by_route).map_err(|e| {
                TriggerError::Unsupported(format!("component `{component}`: {e:#}"))
            })?;
            wagi.insert(component, ComponentExecutor::Wagi(built));
        }
        let mut chained = self.http.clone();
        for (component, executor) in &wagi {
            let use_wagi = match self.private.get(component) {
                Some(kind) => *kind == ExecutorKind::Wagi,
                None => !chained.contains_key(component),
            };
            if use_wagi {
                chained.insert(component.clone(), executor.clone());
            }
        }
        let by_route = ByRoute {
            http: self.http,
            wagi,
            wagi_routes: self.wagi_routes,
        };
        Ok((by_route, chained))
    }
}

/// An app's executors, looked up by the matched route's component and raw route.
struct ByRoute {
    http: HashMap<String, ComponentExecutor>,
    wagi: HashMap<String, ComponentExecutor>,
    wagi_routes: HashMap<String, HashSet<String>>,
}

impl ByRoute {
    /// The executor serving `raw_route` of `component`.
    fn executor(&self, component: &str, raw_route: &str) -> Option<&ComponentExecutor> {
        let wagi = self
            .wagi_routes
            .get(component)
            .is_some_and(|routes| routes.contains(raw_route));
        if wagi {
            self.wagi.get(component)
        } else {
            self.http.get(component)
        }
    }
}

/// Everything needed to serve one app version over HTTP.
pub struct HttpApp {
    name: Arc<str>,
    router: Router,
    /// The executor of each route, chosen per trigger.
    executors: ByRoute,
    /// Service chaining (`<component>.spin.internal`), held here so it lives as long as this
    /// version; the runtime holds it only weakly.
    _chaining: Arc<ChainDispatch>,
    statics: Vec<StaticResponse>,
    info: Bytes,
    limits: AppLimits,
    /// The app's gate and metrics, shared by all its versions.
    front: AppFront,
    /// Set once this version's drain bound has passed: its remaining requests are cut off and
    /// its guests stopped.
    cut_off: CutOff,
}

impl HttpApp {
    /// Validate `locked`'s HTTP triggers against its prepared components and build the app,
    /// whose requests pass `front` (the app's gate and metrics, shared by its versions). Triggers
    /// of other types are left to their own crates; an app without HTTP triggers gets an empty
    /// router (every request 404).
    pub fn new(
        name: &str,
        locked: &LockedApp,
        runtime: &RuntimeApp,
        front: AppFront,
    ) -> Result<Self, TriggerError> {
        let err = |trigger: &str, reason: String| TriggerError::Trigger {
            trigger: trigger.to_string(),
            reason,
        };
        check_base(locked)?;
        let app_name: Arc<str> = name.into();
        let mut routes = Vec::new();
        let mut statics = Vec::new();
        let mut executors = RouteExecutors::default();
        // The app's other triggers (Redis, cron) are the supervisor's to start, each through its
        // own crate; the app-level `metadata.triggers.http` (base) applies to these only.
        for trigger in locked.triggers_of("http") {
            let config: HttpTriggerConfig = serde_json::from_value(trigger.trigger_config.clone())
                .map_err(|e| err(&trigger.id, format!("invalid trigger_config: {e}")))?;
            let wagi_argv = match &config.executor {
                Some(ExecutorConfig::Wagi { argv, entrypoint }) => {
                    if let Some(entry) = entrypoint.as_deref().filter(|e| *e != "_start") {
                        return Err(err(
                            &trigger.id,
                            format!("WAGI entrypoint `{entry}` is not supported; only `_start` is"),
                        ));
                    }
                    Some(
                        argv.clone()
                            .unwrap_or_else(|| wagi::DEFAULT_ARGV.to_string()),
                    )
                }
                Some(ExecutorConfig::Http) | None => None,
            };
            let target = match (config.component, config.static_response) {
                (Some(component), None) => {
                    let prepared = runtime.component(&component).ok_or_else(|| {
                        err(
                            &trigger.id,
                            format!(
                                "refers to component `{component}`, which the app does not define"
                            ),
                        )
                    })?;
                    let route = match &config.route {
                        RouteConfig::Route(raw) => Some(raw.as_str()),
                        RouteConfig::Private { .. } => None,
                    };
                    executors
                        .add_trigger(&app_name, &component, prepared, route, wagi_argv)
                        .map_err(|e| err(&trigger.id, e))?;
                    RouteTarget::Component(component)
                }
                (None, Some(s)) => {
                    statics.push(static_response(&trigger.id, s)?);
                    RouteTarget::Static(statics.len() - 1)
                }
                _ => {
                    return Err(err(
                        &trigger.id,
                        "exactly one of `component` or `static_response` must be set".into(),
                    ));
                }
            };
            match config.route {
                RouteConfig::Route(raw) => {
                    if raw.starts_with(WELL_KNOWN) {
                        tracing::warn!(app = name, route = %raw, "routes under /.well-known/spin/ are reserved and never reached");
                    }
                    routes.push(
                        Route::parse(&raw, target).map_err(|e| err(&trigger.id, e.to_string()))?,
                    );
                }
                RouteConfig::Private { private: true } => {}
                RouteConfig::Private { private: false } => {
                    return Err(err(
                        &trigger.id,
                        "`route = { private = false }` is not allowed; use a route string".into(),
                    ));
                }
            }
        }
        let (executors, chained) = executors.build()?;
        let (router, replaced) = Router::new(routes);
        for (raw, _) in replaced {
            tracing::error!(app = name, route = %raw, "duplicate route: the last trigger with this route wins");
        }
        // Service chaining reaches the same executors; the runtime holds them only weakly.
        let chaining = Arc::new(ChainDispatch::new(
            app_name.clone(),
            chained,
            front.clone(),
            *runtime.limits(),
            runtime.cut_off().clone(),
        ));
        let dispatch: Arc<dyn lepton_outbound::LocalDispatch> = chaining.clone();
        runtime.install_local_dispatch(Arc::downgrade(&dispatch));
        Ok(Self {
            name: app_name,
            router,
            executors,
            _chaining: chaining,
            statics,
            info: info_json(locked),
            limits: *runtime.limits(),
            front,
            cut_off: runtime.cut_off().clone(),
        })
    }

    /// Cut off every request still in flight on this version: responses not yet started are
    /// answered by closing the connection, streaming ones end with an error, and its guests are
    /// stopped at their next epoch tick. The supervisor calls this when a replaced or stopped
    /// version outlives its drain timeout, and at shutdown.
    pub fn cut_off(&self) {
        self.cut_off.cut();
    }

    /// This version's cut-off switch.
    pub fn cut_off_switch(&self) -> &CutOff {
        &self.cut_off
    }

    /// The app's limits as this version enforces them.
    pub fn limits(&self) -> &AppLimits {
        &self.limits
    }

    /// The app's concurrency gate.
    pub fn gate(&self) -> &Arc<AppGate> {
        &self.front.gate
    }

    /// The app's request metrics.
    pub fn metrics(&self) -> &lepton_metrics::AppMetrics {
        &self.front.metrics
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The app's router (for listing routes at startup).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The answer to Spin's reserved `/.well-known/spin/` paths, which never reach a component.
    pub fn reserved_response(&self, path: &str) -> Option<Response<WasiBody>> {
        let rest = path.strip_prefix(WELL_KNOWN)?;
        Some(match rest {
            "health" => text(StatusCode::OK, "OK"),
            "info" => {
                let mut res = full(StatusCode::OK, self.info.clone());
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
            _ => empty(StatusCode::NOT_FOUND),
        })
    }

    /// Handle one request that arrived on a listener speaking `scheme` from `client`, answering
    /// 504 if its component has not produced a response head by the ticket's deadline. Limits
    /// other than the deadline are applied by [`crate::stack::serve`], which calls this.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        scheme: &str,
        client: SocketAddr,
        ticket: Ticket,
    ) -> Response<WasiBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let path = req.uri().path().to_string();
        if let Some(res) = self.reserved_response(&path) {
            return res;
        }
        let Some(m) = self.router.route(&path) else {
            return empty(StatusCode::NOT_FOUND);
        };
        let (mut parts, body) = req.into_parts();
        let host_header = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let uri_authority = parts.uri.authority().map(|a| a.as_str().to_string());
        let authority = match (&host_header, &uri_authority) {
            (Some(h), Some(u)) if h != u => {
                tracing::debug!(app = %self.name, host = %h, uri = %u, "Host header disagrees with the request URI");
                return empty(StatusCode::INTERNAL_SERVER_ERROR);
            }
            (Some(h), _) => h.clone(),
            (None, Some(u)) => u.clone(),
            (None, None) => {
                tracing::debug!(app = %self.name, "request has neither a Host header nor an absolute URI");
                return empty(StatusCode::INTERNAL_SERVER_ERROR);
            }
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let full_url_host = host_header.as_deref().unwrap_or("localhost");
        let spin = SpinHeaders::new(&m, scheme, full_url_host, &path_and_query, client);

        let component = match m.target {
            RouteTarget::Static(i) => return self.static_response(*i),
            RouteTarget::Component(c) => c.clone(),
        };
        let Ok(uri) = Uri::builder()
            .scheme(scheme)
            .authority(authority.as_str())
            .path_and_query(path_and_query.as_str())
            .build()
        else {
            return empty(StatusCode::BAD_REQUEST);
        };
        parts.uri = uri;
        parts.headers.remove(header::CONNECTION);
        let host_only = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    authority.as_str()
                }
            });
        if host_only.ends_with(".spin.internal") {
            parts.headers.remove(header::HOST);
        }
        spin.apply(&mut parts.headers);
        let req = Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());

        let Some(executor) = self.executors.executor(&component, m.raw_route) else {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        };
        run_with_deadline(&self.name, &component, executor, req, ticket).await
    }

    fn static_response(&self, i: usize) -> Response<WasiBody> {
        let Some(s) = self.statics.get(i) else {
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        };
        let mut res = full(s.status, s.body.clone());
        for (k, v) in &s.headers {
            res.headers_mut().append(k.clone(), v.clone());
        }
        res
    }
}

/// Run `req` on `executor`, answering 504 if no response head arrives by the ticket's deadline
/// (the guest is stopped by the runtime at the same deadline) and an empty 500 if the guest fails.
pub(crate) async fn run_with_deadline(
    app: &str,
    component: &str,
    executor: &ComponentExecutor,
    req: Request<WasiBody>,
    ticket: Ticket,
) -> Response<WasiBody> {
    let deadline = ticket.deadline;
    match tokio::time::timeout_at(deadline, executor.handle(ticket, req)).await {
        Ok(Ok(res)) => res,
        Ok(Err(err))
            if crate::stack::is_stopped_by_limits(&err)
                || tokio::time::Instant::now() >= deadline =>
        {
            tracing::warn!(app, component, limit = "request_timeout_ms", error = %format!("{err:#}"), "request timed out");
            timed_out()
        }
        Ok(Err(err)) => {
            tracing::error!(app, component, error = %format!("{err:#}"), "request failed");
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        }
        Err(_) => {
            tracing::warn!(
                app,
                component,
                limit = "request_timeout_ms",
                "request timed out: no response by request_timeout_ms; the guest is stopped"
            );
            timed_out()
        }
    }
}

/// Marks a response the stack produced because `request_timeout_ms` passed (for metrics).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimedOut;

/// The 504 of a request past its deadline.
fn timed_out() -> Response<WasiBody> {
    let mut res = empty(StatusCode::GATEWAY_TIMEOUT);
    res.extensions_mut().insert(TimedOut);
    res
}

fn check_base(locked: &LockedApp) -> Result<(), TriggerError> {
    let base = locked
        .metadata
        .get("triggers")
        .and_then(|t| t.get("http"))
        .and_then(|h| h.get("base"))
        .or_else(|| locked.metadata.get("trigger").and_then(|t| t.get("base")));
    match base.and_then(|b| b.as_str()) {
        None => Ok(()),
        Some("/") => {
            tracing::warn!("the HTTP trigger `base` setting is deprecated and ignored");
            Ok(())
        }
        Some(other) => Err(TriggerError::Unsupported(format!(
            "the HTTP trigger `base` setting is deprecated; only \"/\" is accepted, found {other:?}"
        ))),
    }
}

fn static_response(trigger: &str, s: StaticResponseConfig) -> Result<StaticResponse, TriggerError> {
    let err = |reason: String| TriggerError::Trigger {
        trigger: trigger.to_string(),
        reason,
    };
    let status = StatusCode::from_u16(s.status_code.unwrap_or(200)).map_err(|_| {
        err(format!(
            "static_response.status_code {:?} is not a valid HTTP status",
            s.status_code
        ))
    })?;
    let mut headers = Vec::new();
    for (k, v) in s.headers {
        let name = http::HeaderName::try_from(k.as_str())
            .map_err(|_| err(format!("static_response header name {k:?} is invalid")))?;
        let value = HeaderValue::try_from(v.as_str())
            .map_err(|_| err(format!("static_response header {k:?} has an invalid value")))?;
        headers.push((name, value));
    }
    Ok(StaticResponse {
        status,
        headers,
        body: Bytes::from(s.body.unwrap_or_default()),
    })
}

fn info_json(locked: &LockedApp) -> Bytes {
    let mut info = serde_json::Map::new();
    let meta = |k: &str| locked.metadata.get(k).filter(|v| !v.is_null()).cloned();
    info.insert("name".into(), meta("name").unwrap_or_else(|| "".into()));
    if let Some(v) = meta("version") {
        info.insert("version".into(), v);
    }
    if let Some(v) = meta("oci_image_digest") {
        info.insert("oci_image_digest".into(), v);
    }
    Bytes::from(serde_json::to_vec_pretty(&info).unwrap_or_default())
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

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<WasiBody> {
    full(status, Bytes::from_static(body.as_bytes()))
}

/// An empty-bodied response, as Spin sends for 404s and executor errors.
pub fn empty(status: StatusCode) -> Response<WasiBody> {
    full(status, Bytes::new())
}
