//! The one wasmtime [`Engine`] shared by every app in the process, and the [`Linker`] of host
//! interfaces lepton provides to components.
//!
//! Tuning choices, and why:
//! - **Pooling allocator** with copy-on-write memory images: instantiation per request becomes a
//!   slot reuse instead of fresh `mmap`s. Enabled when the machine lets us reserve the pool's
//!   virtual address space; otherwise we fall back to on-demand allocation and log which one is in
//!   use. `LEPTON_POOLING=0|1` forces the choice.
//! - **Keep-resident** sizes: on the virtual machines we run on, per-request `madvise`/`munmap`
//!   (and the TLB-shootdown IPIs they cause) dominated `wasmtime serve` profiles. Keeping the first
//!   pages of each linear memory and table resident means those are reset with `memset` instead.
//!   The defaults match Spin's (2 MiB of memory, 512 KiB of tables) and are overridable with
//!   `LEPTON_KEEP_RESIDENT_MEMORY` / `LEPTON_KEEP_RESIDENT_TABLE` so `bench/` can tune them.
//!   Measured with `bench/run.sh` on a 2-core VM: 2 MiB gave 6.4k req/s against 5.4k at 256 KiB,
//!   4.3k at 0 and 4.0k without pooling.
//! - **`PAGEMAP_SCAN`** (Linux ≥ 6.7, used when available): resets only the pages an instance
//!   dirtied instead of `memset`ting the whole keep-resident region; in a `perf` profile of the
//!   hello benchmark `memset` fell from 10% to under 1% of samples. What remains is mostly the
//!   `mprotect` (and its TLB-shootdown IPIs) wasmtime issues when a slot's heap limit changes.
//!   Re-measured with wasmtime 48 (`bench/run.sh` hello-p2, alternating runs, lepton CPU per
//!   request): `auto` 205–253 µs, off 272–292 µs.
//! - **Per-request cost of a fresh instance** (wasi:http 0.2; 0.3 instances are reused, see
//!   `lepton-trigger-http`'s `reuse`), from a `perf record --call-graph dwarf` of hello-p2 under
//!   `wrk -c32`: instantiation 17% of lepton's CPU (the memory pool 6%, import wiring 3%), the
//!   store's teardown 7%, the store's host state 2%; the kernel's `mprotect` and `PAGEMAP_SCAN`
//!   calls 12% in all. Options weighed against that profile, none of which measurably helped:
//!   - *slot affinity* (`max_unused_warm_slots`, default 100): every instantiation already gets a
//!     slot that last held the same module, so its copy-on-write image stays mapped (no `mmap` in
//!     the profile); kept.
//!   - *`memory_guaranteed_dense_image_size`* (default 16 MiB): the guests' initial heaps are far
//!     smaller, so they get copy-on-write images and nothing is copied at instantiation; kept.
//!   - *the heap-limit `mprotect`s* (~9%: a guest grows its heap during a request, and the next
//!     instantiation in that slot shrinks it back): only `signals_based_traps(false)` with no
//!     guard pages avoids them, and that requires turning off Cranelift's Spectre mitigations on
//!     heap accesses — not for strangers' code; kept.
//!   - *`decommit_batch_size`* 16 instead of 1: 222–260 µs against 206–250 µs per request, within
//!     the noise; kept at 1 (`LEPTON_DECOMMIT_BATCH`).
//!   - *task spawns and wakeups*: about 0.9 context switches per request (p2 and p3 alike), one
//!     task spawn per p2 request (wasmtime-wasi-http's worker; ~1% in the profile); nothing to
//!     gain here without changing the runtime's scheduler.
//!   - *for reference*: in the same `bench/run.sh` run, `wasmtime serve` 48 (its own pooling
//!     defaults) served hello-p2 at 5.1k req/s, lepton at 6.4k.
//! - **Epoch interruption** with a 10 ms tick: at each tick a store's callback stops a guest past
//!   its request deadline or its version's cut-off, else yields to the async executor, and once
//!   a request is CPU-bound it waits for a fair CPU lane ([`crate::cpu`]).
//! - **Two compilers, tiered** (`LEPTON_QUICK_COMPILE`, on by default): a component with no
//!   compiled artifact yet is first compiled by Winch, wasmtime's baseline compiler, on a second
//!   engine (on-demand allocation, so it reserves no pool), and served at once; Cranelift then
//!   compiles it in the background at a lower priority ([`crate::CompileCache`]) and the app is
//!   reloaded on the optimized code (`crate::residency`). Measured with a throwaway harness
//!   (`precompile_component`, release build, this 2-core VM): hello (wasi:http 0.2, 186 KiB)
//!   Cranelift 220–236 ms, Winch 53–60 ms; the JavaScript app (12 MiB) Cranelift 11.4–12.0 s,
//!   Winch 2.3–2.4 s. Winch's code is larger (835 KiB against 605 KiB for hello) and slower, so
//!   it is only a bridge to the optimized code, never kept once that exists. Cranelift still
//!   compiles the Winch engine's trampolines, and in a `perf --call-graph dwarf` profile of the
//!   cold start of 1,000 distinct hello components (`bench/density.sh`'s first phase) that was
//!   26% of all CPU, regalloc2's backtracking allocator 12%: the quick engine compiles them
//!   unoptimized with the single-pass allocator, which took that cold start from 55.8–58.1 s
//!   to 45.5 s on this VM (artifacts 835 → 851 KiB).
//! - wasmtime's own compilation cache is off: [`crate::CompileCache`] keys artifacts by the
//!   component's content digest instead of hashing the bytes again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::RuntimeError;
use crate::host::HostState;

