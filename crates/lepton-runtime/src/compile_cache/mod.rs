//! Compile each component once and keep the artifact on disk.
//!
//! Artifacts live at `<cache root>/compiled/<engine key>/<sha256 hex>-<tag>.cwasm`, keyed by the
//! component's content digest, by how it is rewritten before compiling (the `<tag>`: see
//! `componentize`), and by a hash of everything in the engine configuration that affects
//! compiled code (`Engine::precompile_compatibility_hash`), so a wasmtime upgrade or a config change
//! never loads a stale artifact. Deserialising an artifact is `unsafe` in wasmtime (it trusts the
//! machine code), so each artifact is written atomically with a SHA-256 sidecar that is checked
//! before every load; a corrupt artifact is discarded and recompiled.
//!
//! Trust model: the sidecar catches corruption, not an attacker who can write the cache. The
//! `compiled/` directory is therefore created private to lepton's user (mode 0700), and artifacts
//! are only loaded from a directory owned by that user that others cannot write; otherwise the
//! cache is bypassed and components are compiled from their verified Wasm. A directory writable
//! by its group is trusted only when that group is one of the process's own (a Kubernetes volume
//! with an `fsGroup`: kubelet makes its files group-writable for the pod's supplementary group).
//!
//! Artifacts are mapped, not read ([`Component::deserialize_file`]): their code pages are
//! file-backed and shared by every process using the cache, and the kernel can drop them when
//! memory is short. The checksum of an artifact is checked once per process (then remembered by
//! the file's identity: path, device, inode, size).
//!
//! In the process, a compiled component is shared by every app and component using it (one
//! table entry per artifact, held by [`CompiledHold`]s; the entry goes when its last holder
//! does, so evicted apps give their code back). Compilations go through a gate ([`gate`]): a
//! few at a time, smallest first.
//!
//! Artifacts no app has used for a grace period are removed by [`gc`], safely across processes.
//!
//! With a quick tier ([`CompileCache::with_quick_tier`]), a component with no optimized
//! artifact yet is compiled by Winch first and Cranelift's artifact is made in the background
//! ([`tiered`]).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::RuntimeError;
use crate::componentize::{self, WasmKind};

mod gate;
pub mod gc;
mod tiered;

use gate::{CompileGate, Priority};
pub use tiered::OptimizedCode;
use tiered::QuickTier;

/// The on-disk compiled-component cache (or a pass-through when disabled), fronted by an
/// in-process table so a component shared by several apps or components is compiled or
/// deserialised once, and its code mapped once, however many use it.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    loaded: Arc<Table>,
    /// Artifacts whose checksum this process has checked, by file identity.
    verified: Arc<Mutex<HashSet<FileId>>>,
    gate: Arc<CompileGate>,
    quick: Option<Arc<QuickTier>>,
    /// Which compiler this cache's engine uses, for the logs: `cranelift`, or `winch` for the
    /// quick tier's own cache.
    compiler: &'static str,
}

type Table = Mutex<HashMap<String, Slot>>;

/// One component's place in the in-process table, filled by the first load and emptied when
/// its last holder is gone.
type Slot = Arc<Mutex<Option<Weak<Entry>>>>;

/// A compiled component in the in-process table.
#[derive(Debug)]
struct Entry {
    component: Component,
    key: String,
    table: Weak<Table>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let Some(table) = self.table.upgrade() else {
            return;
        };
        let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
        // Only if nobody is loading it again right now (that load refills the slot).
        let gone = table.get(&self.key).is_some_and(|slot| {
            slot.try_lock()
                .is_ok_and(|held| held.as_ref().is_none_or(|w| w.strong_count() == 0))
        });
        if gone {
            table.remove(&self.key);
        }
    }
}

/// Keeps a compiled component shared in the process while held (a prepared component holds
/// one for as long as it lives).
#[derive(Debug, Clone)]
pub struct CompiledHold {
    _entry: Arc<Entry>,
}

impl CompiledHold {
    /// The component's cache key (`<sha256 hex>-<tag>`: its artifact's file name stem).
    pub(crate) fn key(&self) -> &str {
        &self._entry.key
    }
}

/// A loaded component, how it was loaded, and its hold on the in-process table.
#[derive(Debug)]
pub struct Compiled {
    /// The compiled component.
    pub component: Component,
    /// Where it came from.
    pub outcome: CompileOutcome,
    /// Keep this as long as the component is used.
    pub hold: CompiledHold,
    /// For quick (Winch) code: resolves once the optimized artifact is on disk.
    pub optimized: Option<OptimizedCode>,
}

