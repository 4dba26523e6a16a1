//! Garbage collection of compiled artifacts, safe while other processes share the cache.
//!
//! As for the pulled artifacts (`lepton_oci::gc`), liveness is an artifact's modification
//! time: loading an artifact touches it, and [`CompileCache::keep_alive`] touches the artifacts
//! of every component a process's apps use, loaded or not. [`CompileCache::collect`] removes the
//! artifacts (`<hex>-<tag>.cwasm` and their `.sha256` sidecars) of components this process does
//! not use that nobody has touched for the grace period, in every engine key's directory (an
//! older lepton's or another engine configuration's artifacts age out the same way), and engine
//! directories left empty.
//!
//! Removing an artifact is always safe for the processes sharing the cache: one that has it
//! mapped keeps its pages (the inode lives on), and one that looks for it later compiles the
//! component again. The artifact goes before its sidecar (an artifact without its sidecar is
//! never loaded), and temp files (`.tmp*`) are left to the sweep at start.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::{CompileCache, touch};

/// What a [`CompileCache::collect`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompiledGcReport {
    /// Compiled artifacts (with their sidecars), and sidecars left without an artifact.
    pub artifacts: u64,
    /// Bytes freed.
    pub bytes: u64,
}

impl CompileCache {
    /// Touches the artifacts (and sidecars) of the components whose Wasm has one of these
    /// sha256 hex digests, in this engine's directory: they count as used now for every
    /// process's [`CompileCache::collect`]. Best effort; a no-op for a disabled cache.
    pub fn keep_alive(&self, keep_wasm_hex: &HashSet<String>) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if let Some(artifact) = name.to_str().and_then(Artifact::parse)
                && keep_wasm_hex.contains(artifact.hex)
            {
                touch(&entry.path());
            }
        }
    }

    /// Removes the artifacts of components not in `keep_wasm_hex` (sha256 hex digests of their
    /// Wasm) that were last used more than `grace` ago; see the module docs. A no-op for a
    /// disabled cache. Call it from a blocking thread.
    pub fn collect(&self, keep_wasm_hex: &HashSet<String>, grace: Duration) -> CompiledGcReport {
        let Some(own) = &self.dir else {
            return CompiledGcReport::default();
        };
        match own.parent() {
            Some(compiled) => collect_in(compiled, Some(own), keep_wasm_hex, grace),
            None => CompiledGcReport::default(),
        }
    }
}

/// [`CompileCache::collect`] without an engine: every artifact under `<cache_root>/compiled/`
/// not in `keep_wasm_hex` and unused for `grace` (what `lepton cache gc` runs).
pub fn collect_compiled(
    cache_root: &Path,
    keep_wasm_hex: &HashSet<String>,
    grace: Duration,
) -> CompiledGcReport {
    collect_in(&cache_root.join("compiled"), None, keep_wasm_hex, grace)
}

/// An artifact or sidecar file name: `<64 hex>-<tag>.cwasm[.sha256]`.
struct Artifact<'a> {
    hex: &'a str,
    sidecar: bool,
}

impl<'a> Artifact<'a> {
    fn parse(name: &'a str) -> Option<Self> {
        let (stem, sidecar) = match name.strip_suffix(".cwasm.sha256") {
            Some(stem) => (stem, true),
            None => (name.strip_suffix(".cwasm")?, false),
        };
        let (hex, _tag) = stem.split_once('-')?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(Artifact { hex, sidecar })
    }
}

