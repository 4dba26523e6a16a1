//! Unit tests of the cache's garbage collection, on real cache dirs built by the real write,
//! read and resolve paths.

use super::*;
use crate::cache::{BlobKind, write_atomic};
use crate::digest::sha256_digest;
use crate::loader::LoadSource;
use crate::media::{DATA_MEDIA_TYPE, SPIN_APPLICATION_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};

const DAY: Duration = Duration::from_secs(86_400);

/// One app in the cache, as a pull leaves it, and loaded.
struct Cached {
    dir: PathBuf,
    wasm: PathBuf,
    file: PathBuf,
    assets: PathBuf,
    loaded: LoadedApp,
}

/// Writes `reference` into the cache as a pull would (a Wasm layer, a data layer mounted as a
/// file, the locked app, the manifest, the commit marker), then loads it with the real offline
/// read and resolve (which materializes its assets dir).
fn cache_app(cache: &OciCache, reference: &str, wasm: &[u8], file: &[u8]) -> Cached {
    let (wasm_digest, file_digest) = (sha256_digest(wasm), sha256_digest(file));
    let wasm_path = cache.blob_path(BlobKind::Wasm, &wasm_digest).unwrap();
    let file_path = cache.blob_path(BlobKind::Data, &file_digest).unwrap();
    write_atomic(&wasm_path, wasm).unwrap();
    write_atomic(&file_path, file).unwrap();
    let locked = serde_json::to_vec(&serde_json::json!({
        "spin_lock_version": 1,
        "triggers": [],
        "components": [{
            "id": "web",
            "source": { "content_type": "application/wasm", "digest": wasm_digest },
            "files": [{ "digest": file_digest, "path": "index.html" }],
        }],
    }))
    .unwrap();
    let layer = |media: &str, bytes: &[u8]| serde_json::json!({ "mediaType": media, "digest": sha256_digest(bytes), "size": bytes.len() });
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": layer("application/vnd.oci.image.config.v1+json", b"{}"),
        "layers": [
            layer(SPIN_APPLICATION_MEDIA_TYPE, &locked),
            layer(WASM_LAYER_MEDIA_TYPE, wasm),
            layer(DATA_MEDIA_TYPE, file),
        ],
    }))
    .unwrap();
    let parsed = crate::parse_reference(reference).unwrap();
    let dir = cache.manifest_dir(&parsed);
    write_atomic(&dir.join(LOCKED_FILE), &locked).unwrap();
    write_atomic(&dir.join(MANIFEST_FILE), &manifest).unwrap();
    write_atomic(&dir.join(DIGEST_FILE), sha256_digest(&manifest).as_bytes()).unwrap();

    let Ok(fetched) = crate::pull::read_cached(cache, &parsed) else {
        panic!("{reference} reads back from the cache");
    };
    let locked = crate::resolve::runnable(cache, &parsed.whole(), &fetched).unwrap();
    let assets = cache.assets_dir(&fetched.locked_digest).unwrap();
    assert!(assets.join("web/index.html").is_file());
    Cached {
        dir,
        wasm: wasm_path,
        file: file_path,
        assets,
        loaded: LoadedApp {
            reference: parsed.whole(),
            manifest_digest: fetched.manifest_digest,
            locked,
            source: LoadSource::CacheOnly,
        },
    }
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// Makes everything under `dir` look last used `by` ago.
fn age_all(dir: &Path, by: Duration) {
    let then = SystemTime::now() - by;
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        if entry.file_type().unwrap().is_dir() {
            age_all(&entry.path(), by);
        }
        set_mtime(&entry.path(), then);
    }
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

fn keep(references: &[&str]) -> Keep {
    let mut keep = Keep::new();
    for r in references {
        keep.reference(r).unwrap();
    }
    keep
}

#[test]
fn unreferenced_old_entries_go_referenced_and_recent_ones_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = OciCache::new(tmp.path().to_path_buf());
    let used = cache_app(&cache, "reg:5000/team/used:v1", b"wasm used", b"page used");
    // Shares its Wasm with `used`: that blob must stay.
    let gone = cache_app(&cache, "reg:5000/team/gone:v1", b"wasm used", b"page gone");
    let other = cache_app(&cache, "reg:5000/other:v1", b"wasm other", b"page other");
    age_all(tmp.path(), 2 * DAY);
    // Used recently (by another process, say): young, so it stays though unreferenced here.
    let young = cache_app(&cache, "reg:5000/young:v1", b"wasm young", b"page young");
    // What killed writers leave belongs to the temp sweeper, however old.
    let temp = tmp.path().join("registry/wasm/.tmp-Abc123");
    std::fs::write(&temp, b"half").unwrap();
    set_mtime(&temp, SystemTime::now() - 2 * DAY);

    let report = cache
        .collect(&keep(&["reg:5000/team/used:v1"]), DAY)
        .unwrap();

    for kept in [&used.dir, &used.wasm, &used.file, &used.assets, &temp] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    for kept in [&young.dir, &young.wasm, &young.file, &young.assets] {
        assert!(kept.exists(), "{} (recent) was removed", kept.display());
    }
    for removed in [
        &gone.dir,
        &gone.file,
        &gone.assets,
        &other.wasm,
        &other.file,
    ] {
        assert!(!removed.exists(), "{} was kept", removed.display());
    }
    assert!(!other.assets.exists() && !other.dir.exists());
    // The emptied repository dir goes too; the registry dir still holds `team/used`.
    assert!(
        !tmp.path()
            .join("registry/manifests/reg:5000/other")
            .exists()
    );
    assert!(used.dir.join(DIGEST_FILE).is_file());
    assert_eq!(
        (report.manifests, report.blobs, report.assets, report.busy),
        (2, 3, 2, false),
        "{report:?}"
    );
    let removed_bytes = "page gone".len() + "wasm other".len() + "page other".len();
    assert!(report.bytes > removed_bytes as u64, "{report:?}");
    // What remains still loads.
    let parsed = crate::parse_reference("reg:5000/team/used:v1").unwrap();
    assert!(crate::pull::read_cached(&cache, &parsed).is_ok());

    // Nothing referenced and a zero grace: everything goes but the temp file.
    let report = cache.collect(&Keep::new(), Duration::ZERO).unwrap();
    assert_eq!(report.removed(), 2 + 4 + 2, "{report:?}");
    assert!(temp.exists());
    assert!(!tmp.path().join("registry/manifests/reg:5000").exists());
}

