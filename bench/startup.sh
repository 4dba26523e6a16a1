#!/usr/bin/env bash
# Start-up and bulk writes of `lepton serve` with many apps (issue 10, "Density and speed").
# Not a test: numbers vary by machine. Every app is the hello component under one digest-pinned
# reference (cached once), each with its own host; apps load on demand (`serve`'s default).
#
#   A. For each N in STARTUP_APPS (default "1000 10000"): a SQLite database holding N apps
#      (written directly, not through the API) and a warm cache; `lepton serve` started on it:
#      time until /readyz answers (every app tried: routable), time until a request to every
#      host has answered (sequential, so it includes N requests), RSS.
#   B. STARTUP_PUTS (default 2000) PUTs through the admin API with `?wait=false` on an empty
#      database: time of the PUTs, then time until every app is routable, RSS.
#
# Environment: STARTUP_APPS, STARTUP_PUTS; CARGO_TARGET_DIR is honoured; STARTUP_BIN runs that
# binary instead of building one (to compare two builds); STARTUP_LOG sets
# LEPTON_LOG (default warn); STARTUP_PERF=1 records `perf record -g` of each start (A) into
# $WORK/perf-N.data (and of B into $WORK/perf-puts.data).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SIZES="${STARTUP_APPS:-1000 10000}"
PUTS="${STARTUP_PUTS:-2000}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
LEPTON="${STARTUP_BIN:-$TARGET/release/lepton}"
WORK="$TARGET/bench-startup"
TOKEN="bench-admin-token-0123456789"
WASM="$ROOT/apps/target/wasm32-wasip2/release/hello_p2.wasm"

[ -f "$WASM" ] || scripts/build-apps.sh -p hello-p2 >/dev/null
[ -n "${STARTUP_BIN:-}" ] || cargo build --release -p lepton >/dev/null

. "$ROOT/scripts/lib.sh"
REG="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
INGRESS="127.0.0.1:$(free_port)"
rm -rf "$WORK" && mkdir -p "$WORK/app"
REG_PID=""
LEPTON_PID=""
cleanup() { for p in $LEPTON_PID $REG_PID; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
start_registry "$WORK" "$REG"

start_serve() { # start_serve DB [ARGS...]
    local db="$1"; shift
    LEPTON_LOG="${STARTUP_LOG:-warn}" LEPTON_ADMIN_TOKEN="$TOKEN" "$LEPTON" serve \
        --db "$WORK/$db" --admin "$ADMIN" --http "$INGRESS" --state-root "$WORK/state" \
        --cache-dir "$WORK/cache" --drain-timeout 2 "$@" >>"$WORK/lepton.log" 2>&1 &
    LEPTON_PID=$!
    SERVE_T0=$(date +%s.%N)
}
stop_serve() { kill "$LEPTON_PID"; wait "$LEPTON_PID" 2>/dev/null || true; LEPTON_PID=""; }
driver() { python3 "$ROOT/bench/density_driver.py" "$ADMIN" "$INGRESS" "$TOKEN" "$LEPTON_PID" "$@"; }

echo "==> publishing the hello component and warming the cache"
cp "$WASM" "$WORK/app/hello.wasm"
cat >"$WORK/app/spin.toml" <<'TOML'
spin_manifest_version = 2
[application]
name = "hello"
[[trigger.http]]
route = "/..."
component = "hello"
[component.hello]
source = "hello.wasm"
TOML
DIGEST=$(LEPTON_LOG=warn "$LEPTON" push "$WORK/app/spin.toml" "$REG/hello:v1" | sed -n 's/^digest: //p')
REFERENCE="$REG/hello@$DIGEST"
start_serve base.db
wait_http "http://$ADMIN/healthz"
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"reference\":\"$REFERENCE\",\"hosts\":[\"warm.bench\"]}" \
    "http://$ADMIN/v1/apps/warm" >/dev/null
curl -fsS -H 'Host: warm.bench' "http://$INGRESS/" >/dev/null
stop_serve
echo "  $REFERENCE cached"

# make_db NAME N: a copy of base.db with apps a0..a(N-1) on $REFERENCE, host a<i>.bench.
make_db() {
    cp "$WORK/base.db" "$WORK/$1"
    python3 - "$WORK/$1" "$2" "$REFERENCE" <<'PY'
import json, sqlite3, sys, time
path, n, reference = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = sqlite3.connect(path)
(rev,) = db.execute("SELECT revision FROM revision WHERE id = 1").fetchone()
now = int(time.time() * 1000)
db.executemany("INSERT INTO apps (name, spec, generation, updated_at) VALUES (?, ?, ?, ?)",
    ((f"a{i}", json.dumps({"reference": reference, "hosts": [f"a{i}.bench"]}), rev + 1 + i, now)
     for i in range(n)))
db.executemany("INSERT INTO claims (kind, value, app) VALUES ('host', ?, ?)",
    ((f"a{i}.bench", f"a{i}") for i in range(n)))
db.execute("UPDATE revision SET revision = ? WHERE id = 1", (rev + n,))
db.commit()
PY
}

for n in $SIZES; do
    echo
    echo "==> A. $n apps in the database, warm cache: lepton serve started"
    make_db "a$n.db" "$n"
    if [ "${STARTUP_PERF:-0}" = 1 ]; then
        start_serve "a$n.db"
        perf record -g -o "$WORK/perf-$n.data" -p "$LEPTON_PID" 2>/dev/null &
        PERF_PID=$!
    else
        start_serve "a$n.db"
    fi
    driver ready "$SERVE_T0"
    driver routable "$n" "$SERVE_T0"
    driver rss "idle, $n apps"
    if [ "${STARTUP_PERF:-0}" = 1 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
    stop_serve
done

[ "$PUTS" -gt 0 ] || exit 0
echo
echo "==> B. $PUTS PUTs (?wait=false) through the admin API"
cp "$WORK/base.db" "$WORK/puts.db"
start_serve puts.db
wait_http "http://$ADMIN/healthz"
if [ "${STARTUP_PERF:-0}" = 1 ]; then
    perf record -g -o "$WORK/perf-puts.data" -p "$LEPTON_PID" 2>/dev/null &
    PERF_PID=$!
fi
T0=$(date +%s.%N)
DENSITY_REFERENCE="$REFERENCE" driver put "$PUTS" 1
driver ready "$T0"
driver routable "$PUTS" "$T0"
driver rss "after $PUTS PUTs"
if [ "${STARTUP_PERF:-0}" = 1 ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
stop_serve
