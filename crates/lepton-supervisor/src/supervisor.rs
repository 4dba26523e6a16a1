//! [`AppSupervisor`]: turns a desired set of [`AppSpec`]s into running apps.
//!
//! Starting an app is: pull (through the content-addressed cache) → prepare its components on the
//! shared engine → build its HTTP router → bind its address → serve. Apps load concurrently, and
//! one app failing at any step is reported as a [`LoadFailure`] while the others carry on.
//! Each running app's current version sits in a `watch` channel read by its listener, which is
//! the seam for replacing a version without dropping requests.

use std::sync::Arc;
use std::time::Duration;

use lepton_oci::{AppLoader, LoadSource, error_chain};
use lepton_runtime::{AppConfig, CompileCache, RuntimeApp, RuntimeEngine};
use lepton_trigger_http::{HttpApp, HttpListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

/// Why an app could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Pulling or resolving the app failed.
    #[error(transparent)]
    Load(#[from] lepton_oci::OciError),
    /// The app needs something lepton cannot do yet.
    #[error("the app cannot run on lepton: {0}")]
    NotRunnable(#[from] lepton_app::AppError),
    /// The app's state directory could not be created.
    #[error("cannot create state_dir {path}")]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A component could not be prepared.
    #[error(transparent)]
    Runtime(#[from] lepton_runtime::RuntimeError),
    /// The HTTP triggers are invalid.
    #[error(transparent)]
    Trigger(#[from] lepton_trigger_http::TriggerError),
    /// The address could not be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The load task panicked (a bug in lepton, reported instead of taking the process down).
    #[error("internal error while loading: {0}")]
    Internal(String),
}

/// An app that could not be started, and why.
#[derive(Debug)]
pub struct LoadFailure {
    /// The app's name.
    pub app: String,
    /// Its reference.
    pub reference: String,
    /// What went wrong.
    pub error: StartError,
}

impl LoadFailure {
    /// The error with its whole cause chain, on one line.
    pub fn describe(&self) -> String {
        error_chain(&self.error)
    }
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
        let loads: Vec<(AppSpec, JoinHandle<Result<ReadyApp, StartError>>)> = specs
            .into_iter()
            .map(|spec| {
                let engine = self.engine.clone();
                let loader = self.loader.clone();
                let cache = self.compile_cache.clone();
                let task_spec = spec.clone();
                let handle =
                    tokio::spawn(
                        async move { prepare(&engine, &loader, &cache, &task_spec).await },
                    );
                (spec, handle)
            })
            .collect();
        let mut failures = Vec::new();
        for (spec, handle) in loads {
            let result = match handle.await {
                Ok(result) => result,
                Err(join) => Err(StartError::Internal(join.to_string())),
            };
            let outcome = match result {
                Ok(ready) => self.serve(ready).await,
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                let failure = LoadFailure {
                    app: spec.name,
                    reference: spec.reference,
                    error,
                };
                tracing::error!(app = %failure.app, reference = %failure.reference, error = %failure.describe(), "app failed to start");
                failures.push(failure);
            }
        }
        failures
    }

    async fn serve(&mut self, ready: ReadyApp) -> Result<(), StartError> {
        let ReadyApp {
            spec,
            digest,
            from_cache_only,
            http,
        } = ready;
        let listener =
            HttpListener::bind(spec.address)
                .await
                .map_err(|source| StartError::Listen {
                    address: spec.address,
                    source,
                })?;
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
) -> Result<ReadyApp, StartError> {
    let loaded = loader.load(&spec.reference).await?;
    loaded.locked.ensure_runnable()?;
    std::fs::create_dir_all(&spec.state_dir).map_err(|source| StartError::StateDir {
        path: spec.state_dir.clone(),
        source,
    })?;
    let config = AppConfig {
        name: spec.name.clone(),
        state_dir: spec.state_dir.clone(),
        variables: spec.variables.clone(),
        runtime_config: spec.runtime_config.clone(),
        listen_address: Some(spec.address),
    };
    let runtime = RuntimeApp::prepare(engine, cache, &loaded.locked, &config).await?;
    let http = HttpApp::new(&spec.name, &loaded.locked, &runtime)?;
    Ok(ReadyApp {
        spec: spec.clone(),
        digest: loaded.manifest_digest,
        from_cache_only: matches!(loaded.source, LoadSource::CacheOnly),
        http,
    })
}