#[test]
fn keep_alive_refreshes_only_what_is_referenced() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = OciCache::new(tmp.path().to_path_buf());
    let used = cache_app(&cache, "reg:5000/used:v1", b"wasm used", b"page used");
    let idle = cache_app(&cache, "reg:5000/idle:v1", b"wasm idle", b"page idle");
    age_all(tmp.path(), 2 * DAY);
    let old = SystemTime::now() - DAY;

    let wasm = cache.keep_alive(&keep(&["reg:5000/used:v1"]));

    let wasm_hex = sha256_digest(b"wasm used")["sha256:".len()..].to_string();
    assert_eq!(wasm, HashSet::from([wasm_hex]));
    let touched = [
        used.dir.join(DIGEST_FILE),
        used.dir.join(MANIFEST_FILE),
        used.dir.join(LOCKED_FILE),
        used.wasm.clone(),
        used.file.clone(),
        used.assets.clone(),
    ];
    for path in &touched {
        assert!(mtime(path) > old, "{} was not touched", path.display());
    }
    for path in [
        &idle.dir.join(DIGEST_FILE),
        &idle.wasm,
        &idle.file,
        &idle.assets,
    ] {
        assert!(mtime(path) < old, "{} was touched", path.display());
    }
    // Another process (no references of its own) collecting now keeps what was kept alive.
    let report = OciCache::new(tmp.path().to_path_buf())
        .collect(&Keep::new(), DAY)
        .unwrap();
    assert_eq!(report.removed(), 4, "{report:?}");
    assert!(touched.iter().all(|p| p.exists()));
    assert!(!idle.assets.exists() && !idle.wasm.exists());
}

#[test]
fn a_loaded_app_keeps_what_it_runs_from_after_its_tag_moved() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = OciCache::new(tmp.path().to_path_buf());
    let running = cache_app(&cache, "reg:5000/app:live", b"wasm v1", b"page v1");
    // Another process pulls the tag again: it now records v2, and v1's manifest is gone.
    let newer = cache_app(&cache, "reg:5000/app:live", b"wasm v2", b"page v2");
    assert_eq!(running.dir, newer.dir);
    age_all(tmp.path(), 2 * DAY);

    let mut kept = keep(&["reg:5000/app:live"]);
    kept.loaded(&running.loaded);
    let report = cache.collect(&kept, DAY).unwrap();

    // The loaded v1 loads again after an eviction from its Wasm and assets.
    for path in [
        &running.wasm,
        &running.assets,
        &newer.wasm,
        &newer.file,
        &newer.assets,
    ] {
        assert!(path.exists(), "{} was removed", path.display());
    }
    // v1's data blob was only needed to build its assets dir.
    assert!(!running.file.exists());
    assert_eq!(report.removed(), 1, "{report:?}");
}

#[test]
fn pinned_references_keep_the_dir_recording_their_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = OciCache::new(tmp.path().to_path_buf());
    let tagged = cache_app(&cache, "reg:5000/app:v1", b"wasm v1", b"page v1");
    let pinned = format!("reg:5000/app@{}", tagged.loaded.manifest_digest);
    let by_digest = cache_app(&cache, &pinned, b"wasm v1", b"page v1");
    assert_ne!(tagged.dir, by_digest.dir);
    age_all(tmp.path(), 2 * DAY);

    let report = cache.collect(&keep(&[&pinned]), DAY).unwrap();

    // Both dirs record the pinned digest; either may serve it.
    assert!(tagged.dir.exists() && by_digest.dir.exists());
    assert!(tagged.wasm.exists() && tagged.file.exists() && tagged.assets.exists());
    assert_eq!(report.removed(), 0, "{report:?}");
}

#[test]
fn a_load_holding_the_cache_makes_the_collection_skip() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = OciCache::new(tmp.path().to_path_buf());
    let app = cache_app(&cache, "reg:5000/app:v1", b"wasm", b"page");
    age_all(tmp.path(), 2 * DAY);

    // A load under way, as another process would hold it (another handle on the lock file).
    let (hold, _) = OciCache::new(tmp.path().to_path_buf()).hold(false);
    let report = cache.collect(&Keep::new(), DAY).unwrap();
    assert!(report.busy, "{report:?}");
    assert_eq!(report.removed(), 0);
    assert!(app.dir.exists() && app.wasm.exists() && app.assets.exists());

    drop(hold);
    let report = cache.collect(&Keep::new(), DAY).unwrap();
    assert!(!report.busy && report.removed() == 4, "{report:?}");
    // The lock is released after a collection: loads go on.
    let (_hold, swept) = cache.hold(true);
    assert!(swept);
}

#[test]
fn an_empty_cache_collects_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = OciCache::new(tmp.path().join("never-used"));
    assert_eq!(
        cache.collect(&Keep::new(), DAY).unwrap(),
        GcReport::default()
    );
    assert!(cache.keep_alive(&Keep::new()).is_empty());
    assert!(!tmp.path().join("never-used").exists());
}
