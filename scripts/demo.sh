#!/usr/bin/env bash
# The demo, from a fresh machine: installs what is missing, builds the demo apps from apps/,
# starts a local OCI registry (Debian's docker-registry) on 127.0.0.1, publishes the apps to it
# with `lepton push`, and runs lepton serving them all from one lepton.json. Ctrl-C stops it all.
#
# Environment: DEMO_REGISTRY_PORT (default 5050), DEMO_BASE_PORT (default 4001).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
REG_PORT="${DEMO_REGISTRY_PORT:-5050}"
BASE_PORT="${DEMO_BASE_PORT:-4001}"
DEMO="$ROOT/target/demo"
REG="127.0.0.1:$REG_PORT"

scripts/install-deps.sh
scripts/build-apps.sh >/dev/null
cargo build --release --bin lepton
LEPTON="$ROOT/target/release/lepton"

. "$ROOT/scripts/lib.sh"
REG_PID=""
LEPTON_PID=""
cleanup() {
    [ -n "$LEPTON_PID" ] && kill "$LEPTON_PID" 2>/dev/null || true
    [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
start_registry "$DEMO" "$REG"

apps=(hello-p2 hello-p3 routes static py-p3 js)
for app in "${apps[@]}"; do
    "$LEPTON" push "apps/$app/spin.toml" "$REG/$app:v1"
done

{
    echo '{ "apps": ['
    i=0
    for app in "${apps[@]}"; do
        port=$((BASE_PORT + i))
        [ $i -gt 0 ] && echo ','
        extra=""
        case "$app" in
            # Python and JS apps read the `target` variable: set it per app here.
            py-p3 | js) extra=', "variables": { "target": "lepton demo" }' ;;
        esac
        printf '  { "reference": "%s/%s:v1", "address": "127.0.0.1:%s", "state_dir": "state/%s"%s }' "$REG" "$app" "$port" "$app" "$extra"
        i=$((i + 1))
    done
    echo
    echo '] }'
} >"$DEMO/lepton.json"

echo
echo "lepton.json:"
cat "$DEMO/lepton.json"
echo
echo "Try:"
echo "  curl http://127.0.0.1:$BASE_PORT/                      # hello-p2 (wasi:http 0.2)"
echo "  curl http://127.0.0.1:$((BASE_PORT + 1))/                      # hello-p3 (wasi:http 0.3)"
echo "  curl http://127.0.0.1:$((BASE_PORT + 2))/users/7/posts/42      # routes: named segments"
echo "  curl http://127.0.0.1:$((BASE_PORT + 3))/static/large.txt      # static files"
echo "  curl http://127.0.0.1:$((BASE_PORT + 4))/vars                  # py-p3 (Python, wasi:http 0.3): variables"
echo "  curl -X PUT --data hi http://127.0.0.1:$((BASE_PORT + 4))/kv/k; curl http://127.0.0.1:$((BASE_PORT + 4))/kv/k   # key-value, kept in state/py-p3"
echo "  curl -X POST http://127.0.0.1:$((BASE_PORT + 5))/sql/init; curl --data note http://127.0.0.1:$((BASE_PORT + 5))/sql/notes   # js: SQLite"
echo
"$LEPTON" "$DEMO/lepton.json" --cache-dir "$DEMO/cache" &
LEPTON_PID=$!
wait "$LEPTON_PID"
