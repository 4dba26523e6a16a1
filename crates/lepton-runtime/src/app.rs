//! Turning a runnable [`LockedApp`] into [`PreparedComponent`]s: compiled (or loaded from the
//! compile cache), linked into an `InstancePre`, with the handler export detected once at load.
//!
//! Everything that can fail about a component fails here, before any listener is bound: an
//! unreadable source, a compile error, an import lepton does not provide (the error names the
//! interface), or a missing or ambiguous handler export for a trigger that uses the component.
//!
//! HTTP handler detection follows Spin (facts §3.4): exactly one of
//! `wasi:http/incoming-handler@0.2`, `wasi:http/handler@0.3` or the unversioned
//! `fermyon:spin/inbound-http`; a component with none of them that exports `wasi:cli/run` is a
//! command, which only the WAGI executor can serve. It is required of every component an HTTP
//! trigger uses, and of every component no trigger uses (as before non-HTTP triggers existed).
//!
//! The other triggers' exports ([`ComponentExports`]) are detected by name and required of the
//! components their triggers use, so a mistake fails the load rather than every message (Spin
//! only finds out per message, facts §8.3): a Redis trigger needs exactly one of
//! `fermyon:spin/inbound-redis` (spin-sdk 2.x–5.x) and `spin:redis/inbound-redis@3.x` (spin-sdk
//! 6+), a cron trigger the `spin-trigger-cron` plugin's top-level `handle-cron-event`. Their
//! signatures are checked by the trigger crates when they bind the typed export.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lepton_app::{LockedApp, LockedComponent};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::handler::ProxyPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre as P2ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre as P3ServicePre;

use std::time::Instant;

use crate::compile_cache::CompileCache;
use crate::cpu::{AppCpu, CpuScheduler};
use crate::engine::RuntimeEngine;
use crate::exports::{ComponentExports, TriggerUses, detect_exports};
use crate::host::{HostState, OutboundHttpHooks};
use crate::limits::{AppLimits, CutOff, InstanceBudget, TickPolicy};
use crate::logs::ComponentLogs;
use crate::{RuntimeError, chain};

/// Which HTTP handler interface a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentHandlerKind {
    /// `wasi:http/incoming-handler@0.2.x`.
    WasiHttpP2,
    /// `wasi:http/handler@0.3.x`.
    WasiHttpP3,
    /// The unversioned `fermyon:spin/inbound-http` (Spin 1.x apps).
    SpinInbound,
    /// No HTTP handler, but `wasi:cli/run`: a command, served by the WAGI executor.
    Command,
}

/// The export name of Spin 1.x's HTTP handler interface.
pub const SPIN_INBOUND_HTTP: &str = "fermyon:spin/inbound-http";

/// A component's pre-instance, typed by the handler it exports.
pub enum ComponentPre {
    /// wasi:http 0.2 or 0.3, run through wasmtime-wasi-http's `ProxyHandler`.
    WasiHttp(ProxyPre<HostState>),
    /// The legacy Spin handler or a command, instantiated and called by lepton's own executors.
    Plain(InstancePre<HostState>),
}

impl ComponentPre {
    /// Instantiate into `store` (used to check at load that the component starts).
    pub async fn instantiate_async(&self, store: &mut Store<HostState>) -> wasmtime::Result<()> {
        match self {
            Self::WasiHttp(pre) => pre.instantiate_async(store).await.map(drop),
            Self::Plain(pre) => pre.instantiate_async(store).await.map(drop),
        }
    }
}

/// One component, ready to serve: fresh stores and instances are cheap to make from it.
pub struct PreparedComponent {
    id: String,
    kind: ComponentHandlerKind,
    exports: ComponentExports,
    proxy_pre: ComponentPre,
    instance_pre: InstancePre<HostState>,
    exports_command: bool,
    ai_models: Arc<[String]>,
    env: Vec<(String, String)>,
    mounts: Vec<(PathBuf, String)>,
    logs: ComponentLogs,
    engine: wasmtime::Engine,
    data: Arc<lepton_host::AppHost>,
    outbound: Arc<lepton_outbound::OutboundHttp>,
    services: Arc<lepton_outbound_services::ServicesConfig>,
    guard: VersionGuard,
    /// Keeps the compiled code shared in the process while this component lives.
    _compiled: crate::compile_cache::CompiledHold,
    /// On quick (Winch) code: resolves when its optimized code is ready.
    optimized: Option<crate::compile_cache::OptimizedCode>,
}

