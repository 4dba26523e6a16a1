//! Preparing one version of an app before it may serve: check it can run on lepton, create its
//! state directory, compile (or load) its components against the app's limits (an app with Redis
//! or cron triggers on Cranelift's code from the start: see [`prepare`]), instantiate each
//! once (when it is prepared ahead of serving; a load on first request skips this, as the request
//! instantiates it anyway), build its HTTP trigger on the app's front (gate and metrics, kept
//! across versions) and its event triggers (Redis, cron; started later, once it is current). A
//! version that fails any step is refused before it replaces one that serves.

use std::time::Instant;

use lepton_oci::LoadedApp;
use lepton_runtime::{AppConfig, RuntimeApp};
use lepton_spec::AppSpec;
use lepton_trigger_http::{AppFront, HttpApp};

use super::triggers::{EventTriggers, has_event_triggers, has_http_triggers};
use super::{Inner, ReadyApp};
use crate::outcome::StartError;

/// Whether to instantiate every component once while preparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Now: the version is prepared ahead of serving (and must not replace one that works if it
    /// cannot start).
    Now,
    /// Not now: the request that caused the load instantiates it anyway.
    OnFirstRequest,
}

pub(super) async fn prepare(
    inner: &Inner,
    key: &str,
    spec: &AppSpec,
    loaded: LoadedApp,
    check: Check,
) -> Result<ReadyApp, StartError> {
    loaded.locked.ensure_runnable()?;
    if spec.address.is_none() && spec.hosts.is_empty() && has_http_triggers(&loaded.locked) {
        return Err(StartError::Unreachable);
    }
    std::fs::create_dir_all(&spec.state_dir).map_err(|source| StartError::StateDir {
        path: spec.state_dir.clone(),
        source,
    })?;
    // Self requests go to the app's own address, or through the shared ingress by one of its
    // hosts when it has only hosts.
    let (listen_address, self_host) = match (spec.address, inner.config.self_ingress) {
        (Some(address), _) => (Some(address), None),
        (None, Some(ingress)) => (Some(ingress), self_host(&spec.hosts)),
        (None, None) => (None, None),
    };
    let config = AppConfig {
        name: spec.name.clone(),
        state_dir: spec.state_dir.clone(),
        variables: spec.variables.clone(),
        runtime_config: spec.runtime_config.clone(),
        listen_address,
        self_host,
        limits: spec.limits.over(&inner.config.default_limits),
    };
    // One app at its concurrency limit holds at most that many instances (chained requests take
    // slots from the same gate), so capping it at half the engine's instance pool keeps every
    // app from draining the pool its neighbours need.
    if let Some(pool) = inner.engine.instance_capacity()
        && config.limits.max_concurrent_requests > pool / 2
    {
        return Err(StartError::Limits {
            field: "max_concurrent_requests",
            message: format!(
                "{} is more than half of the engine's {pool}-instance pool (LEPTON_MAX_INSTANCES); \
                 one app could take every instance from its neighbours",
                config.limits.max_concurrent_requests
            ),
        });
    }
    // An app with Redis or cron triggers is kept loaded (pinned) and never reloaded, as that
    // would restart its triggers: it would run on Winch's code for good. It is compiled by
    // Cranelift from the start, as `spin up` does (a cold start of it waits for that compile).
    let cache = if has_event_triggers(&loaded.locked) {
        inner.compile_cache.without_quick_tier()
    } else {
        inner.compile_cache.clone()
    };
    let compile = Instant::now();
    let runtime = RuntimeApp::prepare(&inner.engine, &cache, &loaded.locked, &config).await?;
    // Compiling, or loading from the compile cache: what a start costs after the pull.
    inner
        .config
        .metrics
        .compile_finished(&spec.name, compile.elapsed().as_secs_f64());
    // Instantiate every component once, so a version that cannot start is refused before it
    // replaces one that can.
    let to_check = if check == Check::Now {
        runtime.components()
    } else {
        &[]
    };
    for component in to_check {
        let mut store = component.new_store().map_err(|e| StartError::Instantiate {
            component: component.id().to_string(),
            message: format!("{e:#}"),
        })?;
        component
            .proxy_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| StartError::Instantiate {
                component: component.id().to_string(),
                message: format!("{e:#}"),
            })?;
    }
    let front = {
        let mut state = inner.state();
        let front = state
            .fronts
            .entry(key.to_string())
            .or_insert_with(|| AppFront::new(&config.limits, inner.config.metrics.app(&spec.name)))
            .clone();
        front.gate.configure(&config.limits);
        front
    };
    runtime.count_instances_in(front.metrics.clone());
    let http = HttpApp::new(&spec.name, &loaded.locked, &runtime, front)?;
    let events = EventTriggers::prepare(&spec.name, &loaded.locked, &runtime)?;
    let mut trigger_types: Vec<String> = Vec::new();
    for trigger in &loaded.locked.triggers {
        if !trigger_types.contains(&trigger.trigger_type) {
            trigger_types.push(trigger.trigger_type.clone());
        }
    }
    Ok(ReadyApp {
        events,
        trigger_types,
        from_cache_only: super::version::cache_only(&loaded),
        digest: loaded.manifest_digest,
        footprint: runtime.code_bytes(),
        optimized: runtime.optimized(),
        http,
    })
}

/// A host that routes to an app with `hosts`: its first exact host, else a name under its first
/// wildcard (`*.example.com` → `self.example.com`).
fn self_host(hosts: &[String]) -> Option<String> {
    hosts
        .iter()
        .find(|h| !h.starts_with("*."))
        .cloned()
        .or_else(|| {
            hosts
                .first()
                .and_then(|h| h.strip_prefix("*."))
                .map(|suffix| format!("self.{suffix}"))
        })
}
