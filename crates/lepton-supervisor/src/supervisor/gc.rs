//! The cache collector: a background task that, every [`GcConfig::interval`], marks what this
//! process's apps use in the cache as used now and removes what nobody has used for
//! [`GcConfig::grace`] (see `lepton_oci::gc` and `lepton_runtime::compile_cache::gc` for how
//! that stays safe while other processes share the cache).
//!
//! Its roots are the apps the supervisor runs, loaded or not: each app's reference (its tag's
//! manifest dir and everything it names), and for a version already pulled the app as it holds
//! it in memory (the Wasm and assets a load after an eviction reads, even once its tag has moved
//! on). Versions still draining after a replace hold their code mapped and are done long before
//! any grace period ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lepton_oci::{GcReport, Keep, OciCache, error_chain};
use lepton_runtime::CompileCache;
use lepton_runtime::compile_cache::gc::CompiledGcReport;
use tokio::time::{Instant, MissedTickBehavior};

use super::Inner;

/// When the cache is kept alive and collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcConfig {
    /// How often this process marks what its apps use as used, then collects. Must be well
    /// under the shortest grace of every process sharing the cache.
    pub interval: Duration,
    /// Cache entries nobody has used for this long are removed; `None`: this process never
    /// removes anything (but still keeps what it uses alive for the others).
    pub grace: Option<Duration>,
}

impl Default for GcConfig {
    /// Hourly, with a grace of a day.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            grace: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Round {
    /// Apps whose entries were kept.
    pub apps: usize,
    /// What the registry cache removed (`None`: this process does not collect).
    pub registry: Option<GcReport>,
    /// What the compile cache removed.
    pub compiled: CompiledGcReport,
}

/// Starts the collector for `inner`, if its config has one; it ends with the supervisor.
pub(super) fn spawn(inner: &Arc<Inner>) {
    let Some(config) = inner.config.gc else {
        return;
    };
    let period = config.interval.max(Duration::from_millis(1));
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        // Nothing runs yet at start: the first round is one interval in.
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            round(&inner, config).await;
        }
    });
}

/// One round: keep alive what the running apps use, then collect (when `config.grace` says).
pub(super) async fn round(inner: &Inner, config: GcConfig) -> Round {
    let (keep, apps) = roots(inner);
    let (oci, compiled) = (inner.loader.cache().clone(), inner.compile_cache.clone());
    let cache = oci.root().display().to_string();
    let work = tokio::task::spawn_blocking(move || run(&oci, &compiled, &keep, config.grace));
    let mut done = match work.await {
        Ok(done) => done,
        Err(err) => {
            tracing::warn!(%cache, error = %err, "cache gc round failed");
            return Round::default();
        }
    };
    done.apps = apps;
    match done.registry {
        None => tracing::debug!(%cache, apps, "cache keep-alive"),
        Some(report) if report.busy => {
            tracing::debug!(%cache, apps, "cache gc skipped: a load holds the cache; next round")
        }
        Some(report) => tracing::info!(
            %cache,
            apps,
            manifests = report.manifests,
            blobs = report.blobs,
            assets = report.assets,
            compiled = done.compiled.artifacts,
            freed_bytes = report.bytes + done.compiled.bytes,
            "cache gc: removed what no app has used within the grace period"
        ),
    }
    done
}

/// What the running apps reference, and how many apps that is.
fn roots(inner: &Inner) -> (Keep, usize) {
    let mut keep = Keep::new();
    let state = inner.state();
    for (key, app) in &state.running {
        if let Err(err) = keep.reference(&app.spec.reference) {
            tracing::debug!(%key, error = %error_chain(&err), "cache gc: reference not kept");
        }
        app.version.with_pulled(|loaded| {
            keep.loaded(loaded);
        });
    }
    (keep, state.running.len())
}

