//! Unit tests of the compiled-component cache.
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

    let first = cache
        .load(&engine, "c", &wasm_path, None)
        .expect("first load");
    assert_eq!(first.outcome, CompileOutcome::Compiled);
    let shared = cache
        .load(&engine, "c", &wasm_path, None)
        .expect("shared load");
    assert_eq!(shared.outcome, CompileOutcome::Shared);
    // A new process (a fresh cache object) loads the artifact from disk.
    let cache = CompileCache::new(dir.path(), &engine);
    let second = cache
        .load(&engine, "c", &wasm_path, None)
        .expect("second load");
    assert_eq!(second.outcome, CompileOutcome::Cached);

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
    let third = cache
        .load(&engine, "c", &wasm_path, None)
        .expect("third load");
    assert_eq!(third.outcome, CompileOutcome::Compiled);
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
    let outcome = cache
        .load(&engine, "c", &wasm_path, None)
        .expect("load")
        .outcome;
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
    let first = cache
        .load(&engine, "m", &wasm_path, Some(&digest))
        .expect("first load");
    assert_eq!(first.outcome, CompileOutcome::Compiled);
    let artifact = cache
        .dir
        .clone()
        .expect("dir")
        .join(format!("{hex}-{}.cwasm", componentize::componentize_tag()));
    assert!(artifact.is_file(), "{} exists", artifact.display());
    let cache = CompileCache::new(dir.path(), &engine);
    let loaded = cache
        .load(&engine, "m", &wasm_path, Some(&digest))
        .expect("second load");
    assert_eq!(loaded.outcome, CompileOutcome::Cached);
    assert!(
        loaded
            .component
            .component_type()
            .exports(&engine)
            .any(|(name, _)| name.starts_with("wasi:cli/run@0.2")),
        "the cached artifact is the componentized command"
    );
}

#[test]
fn a_component_is_shared_while_held_and_leaves_the_table_with_its_last_holder() {
    let engine = engine();
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm_path = dir.path().join("c.wasm");
    std::fs::write(&wasm_path, wat_bytes()).expect("write wasm");
    let cache = CompileCache::new(dir.path(), &engine);
    let first = cache.load(&engine, "c", &wasm_path, None).expect("load");
    let second = cache.load(&engine, "c", &wasm_path, None).expect("load");
    assert_eq!(second.outcome, CompileOutcome::Shared);
    assert_eq!(cache.loaded_count(), 1);
    drop(first);
    assert_eq!(cache.loaded_count(), 1, "still held by the second user");
    drop(second);
    assert_eq!(cache.loaded_count(), 0, "gone with its last holder");
    // Back from disk (its checksum remembered), not compiled again.
    let third = cache.load(&engine, "c", &wasm_path, None).expect("load");
    assert_eq!(third.outcome, CompileOutcome::Cached);
}

#[tokio::test]
async fn async_loads_compile_through_the_gate_once() {
    let engine = engine();
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm_path = dir.path().join("c.wasm");
    std::fs::write(&wasm_path, wat_bytes()).expect("write wasm");
    let cache = CompileCache::new(dir.path(), &engine);
    let (a, b) = tokio::join!(
        cache.load_async(&engine, "a", &wasm_path, None),
        cache.load_async(&engine, "b", &wasm_path, None)
    );
    let mut outcomes = [a.expect("a").outcome, b.expect("b").outcome];
    outcomes.sort_by_key(|o| *o as u8);
    assert_eq!(
        outcomes,
        [CompileOutcome::Shared, CompileOutcome::Compiled],
        "one compiles, the other shares it"
    );
}

#[cfg(unix)]
#[test]
fn a_cache_writable_by_the_processs_own_group_is_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let engine = engine();
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm_path = dir.path().join("c.wasm");
    std::fs::write(&wasm_path, wat_bytes()).expect("write wasm");
    let cache = CompileCache::new(dir.path(), &engine);
    drop(
        cache
            .load(&engine, "c", &wasm_path, None)
            .expect("first load"),
    );
    let compiled = cache.dir.clone().expect("dir");
    // What kubelet does to a volume with an fsGroup: group-writable, setgid, our own group.
    std::fs::set_permissions(&compiled, std::fs::Permissions::from_mode(0o2770)).expect("chmod");
    let cache = CompileCache::new(dir.path(), &engine);
    let outcome = cache
        .load(&engine, "c", &wasm_path, None)
        .expect("load")
        .outcome;
    assert_eq!(outcome, CompileOutcome::Cached);
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

