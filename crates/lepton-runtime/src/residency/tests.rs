//! Unit tests of lazy loading and eviction, on tokio's paused clock.

use std::sync::atomic::AtomicUsize;

use super::*;

/// A loader counting its calls, taking `delay`, failing while `fail` is set.
fn counting(
    calls: Arc<AtomicUsize>,
    delay: Duration,
    footprint: u64,
    fail: Arc<std::sync::atomic::AtomicBool>,
) -> Loader<usize> {
    Box::new(move || {
        let calls = calls.clone();
        let fail = fail.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(delay).await;
            if fail.load(Ordering::SeqCst) {
                return Err("broken".to_string());
            }
            Ok(Loaded {
                value: Arc::new(n),
                footprint,
                reload_when: None,
            })
        }
        .boxed()
    })
}

fn app(residency: &Residency, footprint: u64) -> (Resident<usize>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let r = residency.resident(
        "a",
        counting(
            calls.clone(),
            Duration::from_millis(50),
            footprint,
            Arc::default(),
        ),
    );
    (r, calls)
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_wait_for_one_load() {
    let residency = Residency::new(ResidencyConfig::default());
    let (r, calls) = app(&residency, 10);
    assert_eq!(r.state(), ResidentState::Idle);
    let gets: Vec<_> = (0..20)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.get().await })
        })
        .collect();
    for g in gets {
        assert_eq!(*g.await.unwrap().unwrap(), 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(r.state(), ResidentState::Loaded { footprint: 10 });
    assert_eq!(residency.resident_bytes(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_does_not_cancel_the_load() {
    let residency = Residency::new(ResidencyConfig::default());
    let (r, calls) = app(&residency, 10);
    let gave_up = tokio::time::timeout(Duration::from_millis(10), r.get()).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.state(), ResidentState::Loaded { footprint: 10 });
    assert_eq!(*r.get().await.unwrap(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_residents_are_evicted_and_come_back_on_their_next_use() {
    let residency = Residency::new(ResidencyConfig {
        memory_budget: None,
        idle_timeout: Some(Duration::from_secs(60)),
    });
    let (r, calls) = app(&residency, 10);
    r.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    // A use in between resets the idle clock.
    r.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(r.state(), ResidentState::Loaded { footprint: 10 });
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(r.state(), ResidentState::Idle);
    assert_eq!(residency.resident_bytes(), 0);
    assert_eq!(residency.evictions(), 1);
    assert_eq!(*r.get().await.unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_resident_in_use_is_not_evicted_for_idleness() {
    let residency = Residency::new(ResidencyConfig {
        memory_budget: None,
        idle_timeout: Some(Duration::from_secs(10)),
    });
    let (r, _) = app(&residency, 10);
    let held = r.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(r.state(), ResidentState::Loaded { footprint: 10 });
    drop(held);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(r.state(), ResidentState::Idle);
}

#[tokio::test(start_paused = true)]
async fn over_the_budget_the_least_recently_used_idle_resident_goes_first() {
    let residency = Residency::new(ResidencyConfig {
        memory_budget: Some(25),
        idle_timeout: None,
    });
    let (a, _) = app(&residency, 10);
    let (b, _) = app(&residency, 10);
    let (c, _) = app(&residency, 10);
    a.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // `a` is older but busy: `b` goes instead.
    let held = a.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.get().await.unwrap();
    assert_eq!(a.state(), ResidentState::Loaded { footprint: 10 });
    assert_eq!(b.state(), ResidentState::Idle);
    assert_eq!(c.state(), ResidentState::Loaded { footprint: 10 });
    assert_eq!(residency.resident_bytes(), 20);
    drop(held);
    // Loading `b` again puts `a` (now idle and least recently used) out.
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.get().await.unwrap();
    assert_eq!(a.state(), ResidentState::Idle);
    assert_eq!(residency.resident_bytes(), 20);
}

#[tokio::test(start_paused = true)]
async fn a_failed_load_is_remembered_briefly_then_retried() {
    let residency = Residency::new(ResidencyConfig::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = residency.resident(
        "broken",
        counting(calls.clone(), Duration::from_millis(5), 1, fail.clone()),
    );
    let err = r.get().await.unwrap_err();
    assert_eq!(&*err.message, "broken");
    assert!(err.to_string().contains("app `broken` failed to load"));
    assert!(matches!(r.state(), ResidentState::Failed { .. }));
    // Within the pause: answered from memory.
    assert!(r.get().await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    fail.store(false, Ordering::SeqCst);
    tokio::time::sleep(FAILED_RETRY_AFTER).await;
    assert_eq!(*r.get().await.unwrap(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_loaded_resident_returns_its_bytes() {
    let residency = Residency::new(ResidencyConfig::default());
    let (r, _) = app(&residency, 7);
    r.get().await.unwrap();
    assert_eq!(residency.resident_bytes(), 7);
    drop(r);
    assert_eq!(residency.resident_bytes(), 0);
    assert_eq!(residency.evict_idle_now(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_installed_value_serves_without_a_load() {
    let residency = Residency::new(ResidencyConfig::default());
    let (r, calls) = app(&residency, 7);
    r.install(Loaded {
        value: Arc::new(42),
        footprint: 3,
        reload_when: None,
    });
    assert_eq!(*r.get().await.unwrap(), 42);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(residency.resident_bytes(), 3);
    assert_eq!(r.evict().as_deref(), Some(&42));
    assert_eq!(residency.resident_bytes(), 0);
}

#[tokio::test(start_paused = true)]
async fn requests_served_from_the_loaded_value_keep_an_app_from_idling_out() {
    let residency = Residency::new(ResidencyConfig {
        memory_budget: None,
        idle_timeout: Some(Duration::from_secs(10)),
    });
    let (r, _) = app(&residency, 10);
    r.get().await.unwrap();
    // Short requests every 4 s, each through the fast path, for a minute.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(r.hit().is_some(), "evicted while in use");
    }
    // A value looked at without a use does not count.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        let _ = r.loaded();
    }
    assert_eq!(r.state(), ResidentState::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_pinned_resident_is_never_evicted_by_idleness_or_the_budget() {
    let residency = Residency::new(ResidencyConfig {
        memory_budget: Some(15),
        idle_timeout: Some(Duration::from_secs(10)),
    });
    let (pinned, _) = app(&residency, 10);
    let (other, _) = app(&residency, 10);
    pinned.pin();
    pinned.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Over the budget: the pinned one is older, but the newcomer is the only one that can go.
    other.get().await.unwrap();
    assert_eq!(pinned.state(), ResidentState::Loaded { footprint: 10 });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(pinned.state(), ResidentState::Loaded { footprint: 10 });
    assert_eq!(residency.evict_idle_now(), 0);
    assert_eq!(pinned.state(), ResidentState::Loaded { footprint: 10 });
    // Releasing it (a replace or stop) still works.
    assert!(pinned.evict().is_some());
    assert_eq!(residency.resident_bytes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_value_with_a_better_one_to_follow_is_reloaded_and_swapped_while_in_use() {
    let residency = Residency::new(ResidencyConfig::default());
    let (r, calls) = app(&residency, 7);
    let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
    r.install(Loaded {
        value: Arc::new(42),
        footprint: 3,
        reload_when: Some(async move { rx.await.unwrap_or(false) }.boxed()),
    });
    let in_flight = r.get().await.unwrap();
    assert_eq!(*in_flight, 42);
    tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "loaded again once");
    assert_eq!(*r.get().await.unwrap(), 1, "the new value serves");
    assert_eq!(*in_flight, 42, "a request in flight keeps the old value");
    assert_eq!(residency.resident_bytes(), 7);
    // Whoever retires the version finds the old value still in use, to drain it.
    let superseded = r.superseded();
    assert_eq!(superseded.iter().map(|v| **v).collect::<Vec<_>>(), vec![42]);
    drop((superseded, in_flight));
    assert!(
        r.superseded().is_empty(),
        "taken once, and gone with its requests"
    );
}

#[tokio::test(start_paused = true)]
async fn no_reload_when_making_the_better_value_failed_or_the_resident_is_pinned() {
    let residency = Residency::new(ResidencyConfig::default());
    let (r, calls) = app(&residency, 7);
    r.install(Loaded {
        value: Arc::new(42),
        footprint: 3,
        reload_when: Some(async { false }.boxed()),
    });
    let (pinned, pinned_calls) = app(&residency, 7);
    pinned.pin();
    pinned.install(Loaded {
        value: Arc::new(43),
        footprint: 3,
        reload_when: Some(async { true }.boxed()),
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(pinned_calls.load(Ordering::SeqCst), 0);
    assert_eq!(*r.get().await.unwrap(), 42);
    assert_eq!(*pinned.get().await.unwrap(), 43);
}

#[tokio::test(start_paused = true)]
async fn every_state_change_is_reported_as_it_happens() {
    let residency = Residency::new(ResidencyConfig {
        memory_budget: None,
        idle_timeout: Some(Duration::from_secs(60)),
    });
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = residency.resident(
        "a",
        counting(Arc::default(), Duration::from_millis(50), 10, fail.clone()),
    );
    // Each report records the state the resident is in when it is made.
    let seen: Arc<Mutex<Vec<ResidentState>>> = Arc::default();
    let (log, watched) = (seen.clone(), r.clone());
    r.on_change(move || log.lock().unwrap().push(watched.state()));
    let take = || std::mem::take(&mut *seen.lock().unwrap());

    assert!(r.get().await.is_err());
    assert_eq!(
        take(),
        [
            ResidentState::Loading,
            ResidentState::Failed {
                message: "broken".into()
            }
        ]
    );
    fail.store(false, Ordering::SeqCst);
    tokio::time::sleep(FAILED_RETRY_AFTER).await;
    r.preload();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let loaded = ResidentState::Loaded { footprint: 10 };
    assert_eq!(take(), [ResidentState::Loading, loaded.clone()]);
    // Uses of a loaded resident change nothing.
    r.get().await.unwrap();
    assert!(take().is_empty());
    // The idle sweep evicts it: reported without anyone asking.
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(take(), [ResidentState::Idle]);
}