/// What every store of one app version shares for enforcing its limits.
#[derive(Clone)]
struct VersionGuard {
    app: Arc<str>,
    limits: AppLimits,
    cut_off: CutOff,
    scheduler: Arc<CpuScheduler>,
    cpu: Arc<AppCpu>,
    /// Where live instances are counted, once the trigger attaches the app's metrics.
    instances: Arc<std::sync::OnceLock<lepton_metrics::AppMetrics>>,
}

impl PreparedComponent {
    /// The component id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The HTTP handler export detected at load. A component that only non-HTTP triggers use
    /// and that has no HTTP handler reports [`ComponentHandlerKind::Command`] here without
    /// exporting `wasi:cli/run` ([`Self::exports_command`] is `false`); [`Self::exports`] tells
    /// it apart (`http: None`). No HTTP trigger uses such a component: the load refuses that.
    pub fn kind(&self) -> ComponentHandlerKind {
        self.kind
    }

    /// Every trigger export detected at load (HTTP, Redis, cron).
    pub fn exports(&self) -> ComponentExports {
        self.exports
    }

    /// The app's name (for logs).
    pub fn app_name(&self) -> &str {
        &self.guard.app
    }

    /// The app's data host state (variables, key-value, SQLite, runtime config), shared by
    /// all its components; `app_host().variables()` resolves app variables.
    pub fn app_host(&self) -> &Arc<lepton_host::AppHost> {
        &self.data
    }

    /// The pre-instance, typed by handler; instantiate it to check the component starts.
    pub fn proxy_pre(&self) -> &ComponentPre {
        &self.proxy_pre
    }

    /// The wasi:http pre-instance, for components exporting a wasi:http handler.
    pub fn wasi_http_pre(&self) -> Option<&ProxyPre<HostState>> {
        match &self.proxy_pre {
            ComponentPre::WasiHttp(pre) => Some(pre),
            ComponentPre::Plain(_) => None,
        }
    }

    /// The untyped pre-instance (for the legacy Spin and WAGI executors).
    pub fn instance_pre(&self) -> &InstancePre<HostState> {
        &self.instance_pre
    }

    /// Bytes of compiled code this component maps (shared with every other user of the same
    /// compiled component in the process).
    pub fn code_bytes(&self) -> usize {
        let range = self.instance_pre.component().image_range();
        (range.end as usize).saturating_sub(range.start as usize)
    }

    /// Whether it runs on quick (Winch) code, waiting for its optimized code.
    pub fn on_quick_code(&self) -> bool {
        self.optimized.is_some()
    }

    /// Whether the component exports `wasi:cli/run@0.2.x` (what the WAGI executor calls).
    pub fn exports_command(&self) -> bool {
        self.exports_command
    }

    /// The component's outbound networking policy (`allowed_outbound_hosts`, `block_networks`):
    /// what Redis, PostgreSQL, MySQL and MQTT clients ask before connecting.
    pub fn outbound_policy(&self) -> &Arc<lepton_outbound::OutboundPolicy> {
        self.outbound.policy()
    }

    /// A fresh store for one request: the component's environment, its files read-only at their
    /// mount paths, stdout/stderr appended to the app's logs, network access only as its outbound
    /// policy allows, no inherited host state.
    pub fn new_store(&self) -> Result<Store<HostState>, wasmtime::Error> {
        self.new_store_with(|_| {})
    }

