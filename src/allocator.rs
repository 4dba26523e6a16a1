//! The process's memory allocator: jemalloc (`tikv-jemallocator`), for both binaries.
//!
//! Why, measured with `bench/run.sh`'s setup on this 2-core VM (alternating 8 s `wrk -c32` runs,
//! lepton's CPU per request from `/proc`), against glibc's malloc, which was 10–11% of lepton's
//! CPU in a `perf` profile of hello-p3 (the request path's headers, bodies, channels and
//! wasmtime's per-call state all allocate):
//! - hello-p3 (reused instances): 65.7–67.6 → 56.0–56.6 µs/request, 23.3–23.9k → 27.8k req/s;
//! - hello-p2 (fresh instances): 182–188 → 172–176 µs/request;
//! - mimalloc was as fast (54.6–59.7 µs) but held 132–196 MiB after the same runs against
//!   glibc's 71 and jemalloc's 79–80 MiB, which the density targets (idle cost per app, the
//!   1 GiB cold-start peak) cannot afford.
//!
//! Configuration ([`MALLOC_CONF`], overridable at run time with `_RJEM_MALLOC_CONF`):
//! `background_thread:true` lets jemalloc's own threads return freed pages to the system while
//! the process is idle (without them, purging happens only on later allocations, so memory
//! freed by a burst of compilations would stay resident in an idle host); `dirty_decay_ms`
//! bounds how long freed pages stay resident.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options string (a NUL-terminated C string it reads at start-up).
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: a pointer to a static, immutable C string literal; never written.
unsafe impl Sync for MallocConf {}

/// The options jemalloc starts with (see the module docs).
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:1000".as_ptr());
