//! The cron trigger running the real guest `apps/cron-rs` (built from source, exporting the
//! spin-trigger-cron plugin's `handle-cron-event`) on its every-second schedule, through a live
//! swap. The guest prints `<tag> start <timestamp>` / `<tag> end <timestamp>` per run to its
//! stdout log, which is what this test reads.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use lepton_runtime::{
    AppConfig, AppLimits, CompileCache, RuntimeApp, RuntimeEngine, RuntimeEngineConfig,
};
use lepton_trigger::{Trigger, TriggerContext};
use lepton_trigger_cron::{CronTrigger, CronVersion};

/// A bound on waiting for ticks due within seconds (a failure, not a measurement).
const PATIENCE: Duration = Duration::from_secs(30);

fn engine() -> &'static RuntimeEngine {
    static ENGINE: OnceLock<RuntimeEngine> = OnceLock::new();
    ENGINE.get_or_init(|| RuntimeEngine::new(&RuntimeEngineConfig::default()).expect("engine"))
}

fn cache() -> &'static CompileCache {
    static CACHE: OnceLock<CompileCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lepton-trigger-cron");
        CompileCache::new(&root, engine().engine())
    })
}

/// A version of `apps/cron-rs` tagged `tag`; its runtime must outlive its trigger version.
async fn version(state: &Path, tag: &str) -> (RuntimeApp, CronVersion) {
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps");
    let built = apps.join("target/wasm32-wasip2/release/cron_rs.wasm");
    assert!(
        built.exists(),
        "{} is missing: run scripts/build-apps.sh (scripts/test.sh does) before cargo test",
        built.display()
    );
    let locked =
        lepton_app::manifest::load_manifest(&apps.join("cron-rs/spin.toml")).expect("manifest");
    let config = AppConfig {
        name: "ticks".into(),
        state_dir: state.to_path_buf(),
        variables: [("tag".to_string(), tag.to_string())].into(),
        runtime_config: None,
        listen_address: None,
        self_host: None,
        limits: AppLimits::default(),
    };
    let runtime = RuntimeApp::prepare(engine(), cache(), &locked, &config)
        .await
        .expect("prepare");
    let cron = CronTrigger::prepare(&TriggerContext {
        app: "ticks",
        locked: &locked,
        runtime: &runtime,
    })
    .expect("cron trigger");
    (runtime, cron)
}

/// The guest's stdout lines as `(tag, event, timestamp)`.
fn runs(state: &Path) -> Vec<(String, String, u64)> {
    let text = std::fs::read_to_string(state.join("logs/ticker_stdout.txt")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let tag = parts.next()?.to_string();
            let event = parts.next()?.to_string();
            let timestamp = parts.next()?.parse().ok()?;
            Some((tag, event, timestamp))
        })
        .collect()
}

async fn until_ends(state: &Path, tag: &str, count: usize) {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    loop {
        let runs = runs(state);
        if runs
            .iter()
            .filter(|(t, e, _)| t == tag && e == "end")
            .count()
            >= count
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{tag} never ended {count} runs: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_real_guest_runs_every_second_and_a_swap_neither_repeats_nor_overlaps_a_tick() {
    let state = tempfile::tempdir().expect("state");
    let (_a_runtime, a) = version(state.path(), "a").await;
    let trigger = CronTrigger::start("ticks", a).await;
    assert_eq!(trigger.schedules().len(), 1);
    until_ends(state.path(), "a", 2).await;

    let (_b_runtime, b) = version(state.path(), "b").await;
    let retired = trigger.swap(b).await;
    tokio::time::timeout(PATIENCE, retired.drained())
        .await
        .expect("the old version drains");
    until_ends(state.path(), "b", 1).await;
    let retired = trigger.stop().await;
    tokio::time::timeout(PATIENCE, retired.drained())
        .await
        .expect("drained");
    assert!(trigger.schedules().is_empty());

    let runs = runs(state.path());
    // Runs never overlap: every start is followed by its own end.
    let starts: Vec<&(String, String, u64)> =
        runs.iter().filter(|(_, e, _)| e == "start").collect();
    for pair in runs.chunks(2) {
        assert!(
            matches!(pair, [(t1, s, ts1), (t2, e, ts2)] if s == "start" && e == "end" && t1 == t2 && ts1 == ts2),
            "{runs:?}"
        );
    }
    // Each tick once, on whole seconds, in order; the old version's before the new one's.
    let ticks: Vec<u64> = starts.iter().map(|(_, _, ts)| *ts).collect();
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{runs:?}");
    let tags: Vec<&str> = starts.iter().map(|(t, _, _)| t.as_str()).collect();
    let switch = tags.iter().position(|t| *t == "b").expect("b ran");
    assert!(
        switch >= 2 && tags[switch..].iter().all(|t| *t == "b"),
        "{tags:?}"
    );
    // Ticks are Unix seconds of the recent past.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        ticks.iter().all(|t| *t <= now && now - *t < 60),
        "{ticks:?}"
    );
}
