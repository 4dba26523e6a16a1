//! Tiered compilation: serve a component on Winch's code first, make Cranelift's in the
//! background.
//!
//! Cranelift's code is what every app should run on, but it is slow to make: 220 ms for a hello
//! component and 11.5 s for a 12 MiB JavaScript one on a 2-core VM, so 1,000 never-seen
//! components took minutes before each answered its first request. Winch compiles the same in
//! about a quarter to a fifth of that (see `crate::engine`). With a quick tier, a component that
//! has no optimized artifact (in the process or on disk) is compiled by Winch on the quick
//! engine, at first-compile priority, and stored in the disk cache under the quick engine's
//! own key (so its code is mapped, file-backed, like any artifact's). At the same time Cranelift's artifact is made at background priority (the gate runs
//! those only when no first compile waits, and leaves a permit free for them) and stored in the
//! disk cache as usual; [`OptimizedCode`] resolves when it is there, and the app's loader
//! (`crate::residency`) loads the app again on it. One background compile per component however
//! many apps wait for it. Once the optimized artifact is stored, the quick one is removed from
//! the disk (processes that map it keep their pages); one left by a process stopped before that
//! serves the next start's first load, and ages out through the cache's collector.
//!
//! A component Winch cannot compile falls back to Cranelift at first-compile priority. The
//! quick tier needs the disk cache (the upgrade is a load from it), so a disabled cache has none.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use wasmtime::Engine;

use super::{CompileCache, Compiled, Priority};
use crate::RuntimeError;

/// The quick engine, its in-process table, and the background compiles under way.
pub(crate) struct QuickTier {
    engine: Engine,
    cache: CompileCache,
    upgrades: Mutex<HashMap<String, OptimizedCode>>,
}

impl std::fmt::Debug for QuickTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickTier").finish_non_exhaustive()
    }
}

/// Resolves once a component's optimized (Cranelift) artifact is in the disk cache: `true`, or
/// `false` if making it failed. Cheap to clone.
#[derive(Clone)]
pub struct OptimizedCode(Shared<BoxFuture<'static, bool>>);

impl std::fmt::Debug for OptimizedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OptimizedCode").finish()
    }
}

impl OptimizedCode {
    /// Wait for the optimized artifact; whether it was made.
    pub async fn ready(self) -> bool {
        self.0.await
    }
}

impl CompileCache {
    /// Compile components first with Winch on `quick` (see the module docs). No-op for a
    /// disabled cache.
    pub fn with_quick_tier(mut self, quick: &Engine) -> Self {
        let Some(compiled) = self.dir.as_ref().and_then(|d| d.parent()) else {
            return self;
        };
        let dir = compiled.join(super::engine_key(quick));
        super::sweep_stale_temp_files(&dir, super::STALE_TEMP_AGE);
        let mut cache = CompileCache::disabled();
        cache.dir = Some(dir);
        cache.gate = self.gate.clone();
        cache.compiler = "winch";
        self.quick = Some(Arc::new(QuickTier {
            engine: quick.clone(),
            cache,
            upgrades: Mutex::default(),
        }));
        self
    }

    /// Whether first compiles use the quick tier.
    pub fn quick_tier(&self) -> bool {
        self.quick.is_some()
    }

    /// This cache (same directory, in-process table and compile gate) with first compiles by
    /// Cranelift: for the background compiles (the optimized tier's own), and for apps that must
    /// not start on Winch's code because nothing would move them off it (an app with Redis or
    /// cron triggers is kept loaded, and reloading it would restart its triggers).
    pub fn without_quick_tier(&self) -> Self {
        Self {
            quick: None,
            ..self.clone()
        }
    }

    pub(super) async fn load_tiered(
        &self,
        quick: &Arc<QuickTier>,
        engine: &Engine,
        component_id: &str,
        wasm_path: &Path,
        digest: Option<&str>,
    ) -> Result<Compiled, RuntimeError> {
        if let Some(compiled) = self.find(engine, component_id, wasm_path, digest).await? {
            return Ok(compiled);
        }
        let first = quick
            .cache
            .load_gated(
                &quick.engine,
                component_id,
                wasm_path,
                digest,
                Priority::First,
            )
            .await;
        match first {
            Ok(mut compiled) => {
                let quick_artifact = quick
                    .cache
                    .dir
                    .as_ref()
                    .map(|dir| dir.join(format!("{}.cwasm", compiled.hold.key())));
                let optimized = self.optimize_later(quick, engine, component_id, wasm_path, digest);
                compiled.optimized = Some(optimized.clone());
                if let Some(artifact) = quick_artifact {
                    tokio::spawn(async move {
                        if optimized.ready().await {
                            // The artifact goes before its sidecar (see `gc`).
                            let _ = std::fs::remove_file(&artifact);
                            let _ = std::fs::remove_file(super::sidecar(&artifact));
                        }
                    });
                }
                Ok(compiled)
            }
            Err(err) => {
                tracing::warn!(component = component_id, error = %err, "Winch could not compile the component; compiling it with Cranelift");
                self.load_gated(engine, component_id, wasm_path, digest, Priority::First)
                    .await
            }
        }
    }

    /// Start (or join) the background Cranelift compile of a component.
    fn optimize_later(
        &self,
        quick: &Arc<QuickTier>,
        engine: &Engine,
        component_id: &str,
        wasm_path: &Path,
        digest: Option<&str>,
    ) -> OptimizedCode {
        let key = match digest {
            Some(digest) => digest.to_string(),
            None => wasm_path.display().to_string(),
        };
        let mut upgrades = quick
            .upgrades
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = upgrades.get(&key) {
            return running.clone();
        }
        let this = self.without_quick_tier();
        let (engine, id, path, digest) = super::owned(engine, component_id, wasm_path, digest);
        let (tier, done_key) = (Arc::downgrade(quick), key.clone());
        let compile = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let made = this
                .load_gated(&engine, &id, &path, digest.as_deref(), Priority::Background)
                .await;
            if let Some(tier) = tier.upgrade() {
                tier.upgrades
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&done_key);
            }
            match made {
                // Dropping it leaves the artifact on disk, where the app's reload finds it.
                Ok(_) => {
                    tracing::info!(
                        component = %id,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "optimized code ready"
                    );
                    true
                }
                Err(err) => {
                    tracing::warn!(component = %id, error = %err, "Cranelift could not compile the component; it stays on Winch's code");
                    false
                }
            }
        });
        let code = OptimizedCode(compile.map(|done| done.unwrap_or(false)).boxed().shared());
        upgrades.insert(key, code.clone());
        code
    }
}