/// The blocking part of a round.
fn run(oci: &OciCache, compiled: &CompileCache, keep: &Keep, grace: Option<Duration>) -> Round {
    let wasm: HashSet<String> = oci.keep_alive(keep);
    compiled.keep_alive(&wasm);
    let Some(grace) = grace else {
        return Round::default();
    };
    let registry = match oci.collect(keep, grace) {
        Ok(report) => report,
        Err(err) => {
            tracing::warn!(cache = %oci.root().display(), error = %error_chain(&err), "cache gc: cannot collect");
            GcReport {
                busy: true,
                ..GcReport::default()
            }
        }
    };
    Round {
        apps: 0,
        registry: Some(registry),
        compiled: compiled.collect(&wasm, grace),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{spec, supervisor};
    use super::*;
    use std::path::Path;
    use std::time::SystemTime;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A manifest dir (its files only: enough to be kept or collected) last used 2 days ago.
    fn old_manifest_dir(cache: &Path, repository: &str) -> std::path::PathBuf {
        let dir = cache
            .join("registry/manifests/127.0.0.1:1")
            .join(repository)
            .join("v1");
        std::fs::create_dir_all(&dir).expect("dir");
        for file in ["digest", "manifest.json", "config.json"] {
            std::fs::write(dir.join(file), b"{}").expect("write");
            std::fs::File::open(dir.join(file))
                .and_then(|f| f.set_modified(SystemTime::now() - 2 * DAY))
                .expect("age");
        }
        dir
    }

    #[tokio::test]
    async fn a_round_keeps_what_running_apps_reference_loaded_or_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sup = supervisor(dir.path());
        let cache = dir.path().join("cache");
        let (used, unused) = (old_manifest_dir(&cache, "a"), old_manifest_dir(&cache, "b"));
        // Routable at once, never loaded (its registry does not exist): still a root.
        let mut lazy = spec(dir.path(), "a", "127.0.0.1:0");
        lazy.preload = Some(false);
        sup.apply("a.json".into(), Some(lazy))
            .await
            .expect("lazy start");
        // Its probe for event triggers (a pull, failing here) holds the cache while it runs.
        while sup.inner.probing.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let keep_only = GcConfig {
            interval: Duration::from_secs(1),
            grace: None,
        };
        let done = round(&sup.inner, keep_only).await;
        assert_eq!((done.apps, done.registry), (1, None));
        let touched = std::fs::metadata(used.join("digest"))
            .and_then(|m| m.modified())
            .expect("mtime");
        assert!(touched > SystemTime::now() - DAY, "kept alive");
        assert!(unused.exists(), "a process without a grace removes nothing");

        let collect = GcConfig {
            interval: Duration::from_secs(1),
            grace: Some(DAY),
        };
        let done = round(&sup.inner, collect).await;
        let report = done.registry.expect("collected");
        assert_eq!((report.manifests, report.busy), (1, false), "{report:?}");
        assert!(used.join("digest").is_file());
        assert!(!unused.exists());

        // Stopped: no longer a root, but freshly used, so it stays out the grace.
        sup.apply("a.json".into(), None).await.expect("stop");
        let done = round(&sup.inner, collect).await;
        assert_eq!(done.apps, 0);
        assert!(used.join("digest").is_file());
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_run_every_interval_and_end_with_the_supervisor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let unused = old_manifest_dir(&cache, "b");
        let sup = supervisor(dir.path());
        let weak = Arc::downgrade(&sup.inner);
        // The default config collects hourly; the first round is an hour in.
        tokio::time::sleep(Duration::from_secs(3599)).await;
        assert!(unused.exists(), "collected before the first interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The round's file work runs on the blocking pool, in real time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while unused.exists() {
            assert!(std::time::Instant::now() < deadline, "never collected");
            std::thread::sleep(Duration::from_millis(10));
            tokio::task::yield_now().await;
        }
        drop(sup);
        tokio::time::sleep(Duration::from_secs(7200)).await;
        assert!(
            weak.upgrade().is_none(),
            "the collector holds the supervisor"
        );
    }
}