    /// [`Self::new_store`], with `customize` applied to the WASI context after the component's
    /// environment and log streams are set (WAGI adds arguments, CGI variables, stdin, stdout).
    pub fn new_store_with(
        &self,
        customize: impl FnOnce(&mut WasiCtxBuilder),
    ) -> Result<Store<HostState>, wasmtime::Error> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .stdout(self.logs.stdout.clone())
            .stderr(self.logs.stderr.clone());
        customize(&mut wasi);
        for (host, guest) in &self.mounts {
            wasi.preopened_dir(host, guest, FsPerms::ReadOnly)?;
        }
        lepton_outbound::configure_sockets(&mut wasi, self.outbound.policy());
        let deadline = Instant::now() + self.guard.limits.request_timeout();
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: wasmtime::component::ResourceTable::new(),
            unsupported: lepton_host_unsupported::UnsupportedHost::new(self.ai_models.clone()),
            hooks: OutboundHttpHooks::new(self.outbound.clone()).with_deadline(deadline),
            data: self.data.instance(&self.id),
            services: lepton_outbound_services::ServicesHost::new(self.services.clone()),
            // `memory_mib` over all memories and tables; runtime-config `max_instance_memory`
            // per memory, as Spin's `--max-instance-memory`. Past either, the guest sees a
            // failed `memory.grow`.
            limits: InstanceBudget::new(
                self.guard.limits.memory_bytes(),
                self.data
                    .runtime_config()
                    .max_instance_memory
                    .map(|max| usize::try_from(max).unwrap_or(usize::MAX)),
            ),
            deadline,
            _instance: self
                .guard
                .instances
                .get()
                .map(lepton_metrics::AppMetrics::instance),
        };
        let mut store = Store::new(&self.engine, state);
        if !crate::limits::enforced() {
            store.limiter(|state| &mut state.limits);
            store.data_mut().limits = InstanceBudget::new(usize::MAX, None);
            store.set_epoch_deadline(1);
            store.epoch_deadline_async_yield_and_update(1);
            return Ok(store);
        }
        store.limiter(|state| &mut state.limits);
        // At every epoch tick: stop the guest past its deadline or its version's cut-off, else
        // yield, waiting for a CPU lane once the request is CPU-bound (see `crate::cpu`).
        let guard = &self.guard;
        let mut policy = TickPolicy {
            app: guard.app.clone(),
            cut_off: guard.cut_off.clone(),
            scheduler: guard.scheduler.clone(),
            cpu: guard.cpu.clone(),
            ticks: 0,
            deadline_seen: None,
        };
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| policy.on_tick(ctx.data().deadline));
        Ok(store)
    }

    /// The app's limits, as this version enforces them.
    pub fn limits(&self) -> &AppLimits {
        &self.guard.limits
    }

    /// The version's cut-off switch (shared by all its components).
    pub fn cut_off(&self) -> &CutOff {
        &self.guard.cut_off
    }
}

/// What the operator configured for one app, beyond its reference and address: the inputs of
/// its host state. `state_dir` holds the default key-value store, the default SQLite database
/// and `logs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    /// The app's name, for errors and logs.
    pub name: String,
    /// Where its data and logs live (absolute).
    pub state_dir: PathBuf,
    /// App variable values given by the operator (highest-priority provider).
    pub variables: std::collections::BTreeMap<String, String>,
    /// A Spin `runtime-config.toml` for this app, if any.
    pub runtime_config: Option<PathBuf>,
    /// The address the app is served on: where its self requests (relative URLs) go. `None`
    /// refuses self requests.
    pub listen_address: Option<std::net::SocketAddr>,
    /// The `Host` self requests carry when `listen_address` is a shared ingress (one of the
    /// app's hosts, which routes back to it); `None` sends the address itself.
    pub self_host: Option<String>,
    /// The app's limits (defaults already applied).
    pub limits: AppLimits,
}

/// All components of one app version, prepared.
pub struct RuntimeApp {
    components: Vec<Arc<PreparedComponent>>,
    data: Arc<lepton_host::AppHost>,
    chaining: Arc<lepton_outbound::LocalDispatchSlot>,
    limits: AppLimits,
    cut_off: CutOff,
    instances: Arc<std::sync::OnceLock<lepton_metrics::AppMetrics>>,
}

