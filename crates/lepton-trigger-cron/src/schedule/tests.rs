//! The schedule loops under `tokio::time::pause()`: a clock driven by tokio's makes every tick
//! land exactly when the expression says, with no waiting.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use chrono::TimeZone;

use super::*;

/// Wall-clock time that advances with tokio's (paused) clock.
#[derive(Clone)]
struct TokioClock {
    wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starting at 2026-01-30 12:00:00.500 UTC: ticks on whole seconds are half a second away.
    fn new() -> Self {
        let wall = Utc
            .with_ymd_and_hms(2026, 1, 30, 12, 0, 0)
            .single()
            .expect("date")
            + chrono::Duration::milliseconds(500);
        Self {
            wall,
            start: tokio::time::Instant::now(),
        }
    }

    /// Whole seconds after 12:00:00 of `t`.
    fn secs(&self, t: DateTime<Utc>) -> i64 {
        (t - (self.wall - chrono::Duration::milliseconds(500))).num_seconds()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.wall + chrono::Duration::from_std(elapsed).expect("elapsed")
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Fired {
    version: &'static str,
    trigger: String,
    tick: DateTime<Utc>,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct Record {
    fired: Mutex<Vec<Fired>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

/// A version whose runs record themselves and take `run_for`.
struct Fake {
    name: &'static str,
    schedules: Vec<(ScheduleKey, CronExpression)>,
    run_for: Duration,
    clock: TokioClock,
    record: Arc<Record>,
}

fn key(trigger: &str, expression: &str) -> (ScheduleKey, CronExpression) {
    (
        ScheduleKey {
            trigger: trigger.into(),
            expression: expression.into(),
        },
        CronExpression::parse(expression).expect("expression"),
    )
}

impl Schedules for Fake {
    fn schedules(&self) -> Vec<(ScheduleKey, CronExpression)> {
        self.schedules.clone()
    }

    fn has(&self, key: &ScheduleKey) -> bool {
        self.schedules.iter().any(|(k, _)| k == key)
    }

    fn fire(
        self: Arc<Self>,
        key: &ScheduleKey,
        tick: DateTime<Utc>,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.record.fired.lock().expect("lock").push(Fired {
            version: self.name,
            trigger: key.trigger.clone(),
            tick,
            at: self.clock.now(),
        });
        let record = self.record.clone();
        let now = record.running.fetch_add(1, Ordering::SeqCst) + 1;
        record.max_running.fetch_max(now, Ordering::SeqCst);
        async move {
            tokio::time::sleep(self.run_for).await;
            record.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

struct Setup {
    clock: TokioClock,
    record: Arc<Record>,
}

impl Setup {
    fn new() -> Self {
        Self {
            clock: TokioClock::new(),
            record: Arc::default(),
        }
    }

    fn version(
        &self,
        name: &'static str,
        schedules: Vec<(ScheduleKey, CronExpression)>,
        run_for_ms: u64,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            schedules,
            run_for: Duration::from_millis(run_for_ms),
            clock: self.clock.clone(),
            record: self.record.clone(),
        })
    }

    /// `(version, trigger, tick second)` of every fire so far.
    fn fired(&self) -> Vec<(&'static str, String, i64)> {
        self.record
            .fired
            .lock()
            .expect("lock")
            .iter()
            .map(|f| (f.version, f.trigger.clone(), self.clock.secs(f.tick)))
            .collect()
    }
}

fn app() -> Arc<str> {
    Arc::from("app")
}

#[tokio::test(start_paused = true)]
async fn ticks_fire_exactly_on_schedule() {
    let s = Setup::new();
    let v = s.version("a", vec![key("t", "*/2 * * * * *")], 0);
    let scheduler = Scheduler::start(app(), v, s.clock.clone());
    tokio::time::sleep(Duration::from_millis(6_600)).await;
    let fired = s.fired();
    assert_eq!(
        fired,
        [
            ("a", "t".into(), 2),
            ("a", "t".into(), 4),
            ("a", "t".into(), 6)
        ]
    );
    for f in s.record.fired.lock().expect("lock").iter() {
        assert_eq!(f.at, f.tick, "fired on its tick");
    }
    drop(scheduler);
}

#[tokio::test(start_paused = true)]
async fn a_run_still_going_makes_its_schedule_skip_ticks() {
    let s = Setup::new();
    // Every second, each run takes 2.5 s: ticks 1, 4, 7 run; 2, 3, 5, 6, 8 are skipped.
    let v = s.version("a", vec![key("t", "* * * * * *")], 2_500);
    let scheduler = Scheduler::start(app(), v, s.clock.clone());
    tokio::time::sleep(Duration::from_millis(8_600)).await;
    let ticks: Vec<i64> = s.fired().into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(ticks, [1, 4, 7]);
    assert_eq!(s.record.max_running.load(Ordering::SeqCst), 1);
    drop(scheduler);
}

#[tokio::test(start_paused = true)]
async fn a_swap_hands_each_later_tick_to_the_new_version_once() {
    let s = Setup::new();
    let a = s.version(
        "a",
        vec![key("kept", "* * * * * *"), key("dropped", "* * * * * *")],
        0,
    );
    let b = s.version(
        "b",
        vec![key("kept", "* * * * * *"), key("added", "*/2 * * * * *")],
        0,
    );
    let scheduler = Scheduler::start(app(), a, s.clock.clone());
    tokio::time::sleep(Duration::from_millis(3_000)).await; // 12:00:03.500
    let old = scheduler.swap(b);
    assert_eq!(old.name, "a");
    let mut running: Vec<String> = scheduler.running().into_iter().map(|k| k.trigger).collect();
    running.sort();
    assert_eq!(running, ["added", "kept"]);
    tokio::time::sleep(Duration::from_millis(3_000)).await; // 12:00:06.500
    let fired = s.fired();
    let kept: Vec<(&str, i64)> = fired
        .iter()
        .filter(|(_, t, _)| t == "kept")
        .map(|(v, _, tick)| (*v, *tick))
        .collect();
    assert_eq!(
        kept,
        [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("b", 5), ("b", 6)]
    );
    let others: Vec<(&str, &str, i64)> = fired
        .iter()
        .filter(|(_, t, _)| t != "kept")
        .map(|(v, t, tick)| (*v, t.as_str(), *tick))
        .collect();
    assert_eq!(
        others,
        [
            ("a", "dropped", 1),
            ("a", "dropped", 2),
            ("a", "dropped", 3),
            ("b", "added", 4),
            ("b", "added", 6),
        ]
    );
    drop(scheduler);
}

#[tokio::test(start_paused = true)]
async fn the_new_version_waits_for_the_old_versions_run_of_the_same_schedule() {
    let s = Setup::new();
    let a = s.version("a", vec![key("t", "* * * * * *")], 2_500);
    let b = s.version("b", vec![key("t", "* * * * * *")], 0);
    let scheduler = Scheduler::start(app(), a, s.clock.clone());
    // a's run of tick 1 goes on until 12:00:03.5; b takes over at 12:00:01.6.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    drop(scheduler.swap(b));
    tokio::time::sleep(Duration::from_millis(4_000)).await; // 12:00:05.600
    assert_eq!(
        s.fired(),
        [
            ("a", "t".into(), 1),
            ("b", "t".into(), 4),
            ("b", "t".into(), 5)
        ]
    );
    assert_eq!(s.record.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn stop_ends_every_schedule() {
    let s = Setup::new();
    let a = s.version("a", vec![key("t", "* * * * * *")], 0);
    let scheduler = Scheduler::start(app(), a, s.clock.clone());
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let old = scheduler.stop(s.version("empty", vec![], 0));
    assert_eq!(old.name, "a");
    assert!(scheduler.running().is_empty());
    tokio::time::sleep(Duration::from_millis(5_000)).await;
    let ticks: Vec<i64> = s.fired().into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(ticks, [1, 2]);
}
