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

. "$ROOT/scripts/lib.sh"
REG="127.0.0.1:$(free_port)"
HOSTILE="127.0.0.1:$(free_port)"
NEIGHBOUR="127.0.0.1:$(free_port)"
rm -rf "$WORK" && mkdir -p "$WORK"
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

# The cost of the limits on plain hello: on and off (LEPTON_LIMITS=off) alternately, three times
# each, every run in a fresh process (the looping guests above run on until their deadline, so
# the first process is not reused). Reported as req/s and as lepton's CPU time per request (from
# /proc: steadier than req/s on a box where wrk competes for the same 2 cores).
stop_lepton
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_s=$(getconf CLK_TCK)
costs=()
for mode in on off on off on off; do
    start_lepton "$WORK/lepton-$mode-${#costs[@]}.log" LEPTON_LIMITS="$mode"
    wrk -t1 -c4 -d2s "http://$NEIGHBOUR/" >/dev/null
    t0=$(cpu_ticks "$LEPTON_PID")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://$NEIGHBOUR/")
    t1=$(cpu_ticks "$LEPTON_PID")
    rate=$(echo "$out" | awk '/Requests\/sec/ { print $2 }')
    reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
    costs+=("$mode:$rate:$(( (t1 - t0) * 1000000 / ticks_per_s / reqs ))")
    stop_lepton
done

python3 - "$alone_rps" "$alone_p99" "$loaded_rps" "$loaded_p99" "$CONNS" "$DURATION" "$lepton_cpu" "${costs[@]}" <<'PY'
import sys
a_rps, a_p99, l_rps, l_p99 = map(float, sys.argv[1:5])
conns, dur, cpu = sys.argv[5], sys.argv[6], sys.argv[7]
runs = {"on": [], "off": []}
for item in sys.argv[8:]:
    mode, rate, us = item.split(":")
    runs[mode].append((float(rate), float(us)))
print(f"wrk: {conns} connections, {dur} per run, against the neighbour (hello-p2)")
print(f"neighbour alone            : {a_rps:9.0f} req/s  p99 {a_p99:7.2f} ms")
print(f"neighbour, 8 loops next door: {l_rps:9.0f} req/s  p99 {l_p99:7.2f} ms  (lepton at {cpu}% CPU)")
print(f"ratio under loops           : {l_rps / a_rps:9.3f} of its req/s (target >= 0.40), p99 x{l_p99 / a_p99:.1f} (target <= 25 ms)")
mean = lambda xs: sum(xs) / len(xs)
for mode, label in (("on", "hello, limits on           "), ("off", "hello, LEPTON_LIMITS=off   ")):
    rates = [r for r, _ in runs[mode]]
    uss = [u for _, u in runs[mode]]
    print(f"{label}: {mean(rates):9.0f} req/s  {mean(uss):6.1f} us CPU/request  (runs: {', '.join(f'{r:.0f}' for r in rates)})")
on_r, off_r = mean([r for r, _ in runs["on"]]), mean([r for r, _ in runs["off"]])
on_u, off_u = mean([u for _, u in runs["on"]]), mean([u for _, u in runs["off"]])
print(f"cost of the limits          : {(1 - on_r / off_r) * 100:8.1f} % req/s, {(on_u / off_u - 1) * 100:.1f} % CPU per request  (target < 5%)")
PY
