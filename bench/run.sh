#!/usr/bin/env bash
# Per-request throughput, measured in one run with wrk over loopback on this machine:
#   - a native hyper hello-world server (the baseline),
#   - lepton serving apps/hello-p2 (wasi:http 0.2: a fresh instance per request),
#   - lepton serving apps/hello-p3 (wasi:http 0.3: instances reused, up to 128 requests each),
#   - `wasmtime serve` 48 on the same two components, when available, and once more on hello-p3
#     with the seven `spin-*` request headers Spin (and lepton) give every request, sent by wrk:
#     the same work for the guest, so that row is lepton's like-for-like reference.
# Prints requests/s for each (mean of the rounds, with the spread), each one's ratio to native,
# lepton's CPU time per request, and lepton's ratios to `wasmtime serve`. Not a test: numbers
# vary by machine and by what else runs.
#
# `wasmtime serve` comes from target/bench-tools/bin/wasmtime; when it is missing this script
# installs wasmtime-cli 48 there (`cargo install`, 25-40 min on 2 cores, niced), unless
# BENCH_WASMTIME=0 or CI is set (CI never installs it; the row is then skipped).
#
# Environment: BENCH_DURATION (default 10s per run), BENCH_CONNECTIONS (default 32),
# BENCH_THREADS (default 2), BENCH_ROUNDS (default 2; targets are measured alternately, round by
# round, so background noise hits them alike), BENCH_WASMTIME (default 1).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
ROUNDS="${BENCH_ROUNDS:-2}"
WORK="$ROOT/target/bench"
TOOLS="$ROOT/target/bench-tools"
WASMTIME="$TOOLS/bin/wasmtime"

scripts/install-deps.sh
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
scripts/build-apps.sh >/dev/null
cargo build --release -p lepton -p native-hello >/dev/null

# wasmtime serve 48, the reference wasi:http host: installed once, never in CI.
use_wasmtime=0
if [ "${BENCH_WASMTIME:-1}" != 0 ]; then
    if ! "$WASMTIME" --version 2>/dev/null | grep -q '^wasmtime 48\.'; then
        if [ -n "${CI:-}" ]; then
            echo "CI is set: not installing wasmtime-cli; skipping wasmtime serve" >&2
        else
            echo "installing wasmtime-cli 48 into $TOOLS (once; 25-40 min on 2 cores)..." >&2
            nice -n 19 cargo install --locked wasmtime-cli --version '^48' --root "$TOOLS" >&2 ||
                echo "wasmtime-cli did not install; skipping wasmtime serve" >&2
        fi
    fi
    "$WASMTIME" --version 2>/dev/null | grep -q '^wasmtime 48\.' && use_wasmtime=1
fi