/// The optimized engine, a Winch engine, and a directory holding one component (`c.wasm`).
fn tiers() -> (Engine, Engine, tempfile::TempDir, std::path::PathBuf) {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .strategy(wasmtime::Strategy::Winch);
    let quick = Engine::new(&config).expect("winch engine");
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm_path = dir.path().join("c.wasm");
    std::fs::write(&wasm_path, wat_bytes()).expect("write wasm");
    (engine(), quick, dir, wasm_path)
}

#[tokio::test]
async fn a_quick_tier_serves_winch_code_first_then_cranelift_code_from_disk() {
    let (engine, quick, dir, wasm_path) = tiers();
    let cache = CompileCache::new(dir.path(), &engine).with_quick_tier(&quick);
    assert!(cache.quick_tier());

    // Two loads at once: both get Winch's code, and one background compile serves both.
    let (a, b) = tokio::join!(
        cache.load_async(&engine, "c", &wasm_path, None),
        cache.load_async(&engine, "c", &wasm_path, None),
    );
    let (a, b) = (a.expect("first load"), b.expect("second load"));
    assert!(Engine::same(a.component.engine(), &quick));
    assert!(Engine::same(b.component.engine(), &quick));
    let (wait_a, wait_b) = (a.optimized.clone(), b.optimized.clone());
    let (ready_a, ready_b) = tokio::join!(
        wait_a.expect("a waits for optimized code").ready(),
        wait_b.expect("b waits for optimized code").ready(),
    );
    assert!(ready_a && ready_b);
    let artifacts = std::fs::read_dir(cache.dir.as_ref().expect("dir"))
        .expect("compiled dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert_eq!(artifacts, 1, "Cranelift's artifact is on disk");
    // Winch's artifact, stored beside it under its engine's key, is removed once it is.
    let compiled = cache
        .dir
        .as_ref()
        .and_then(|d| d.parent())
        .expect("compiled dir");
    let quick_artifacts = || {
        std::fs::read_dir(compiled.join(engine_key(&quick)))
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    for _ in 0..500 {
        if quick_artifacts() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        quick_artifacts(),
        0,
        "Winch's artifact and sidecar are gone"
    );

    // The next load (the app's reload) maps Cranelift's code and waits for nothing.
    let again = cache
        .load_async(&engine, "c", &wasm_path, None)
        .await
        .expect("reload");
    assert!(Engine::same(again.component.engine(), &engine));
    assert!(again.optimized.is_none());
    assert_eq!(again.outcome, CompileOutcome::Cached);
}

#[tokio::test]
async fn a_disabled_cache_has_no_quick_tier() {
    let engine = engine();
    let cache = CompileCache::disabled().with_quick_tier(&engine);
    assert!(!cache.quick_tier());
}

#[tokio::test]
async fn without_its_quick_tier_a_cache_compiles_with_cranelift_first() {
    let (engine, quick, dir, wasm_path) = tiers();
    let tiered = CompileCache::new(dir.path(), &engine).with_quick_tier(&quick);
    let cache = tiered.without_quick_tier();
    assert!(tiered.quick_tier() && !cache.quick_tier());

    let compiled = cache
        .load_async(&engine, "c", &wasm_path, None)
        .await
        .expect("load");
    assert!(Engine::same(compiled.component.engine(), &engine));
    assert!(compiled.optimized.is_none(), "nothing to wait for");
    assert_eq!(compiled.outcome, CompileOutcome::Compiled);
    // Nothing was compiled by Winch; the tiered cache shares the artifact and the table.
    let quick_dir = dir.path().join("compiled").join(engine_key(&quick));
    assert!(std::fs::read_dir(&quick_dir).map_or(true, |d| d.count() == 0));
    let shared = tiered
        .load_async(&engine, "c", &wasm_path, None)
        .await
        .expect("tiered load");
    assert!(Engine::same(shared.component.engine(), &engine));
    assert!(shared.optimized.is_none());
    assert_eq!(tiered.loaded_count(), 1);
}
