#!/usr/bin/env bash
# Tenant isolation, measured in one run: a well-behaved hello app (the neighbour) served next to
# apps/hostile-p2 by one lepton process. Prints the neighbour's req/s and p99 latency alone,
# then while the hostile app keeps 8 CPU-bound requests (`/loop`) running, as ratios; then the
# cost of the limits on the plain hello benchmark (limits on vs LEPTON_LIMITS=off).
# Not a test: numbers vary by machine. Targets on a 2-core box: the neighbour keeps >= 40% of
# its req/s with p99 <= 25 ms under the loops; the limits cost < 5%.
#
# Environment: BENCH_DURATION (default 10s), BENCH_CONNECTIONS (default 16), BENCH_THREADS (default 1).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-16}"
THREADS="${BENCH_THREADS:-1}"
WORK="$ROOT/target/bench-isolation"

scripts/install-deps.sh
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
scripts/build-apps.sh >/dev/null
cargo build --release -p lepton >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REG="127.0.0.1:$(free_port)"
HOSTILE="127.0.0.1:$(free_port)"
NEIGHBOUR="127.0.0.1:$(free_port)"
rm -rf "$WORK" && mkdir -p "$WORK"
. "$ROOT/scripts/lib.sh"
pids=()
loopers=()
REG_PID=""
cleanup() {
    for p in "${loopers[@]}" "${pids[@]}" $REG_PID; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
start_registry "$WORK" "$REG"

target/release/lepton push apps/hostile-p2/spin.toml "$REG/hostile-p2:bench" >/dev/null
target/release/lepton push apps/hello-p2/spin.toml "$REG/hello-p2:bench" >/dev/null
cat >"$WORK/lepton.json" <<JSON
{ "apps": [
  { "name": "hostile", "reference": "$REG/hostile-p2:bench", "address": "$HOSTILE", "state_dir": "hostile",
    "limits": { "request_timeout_ms": 600000 } },
  { "name": "neighbour", "reference": "$REG/hello-p2:bench", "address": "$NEIGHBOUR", "state_dir": "neighbour" }
] }
JSON

start_lepton() { # start_lepton LOG [ENV=VALUE...]: start lepton on the manifest, wait until it serves
    local log="$1"
    shift
    env LEPTON_LOG=warn "$@" target/release/lepton "$WORK/lepton.json" --cache-dir "$WORK/cache" >"$log" 2>&1 &
    LEPTON_PID=$!
    pids+=("$LEPTON_PID")
    wait_http "http://$NEIGHBOUR/.well-known/spin/health"
    wait_http "http://$HOSTILE/.well-known/spin/health"
}
stop_lepton() { kill "$LEPTON_PID" 2>/dev/null || true; wait "$LEPTON_PID" 2>/dev/null || true; }

# measure URL: "req/s p99_ms" from one wrk run with latency percentiles.
measure() {
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" | awk '
        /Requests\/sec/ { rps = $2 }
        $1 == "99%" { v = $2; if (v ~ /ms$/) { sub(/ms$/, "", v); p = v } else if (v ~ /us$/) { sub(/us$/, "", v); p = v / 1000 } else if (v ~ /s$/) { sub(/s$/, "", v); p = v * 1000 } }
        END { print rps, p }'
}

start_lepton "$WORK/lepton-on.log"
wrk -t1 -c4 -d2s "http://$NEIGHBOUR/" >/dev/null
read -r alone_rps alone_p99 < <(measure "http://$NEIGHBOUR/")

# 8 CPU-bound requests that never end on their own (bounded here by curl's own timeout).
for _ in $(seq 1 8); do
    curl -s -o /dev/null -m 120 "http://$HOSTILE/loop" & loopers+=($!)
done
sleep 1
read -r loaded_rps loaded_p99 < <(measure "http://$NEIGHBOUR/")
lepton_cpu=$(ps -o %cpu= -p "$LEPTON_PID" | tr -d ' ')
for p in "${loopers[@]}"; do kill "$p" 2>/dev/null || true; done
loopers=()

# The cost of the limits on plain hello: on, off (LEPTON_LIMITS=off), on, off, each in a fresh process.
read -r on1 _ < <(measure "http://$NEIGHBOUR/")
stop_lepton
rates=()
for mode in off on off; do
    start_lepton "$WORK/lepton-$mode-${#rates[@]}.log" LEPTON_LIMITS="$mode"
    wrk -t1 -c4 -d2s "http://$NEIGHBOUR/" >/dev/null
    read -r rate _ < <(measure "http://$NEIGHBOUR/")
    rates+=("$rate")
    stop_lepton
done
off1=${rates[0]} on2=${rates[1]} off2=${rates[2]}

python3 - "$alone_rps" "$alone_p99" "$loaded_rps" "$loaded_p99" "$on1" "$on2" "$off1" "$off2" "$CONNS" "$DURATION" "$lepton_cpu" <<'PY'
import sys
a_rps, a_p99, l_rps, l_p99, on1, on2, off1, off2 = map(float, sys.argv[1:9])
conns, dur, cpu = sys.argv[9], sys.argv[10], sys.argv[11]
print(f"wrk: {conns} connections, {dur} per run, against the neighbour (hello-p2)")
print(f"neighbour alone            : {a_rps:9.0f} req/s  p99 {a_p99:7.2f} ms")
print(f"neighbour, 8 loops next door: {l_rps:9.0f} req/s  p99 {l_p99:7.2f} ms  (lepton at {cpu}% CPU)")
print(f"ratio under loops           : {l_rps / a_rps:9.3f} of its req/s (target >= 0.40), p99 x{l_p99 / a_p99:.1f} (target <= 25 ms)")
on, off = (on1 + on2) / 2, (off1 + off2) / 2
print(f"hello, limits on            : {on:9.0f} req/s  (runs: {on1:.0f}, {on2:.0f})")
print(f"hello, LEPTON_LIMITS=off    : {off:9.0f} req/s  (runs: {off1:.0f}, {off2:.0f})")
print(f"cost of the limits          : {(1 - on / off) * 100:8.1f} %  (target < 5%)")
PY
