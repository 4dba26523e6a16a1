//! The compile gate: at most N compilations at once in the process, first compiles before
//! background recompiles, the smallest waiting component first.
//!
//! Compiling is CPU- and memory-heavy (wasmtime compiles a component's functions in parallel on
//! every core), so starting 1,000 apps of distinct components at once used to run hundreds of
//! compilations side by side on the blocking pool: 504 threads and 4.5 GiB RSS on a 2-core box,
//! never returned. Waiters are ordered by their Wasm size, so one large component (a Python app
//! is ~40 MB) cannot hold up the small ones queued behind it; ties go first come, first served.
//! Background recompiles (Cranelift after a quick Winch compile, see [`super`]) go only when no
//! first compile runs or waits, one at a time (N − 1 at most), so during a burst of cold starts
//! the cores go to the first compiles: with them running alongside, 1,000 cold hello apps took
//! 78 s to answer (`bench/density.sh`).
//! When the last running compilation ends, glibc's allocator is asked to return freed memory to
//! the system (it keeps it in per-thread arenas otherwise). The `lepton` and `tauon` binaries
//! allocate with jemalloc, whose background threads return it on their own (`src/allocator.rs`);
//! the call then only trims what little glibc's heap holds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Admits compilations, smallest first.
#[derive(Debug)]
pub(crate) struct CompileGate {
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    free: usize,
    running: usize,
    /// Background compilations running, and how many may.
    background: usize,
    first: usize,
    background_limit: usize,
    next: u64,
    /// (priority, size, arrival) → the waiter's wake-up.
    waiting: BTreeMap<(Priority, u64, u64), oneshot::Sender<()>>,
}

/// Which compilations go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Priority {
    /// An app waits for it.
    First,
    /// A recompile of code that already runs.
    Background,
}

/// One admitted compilation; the next waiter goes when it is dropped.
#[derive(Debug)]
pub(crate) struct CompilePermit {
    gate: Arc<CompileGate>,
    priority: Priority,
}

impl CompileGate {
    /// A gate admitting `permits` compilations at once (at least one).
    pub fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                free: permits.max(1),
                running: 0,
                background: 0,
                first: 0,
                background_limit: permits.saturating_sub(1).max(1),
                next: 0,
                waiting: BTreeMap::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a turn to compile a component of `size` bytes.
    pub async fn admit(self: &Arc<Self>, priority: Priority, size: u64) -> CompilePermit {
        let rx = {
            let mut state = self.state();
            let ahead = state.waiting.keys().next().is_some_and(|k| k.0 <= priority);
            if state.free > 0 && !ahead && state.may_run(priority) {
                state.free -= 1;
                state.running += 1;
                state.count(priority, 1);
                return CompilePermit {
                    gate: self.clone(),
                    priority,
                };
            }
            let (tx, rx) = oneshot::channel();
            let seq = state.next;
            state.next += 1;
            state.waiting.insert((priority, size, seq), tx);
            rx
        };
        // The sender is only dropped after handing the turn over (or with the gate).
        let _ = rx.await;
        CompilePermit {
            gate: self.clone(),
            priority,
        }
    }

    /// Give a finished compilation's turn to the first live waiter that may run, or back to
    /// the pool.
    fn release(&self, priority: Priority) {
        let idle = {
            let mut state = self.state();
            state.count(priority, -1);
            loop {
                let next = state.waiting.first_key_value().map(|(k, _)| k.0);
                let Some(next) = next.filter(|p| state.may_run(*p)) else {
                    state.free += 1;
                    state.running -= 1;
                    break state.running == 0;
                };
                let Some((_, tx)) = state.waiting.pop_first() else {
                    continue;
                };
                // A waiter that gave up has dropped its receiver: try the next one.
                if tx.send(()).is_ok() {
                    state.count(next, 1);
                    break false;
                }
            }
        };
        if idle {
            return_freed_memory();
        }
    }

    /// Compilations running now (for tests).
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.state().running
    }
}

impl GateState {
    fn may_run(&self, priority: Priority) -> bool {
        priority == Priority::First || (self.first == 0 && self.background < self.background_limit)
    }

    fn count(&mut self, priority: Priority, delta: isize) {
        let running = match priority {
            Priority::First => &mut self.first,
            Priority::Background => &mut self.background,
        };
        *running = running.saturating_add_signed(delta);
    }
}

impl Drop for CompilePermit {
    fn drop(&mut self) {
        self.gate.release(self.priority);
    }
}

/// Hand memory freed by compilations back to the system.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_smallest_waiter_goes_first_and_never_more_than_the_permits_run() {
        let gate = CompileGate::new(1);
        let first = gate.admit(Priority::First, 100).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for size in [50_000_000u64, 10, 2_000] {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = gate.admit(Priority::First, size).await;
                assert_eq!(gate.running(), 1);
                order.lock().expect("order").push(size);
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.running(), 1);
        drop(first);
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(*order.lock().expect("order"), vec![10, 2_000, 50_000_000]);
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_does_not_keep_the_turn() {
        let gate = CompileGate::new(1);
        let first = gate.admit(Priority::First, 1).await;
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(5),
            gate.admit(Priority::First, 1),
        );
        assert!(gave_up.await.is_err());
        drop(first);
        let again = tokio::time::timeout(
            std::time::Duration::from_millis(5),
            gate.admit(Priority::First, 1),
        )
        .await;
        assert!(again.is_ok(), "the turn came back to the pool");
    }

    #[tokio::test(start_paused = true)]
    async fn background_compiles_wait_for_first_compiles_and_leave_a_permit_free() {
        let gate = CompileGate::new(2);
        let order = Arc::new(Mutex::new(Vec::new()));
        let blocker = gate.admit(Priority::First, 1).await;
        let blocker2 = gate.admit(Priority::First, 1).await;
        let mut tasks = Vec::new();
        for (priority, size) in [
            (Priority::Background, 1u64),
            (Priority::Background, 2),
            (Priority::First, 50_000_000),
        ] {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = gate.admit(priority, size).await;
                order
                    .lock()
                    .expect("order")
                    .push((priority, size, gate.running()));
                let ms = if priority == Priority::First { 5 } else { 10 };
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        drop(blocker);
        drop(blocker2);
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().expect("order").clone();
        // The first compile goes first although it is the largest and came last; the two
        // background ones wait for it to end, then run one at a time.
        assert_eq!(order[0].0, Priority::First);
        assert_eq!(order[1], (Priority::Background, 1, 1));
        assert_eq!(order[2].0, Priority::Background);
        assert_eq!(order[2].1, 2);
        assert_eq!(order[2].2, 1, "background compiles never ran side by side");
        assert_eq!(gate.running(), 0);
        // A first compile is admitted at once while a background one runs.
        let background = gate.admit(Priority::Background, 1).await;
        let first = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            gate.admit(Priority::First, 1),
        );
        assert!(first.await.is_ok());
        drop(background);
    }
}