/// How often the epoch advances. Deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Whether to use the pooling instance allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingMode {
    /// Use it when the machine allows reserving its address space, else fall back.
    #[default]
    Auto,
    /// Require it; fail if it cannot be set up.
    On,
    /// Never use it.
    Off,
}

impl PoolingMode {
    /// Read `LEPTON_POOLING` (`0`/`1`/`auto`); anything unset or unrecognised is `Auto`.
    pub fn from_env() -> Self {
        match std::env::var("LEPTON_POOLING").as_deref() {
            Ok("0") | Ok("off") | Ok("false") => Self::Off,
            Ok("1") | Ok("on") | Ok("true") => Self::On,
            _ => Self::Auto,
        }
    }
}

/// Settings for [`RuntimeEngine::new`].
#[derive(Debug, Clone)]
pub struct RuntimeEngineConfig {
    /// Pooling allocator choice.
    pub pooling: PoolingMode,
    /// How many instances (and so memories, stacks) the pool holds at once.
    pub max_instances: u32,
    /// Bytes of each linear memory kept resident between instances.
    pub keep_resident_memory: usize,
    /// Bytes of each table kept resident between instances.
    pub keep_resident_table: usize,
    /// Whether to use Linux's `PAGEMAP_SCAN` to reset only the pages an instance dirtied.
    pub pagemap_scan: wasmtime::Enabled,
    /// How many decommits the pooling allocator batches before flushing them.
    pub decommit_batch_size: usize,
    /// CPU lanes for CPU-bound requests (see [`crate::cpu`]); `LEPTON_CPU_LANES`, default one
    /// fewer than the cores, at least one.
    pub cpu_lanes: usize,
    /// Epoch ticks a request runs before it counts as CPU-bound; `LEPTON_CPU_GRACE_TICKS`.
    pub cpu_grace_ticks: u32,
    /// Compile a component first with Winch (fast to compile, slower to run) while Cranelift
    /// compiles it in the background; `LEPTON_QUICK_COMPILE=0` turns it off.
    pub quick_compile: bool,
}