fn collect_in(
    compiled: &Path,
    own: Option<&Path>,
    keep: &HashSet<String>,
    grace: Duration,
) -> CompiledGcReport {
    let mut report = CompiledGcReport::default();
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let old = |path: &Path| {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff)
    };
    let Ok(engines) = std::fs::read_dir(compiled) else {
        return report;
    };
    for engine in engines.filter_map(Result::ok) {
        // Real directories only: never follow a link out of the cache.
        if !engine.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = engine.path();
        // Judged before its artifacts go (removing them makes the directory look fresh).
        let dir_old = old(&dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let (name, path) = (entry.file_name(), entry.path());
            let Some(artifact) = name.to_str().and_then(Artifact::parse) else {
                continue;
            };
            if keep.contains(artifact.hex) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            // An artifact goes with its sidecar; a sidecar alone (its artifact gone, or being
            // stored by another process right now) goes once it is old itself.
            if (artifact.sidecar && path.with_extension("").exists()) || !old(&path) {
                continue;
            }
            let bytes = entry.metadata().map_or(0, |m| m.len());
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %err, "compiled cache gc: cannot remove");
                continue;
            }
            report.artifacts += 1;
            report.bytes += bytes;
            if !artifact.sidecar {
                let sidecar = path.with_extension("cwasm.sha256");
                let sidecar_bytes = std::fs::metadata(&sidecar).map_or(0, |m| m.len());
                if std::fs::remove_file(&sidecar).is_ok() {
                    report.bytes += sidecar_bytes;
                }
            }
            tracing::debug!(path = %path.display(), "compiled cache gc: removed an unused artifact");
        }
        // Another engine's directory, emptied and unused: gone (fails unless empty).
        if own != Some(dir.as_path()) && dir_old {
            let _ = std::fs::remove_dir(&dir);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn hex(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// An artifact and its sidecar for `hex` in `dir`, last used `age` ago.
    fn artifact(dir: &Path, hex: &str, age: Duration) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{hex}-c1.cwasm"));
        std::fs::write(&path, b"machine code").unwrap();
        std::fs::write(path.with_extension("cwasm.sha256"), b"checksum").unwrap();
        for p in [path.clone(), path.with_extension("cwasm.sha256")] {
            set_age(&p, age);
        }
        path
    }

    fn set_age(path: &Path, age: Duration) {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    fn mtime(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    fn cache(root: &Path) -> CompileCache {
        let engine = wasmtime::Engine::default();
        CompileCache::new(root, &engine)
    }

    #[test]
    fn unused_old_artifacts_go_kept_and_recent_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path());
        let own = cache.dir.clone().unwrap();
        let kept = artifact(&own, &hex(1), 2 * DAY);
        let recent = artifact(&own, &hex(2), Duration::from_secs(60));
        let unused = artifact(&own, &hex(3), 2 * DAY);
        // A sidecar whose artifact is gone, and a temp file of a killed store: both old.
        let lone = own.join(format!("{}-c1.cwasm.sha256", hex(4)));
        std::fs::write(&lone, b"checksum").unwrap();
        set_age(&lone, 2 * DAY);
        let temp = own.join(".tmpAbC123");
        std::fs::write(&temp, b"half").unwrap();
        set_age(&temp, 2 * DAY);
        // Another engine configuration's artifacts age out alike, and its emptied dir goes.
        let other_dir = tmp.path().join("compiled/0123456789abcdef");
        let other = artifact(&other_dir, &hex(1), 2 * DAY);
        set_age(&other_dir, 2 * DAY);
        let other_unused_dir = tmp.path().join("compiled/fedcba9876543210");
        let other_unused = artifact(&other_unused_dir, &hex(5), 2 * DAY);
        set_age(&other_unused_dir, 2 * DAY);

        let keep = HashSet::from([hex(1)]);
        let report = cache.collect(&keep, DAY);

        for path in [&kept, &recent, &other, &temp] {
            assert!(path.exists(), "{} was removed", path.display());
            assert!(
                path == &temp || path.with_extension("cwasm.sha256").exists(),
                "{}'s sidecar was removed",
                path.display()
            );
        }
        for path in [&unused, &other_unused, &lone] {
            assert!(!path.exists(), "{} was kept", path.display());
        }
        assert!(!unused.with_extension("cwasm.sha256").exists());
        assert!(!other_unused_dir.exists());
        assert!(other_dir.is_dir() && own.is_dir());
        assert_eq!(report.artifacts, 3, "{report:?}");
        let freed = 2 * ("machine code".len() + "checksum".len()) + "checksum".len();
        assert_eq!(report.bytes, freed as u64, "{report:?}");

        // Without a keep list (`lepton cache gc`), the kept one goes too, once old.
        let report = collect_compiled(tmp.path(), &HashSet::new(), DAY);
        assert_eq!(report.artifacts, 2, "{report:?}");
        assert!(recent.exists() && !kept.exists() && !other.exists());
    }

    #[test]
    fn keep_alive_touches_only_the_kept_components_artifacts() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path());
        let own = cache.dir.clone().unwrap();
        let kept = artifact(&own, &hex(1), 2 * DAY);
        let idle = artifact(&own, &hex(2), 2 * DAY);
        let before = SystemTime::now() - DAY;

        cache.keep_alive(&HashSet::from([hex(1)]));

        assert!(mtime(&kept) > before && mtime(&kept.with_extension("cwasm.sha256")) > before);
        assert!(mtime(&idle) < before);
        // Another process, using nothing, collects the idle one only.
        let report = collect_compiled(tmp.path(), &HashSet::new(), DAY);
        assert_eq!(report.artifacts, 1, "{report:?}");
        assert!(kept.exists() && !idle.exists());
        assert_eq!(
            CompileCache::disabled().collect(&HashSet::new(), Duration::ZERO),
            CompiledGcReport::default()
        );
    }

    #[test]
    fn names_that_are_not_artifacts_are_left_alone() {
        assert!(Artifact::parse(&format!("{}-c1.cwasm", hex(1))).is_some_and(|a| !a.sidecar));
        assert!(Artifact::parse(&format!("{}-c1.cwasm.sha256", hex(1))).is_some_and(|a| a.sidecar));
        for name in [
            "notes.txt",
            ".tmpXyZ.cwasm",
            "abc-c1.cwasm",
            &format!("{}.cwasm", hex(1)),
        ] {
            assert!(Artifact::parse(name).is_none(), "{name}");
        }
    }
}