/// A file's identity: its path, device, inode and size (artifacts are renamed into place and
/// never rewritten, so a changed artifact is a new inode; the modification time is not part of
/// it because using an artifact touches it).
type FileId = (PathBuf, u64, u64, u64);

fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((path.to_path_buf(), m.dev(), m.ino(), m.len()))
}

/// Compilations at once: wasmtime already compiles one component's functions on every core, so
/// a couple at a time keep the cores busy without multiplying compile memory.
fn compile_permits() -> usize {
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(2))
        .unwrap_or(2)
}

/// Where a component came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileOutcome {
    /// Already loaded in this process; the same compiled code is shared.
    Shared,
    /// Loaded a verified artifact from disk.
    Cached,
    /// Compiled now (and stored, if the cache is enabled).
    Compiled,
}

impl CompileCache {
    /// A cache under `root/compiled/<engine key>/`.
    pub fn new(root: &Path, engine: &Engine) -> Self {
        let dir = root.join("compiled").join(engine_key(engine));
        sweep_stale_temp_files(&dir, STALE_TEMP_AGE);
        Self {
            dir: Some(dir),
            loaded: Arc::default(),
            verified: Arc::default(),
            gate: CompileGate::new(compile_permits()),
            quick: None,
            compiler: "cranelift",
        }
    }