impl RuntimeApp {
    /// Prepare every component of `locked`. Component stdout/stderr go to `<state_dir>/logs`.
    pub async fn prepare(
        engine: &RuntimeEngine,
        cache: &CompileCache,
        locked: &LockedApp,
        config: &AppConfig,
    ) -> Result<Self, RuntimeError> {
        let data = lepton_host::AppHost::load(
            locked,
            &lepton_host::AppHostConfig {
                name: config.name.clone(),
                state_dir: config.state_dir.clone(),
                variables: config.variables.clone(),
                runtime_config: config.runtime_config.clone(),
            },
        )
        .await?;
        let log_dir = config.state_dir.join("logs");
        let log_dir = log_dir.as_path();
        let mut components = Vec::with_capacity(locked.components.len());
        let chaining = Arc::new(lepton_outbound::LocalDispatchSlot::default());
        let blocked = blocked_networks(config, &data)?;
        let guard = VersionGuard {
            app: config.name.as_str().into(),
            limits: config.limits,
            cut_off: CutOff::default(),
            scheduler: engine.cpu_scheduler().clone(),
            cpu: Arc::default(),
            instances: Arc::default(),
        };
        for component in &locked.components {
            let outbound = outbound_http(config, component, &data, &blocked, &chaining)?;
            let uses = TriggerUses::of(locked, &component.id);
            let mut prepared = prepare_component(
                engine,
                cache,
                component,
                uses,
                log_dir,
                &data,
                guard.clone(),
            )
            .await?;
            prepared.outbound = Arc::new(outbound);
            prepared.services = services_config(&prepared.outbound, &data);
            components.push(Arc::new(prepared));
        }
        Ok(Self {
            components,
            data,
            chaining,
            limits: config.limits,
            cut_off: guard.cut_off,
            instances: guard.instances,
        })
    }

    /// Count this version's live instances (stores) in `metrics` from now on (the first call
    /// wins; instances made before it, such as the load-time instantiation check, are not
    /// counted).
    pub fn count_instances_in(&self, metrics: lepton_metrics::AppMetrics) {
        let _ = self.instances.set(metrics);
    }

    /// The app's limits.
    pub fn limits(&self) -> &AppLimits {
        &self.limits
    }

    /// This version's cut-off switch: once cut, its guests are stopped at their next tick.
    pub fn cut_off(&self) -> &CutOff {
        &self.cut_off
    }

    /// Install the app's service-chaining dispatcher (the HTTP trigger, held weakly): requests to
    /// `http://<component>.spin.internal` are then served in-process. `false` if one was
    /// already installed.
    pub fn install_local_dispatch(
        &self,
        dispatch: std::sync::Weak<dyn lepton_outbound::LocalDispatch>,
    ) -> bool {
        self.chaining.install(dispatch)
    }

    /// The prepared component with id `id`.
    pub fn component(&self, id: &str) -> Option<&Arc<PreparedComponent>> {
        self.components.iter().find(|c| c.id == id)
    }

    /// All prepared components.
    pub fn components(&self) -> &[Arc<PreparedComponent>] {
        &self.components
    }

    /// The app's data host state, shared by its components: `app_host().variables()` resolves
    /// app variables and renders `{{ variable }}` templates (a Redis trigger's address and
    /// channel).
    pub fn app_host(&self) -> &Arc<lepton_host::AppHost> {
        &self.data
    }

    /// Bytes of compiled code its components map (what evicting the app can give back when no
    /// other app shares them).
    pub fn code_bytes(&self) -> u64 {
        self.components.iter().map(|c| c.code_bytes() as u64).sum()
    }

    /// When some of its components run on quick (Winch) code: resolves once every one of them
    /// has its optimized code on disk (`true`), or one could not be made (`false`). Loading the
    /// app again then runs it on the optimized code.
    pub fn optimized(&self) -> Option<futures::future::BoxFuture<'static, bool>> {
        let waits: Vec<_> = self
            .components
            .iter()
            .filter_map(|c| c.optimized.clone())
            .collect();
        if waits.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            futures::future::join_all(waits.into_iter().map(|w| w.ready()))
                .await
                .into_iter()
                .all(|made| made)
        }))
    }
}

