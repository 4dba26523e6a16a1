//! The Redis trigger against a real `redis-server` (Debian's, from lepton-testkit), driving the
//! real guest apps built from source: `apps/redis-rs` (spin-sdk 5.2, `fermyon:spin/inbound-redis`)
//! and `apps/redis-p3` (spin-sdk 7, `spin:redis/inbound-redis@3.0.0`). Each guest `RPUSH`es
//! `<tag>:<payload>` to a list, which is what these tests read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use lepton_app::LockedApp;
use lepton_runtime::{
    AppConfig, AppLimits, CompileCache, RuntimeApp, RuntimeEngine, RuntimeEngineConfig,
};
use lepton_testkit::TestRedis;
use lepton_trigger::{Trigger, TriggerContext};
use lepton_trigger_redis::{RedisTrigger, RedisVersion};

/// A bound on waiting for something that should happen in milliseconds (a failure, not a
/// measurement).
const PATIENCE: Duration = Duration::from_secs(30);

fn engine() -> &'static RuntimeEngine {
    static ENGINE: OnceLock<RuntimeEngine> = OnceLock::new();
    ENGINE.get_or_init(|| RuntimeEngine::new(&RuntimeEngineConfig::default()).expect("engine"))
}

fn cache() -> &'static CompileCache {
    static CACHE: OnceLock<CompileCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lepton-trigger-redis");
        CompileCache::new(&root, engine().engine())
    })
}

/// `apps/<app>/spin.toml`, after checking its Wasm was built.
fn manifest(app: &str, wasm: &str) -> PathBuf {
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps");
    let built = apps.join("target/wasm32-wasip2/release").join(wasm);
    assert!(
        built.exists(),
        "{} is missing: run scripts/build-apps.sh (scripts/test.sh does) before cargo test",
        built.display()
    );
    apps.join(app).join("spin.toml")
}

/// One version of an app: its lock and its prepared components.
struct Version {
    locked: LockedApp,
    runtime: RuntimeApp,
}

impl Version {
    async fn load(
        app: &str,
        wasm: &str,
        state: &Path,
        variables: &[(&str, &str)],
        limits: AppLimits,
    ) -> Version {
        let locked = lepton_app::manifest::load_manifest(&manifest(app, wasm)).expect("manifest");
        let config = AppConfig {
            name: "shop".into(),
            state_dir: state.to_path_buf(),
            variables: variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            runtime_config: None,
            listen_address: None,
            self_host: None,
            limits,
        };
        let runtime = RuntimeApp::prepare(engine(), cache(), &locked, &config)
            .await
            .expect("prepare");
        Version { locked, runtime }
    }

    fn trigger(&self) -> RedisVersion {
        RedisTrigger::prepare(&TriggerContext {
            app: "shop",
            locked: &self.locked,
            runtime: &self.runtime,
        })
        .expect("redis trigger")
    }
}

async fn connection(redis: &TestRedis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// `PUBLISH`: how many subscribers received it.
async fn publish(
    conn: &mut redis::aio::MultiplexedConnection,
    channel: &str,
    payload: &str,
) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(conn)
        .await
        .expect("publish")
}

async fn list(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .expect("lrange")
}

