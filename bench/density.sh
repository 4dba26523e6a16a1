#!/usr/bin/env bash
# Density: many apps in one `lepton serve` process, through its shared ingress. Not a test:
# numbers vary by machine. Prints, in one run:
#
#   A. 1,000 apps of 1,000 distinct components (the hello component, each with its own custom
#      section), cold cache: time and peak RSS/threads of the first request to each (pull +
#      compile on demand); then, restarted on the warm cache: time until all are routable, RSS
#      idle, first-request latency of never-loaded apps (p50/p99), time and RSS after one
#      request to each, RSS after every app was evicted (idle timeout), first-request latency
#      of evicted apps (p50/p99).
#   B. 10,000 apps over the same 1,000 components: time until all are routable, RSS idle, time
#      and RSS after one request to each.
#
#   A0. Baseline, when DENSITY_BASELINE=1: the same cold first start with quick (Winch) compiles
#      off (LEPTON_QUICK_COMPILE=0), every first compile by Cranelift, on a cache of its own.
#
# Environment: DENSITY_APPS (default 1000 distinct components), DENSITY_MANY (default 10000),
# DENSITY_BASELINE (default 0).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
N="${DENSITY_APPS:-1000}"
MANY="${DENSITY_MANY:-10000}"
WORK="$ROOT/target/bench-density"
TOKEN="bench-admin-token-0123456789"

scripts/install-deps.sh
scripts/build-apps.sh -p hello-p2 >/dev/null
cargo build --release -p lepton >/dev/null

. "$ROOT/scripts/lib.sh"
REG="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
INGRESS="127.0.0.1:$(free_port)"
rm -rf "$WORK" && mkdir -p "$WORK/variants"
REG_PID=""
LEPTON_PID=""
cleanup() { for p in $LEPTON_PID $REG_PID; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start_registry "$WORK" "$REG"
export DENSITY_REGISTRY="$REG"

echo "==> publishing $N distinct components (hello-p2 + a custom section each)"
python3 - "$ROOT/apps/target/wasm32-wasip2/release/hello_p2.wasm" "$WORK/variants" "$N" <<'PY'
import os, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
wasm = open(src, "rb").read()
def leb(v):
    b = bytearray()
    while True:
        byte = v & 0x7F; v >>= 7
        b.append(byte | (0x80 if v else 0))
        if not v: return bytes(b)
for i in range(n):
    name, payload = b"lepton-density", f"variant {i}".encode()
    body = leb(len(name)) + name + payload
    d = os.path.join(out, f"d{i}")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "hello.wasm"), "wb").write(wasm + b"\x00" + leb(len(body)) + body)
    open(os.path.join(d, "spin.toml"), "w").write(f'''spin_manifest_version = 2
[application]
name = "d{i}"
[[trigger.http]]
route = "/..."
component = "hello"
[component.hello]
source = "hello.wasm"
''')
PY
t0=$(date +%s.%N)
seq 0 $((N - 1)) | xargs -P 4 -I{} sh -c \
    "LEPTON_LOG=warn target/release/lepton push '$WORK/variants/d{}/spin.toml' '$REG/d{}:v1' >/dev/null"
echo "published $N apps in $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"

start_serve() { # start_serve DB [ARGS...] (CACHE=dir to use another cache)
    local db="$1"; shift
    LEPTON_LOG=warn LEPTON_ADMIN_TOKEN="$TOKEN" target/release/lepton serve \
        --db "$WORK/$db" --admin "$ADMIN" --http "$INGRESS" --state-root "$WORK/state" \
        --cache-dir "${CACHE:-$WORK/cache}" --drain-timeout 2 "$@" >>"$WORK/lepton.log" 2>&1 &
    LEPTON_PID=$!
    SERVE_T0=$(date +%s.%N)
}
stop_serve() { kill "$LEPTON_PID"; wait "$LEPTON_PID" 2>/dev/null || true; LEPTON_PID=""; }

# The Python driver: put (store apps), routable (time until every host answers its health
# check), hit (one request to each app: total time, p50/p99 latency), rss, wait_evicted.
driver() { python3 "$ROOT/bench/density_driver.py" "$ADMIN" "$INGRESS" "$TOKEN" "$LEPTON_PID" "$@"; }

echo
echo "==> A. $N apps of $N distinct components"
start_serve a.db --app-idle-timeout 0
wait_http "http://$ADMIN/healthz"
driver put "$N" "$N"
driver hit "$N" "first start, cold cache (pull + Winch compile on first request)" --peak
driver wait_optimized "$N" "$WORK/cache/compiled"
driver rss "with every app on Cranelift's code"
stop_serve
if [ "${DENSITY_BASELINE:-0}" = 1 ]; then
    echo "==> A0. baseline: the same cold first start, Cranelift only (LEPTON_QUICK_COMPILE=0)"
    LEPTON_QUICK_COMPILE=0 CACHE="$WORK/cache-baseline" start_serve a0.db --app-idle-timeout 0
    wait_http "http://$ADMIN/healthz"
    driver put "$N" "$N"
    driver hit "$N" "first start, cold cache (pull + Cranelift compile on first request)" --peak
    stop_serve
fi
start_serve a.db --app-idle-timeout 5
driver routable "$N" "$SERVE_T0"
driver rss "idle after restart"
driver hit "$N" "never-loaded apps, warm disk cache" --clients 1
driver rss "after one request to each"
driver wait_evicted
driver rss "after every app was evicted"
driver hit "$N" "evicted apps" --clients 1
stop_serve

echo
echo "==> B. $MANY apps over $N distinct components"
start_serve b.db --app-idle-timeout 0
wait_http "http://$ADMIN/healthz"
driver put "$MANY" "$N"
stop_serve
start_serve b.db --app-idle-timeout 0
driver routable "$MANY" "$SERVE_T0"
driver rss "idle, $MANY apps"
driver hit "$MANY" "one request to each of $MANY apps"
driver rss "after one request to each"
stop_serve
