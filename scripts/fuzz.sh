#!/usr/bin/env bash
# Fuzz every parser of untrusted input for a bounded time: the cargo-fuzz targets in fuzz/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 20)
#
# Installs cargo-fuzz if it is missing, builds all targets (fuzz/target, separate from the main
# build), then runs each one for SECONDS_PER_TARGET seconds, as many at a time as there are cores,
# starting from its seeds in fuzz/corpus/<target>/ (never written to: new inputs go to a scratch
# copy under fuzz/target/corpus/). Exits non-zero if any target crashes, panics, hangs (an input
# taking over FUZZ_TIMEOUT seconds) or runs out of memory; the input is saved under
# fuzz/artifacts/<target>/ and the failure with its stack is printed.
#
# Environment:
#   FUZZ_TARGETS="a b"        only these targets (default: all of `cargo fuzz list`)
#   FUZZ_SANITIZER=address    build with AddressSanitizer (default: none: much faster to build
#                             and run, and panics, hangs and OOMs are caught either way)
#   FUZZ_JOBS=N               targets run at once (default: nproc)
#   FUZZ_TIMEOUT=S            per-input time limit in seconds (default 10)
#
# Without a sanitizer, cargo-fuzz needs only stable rustc flags (sancov passes, --cfg fuzzing); with
# one it passes the nightly-only -Zsanitizer, which RUSTC_BOOTSTRAP=1 makes the stable toolchain
# accept. Reproduce a finding with
#   cargo fuzz run --dev --sanitizer none <target> fuzz/artifacts/<target>/<file>
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ="$ROOT/fuzz"
SECONDS_PER_TARGET=${1:-20}
SANITIZER=${FUZZ_SANITIZER:-none}
JOBS=${FUZZ_JOBS:-$(nproc)}
TIMEOUT=${FUZZ_TIMEOUT:-10}

if ! [[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

started=$(date +%s)
elapsed() { echo "$(( $(date +%s) - started ))s"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    # A debug build: cargo-fuzz only drives cargo and libFuzzer, and it installs in about half the time.
    cargo install cargo-fuzz --locked --debug
fi

cd "$ROOT"
if [ "$SANITIZER" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
# `--dev`: fuzz/Cargo.toml's dev profile optimises the parsers and leaves the never-run runtime
# crates (wasmtime, TLS, ...) unoptimised, which keeps a build from scratch short.
build=(--dev --sanitizer "$SANITIZER")
echo "fuzz: building the targets (sanitizer: $SANITIZER)"
cargo fuzz build "${build[@]}"
echo "fuzz: built ($(elapsed) so far)"

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo fuzz list)
fi

# Scratch space the targets use for fixture files (TMPDIR); tmpfs when there is one, so the cache
# writes of oci_resolve do not hit the disk.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    TMPDIR=$(mktemp -d /dev/shm/lepton-fuzz.XXXXXX)
else
    mkdir -p "$FUZZ/target"
    TMPDIR=$(mktemp -d "$FUZZ/target/tmp.XXXXXX")
fi
export TMPDIR
LOGS="$FUZZ/target/logs"
RUN_CORPUS="$FUZZ/target/corpus"
trap 'rm -rf "$TMPDIR"' EXIT
rm -rf "$LOGS" "$RUN_CORPUS"
mkdir -p "$LOGS" "$RUN_CORPUS"

# One target: libFuzzer writes new inputs to the first corpus directory (the scratch one) and
# only reads the seeds.
run_target() {
    local target=$1
    mkdir -p "$RUN_CORPUS/$target" "$FUZZ/corpus/$target"
    cargo fuzz run "${build[@]}" "$target" "$RUN_CORPUS/$target" "$FUZZ/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT" -rss_limit_mb=2048 \
        -print_final_stats=1 >"$LOGS/$target.log" 2>&1
}

echo "fuzz: running ${#targets[@]} targets for ${SECONDS_PER_TARGET}s each, $JOBS at a time"
declare -A pids=()
failed=()
wait_one() {
    local done_pid target status
    wait -n -p done_pid "${!pids[@]}" && status=0 || status=$?
    target=${pids[$done_pid]}
    unset "pids[$done_pid]"
    local runs cov
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGS/$target.log" | grep -o '[0-9]*$' || true)
    cov=$(grep -o 'cov: [0-9]*' "$LOGS/$target.log" | tail -1 || true)
    if [ "$status" -eq 0 ]; then
        echo "fuzz: $target: ok (${runs:-?} runs, ${cov:-cov: ?})"
    else
        echo "fuzz: $target: FAILED (exit $status), log: $LOGS/$target.log"
        failed+=("$target")
    fi
}
for target in "${targets[@]}"; do
    while [ "${#pids[@]}" -ge "$JOBS" ]; do wait_one; done
    run_target "$target" &
    pids[$!]=$target
done
while [ "${#pids[@]}" -gt 0 ]; do wait_one; done

if [ "${#failed[@]}" -gt 0 ]; then
    for target in "${failed[@]}"; do
        echo
        echo "=== fuzz: $target (from $LOGS/$target.log)"
        # The panic or sanitizer/libFuzzer error with its stack, up to cargo-fuzz's reproduce line
        # (long lines, such as the input's bytes, cut).
        sed -n '/panicked at\|ERROR: \(libFuzzer\|AddressSanitizer\)\|^error/,/^Minimize test case/p' \
            "$LOGS/$target.log" | grep -v '^#[0-9]' | cut -c1-400 | head -80
        if ! grep -q 'panicked at\|ERROR: \(libFuzzer\|AddressSanitizer\)\|^error' "$LOGS/$target.log"; then
            tail -40 "$LOGS/$target.log"
        fi
    done
    echo
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]} ($(elapsed))"
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ok ($(elapsed))"
