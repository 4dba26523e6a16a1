//! Per-app limits as the runtime enforces them inside every store: the request deadline and the
//! version cut-off (checked at each epoch tick: a guest past either traps), the fair CPU share
//! ([`crate::cpu`]), and the instance memory budget ([`InstanceBudget`]).
//!
//! The limits themselves ([`AppLimits`]) are plain data shared with the HTTP trigger, which
//! enforces the request-level ones (concurrency, queue, body size) before a store exists.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::watch;
use wasmtime::UpdateDeadline;

use crate::cpu::{AppCpu, CpuScheduler};

/// Whether limits are enforced: always, unless `LEPTON_LIMITS=off` (only for measuring what the
/// limits cost in `bench/isolation.sh`; never for serving strangers' code).
pub fn enforced() -> bool {
    static ENFORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENFORCED.get_or_init(|| {
        let off = matches!(
            std::env::var("LEPTON_LIMITS").as_deref(),
            Ok("off") | Ok("0") | Ok("false")
        );
        if off {
            tracing::warn!(
                "LEPTON_LIMITS=off: per-app limits are not enforced (benchmarking only)"
            );
        }
        !off
    })
}

pub use lepton_spec::AppLimits;

/// A version's cut-off switch: once set, its guests trap at their next tick and its workers
/// stop, whatever they are doing. Set when a replaced or stopped version outlives its drain
/// timeout, and at shutdown.
#[derive(Debug, Clone)]
pub struct CutOff(Arc<CutOffInner>);

#[derive(Debug)]
struct CutOffInner {
    /// Read on every request and at every epoch tick: a plain load, where the watch's value
    /// takes a read lock.
    cut: AtomicBool,
    /// Wakes whoever waits on [`CutOff::signal`].
    tx: watch::Sender<bool>,
}

impl Default for CutOff {
    fn default() -> Self {
        Self(Arc::new(CutOffInner {
            cut: AtomicBool::new(false),
            tx: watch::Sender::new(false),
        }))
    }
}

impl CutOff {
    /// Cut off every guest of this version.
    pub fn cut(&self) {
        self.0.cut.store(true, Ordering::Release);
        self.0.tx.send_replace(true);
    }

    /// Whether [`Self::cut`] was called.
    pub fn is_cut(&self) -> bool {
        self.0.cut.load(Ordering::Acquire)
    }

    /// Resolves once [`Self::cut`] has been called.
    pub fn signal(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.tx.subscribe();
        async move {
            let _ = rx.wait_for(|cut| *cut).await;
        }
    }
}

/// Why a guest was stopped by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestStopped {
    /// The request outlived `request_timeout_ms`.
    Deadline,
    /// Its version was cut off (drain timeout or shutdown).
    CutOff,
}

impl std::fmt::Display for GuestStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deadline => "request_timeout_ms exceeded: the guest was stopped",
            Self::CutOff => "the app version was cut off: the guest was stopped",
        })
    }
}

impl std::error::Error for GuestStopped {}

/// What one store's epoch callback needs: the cut-off switch and the CPU share (the deadline is
/// the store's, [`crate::HostState::deadline`], which a chained request may bring forward and a
/// reused store moves to its latest request's).
pub(crate) struct TickPolicy {
    pub(crate) app: Arc<str>,
    pub(crate) cut_off: CutOff,
    pub(crate) scheduler: Arc<CpuScheduler>,
    pub(crate) cpu: Arc<AppCpu>,
    /// Ticks the guest has computed through since its current request started.
    pub(crate) ticks: u32,
    /// The deadline of the previous tick: when it moves, a reused store has taken a new
    /// request, which gets its own grace ticks instead of inheriting its predecessors' count.
    pub(crate) deadline_seen: Option<Instant>,
}

impl TickPolicy {
    /// Called at each epoch tick that lands while the guest runs Wasm, for a request that must
    /// end by `deadline`.
    pub(crate) fn on_tick(&mut self, deadline: Instant) -> wasmtime::Result<UpdateDeadline> {
        if self.cut_off.is_cut() {
            return Err(wasmtime::Error::new(GuestStopped::CutOff));
        }
        if Instant::now() >= deadline {
            return Err(wasmtime::Error::new(GuestStopped::Deadline));
        }
        if self.deadline_seen != Some(deadline) {
            self.deadline_seen = Some(deadline);
            self.ticks = 0;
        }
        self.ticks = self.ticks.saturating_add(1);
        self.cpu.charge();
        if self.ticks <= self.scheduler.grace_ticks() {
            return Ok(UpdateDeadline::Yield(1));
        }
        // CPU-bound: wait for a lane (fair between apps), hold it for one slice.
        let grant = self.scheduler.acquire(&self.app);
        let deadline = tokio::time::Instant::from_std(deadline);
        let cut = self.cut_off.signal();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::select! {
                    permit = grant => permit.lease_for_slice(),
                    // Wake up to be stopped at the next tick rather than wait past the deadline.
                    () = tokio::time::sleep_until(deadline) => {}
                    () = cut => {}
                }
            }),
        ))
    }
}