impl Default for RuntimeEngineConfig {
    fn default() -> Self {
        Self {
            pooling: PoolingMode::from_env(),
            max_instances: env_u32("LEPTON_MAX_INSTANCES").unwrap_or(1000),
            keep_resident_memory: env_usize("LEPTON_KEEP_RESIDENT_MEMORY").unwrap_or(2 << 20),
            keep_resident_table: env_usize("LEPTON_KEEP_RESIDENT_TABLE").unwrap_or(512 << 10),
            pagemap_scan: match std::env::var("LEPTON_PAGEMAP_SCAN").as_deref() {
                Ok("0") | Ok("no") | Ok("off") => wasmtime::Enabled::No,
                Ok("1") | Ok("yes") | Ok("on") => wasmtime::Enabled::Yes,
                _ => wasmtime::Enabled::Auto,
            },
            decommit_batch_size: env_usize("LEPTON_DECOMMIT_BATCH").unwrap_or(1).max(1),
            cpu_lanes: env_usize("LEPTON_CPU_LANES")
                .unwrap_or_else(crate::cpu::CpuScheduler::default_lanes)
                .max(1),
            cpu_grace_ticks: env_u32("LEPTON_CPU_GRACE_TICKS").unwrap_or(1),
            quick_compile: !matches!(
                std::env::var("LEPTON_QUICK_COMPILE").as_deref(),
                Ok("0") | Ok("no") | Ok("off") | Ok("false")
            ),
        }
    }
}

fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.parse().ok()
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

/// The process-wide engine, its linker, and the thread that advances epochs; with quick
/// compiles on, a second engine (and linker) for Winch-compiled code.
pub struct RuntimeEngine {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    quick: Option<(Engine, Arc<Linker<HostState>>)>,
    pooling: bool,
    max_instances: u32,
    ticker: EpochTicker,
    cpu: Arc<crate::cpu::CpuScheduler>,
}