/// Wait until the list at `key` satisfies `done`; its final value.
async fn list_until(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    loop {
        let items = list(conn, key).await;
        if done(&items) {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "list {key} never got there: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
async fn subscribers(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .expect("numsub");
    n
}

async fn subscribers_until(conn: &mut redis::aio::MultiplexedConnection, channel: &str, want: i64) {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    while subscribers(conn, channel).await != want {
        assert!(
            tokio::time::Instant::now() < give_up,
            "{channel} never got {want} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_live_swap_neither_loses_nor_doubles_a_message() {
    let redis = TestRedis::start().expect("redis");
    let url = redis.url();
    let state = tempfile::tempdir().expect("state");
    let vars = |tag| [("redis_url", url.as_str()), ("tag", tag)];
    let limits = AppLimits::default();
    let a = Version::load(
        "redis-rs",
        "redis_rs.wasm",
        state.path(),
        &vars("a"),
        limits,
    )
    .await;
    let trigger = RedisTrigger::start("shop", a.trigger()).await;
    assert_eq!(
        trigger.subscriptions().await,
        BTreeMap::from([(redis.addr(), ["messages".to_string()].into())])
    );

    // A publisher that keeps going through the swap, noting how many subscribers got each one.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let publisher = tokio::spawn({
        let mut conn = connection(&redis).await;
        async move {
            let mut receivers = Vec::new();
            while !*stopped.borrow_and_update() {
                receivers.push(publish(&mut conn, "messages", &receivers.len().to_string()).await);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            receivers
        }
    });
    let mut conn = connection(&redis).await;
    list_until(&mut conn, "received", |l| l.len() >= 15).await;
    let b = Version::load(
        "redis-rs",
        "redis_rs.wasm",
        state.path(),
        &vars("b"),
        limits,
    )
    .await;
    let retired = trigger.swap(b.trigger()).await;
    list_until(&mut conn, "received", |l| {
        l.iter().filter(|e| e.starts_with("b:")).count() >= 15
    })
    .await;
    stop.send_replace(true);
    let receivers = publisher.await.expect("publisher");
    let published = receivers.len();
    let items = list_until(&mut conn, "received", |l| l.len() >= published).await;
    tokio::time::timeout(PATIENCE, retired.drained())
        .await
        .expect("the old version drains");

    // One subscriber for every message: the connection stayed through the swap.
    assert!(receivers.iter().all(|n| *n == 1), "{receivers:?}");
    // Every message exactly once, in order; the old version's before the new one's.
    let parsed: Vec<(&str, usize)> = items
        .iter()
        .map(|e| {
            let (tag, n) = e.split_once(':').expect("tag:n");
            (tag, n.parse().expect("n"))
        })
        .collect();
    let order: Vec<usize> = parsed.iter().map(|(_, n)| *n).collect();
    assert_eq!(order, (0..published).collect::<Vec<_>>(), "{items:?}");
    let switch = parsed
        .iter()
        .position(|(tag, _)| *tag == "b")
        .expect("b ran");
    eprintln!("{published} messages published, the first handled by the new version: {switch}");
    assert!(switch > 0, "a ran first: {items:?}");
    assert!(
        parsed[switch..].iter().all(|(tag, _)| *tag == "b"),
        "no message went back to the old version: {items:?}"
    );
    drop(trigger.stop().await);
}

#[tokio::test]
async fn the_p3_handler_is_stopped_at_its_deadline_and_errors_drop_only_their_message() {
    let redis = TestRedis::start().expect("redis");
    let url = redis.url();
    let state = tempfile::tempdir().expect("state");
    let limits = AppLimits {
        request_timeout_ms: 300,
        ..AppLimits::default()
    };
    let v = Version::load(
        "redis-p3",
        "redis_p3.wasm",
        state.path(),
        &[("redis_url", url.as_str()), ("tag", "p3")],
        limits,
    )
    .await;
    let trigger = RedisTrigger::start("shop", v.trigger()).await;
    let mut conn = connection(&redis).await;
    for payload in ["first", "spin", "fail", "after"] {
        assert_eq!(publish(&mut conn, "messages", payload).await, 1);
    }
    let items = list_until(&mut conn, "received", |l| l.len() >= 2).await;
    assert_eq!(items, ["p3:first", "p3:after"]);
    let stderr = std::fs::read_to_string(state.path().join("logs/recorder_stderr.txt"))
        .expect("the component's stderr log");
    assert!(stderr.contains("asked to fail"), "{stderr:?}");
    let retired = trigger.stop().await;
    tokio::time::timeout(PATIENCE, retired.drained())
        .await
        .expect("drained");
    subscribers_until(&mut conn, "messages", 0).await;
}

#[tokio::test]
async fn the_subscription_reconnects_and_follows_a_version_to_new_channels() {
    let redis = TestRedis::start().expect("redis");
    let url = redis.url();
    let state = tempfile::tempdir().expect("state");
    let limits = AppLimits::default();
    let a = Version::load(
        "redis-rs",
        "redis_rs.wasm",
        state.path(),
        &[("redis_url", url.as_str()), ("tag", "a"), ("channel", "c1")],
        limits,
    )
    .await;
    let trigger = RedisTrigger::start("shop", a.trigger()).await;
    let mut conn = connection(&redis).await;
    assert_eq!(publish(&mut conn, "c1", "one").await, 1);
    list_until(&mut conn, "received", |l| l.len() == 1).await;

    // Drop the subscriber's connection: it comes back and subscribes again.
    let killed = redis
        .cli(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .expect("kill");
    assert_eq!(killed, "1");
    subscribers_until(&mut conn, "c1", 1).await;
    assert_eq!(publish(&mut conn, "c1", "two").await, 1);
    list_until(&mut conn, "received", |l| l.len() == 2).await;

    // A version on another channel: subscribed by the time the swap returns, the old one goes.
    let b = Version::load(
        "redis-rs",
        "redis_rs.wasm",
        state.path(),
        &[("redis_url", url.as_str()), ("tag", "b"), ("channel", "c2")],
        limits,
    )
    .await;
    let retired = trigger.swap(b.trigger()).await;
    assert_eq!(subscribers(&mut conn, "c2").await, 1);
    subscribers_until(&mut conn, "c1", 0).await;
    assert_eq!(publish(&mut conn, "c2", "three").await, 1);
    let items = list_until(&mut conn, "received", |l| l.len() == 3).await;
    assert_eq!(items, ["a:one", "a:two", "b:three"]);
    tokio::time::timeout(PATIENCE, retired.drained())
        .await
        .expect("drained");

    let retired = trigger.stop().await;
    subscribers_until(&mut conn, "c2", 0).await;
    tokio::time::timeout(PATIENCE, retired.drained())
        .await
        .expect("drained");
    assert!(trigger.subscriptions().await.is_empty());
}

/// A one-component app of `wasm` used by `trigger` (a `[[trigger.<type>]]` table body), prepared.
async fn prepare_inline(
    state: &Path,
    wasm: &str,
    trigger: &str,
) -> Result<RuntimeApp, lepton_runtime::RuntimeError> {
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../apps");
    let source = apps.join("target/wasm32-wasip2/release").join(wasm);
    let toml = format!(
        "spin_manifest_version = 2\n[application]\nname = \"inline\"\n\
         [application.trigger.redis]\naddress = \"redis://127.0.0.1:1\"\n\
         {trigger}\ncomponent = \"c\"\n[component.c]\nsource = {:?}\n",
        source.display().to_string()
    );
    let locked =
        lepton_app::manifest::from_toml_str(&toml, &state.join("spin.toml")).expect("manifest");
    let config = AppConfig {
        name: "inline".into(),
        state_dir: state.to_path_buf(),
        variables: BTreeMap::new(),
        runtime_config: None,
        listen_address: None,
        self_host: None,
        limits: AppLimits::default(),
    };
    RuntimeApp::prepare(engine(), cache(), &locked, &config).await
}

#[tokio::test]
async fn a_component_without_the_export_its_trigger_calls_fails_the_load() {
    let state = tempfile::tempdir().expect("state");
    manifest("redis-rs", "redis_rs.wasm");
    manifest("hello-p2", "hello_p2.wasm");
    let cases = [
        (
            "hello_p2.wasm",
            "[[trigger.redis]]\nchannel = \"x\"",
            "component `c`: is used by a Redis trigger but exports no Redis handler",
        ),
        (
            "redis_rs.wasm",
            "[[trigger.cron]]\ncron_expression = \"* * * * * *\"",
            "component `c`: is used by a cron trigger but does not export `handle-cron-event`",
        ),
        (
            "redis_rs.wasm",
            "[[trigger.http]]\nroute = \"/...\"",
            "component `c`: exports no HTTP handler",
        ),
    ];
    for (wasm, trigger, want) in cases {
        let err = prepare_inline(state.path(), wasm, trigger)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
    // Used by its Redis trigger only, the Redis component needs no HTTP handler.
    let runtime = prepare_inline(
        state.path(),
        "redis_rs.wasm",
        "[[trigger.redis]]\nchannel = \"x\"",
    )
    .await
    .expect("loads");
    let exports = runtime.component("c").expect("c").exports();
    assert_eq!(exports.redis, Some(lepton_runtime::RedisHandlerKind::V1));
    assert_eq!((exports.http, exports.cron), (None, false));
}
