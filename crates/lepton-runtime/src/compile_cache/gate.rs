//! The compile gate: at most N compilations at once in the process, the smallest waiting
//! component first.
//!
//! Compiling is CPU- and memory-heavy (wasmtime compiles a component's functions in parallel on
//! every core), so starting 1,000 apps of distinct components at once used to run hundreds of
//! compilations side by side on the blocking pool: 504 threads and 4.5 GiB RSS on a 2-core box,
//! never returned. Waiters are ordered by their Wasm size, so one large component (a Python app
//! is ~40 MB) cannot hold up the small ones queued behind it; ties go first come, first served.
//! When the last running compilation ends, the allocator is asked to return freed memory to the
//! system (glibc keeps it in per-thread arenas otherwise).

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
    next: u64,
    /// (size, arrival) → the waiter's wake-up.
    waiting: BTreeMap<(u64, u64), oneshot::Sender<()>>,
}

/// One admitted compilation; the next waiter goes when it is dropped.
#[derive(Debug)]
pub(crate) struct CompilePermit {
    gate: Arc<CompileGate>,
}

impl CompileGate {
    /// A gate admitting `permits` compilations at once (at least one).
    pub fn new(permits: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                free: permits.max(1),
                running: 0,
                next: 0,
                waiting: BTreeMap::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a turn to compile a component of `size` bytes.
    pub async fn admit(self: &Arc<Self>, size: u64) -> CompilePermit {
        let rx = {
            let mut state = self.state();
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                state.running += 1;
                return CompilePermit { gate: self.clone() };
            }
            let (tx, rx) = oneshot::channel();
            let seq = state.next;
            state.next += 1;
            state.waiting.insert((size, seq), tx);
            rx
        };
        // The sender is only dropped after handing the turn over (or with the gate).
        let _ = rx.await;
        CompilePermit { gate: self.clone() }
    }

    /// Give a finished compilation's turn to the smallest live waiter, or back to the pool.
    fn release(&self) {
        let idle = {
            let mut state = self.state();
            loop {
                let Some((_, tx)) = state.waiting.pop_first() else {
                    state.free += 1;
                    state.running -= 1;
                    break state.running == 0;
                };
                // A waiter that gave up has dropped its receiver: try the next one.
                if tx.send(()).is_ok() {
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

impl Drop for CompilePermit {
    fn drop(&mut self) {
        self.gate.release();
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
        let first = gate.admit(100).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for size in [50_000_000u64, 10, 2_000] {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let permit = gate.admit(size).await;
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
        let first = gate.admit(1).await;
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(5), gate.admit(1));
        assert!(gave_up.await.is_err());
        drop(first);
        let again = tokio::time::timeout(std::time::Duration::from_millis(5), gate.admit(1)).await;
        assert!(again.is_ok(), "the turn came back to the pool");
    }
}
