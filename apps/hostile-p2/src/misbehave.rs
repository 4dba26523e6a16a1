//! The misbehaviours shared by `hostile-p2` and `hostile-p3` (which includes this file with
//! `#[path]`): pure CPU, memory and stack work with no host calls except the monotonic clock.

use std::hint::black_box;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// The value of `key` in a `k=v&k=v` query as a number; 0 when missing or not a number.
pub fn param(query: &str, key: &str) -> u64 {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Splits a request target into path and query.
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once('?').unwrap_or((target, ""))
}

/// Never returns, never yields and never calls the host: only epoch/fuel interruption or a
/// host-side timeout that kills the instance can stop it. `black_box` keeps the counter (and so
/// the loop) from being optimised away.
pub fn loop_forever() -> ! {
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Busy-loops for `ms` milliseconds, reading the monotonic clock once every 100k iterations.
pub fn spin_for(ms: u64) {
    let start = Instant::now();
    let limit = Duration::from_millis(ms);
    let mut i: u64 = 0;
    loop {
        i = black_box(i.wrapping_add(1));
        if i % 100_000 == 0 && start.elapsed() >= limit {
            return;
        }
    }
}

/// Allocates `mib` MiB in 1 MiB chunks, writing one byte per 4 KiB page of each and keeping every
/// chunk until the end. Returns the status and body to answer with: `200 "allocated N"`, or
/// `507 "alloc failed after K MiB"` when a reservation fails. std's allocator on wasm32-wasip2 is
/// wasi-libc's malloc (dlmalloc over `sbrk`); when `memory.grow` returns -1, malloc returns NULL
/// and `try_reserve_exact` returns `Err` instead of aborting.
pub fn alloc(mib: u64) -> (u16, String) {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    // Reserve the list of chunks up front so that pushing to it can never abort.
    let fits = usize::try_from(mib).is_ok_and(|n| chunks.try_reserve_exact(n).is_ok());
    if !fits {
        return (507, "alloc failed after 0 MiB".to_owned());
    }
    for k in 0..mib {
        let mut chunk: Vec<u8> = Vec::new();
        if chunk.try_reserve_exact(MIB).is_err() {
            // Free the chunks before formatting the reply, which itself needs a little memory.
            // (The linear memory stays at its peak size: wasm memory never shrinks.)
            drop(chunks);
            return (507, format!("alloc failed after {k} MiB"));
        }
        for byte in chunk.spare_capacity_mut().iter_mut().step_by(PAGE) {
            byte.write(1);
        }
        // The pointer escapes, so neither the writes nor the allocation can be elided.
        black_box(chunk.as_mut_ptr());
        chunks.push(chunk);
    }
    black_box(&mut chunks);
    (200, format!("allocated {mib}"))
}

/// Recurses `depth` calls deep. Each frame keeps 64 bytes live across the call (on the shadow
/// stack in linear memory) and uses the result after it, so it is neither a tail call nor
/// turned into a loop; a very large depth overflows the wasm stack (or the shadow stack) and traps.
#[inline(never)]
pub fn recurse(depth: u64) -> u64 {
    let frame = [depth; 8];
    let below = if depth == 0 { 0 } else { recurse(black_box(depth - 1)) };
    black_box(&frame);
    below + 1
}