async fn prepare_component(
    engine: &RuntimeEngine,
    cache: &CompileCache,
    component: &LockedComponent,
    uses: TriggerUses,
    log_dir: &Path,
    data: &Arc<lepton_host::AppHost>,
    guard: VersionGuard,
) -> Result<PreparedComponent, RuntimeError> {
    let id = component.id.clone();
    let wasm_path = file_url_path(&id, component.source.content.source.as_deref())?;
    let digest = component.source.content.digest.clone();

    let crate::compile_cache::Compiled {
        component: compiled,
        hold: compiled_hold,
        optimized,
        ..
    } = cache
        .load_async(engine.engine(), &id, &wasm_path, digest.as_deref())
        .await?;
    // Quick (Winch) code runs on the quick engine, with its own linker.
    let compiled_on = compiled.engine().clone();

    let instance_pre = engine
        .linker_for(&compiled_on)
        .instantiate_pre(&compiled)
        .map_err(|e| RuntimeError::Link {
            component: id.clone(),
            reason: describe_link_error(&e),
        })?;

    let exports_command =
        wasmtime_wasi::p2::bindings::CommandPre::new(instance_pre.clone()).is_ok();
    let (kind, proxy_pre, exports) = detect_exports(
        &id,
        &compiled_on,
        &compiled,
        &instance_pre,
        exports_command,
        uses,
    )?;
    let ai_models =
        lepton_host_unsupported::UnsupportedHost::ai_models_from_metadata(&component.metadata);

    let mut mounts = Vec::new();
    for file in &component.files {
        let host = file_url_path(&id, file.content.source.as_deref())?;
        if !host.is_dir() {
            return Err(RuntimeError::Io {
                component: id.clone(),
                what: "files mount is not a directory:",
                path: host,
                source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
            });
        }
        let guest = if file.path.starts_with('/') {
            file.path.clone()
        } else {
            format!("/{}", file.path)
        };
        mounts.push((host, guest));
    }

    let logs = ComponentLogs::open(log_dir, &id)?;
    let env = component
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tracing::debug!(component = %id, ?kind, "component prepared");
    Ok(PreparedComponent {
        id,
        kind,
        exports,
        proxy_pre,
        instance_pre,
        exports_command,
        ai_models,
        env,
        mounts,
        logs,
        engine: compiled_on,
        data: data.clone(),
        outbound: Arc::new(lepton_outbound::OutboundHttp::deny_all()),
        services: Arc::new(lepton_outbound_services::ServicesConfig::deny_all()),
        guard,
        _compiled: compiled_hold,
        optimized,
    })
}

/// A component's Redis/PostgreSQL/MySQL/MQTT config: its outbound policy and the runtime
/// config's `[outbound_redis|outbound_pg|outbound_mysql|outbound_mqtt] max_connections`.
fn services_config(
    outbound: &lepton_outbound::OutboundHttp,
    data: &lepton_host::AppHost,
) -> Arc<lepton_outbound_services::ServicesConfig> {
    let rc = data.runtime_config();
    let defaults = lepton_outbound_services::ConnectionLimits::default();
    let max = |section: &Option<lepton_host::runtime_config::MaxConnectionsConfig>, default| {
        section
            .as_ref()
            .and_then(|s| s.max_connections)
            .unwrap_or(default)
    };
    let limits = lepton_outbound_services::ConnectionLimits {
        redis: max(&rc.outbound_redis, defaults.redis),
        postgres: max(&rc.outbound_pg, defaults.postgres),
        mysql: max(&rc.outbound_mysql, defaults.mysql),
        mqtt: max(&rc.outbound_mqtt, defaults.mqtt),
    };
    let policy = outbound.policy().clone();
    Arc::new(lepton_outbound_services::ServicesConfig::new(
        Arc::new(move |scheme: &str, host: &str, port: u16| policy.allows(scheme, host, port)),
        limits,
    ))
}

/// The runtime config's `[outbound_networking] block_networks`, parsed.
fn blocked_networks(
    config: &AppConfig,
    data: &lepton_host::AppHost,
) -> Result<lepton_outbound::BlockedNetworks, RuntimeError> {
    let entries = data
        .runtime_config()
        .outbound_networking
        .as_ref()
        .map(|o| o.block_networks.as_slice())
        .unwrap_or_default();
    lepton_outbound::BlockedNetworks::parse(&config.name, entries)
        .map_err(|e| RuntimeError::Outbound(Box::new(e)))
}

/// A component's outbound HTTP context: its `allowed_outbound_hosts` (templates resolved against
/// the app's variables), the app's blocked networks, listen address and chaining slot.
fn outbound_http(
    config: &AppConfig,
    component: &LockedComponent,
    data: &lepton_host::AppHost,
    blocked: &lepton_outbound::BlockedNetworks,
    chaining: &Arc<lepton_outbound::LocalDispatchSlot>,
) -> Result<lepton_outbound::OutboundHttp, RuntimeError> {
    let vars = |name: &str| data.variables().resolve(name).map_err(|e| e.to_string());
    let policy = lepton_outbound::OutboundPolicy::for_component(&config.name, component, &vars)
        .map_err(|e| RuntimeError::Outbound(Box::new(e)))?
        .with_blocked_networks(blocked.clone());
    Ok(lepton_outbound::OutboundHttp::new(
        &config.name,
        &component.id,
        Arc::new(policy),
        config
            .listen_address
            .map(|addr| lepton_outbound::SelfOrigin {
                addr,
                host: config.self_host.clone(),
            }),
        chaining.clone(),
    ))
}

