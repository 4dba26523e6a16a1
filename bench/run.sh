#!/usr/bin/env bash
# Throughput of lepton serving the wasi:http 0.2 hello app, next to a native hyper hello-world
# server, measured in the same run on the same machine with wrk over loopback.
# Prints requests/s for both and the ratio lepton/native. Not a test: numbers vary by machine.
#
# Environment: BENCH_DURATION (default 10s), BENCH_CONNECTIONS (default 32), BENCH_THREADS (default 2).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
WORK="$ROOT/target/bench"

scripts/install-deps.sh
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
scripts/build-apps.sh >/dev/null
cargo build --release -p lepton -p native-hello >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
REG="127.0.0.1:$(free_port)"
LEPTON_ADDR="127.0.0.1:$(free_port)"
NATIVE_ADDR="127.0.0.1:$(free_port)"
rm -rf "$WORK" && mkdir -p "$WORK"
. "$ROOT/scripts/lib.sh"
pids=()
REG_PID=""
cleanup() {
    for p in "${pids[@]}" $REG_PID; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
start_registry "$WORK" "$REG"

target/release/lepton push apps/hello-p2/spin.toml "$REG/hello-p2:bench" >/dev/null
printf '{ "apps": [ { "reference": "%s/hello-p2:bench", "address": "%s", "state_dir": "state" } ] }\n' "$REG" "$LEPTON_ADDR" >"$WORK/lepton.json"
LEPTON_LOG=warn target/release/lepton "$WORK/lepton.json" --cache-dir "$WORK/cache" >"$WORK/lepton.log" 2>&1 & pids+=($!)
target/release/native-hello "$NATIVE_ADDR" >/dev/null & pids+=($!)
wait_http "http://$LEPTON_ADDR/.well-known/spin/health"
wait_http "http://$NATIVE_ADDR/"

rps() { wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$1" | awk '/Requests\/sec/ {print $2}'; }
# Warm up both, then measure alternately so background noise hits both alike.
wrk -t1 -c4 -d2s "http://$LEPTON_ADDR/" >/dev/null
wrk -t1 -c4 -d2s "http://$NATIVE_ADDR/" >/dev/null
native1=$(rps "http://$NATIVE_ADDR/")
lepton1=$(rps "http://$LEPTON_ADDR/")
native2=$(rps "http://$NATIVE_ADDR/")
lepton2=$(rps "http://$LEPTON_ADDR/")
python3 - "$native1" "$native2" "$lepton1" "$lepton2" "$CONNS" "$DURATION" <<'PY'
import sys
n1, n2, l1, l2 = map(float, sys.argv[1:5])
native, lepton = (n1 + n2) / 2, (l1 + l2) / 2
print(f"wrk: {sys.argv[5]} connections, {sys.argv[6]} per run, 2 runs each, alternating")
print(f"native hyper hello : {native:10.0f} req/s  (runs: {n1:.0f}, {n2:.0f})")
print(f"lepton hello-p2    : {lepton:10.0f} req/s  (runs: {l1:.0f}, {l2:.0f})")
print(f"ratio lepton/native: {lepton / native:10.3f}")
PY