. "$ROOT/scripts/lib.sh"
REG="127.0.0.1:$(free_port)"
P2="127.0.0.1:$(free_port)"
P3="127.0.0.1:$(free_port)"
NATIVE="127.0.0.1:$(free_port)"
WT2="127.0.0.1:$(free_port)"
WT3="127.0.0.1:$(free_port)"
rm -rf "$WORK" && mkdir -p "$WORK"
pids=()
REG_PID=""
cleanup() {
    for p in "${pids[@]}" $REG_PID; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
start_registry "$WORK" "$REG"

LEPTON_LOG=warn target/release/lepton push apps/hello-p2/spin.toml "$REG/hello-p2:bench" >/dev/null
LEPTON_LOG=warn target/release/lepton push apps/hello-p3/spin.toml "$REG/hello-p3:bench" >/dev/null
cat >"$WORK/lepton.json" <<JSON
{ "apps": [
  { "reference": "$REG/hello-p2:bench", "address": "$P2", "state_dir": "state/p2" },
  { "reference": "$REG/hello-p3:bench", "address": "$P3", "state_dir": "state/p3" }
] }
JSON
LEPTON_LOG=warn target/release/lepton "$WORK/lepton.json" --cache-dir "$WORK/cache" >"$WORK/lepton.log" 2>&1 &
LEPTON_PID=$!
pids+=("$LEPTON_PID")
target/release/native-hello "$NATIVE" >/dev/null &
pids+=($!)
wait_http "http://$P2/.well-known/spin/health"
wait_http "http://$P3/.well-known/spin/health"
wait_http "http://$NATIVE/"

# name URL [pid whose CPU per request is reported]
targets=("native hyper hello|http://$NATIVE/|" "lepton hello-p2|http://$P2/|$LEPTON_PID" "lepton hello-p3 (reuse)|http://$P3/|$LEPTON_PID")
if [ "$use_wasmtime" = 1 ]; then
    guests="$ROOT/apps/target/wasm32-wasip2/release"
    "$WASMTIME" serve --addr "$WT2" -S cli=y "$guests/hello_p2.wasm" >"$WORK/wasmtime-p2.log" 2>&1 &
    pids+=($!)
    "$WASMTIME" serve --addr "$WT3" -S cli=y -S p3=y -W component-model-async=y \
        "$guests/hello_p3.wasm" >"$WORK/wasmtime-p3.log" 2>&1 &
    pids+=($!)
    wait_http "http://$WT2/"
    wait_http "http://$WT3/"
    targets+=("wasmtime serve hello-p2|http://$WT2/|" "wasmtime serve hello-p3|http://$WT3/|"
        "wasmtime serve p3 + spin-*|http://$WT3/||spin")
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The `spin-*` headers lepton sets on a request for / routed by `/...` (what the guest sees).
spin_headers() {
    local url="$1"
    printf '%s\n' "spin-full-url: $url" "spin-path-info: /" "spin-matched-route: /..." \
        "spin-base-path: /" "spin-raw-component-route: /..." "spin-component-route: " \
        "spin-client-addr: 127.0.0.1:40000"
}
# One wrk run against URL (with the spin-* headers when HEADERS is "spin"): prints
# "req/s requests cpu_ticks" (cpu_ticks of PID, or 0).
measure() {
    local url="$1" pid="$2" headers="${3:-}" before=0 after=0 out args=()
    if [ "$headers" = spin ]; then
        while IFS= read -r h; do args+=(-H "$h"); done < <(spin_headers "$url")
    fi
    [ -n "$pid" ] && before=$(cpu_ticks "$pid")
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "${args[@]}" "$url")
    [ -n "$pid" ] && after=$(cpu_ticks "$pid")
    echo "$(echo "$out" | awk '/Requests\/sec/ {print $2}') $(echo "$out" | awk '/requests in/ {print $1}') $((after - before))"
}

for t in "${targets[@]}"; do
    IFS='|' read -r _ url _ <<<"$t"
    wrk -t1 -c4 -d2s "$url" >/dev/null
done
echo "load before measuring: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores; other work on the machine skews every row)"
results="$WORK/results.txt"
: >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for t in "${targets[@]}"; do
        IFS='|' read -r name url pid headers <<<"$t"
        echo "$name|$(measure "$url" "$pid" "$headers")" >>"$results"
    done
done
echo "load after measuring: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$results" "$CONNS" "$DURATION" "$ROUNDS" "$(getconf CLK_TCK)" <<'PY'
import sys
path, conns, duration, rounds, tck = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
runs = {}
for line in open(path):
    name, rest = line.rstrip("\n").split("|")
    rps, requests, ticks = rest.split()
    runs.setdefault(name, []).append((float(rps), int(requests), int(ticks)))
native = sum(r for r, _, _ in runs["native hyper hello"]) / len(runs["native hyper hello"])
print(f"wrk: {conns} connections, {duration} per run, {rounds} rounds, targets alternating")
print(f"{'':26} {'req/s':>9}  {'vs native':>9}  {'spread (runs)':<24} lepton CPU/request")
for name, rs in runs.items():
    rps = [r for r, _, _ in rs]
    mean = sum(rps) / len(rps)
    spread = f"{min(rps):.0f}-{max(rps):.0f}"
    ticks, requests = sum(t for _, _, t in rs), sum(n for _, n, _ in rs)
    cpu = f"{ticks / tck / requests * 1e6:.0f} us" if name.startswith("lepton") and requests else ""
    print(f"{name:26} {mean:9.0f}  {mean / native:8.3f}x  {spread:<24} {cpu}")
mean = lambda name: sum(r for r, _, _ in runs[name]) / len(runs[name])
for ours, theirs in [("lepton hello-p2", "wasmtime serve hello-p2"),
                     ("lepton hello-p3 (reuse)", "wasmtime serve hello-p3"),
                     ("lepton hello-p3 (reuse)", "wasmtime serve p3 + spin-*")]:
    if ours in runs and theirs in runs:
        print(f"{ours} vs {theirs}: {mean(ours) / mean(theirs):.2f}x")
PY