/// Find the one handler export (Spin's rule, facts §3.4), or a command when there is none.
pub(crate) fn detect_handler(
    id: &str,
    compiled: &Component,
    instance_pre: &InstancePre<HostState>,
    exports_command: bool,
) -> Result<(ComponentHandlerKind, ComponentPre), RuntimeError> {
    let mut found = Vec::new();
    if let Ok(p2) = P2ProxyPre::new(instance_pre.clone()) {
        found.push((
            "wasi:http/incoming-handler@0.2",
            ComponentHandlerKind::WasiHttpP2,
            ComponentPre::WasiHttp(ProxyPre::P2(p2)),
        ));
    }
    if let Ok(p3) = P3ServicePre::new(instance_pre.clone()) {
        found.push((
            "wasi:http/handler@0.3",
            ComponentHandlerKind::WasiHttpP3,
            ComponentPre::WasiHttp(ProxyPre::P3(p3)),
        ));
    }
    if compiled.get_export_index(None, SPIN_INBOUND_HTTP).is_some() {
        found.push((
            SPIN_INBOUND_HTTP,
            ComponentHandlerKind::SpinInbound,
            ComponentPre::Plain(instance_pre.clone()),
        ));
    }
    match found.len() {
        1 => {
            let (_, kind, pre) = found.remove(0);
            Ok((kind, pre))
        }
        0 if exports_command => Ok((
            ComponentHandlerKind::Command,
            ComponentPre::Plain(instance_pre.clone()),
        )),
        0 => Err(RuntimeError::Handler {
            component: id.to_string(),
            reason: "exports no HTTP handler lepton supports: expected \
                     wasi:http/incoming-handler@0.2.x, wasi:http/handler@0.3.x or \
                     fermyon:spin/inbound-http (or wasi:cli/run for the WAGI executor)"
                .into(),
        }),
        _ => {
            let names: Vec<&str> = found.iter().map(|(name, _, _)| *name).collect();
            Err(RuntimeError::Handler {
                component: id.to_string(),
                reason: format!(
                    "exports {}; exactly one HTTP handler export is allowed",
                    names.join(" and ")
                ),
            })
        }
    }
}

/// wasmtime reports a missing import as "component imports instance `X`, but a matching
/// implementation was not found in the linker". Say plainly that lepton does not provide `X`.
fn describe_link_error(err: &wasmtime::Error) -> String {
    let text = chain(err);
    if let Some(rest) = text.split("imports instance `").nth(1)
        && let Some(name) = rest.split('`').next()
    {
        if let Some(rc) = crate::componentize::rc_name_of(name) {
            return format!(
                "it imports `{rc}`, a WASI release-candidate interface lepton serves through its \
                 0.3.0 implementation, and it does not match 0.3.0 ({text})"
            );
        }
        return format!("it imports `{name}`, which lepton does not provide ({text})");
    }
    text
}

fn file_url_path(component: &str, source: Option<&str>) -> Result<PathBuf, RuntimeError> {
    let bad = || RuntimeError::BadSource {
        component: component.to_string(),
        source_url: source.unwrap_or("<none>").to_string(),
    };
    let path = source
        .and_then(lepton_app::file_url::to_path)
        .ok_or_else(bad)?;
    if !path.is_absolute() {
        return Err(bad());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_must_be_absolute_local_paths() {
        assert_eq!(
            file_url_path("c", Some("file:///cache/wasm/sha256:ab")).expect("ok"),
            PathBuf::from("/cache/wasm/sha256:ab")
        );
        assert!(file_url_path("c", Some("https://example.com/x.wasm")).is_err());
        assert!(file_url_path("c", Some("file://relative")).is_err());
        assert!(file_url_path("c", None).is_err());
        assert_eq!(
            file_url_path("c", Some("file:///with%20space/x.wasm")).expect("ok"),
            PathBuf::from("/with space/x.wasm")
        );
    }
}
