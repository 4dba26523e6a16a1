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
//! are only loaded from a directory owned by that user that nobody else can write; otherwise the
//! cache is bypassed and components are compiled from their verified Wasm.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::RuntimeError;
use crate::componentize::{self, WasmKind};

/// The on-disk compiled-component cache (or a pass-through when disabled), fronted by an
/// in-process table so a component shared by several apps or components is compiled or
/// deserialised once, and its code mapped once, however many use it.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    loaded: Arc<Mutex<HashMap<String, Slot>>>,
}

/// One component's place in the in-process table, filled by the first load.
type Slot = Arc<Mutex<Option<Component>>>;

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
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let key = format!("{:016x}", hasher.finish());
        let dir = root.join("compiled").join(key);
        sweep_stale_temp_files(&dir, STALE_TEMP_AGE);
        Self {
            dir: Some(dir),
            loaded: Arc::default(),
        }
    }

    /// No disk cache: each distinct component is compiled once per process.
    pub fn disabled() -> Self {
        Self {
            dir: None,
            loaded: Arc::default(),
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
    ) -> Result<(Component, CompileOutcome), RuntimeError> {
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
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(component) = slot.as_ref() {
            return Ok((component.clone(), CompileOutcome::Shared));
        }
        let (component, outcome) =
            self.load_from_disk_or_compile(engine, component_id, &hex, kind, wasm, read_wasm)?;
        *slot = Some(component.clone());
        Ok((component, outcome))
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
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled component"
        );
        if let Some(dir) = &self.dir
            && let Err(err) = store_artifact(dir, hex, &component)
        {
            tracing::warn!(component = component_id, error = %err, "could not cache compiled component");
        }
        Ok((component, CompileOutcome::Compiled))
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
        // SAFETY: the bytes were produced by `Component::serialize` on an engine with the same
        // compatibility hash (it is part of the directory name), written atomically by this cache
        // into a directory only this user can write, and match the checksum written beside them.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(component = component_id, error = %crate::chain(&err), "discarding unusable compiled artifact");
                let _ = std::fs::remove_file(artifact);
                None
            }
        }
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn sidecar(artifact: &Path) -> PathBuf {
    artifact.with_extension("cwasm.sha256")
}

/// Whether `dir` is owned by this process's user and not writable by group or others.
#[cfg(unix)]
fn is_private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    meta.uid() == uid && meta.mode() & 0o022 == 0
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
mod tests {
    use super::*;

    const WAT: &str = r#"(component (core module (func (export "f"))))"#;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).expect("engine")
    }

    #[test]
    fn compiles_once_then_loads_from_disk_and_survives_corruption() {
        let engine = engine();
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = wat_bytes();
        let wasm_path = dir.path().join("c.wasm");
        std::fs::write(&wasm_path, &wasm).expect("write wasm");
        let cache = CompileCache::new(dir.path(), &engine);

        let (_, first) = cache
            .load(&engine, "c", &wasm_path, None)
            .expect("first load");
        assert_eq!(first, CompileOutcome::Compiled);
        let (_, shared) = cache
            .load(&engine, "c", &wasm_path, None)
            .expect("shared load");
        assert_eq!(shared, CompileOutcome::Shared);
        // A new process (a fresh cache object) loads the artifact from disk.
        let cache = CompileCache::new(dir.path(), &engine);
        let (_, second) = cache
            .load(&engine, "c", &wasm_path, None)
            .expect("second load");
        assert_eq!(second, CompileOutcome::Cached);

        // Corrupt the artifact: it must be detected and recompiled, never deserialised.
        let hex = hex::encode(Sha256::digest(&wasm));
        let artifact = cache
            .dir
            .as_ref()
            .expect("dir")
            .join(format!("{hex}-{}.cwasm", componentize::rename_tag()));
        let mut bytes = std::fs::read(&artifact).expect("artifact");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&artifact, bytes).expect("corrupt");
        let cache = CompileCache::new(dir.path(), &engine);
        let (_, third) = cache
            .load(&engine, "c", &wasm_path, None)
            .expect("third load");
        assert_eq!(third, CompileOutcome::Compiled);
    }

    #[cfg(unix)]
    #[test]
    fn stale_temp_files_of_killed_stores_are_swept_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join(".tmpOLD123");
        let fresh = dir.path().join(".tmpNEW456");
        let artifact = dir.path().join("abc.cwasm");
        for f in [&old, &fresh, &artifact] {
            std::fs::write(f, b"partial").expect("write");
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for f in [&old, &artifact] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .and_then(|file| file.set_modified(hour_ago))
                .expect("set mtime");
        }
        sweep_stale_temp_files(dir.path(), STALE_TEMP_AGE);
        assert!(!old.exists(), "a stale temp file is removed");
        assert!(
            fresh.exists(),
            "a temp file another process may be writing is kept"
        );
        assert!(artifact.exists(), "artifacts are never swept");
    }

    #[test]
    fn a_cache_others_can_write_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let engine = engine();
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm_path = dir.path().join("c.wasm");
        std::fs::write(&wasm_path, wat_bytes()).expect("write wasm");
        let cache = CompileCache::new(dir.path(), &engine);
        cache
            .load(&engine, "c", &wasm_path, None)
            .expect("first load");
        let compiled = cache.dir.clone().expect("dir");
        let mode = std::fs::metadata(&compiled)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "created private");
        std::fs::set_permissions(&compiled, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let cache = CompileCache::new(dir.path(), &engine);
        let (_, outcome) = cache.load(&engine, "c", &wasm_path, None).expect("load");
        assert_eq!(
            outcome,
            CompileOutcome::Compiled,
            "a world-writable cache must not be loaded from"
        );
    }

    #[test]
    fn core_modules_are_componentized_once_under_a_tagged_key() {
        let engine = engine();
        let dir = tempfile::tempdir().expect("tempdir");
        let module =
            wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
                .expect("wat");
        let wasm_path = dir.path().join("m.wasm");
        std::fs::write(&wasm_path, &module).expect("write wasm");
        let hex = hex::encode(Sha256::digest(&module));
        let digest = format!("sha256:{hex}");

        let cache = CompileCache::new(dir.path(), &engine);
        let (_, first) = cache
            .load(&engine, "m", &wasm_path, Some(&digest))
            .expect("first load");
        assert_eq!(first, CompileOutcome::Compiled);
        let artifact = cache
            .dir
            .clone()
            .expect("dir")
            .join(format!("{hex}-{}.cwasm", componentize::componentize_tag()));
        assert!(artifact.is_file(), "{} exists", artifact.display());
        let cache = CompileCache::new(dir.path(), &engine);
        let (component, second) = cache
            .load(&engine, "m", &wasm_path, Some(&digest))
            .expect("second load");
        assert_eq!(second, CompileOutcome::Cached);
        assert!(
            component
                .component_type()
                .exports(&engine)
                .any(|(name, _)| name.starts_with("wasi:cli/run@0.2")),
            "the cached artifact is the componentized command"
        );
    }

    #[test]
    fn missing_wasm_names_the_component_and_path() {
        let engine = engine();
        let err = CompileCache::disabled()
            .load(&engine, "web", Path::new("/nonexistent/x.wasm"), None)
            .expect_err("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("`web`") && msg.contains("/nonexistent/x.wasm"),
            "{msg}"
        );
    }

    fn wat_bytes() -> Vec<u8> {
        wat::parse_str(WAT).expect("parse wat")
    }
}