/// A store's memory budget: `memory_mib` across all of an instance's linear memories and tables
/// together (Spin caps each memory separately), plus the runtime config's per-memory
/// `max_instance_memory`. A guest past it sees `memory.grow` / `table.grow` fail.
#[derive(Debug)]
pub struct InstanceBudget {
    total: usize,
    per_memory: Option<usize>,
    used: usize,
    pending: usize,
}

impl InstanceBudget {
    /// A budget of `total` bytes, and at most `per_memory` bytes for any one memory.
    pub fn new(total: usize, per_memory: Option<usize>) -> Self {
        Self {
            total,
            per_memory,
            used: 0,
            pending: 0,
        }
    }

    /// Bytes granted so far.
    pub fn used(&self) -> usize {
        self.used
    }

    fn grow(&mut self, bytes: usize) -> bool {
        match self.used.checked_add(bytes) {
            Some(next) if next <= self.total => {
                self.used = next;
                self.pending = bytes;
                true
            }
            _ => false,
        }
    }

    fn undo(&mut self) {
        self.used = self.used.saturating_sub(self.pending);
        self.pending = 0;
    }
}

/// Bytes wasmtime uses per table element (a pointer, per its `ResourceLimiter` docs).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

impl wasmtime::ResourceLimiter for InstanceBudget {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.per_memory.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let granted = self.grow(desired.saturating_sub(current));
        if !granted {
            tracing::debug!(
                used = self.used,
                desired,
                "memory.grow refused: the instance is at its memory_mib budget"
            );
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(self.grow(bytes))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.undo();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_budget_covers_every_memory_and_table_together() {
        let mut b = InstanceBudget::new(10 << 20, None);
        assert!(b.memory_growing(0, 4 << 20, None).expect("grow"));
        // A second memory: 4 + 4 fits, 4 + 4 + 4 does not.
        assert!(b.memory_growing(0, 4 << 20, None).expect("grow"));
        assert!(!b.memory_growing(4 << 20, 8 << 20, None).expect("grow"));
        // Tables count too: 2 MiB left is 262,144 eight-byte elements.
        assert!(!b.table_growing(0, 300_000, None).expect("grow"));
        assert!(b.table_growing(0, 1000, None).expect("grow"));
        assert_eq!(b.used(), (8 << 20) + 1000 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn a_failed_growth_is_given_back() {
        let mut b = InstanceBudget::new(1 << 20, None);
        assert!(b.memory_growing(0, 1 << 20, None).expect("grow"));
        b.memory_grow_failed(wasmtime::format_err!("os said no"))
            .expect("ok");
        assert_eq!(b.used(), 0);
        assert!(b.memory_growing(0, 1 << 20, None).expect("grow"));
    }

    #[test]
    fn the_per_memory_cap_applies_within_the_budget() {
        let mut b = InstanceBudget::new(100 << 20, Some(2 << 20));
        assert!(b.memory_growing(0, 2 << 20, None).expect("grow"));
        assert!(!b.memory_growing(2 << 20, 3 << 20, None).expect("grow"));
    }

    /// A fresh store's tick policy on a one-lane scheduler.
    fn policy() -> TickPolicy {
        TickPolicy {
            app: Arc::from("a"),
            cut_off: CutOff::default(),
            scheduler: CpuScheduler::new(1, 1),
            cpu: Arc::default(),
            ticks: 0,
            deadline_seen: None,
        }
    }

    #[tokio::test]
    async fn a_tick_past_the_deadline_or_after_a_cut_off_stops_the_guest() {
        let mut policy = policy();
        let later = Instant::now() + std::time::Duration::from_secs(60);
        assert!(matches!(
            policy.on_tick(later),
            Ok(UpdateDeadline::Yield(1))
        ));
        assert!(matches!(
            policy.on_tick(later),
            Ok(UpdateDeadline::YieldCustom(1, _))
        ));
        assert_eq!(policy.cpu.ticks(), 2);
        policy.cut_off.cut();
        let err = policy.on_tick(later).err().expect("cut off");
        assert_eq!(
            err.downcast_ref::<GuestStopped>(),
            Some(&GuestStopped::CutOff)
        );
        policy.cut_off = CutOff::default();
        let err = policy.on_tick(Instant::now()).err().expect("deadline");
        assert_eq!(
            err.downcast_ref::<GuestStopped>(),
            Some(&GuestStopped::Deadline)
        );
    }

    #[tokio::test]
    async fn a_new_request_on_a_reused_store_gets_its_own_grace() {
        let mut policy = policy();
        let first = Instant::now() + std::time::Duration::from_secs(60);
        assert!(matches!(
            policy.on_tick(first),
            Ok(UpdateDeadline::Yield(1))
        ));
        assert!(matches!(
            policy.on_tick(first),
            Ok(UpdateDeadline::YieldCustom(1, _))
        ));
        // The store took a request with a later deadline: its first tick is a grace tick again.
        let next = first + std::time::Duration::from_secs(1);
        assert!(matches!(policy.on_tick(next), Ok(UpdateDeadline::Yield(1))));
        assert!(matches!(
            policy.on_tick(next),
            Ok(UpdateDeadline::YieldCustom(1, _))
        ));
    }
}