    /// Components shared in the process now (held by some prepared component).
    pub fn loaded_count(&self) -> usize {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// [`CompileCache::load`] from async code: a component already in the process or on disk is
    /// loaded on the blocking pool at once; one that must be compiled waits for its turn at the
    /// compile gate (a few at a time, smallest first) before it takes a blocking thread. With a
    /// quick tier, that compile is Winch's, on the quick engine, and the component comes back
    /// with [`Compiled::optimized`] (see [`tiered`]).
    pub async fn load_async(
        &self,
        engine: &Engine,
        component_id: &str,
        wasm_path: &Path,
        digest: Option<&str>,
    ) -> Result<Compiled, RuntimeError> {
        match &self.quick {
            Some(quick) => {
                self.load_tiered(quick, engine, component_id, wasm_path, digest)
                    .await
            }
            None => {
                self.load_gated(engine, component_id, wasm_path, digest, Priority::First)
                    .await
            }
        }
    }

    /// Load from the process or the disk, else compile at the gate with `priority`.
    async fn load_gated(
        &self,
        engine: &Engine,
        component_id: &str,
        wasm_path: &Path,
        digest: Option<&str>,
        priority: Priority,
    ) -> Result<Compiled, RuntimeError> {
        if let Some(compiled) = self.find(engine, component_id, wasm_path, digest).await? {
            return Ok(compiled);
        }
        let size = std::fs::metadata(wasm_path).map_or(0, |m| m.len());
        let permit = self.gate.admit(priority, size).await;
        let this = self.clone();
        let (engine, id, path, digest) = owned(engine, component_id, wasm_path, digest);
        let compiled = tokio::task::spawn_blocking(move || {
            let compiled = this.load_with(&engine, &id, &path, digest.as_deref(), true);
            drop(permit);
            compiled
        })
        .await
        .map_err(|e| task_failed(component_id, &e))??;
        compiled.ok_or_else(|| RuntimeError::Compile {
            component: component_id.to_string(),
            reason: "not compiled".into(),
        })
    }

    /// The component from the process or the disk, without compiling (on the blocking pool).
    async fn find(
        &self,
        engine: &Engine,
        component_id: &str,
        wasm_path: &Path,
        digest: Option<&str>,
    ) -> Result<Option<Compiled>, RuntimeError> {
        let this = self.clone();
        let (engine, id, path, digest) = owned(engine, component_id, wasm_path, digest);
        tokio::task::spawn_blocking(move || {
            this.load_with(&engine, &id, &path, digest.as_deref(), false)
        })
        .await
        .map_err(|e| task_failed(component_id, &e))?
    }

    /// No disk cache: each distinct component is compiled once per process.
    pub fn disabled() -> Self {
        Self {
            dir: None,
            loaded: Arc::default(),
            verified: Arc::default(),
            gate: CompileGate::new(compile_permits()),
            quick: None,
            compiler: "cranelift",
        }
    }

    /// Load the component at `wasm_path` whose content digest is `digest` (`sha256:<hex>`), from
    /// the cache if possible, compiling and storing it otherwise. Compilation is CPU-heavy: call
    /// this from a blocking thread.
    pub fn load(
        &self,
        engine: &Engine,
        component_id: &str,
        wasm_path: &Path,
        digest: Option<&str>,
    ) -> Result<Compiled, RuntimeError> {
        self.load_with(engine, component_id, wasm_path, digest, true)?
            .ok_or_else(|| RuntimeError::Compile {
                component: component_id.to_string(),
                reason: "not compiled".into(),
            })
    }

    /// Load from the process or the disk; compile too when `compile` (else `None` on a miss).
    fn load_with(
        &self,
        engine: &Engine,
        component_id: &str,
        wasm_path: &Path,
        digest: Option<&str>,
        compile: bool,
    ) -> Result<Option<Compiled>, RuntimeError> {
        let read_wasm = || {
            std::fs::read(wasm_path).map_err(|source| RuntimeError::ReadWasm {
                component: component_id.to_string(),
                path: wasm_path.to_path_buf(),
                source,
            })
        };
        let (hex, wasm) = match digest.and_then(|d| d.strip_prefix("sha256:")) {
            Some(hex) if is_sha256_hex(hex) => (hex.to_string(), None),
            _ => {
                let bytes = read_wasm()?;
                (hex::encode(Sha256::digest(&bytes)), Some(bytes))
            }
        };
        // A core module is componentized before compiling; its key also names how (the
        // adapters and componentize version), so it is componentized and compiled once.
        let kind = match &wasm {
            Some(bytes) => componentize::classify(bytes),
            None => componentize::classify_file(component_id, wasm_path)?,
        };
        let hex = match kind {
            WasmKind::CoreModule => format!("{hex}-{}", componentize::componentize_tag()),
            // A component's rc-versioned WASI names may be rewritten before compiling
            // (`componentize::rename_rc_versions`), so its key names the rewrite too.
            WasmKind::Component => format!("{hex}-{}", componentize::rename_tag()),
        };
        // One slot per digest: concurrent loads of the same component wait for the first one
        // instead of compiling it again.
        let slot = {
            let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            loaded.entry(hex.clone()).or_default().clone()
        };
        let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = held.as_ref().and_then(Weak::upgrade) {
            return Ok(Some(Compiled {
                component: entry.component.clone(),
                outcome: CompileOutcome::Shared,
                hold: CompiledHold { _entry: entry },
                optimized: None,
            }));
        }
        let loaded = if compile {
            Some(self.load_from_disk_or_compile(
                engine,
                component_id,
                &hex,
                kind,
                wasm,
                read_wasm,
            )?)
        } else {
            self.dir.as_ref().and_then(|dir| {
                let artifact = dir.join(format!("{hex}.cwasm"));
                self.load_artifact(engine, component_id, &artifact)
                    .map(|c| (c, CompileOutcome::Cached))
            })
        };
        let Some((component, outcome)) = loaded else {
            return Ok(None);
        };
        let entry = Arc::new(Entry {
            component: component.clone(),
            key: hex,
            table: Arc::downgrade(&self.loaded),
        });
        *held = Some(Arc::downgrade(&entry));
        Ok(Some(Compiled {
            component,
            outcome,
            hold: CompiledHold { _entry: entry },
            optimized: None,
        }))
    }

    fn load_from_disk_or_compile(
        &self,
        engine: &Engine,
        component_id: &str,
        hex: &str,
        kind: WasmKind,
        wasm: Option<Vec<u8>>,
        read_wasm: impl Fn() -> Result<Vec<u8>, RuntimeError>,
    ) -> Result<(Component, CompileOutcome), RuntimeError> {
        if let Some(dir) = &self.dir {
            let artifact = dir.join(format!("{hex}.cwasm"));
            if let Some(component) = self.load_artifact(engine, component_id, &artifact) {
                return Ok((component, CompileOutcome::Cached));
            }
        }
        let wasm = match wasm {
            Some(bytes) => bytes,
            None => read_wasm()?,
        };
        let wasm = match kind {
            WasmKind::CoreModule => componentize::componentize(component_id, &wasm)?,
            WasmKind::Component => match componentize::rename_rc_versions(component_id, &wasm)? {
                std::borrow::Cow::Borrowed(_) => wasm,
                std::borrow::Cow::Owned(renamed) => renamed,
            },
        };
        let started = std::time::Instant::now();
        let component = Component::new(engine, &wasm).map_err(|e| RuntimeError::Compile {
            component: component_id.to_string(),
            reason: crate::chain(&e),
        })?;
        tracing::info!(
            component = component_id,
            cache_key = %hex,
            compiler = self.compiler,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled component"
        );
        let Some(dir) = &self.dir else {
            return Ok((component, CompileOutcome::Compiled));
        };
        if let Err(err) = store_artifact(dir, hex, &component) {
            tracing::warn!(component = component_id, error = %err, "could not cache compiled component");
            return Ok((component, CompileOutcome::Compiled));
        }
        // Serve the stored artifact, mapped, rather than the compiled copy: its code pages are
        // file-backed from the first load on (1,000 freshly compiled apps otherwise held their
        // code in anonymous memory until the next restart).
        let artifact = dir.join(format!("{hex}.cwasm"));
        let mapped = self.load_artifact(engine, component_id, &artifact);
        Ok((mapped.unwrap_or(component), CompileOutcome::Compiled))
    }

    fn load_artifact(
        &self,
        engine: &Engine,
        component_id: &str,
        artifact: &Path,
    ) -> Option<Component> {
        let dir = artifact.parent()?;
        if !dir.exists() {
            return None;
        }
        if !is_private_dir(dir) {
            tracing::warn!(
                dir = %dir.display(),
                "compiled-component cache is writable by others or not owned by this user; ignoring it"
            );
            return None;
        }
        let id = file_id(artifact)?;
        let known = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id);
        if !known {
            let bytes = std::fs::read(artifact).ok()?;
            let expected = std::fs::read_to_string(sidecar(artifact)).ok()?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if expected.trim() != actual {
                tracing::warn!(
                    component = component_id,
                    artifact = %artifact.display(),
                    "compiled artifact failed its checksum; recompiling"
                );
                let _ = std::fs::remove_file(artifact);
                return None;
            }
            self.verified
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id);
        }
        // Used now: the cache's collector keeps what was used recently.
        touch(artifact);
        // SAFETY: the file was produced by `Component::serialize` on an engine with the same
        // compatibility hash (it is part of the directory name), written atomically (renamed
        // into place, never rewritten) by this cache into a directory only this user (or its
        // own group) can write, and matches the checksum written beside it — checked in this
        // process for this very file (path, device, inode, size).
        match unsafe { Component::deserialize_file(engine, artifact) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(component = component_id, error = %crate::chain(&err), "discarding unusable compiled artifact");
                let _ = std::fs::remove_file(artifact);
                None
            }
        }
    }
}