impl RuntimeEngine {
    /// Build the engine (trying the pooling allocator first if allowed) and its linker.
    pub fn new(config: &RuntimeEngineConfig) -> Result<Self, RuntimeError> {
        let (engine, pooling) = match config.pooling {
            PoolingMode::Off => (build_engine(config, false)?, false),
            PoolingMode::On => (build_engine(config, true)?, true),
            PoolingMode::Auto => match build_engine(config, true) {
                Ok(engine) => (engine, true),
                Err(err) => {
                    tracing::warn!(
                        error = %err,
                        "pooling allocator unavailable on this machine; using on-demand allocation"
                    );
                    (build_engine(config, false)?, false)
                }
            },
        };
        if pooling {
            tracing::info!(
                max_instances = config.max_instances,
                keep_resident_memory = config.keep_resident_memory,
                "wasmtime engine: pooling allocator with copy-on-write memory images"
            );
        } else {
            tracing::info!("wasmtime engine: on-demand instance allocation");
        }
        let linker = Arc::new(crate::host::build_linker(&engine)?);
        let quick = if config.quick_compile {
            match build_quick_engine() {
                Ok(quick) => {
                    let linker = Arc::new(crate::host::build_linker(&quick)?);
                    tracing::info!(
                        "first compiles use Winch; Cranelift recompiles in the background"
                    );
                    Some((quick, linker))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Winch unavailable; every compile uses Cranelift");
                    None
                }
            }
        } else {
            None
        };
        let mut engines = vec![engine.clone()];
        engines.extend(quick.as_ref().map(|(e, _)| e.clone()));
        let ticker = EpochTicker::start(engines);
        let cpu = crate::cpu::CpuScheduler::new(config.cpu_lanes, config.cpu_grace_ticks);
        tracing::info!(
            lanes = cpu.lanes(),
            grace_ticks = cpu.grace_ticks(),
            "CPU-bound requests share lanes fairly between apps"
        );
        Ok(Self {
            engine,
            linker,
            quick,
            pooling,
            max_instances: config.max_instances.max(1),
            ticker,
            cpu,
        })
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker holding every host interface lepton provides.
    pub fn linker(&self) -> &Arc<Linker<HostState>> {
        &self.linker
    }

    /// The engine for quick (Winch) first compiles, when they are on.
    pub fn quick_engine(&self) -> Option<&Engine> {
        self.quick.as_ref().map(|(engine, _)| engine)
    }

    /// The linker for components compiled on `engine` (the optimized engine's or the quick
    /// one's).
    pub fn linker_for(&self, engine: &Engine) -> &Arc<Linker<HostState>> {
        match &self.quick {
            Some((quick, linker)) if Engine::same(quick, engine) => linker,
            _ => &self.linker,
        }
    }

    /// The CPU lane scheduler every store's epoch callback consults.
    pub fn cpu_scheduler(&self) -> &Arc<crate::cpu::CpuScheduler> {
        &self.cpu
    }

    /// How many instances can exist at once: the pooling allocator's slots, or `None` with
    /// on-demand allocation (bounded by memory only).
    pub fn instance_capacity(&self) -> Option<u32> {
        self.pooling.then_some(self.max_instances)
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Stop the epoch thread (also done on drop).
    pub fn shutdown(&mut self) {
        self.ticker.stop();
    }
}

fn build_engine(config: &RuntimeEngineConfig, pooling: bool) -> Result<Engine, RuntimeError> {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .cache(None);
    if pooling {
        let n = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_memories(n)
            .total_stacks(n)
            .total_tables(n.saturating_mul(2))
            .total_core_instances(n.saturating_mul(4))
            .table_elements(100_000)
            .max_component_instance_size(10 << 20)
            .max_core_instance_size(10 << 20)
            .max_core_instances_per_component(200)
            .max_memories_per_component(32)
            .max_tables_per_component(64)
            .max_memories_per_module(2)
            .max_tables_per_module(2)
            .max_memory_size(4 << 30)
            .linear_memory_keep_resident(config.keep_resident_memory)
            .table_keep_resident(config.keep_resident_table)
            .pagemap_scan(config.pagemap_scan)
            .decommit_batch_size(config.decommit_batch_size);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&wasm).map_err(|e| RuntimeError::Engine(crate::chain(&e)))
}

/// The engine for Winch-compiled code: the same settings as the optimized engine's but the
/// compiler, and on-demand allocation (its instances are few and short-lived: an app runs on
/// Winch code only until Cranelift's is ready).
fn build_quick_engine() -> Result<Engine, RuntimeError> {
    let mut wasm = Config::new();
    wasm.strategy(wasmtime::Strategy::Winch)
        // Winch compiles the guest's functions; Cranelift still compiles its trampolines (one
        // per escaping function and per host import): unoptimized, with the single-pass
        // register allocator, as this code only bridges until Cranelift's optimized code is in.
        .cranelift_opt_level(wasmtime::OptLevel::None)
        .cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass)
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .cache(None);
    Engine::new(&wasm).map_err(|e| RuntimeError::Engine(crate::chain(&e)))
}

/// A thread that calls [`Engine::increment_epoch`] on every engine every [`EPOCH_TICK`].
struct EpochTicker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engines: Vec<Engine>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("lepton-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .ok();
        Self { stop, handle }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_demand_engine_builds() {
        let config = RuntimeEngineConfig {
            pooling: PoolingMode::Off,
            ..RuntimeEngineConfig::default()
        };
        let engine = RuntimeEngine::new(&config).expect("engine");
        assert!(!engine.pooling());
    }

    #[test]
    fn auto_mode_yields_a_working_engine() {
        let config = RuntimeEngineConfig {
            pooling: PoolingMode::Auto,
            max_instances: 16,
            ..RuntimeEngineConfig::default()
        };
        let engine = RuntimeEngine::new(&config).expect("engine");
        // A component with no imports must compile and link on whichever allocator was chosen.
        let component = wasmtime::component::Component::new(engine.engine(), "(component)")
            .expect("compile empty component");
        engine
            .linker()
            .instantiate_pre(&component)
            .expect("instantiate_pre");
    }
}
