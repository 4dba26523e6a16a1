//! [`AppSupervisor`]: turns a desired set of [`AppSpec`]s into running apps.
//!
//! Starting an app is: pull (through the content-addressed cache) → prepare its components on the
//! shared engine → build its HTTP router → bind its address → serve. Apps load concurrently, and
//! one app failing at any step is reported as a [`LoadFailure`] while the others carry on.
//! Each running app's current version sits in a `watch` channel read by its listener, which is
//! the seam for replacing a version without dropping requests.

use std::sync::Arc;
use std::time::Duration;

use lepton_oci::{AppLoader, LoadSource};
use lepton_runtime::{CompileCache, RuntimeApp, RuntimeEngine};
use lepton_trigger_http::{HttpApp, HttpListener};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::spec::AppSpec;

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// How long in-flight requests get to finish when an app stops.
    pub drain_timeout: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// An app that could not be started, and why.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    /// The app's name.
    pub app: String,
    /// Its reference.
    pub reference: String,
    /// What went wrong (a full cause chain).
    pub error: String,
}

/// A running app, as reported to operators.
#[derive(Debug, Clone)]
pub struct RunningAppStatus {
    /// The app's name.
    pub name: String,
    /// The reference it was started from.
    pub reference: String,
    /// The manifest digest it resolved to.
    pub digest: String,
    /// The address it serves on.
    pub address: std::net::SocketAddr,
    /// Its routes, as written.
    pub routes: Vec<String>,
    /// Whether it was served from the cache because the registry was unreachable.
    pub from_cache_only: bool,
}

struct RunningApp {
    status: RunningAppStatus,
    // Held so a later replace can publish a new version to the listener.
    _current: watch::Sender<Arc<HttpApp>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts, tracks and stops apps on one shared engine.
pub struct AppSupervisor {
    engine: Arc<RuntimeEngine>,
    loader: Arc<AppLoader>,
    compile_cache: CompileCache,
    config: SupervisorConfig,
    running: Vec<RunningApp>,
}

struct ReadyApp {
    spec: AppSpec,
    digest: String,
    from_cache_only: bool,
    http: HttpApp,
}

impl AppSupervisor {
    /// A supervisor with nothing running.
    pub fn new(
        engine: Arc<RuntimeEngine>,
        loader: Arc<AppLoader>,
        compile_cache: CompileCache,
        config: SupervisorConfig,
    ) -> Self {
        Self {
            engine,
            loader,
            compile_cache,
            config,
            running: Vec::new(),
        }
    }

    /// Start every app in `specs` concurrently. Apps that fail are returned; the rest serve.
    pub async fn start_all(&mut self, specs: Vec<AppSpec>) -> Vec<LoadFailure> {
        let mut loads = JoinSet::new();
        for spec in specs {
            let engine = self.engine.clone();
            let loader = self.loader.clone();
            let cache = self.compile_cache.clone();
            loads.spawn(async move {
                let result = prepare(&engine, &loader, &cache, &spec).await;
                (spec, result)
            });
        }
        let mut failures = Vec::new();
        while let Some(joined) = loads.join_next().await {
            let (spec, result) = match joined {
                Ok(pair) => pair,
                Err(err) => {
                    failures.push(LoadFailure {
                        app: "?".into(),
                        reference: "?".into(),
                        error: format!("load task failed: {err}"),
                    });
                    continue;
                }
            };
            let ready = match result {
                Ok(ready) => ready,
                Err(error) => {
                    tracing::error!(app = %spec.name, reference = %spec.reference, %error, "app failed to load");
                    failures.push(LoadFailure {
                        app: spec.name,
                        reference: spec.reference,
                        error,
                    });
                    continue;
                }
            };
            if let Err(error) = self.serve(ready).await {
                tracing::error!(app = %spec.name, address = %spec.address, %error, "app failed to start");
                failures.push(LoadFailure {
                    app: spec.name,
                    reference: spec.reference,
                    error,
                });
            }
        }
        failures
    }

    async fn serve(&mut self, ready: ReadyApp) -> Result<(), String> {
        let ReadyApp {
            spec,
            digest,
            from_cache_only,
            http,
        } = ready;
        let listener = HttpListener::bind(spec.address)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", spec.address))?;
        let routes = http
            .router()
            .routes()
            .iter()
            .map(|r| r.raw().to_string())
            .collect();
        let (current, current_rx) = watch::channel(Arc::new(http));
        let (stop, stop_rx) = watch::channel(false);
        let drain = self.config.drain_timeout;
        let task = tokio::spawn(listener.serve(current_rx, stop_rx, drain));
        tracing::info!(app = %spec.name, reference = %spec.reference, %digest, address = %spec.address, "app serving");
        self.running.push(RunningApp {
            status: RunningAppStatus {
                name: spec.name,
                reference: spec.reference,
                digest,
                address: spec.address,
                routes,
                from_cache_only,
            },
            _current: current,
            stop,
            task,
        });
        Ok(())
    }

    /// The apps now serving.
    pub fn status(&self) -> Vec<RunningAppStatus> {
        self.running.iter().map(|r| r.status.clone()).collect()
    }

    /// Stop accepting on every app, let in-flight requests finish (bounded by the drain timeout),
    /// and return when all listeners are done.
    pub async fn shutdown(&mut self) {
        for app in &self.running {
            let _ = app.stop.send(true);
        }
        for app in self.running.drain(..) {
            if let Err(err) = app.task.await {
                tracing::warn!(app = %app.status.name, error = %err, "listener task ended abnormally");
            }
        }
    }
}

async fn prepare(
    engine: &RuntimeEngine,
    loader: &AppLoader,
    cache: &CompileCache,
    spec: &AppSpec,
) -> Result<ReadyApp, String> {
    let loaded = loader
        .load(&spec.reference)
        .await
        .map_err(|e| error_chain(&e))?;
    std::fs::create_dir_all(&spec.state_dir)
        .map_err(|e| format!("cannot create state_dir {}: {e}", spec.state_dir.display()))?;
    let runtime = RuntimeApp::prepare(engine, cache, &loaded.locked, &spec.state_dir.join("logs"))
        .await
        .map_err(|e| error_chain(&e))?;
    let http = HttpApp::new(&spec.name, &loaded.locked, &runtime).map_err(|e| error_chain(&e))?;
    Ok(ReadyApp {
        spec: spec.clone(),
        digest: loaded.manifest_digest,
        from_cache_only: matches!(loaded.source, LoadSource::CacheOnly),
        http,
    })
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