/// The directory name of an engine's artifacts: a hash of everything in its configuration that
/// affects compiled code.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// A load's arguments, owned (to move into a task).
fn owned(
    engine: &Engine,
    component_id: &str,
    wasm_path: &Path,
    digest: Option<&str>,
) -> (Engine, String, PathBuf, Option<String>) {
    (
        engine.clone(),
        component_id.to_string(),
        wasm_path.to_path_buf(),
        digest.map(str::to_string),
    )
}

fn task_failed(component_id: &str, e: &tokio::task::JoinError) -> RuntimeError {
    RuntimeError::Compile {
        component: component_id.to_string(),
        reason: format!("compile task failed: {e}"),
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sidecar(artifact: &Path) -> PathBuf {
    artifact.with_extension("cwasm.sha256")
}

/// Whether `dir` is owned by this process's user and not writable by others, nor by a group
/// this process is not in.
#[cfg(unix)]
fn is_private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid || meta.mode() & 0o002 != 0 {
        return false;
    }
    meta.mode() & 0o020 == 0 || in_group(meta.gid())
}

/// Whether `gid` is this process's group or one of its supplementary groups.
#[cfg(unix)]
fn in_group(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions and cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: the buffer holds `groups.len()` entries, the size passed.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    usize::try_from(n).is_ok_and(|n| groups[..n.min(groups.len())].contains(&gid))
}

/// Set `path`'s modification time to now (best effort): what "recently used" means to the
/// cache's collector, across every process sharing the cache.
pub(crate) fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(not(unix))]
fn is_private_dir(_dir: &Path) -> bool {
    true
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn store_artifact(dir: &Path, hex: &str, component: &Component) -> std::io::Result<()> {
    create_private_dir(dir)?;
    if !is_private_dir(dir) {
        return Err(std::io::Error::other(format!(
            "{} is not private to this user; not caching compiled code there",
            dir.display()
        )));
    }
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(crate::chain(&e)))?;
    let artifact = dir.join(format!("{hex}.cwasm"));
    // Sidecar first: an artifact without a matching sidecar is never loaded.
    write_atomic(
        &sidecar(&artifact),
        hex::encode(Sha256::digest(&bytes)).as_bytes(),
    )?;
    write_atomic(&artifact, &bytes)
}

/// A temp file this old is left over from a process killed while storing an artifact (a store
/// takes seconds); younger ones may belong to another lepton sharing the cache dir.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Remove `.tmp*` files older than `age` from `dir`: what a process killed mid-store left.
fn sweep_stale_temp_files(dir: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut removed = 0usize;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(".tmp") {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed >= age);
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed temp files of interrupted compiled-component stores");
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests;
