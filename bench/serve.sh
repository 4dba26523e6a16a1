#!/usr/bin/env bash
# `lepton serve`, measured in one run:
# 1. hello-p2 through the shared --http ingress (routed by Host) vs the same app on its own
#    address: req/s and p99 of each (alternating runs after a warm-up, means), and the ratio
#    ingress/own.
# 2. API deploy-to-first-response: from sending `PUT /v1/apps/{name}` (waiting, the default) for
#    a new app to the first 200 from it through the ingress: for a cold reference (an app this
#    process has never pulled or compiled: hello-p3 by tag) and for ~20 new apps on a
#    digest-pinned reference already in the cache (hello-p2@sha256:…), whose PUT should take
#    <= 10 ms.
# Not a test: numbers vary by machine, so nothing passes or fails.
#
# Environment: BENCH_DURATION (default 10s), BENCH_CONNECTIONS (default 16), BENCH_THREADS
# (default 1), BENCH_PINNED (number of pinned PUTs, default 20).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-16}"
THREADS="${BENCH_THREADS:-1}"
PINNED="${BENCH_PINNED:-20}"
WORK="$ROOT/target/bench-serve"
TOKEN="bench-serve-admin-token-0123456789"

scripts/install-deps.sh
command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
scripts/build-apps.sh >/dev/null
cargo build --release -p lepton >/dev/null

. "$ROOT/scripts/lib.sh"
REG="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
INGRESS="127.0.0.1:$(free_port)"
OWN="127.0.0.1:$(free_port)"
rm -rf "$WORK" && mkdir -p "$WORK"
pids=()
REG_PID=""
cleanup() {
    for p in "${pids[@]}" $REG_PID; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
start_registry "$WORK" "$REG"

# hello-p2 serves part 1 and, pinned by digest, part 2b; hello-p3 is the cold app of part 2a
# (another component, so nothing of it is in the content-addressed compile cache).
LEPTON_LOG=warn target/release/lepton push apps/hello-p2/spin.toml "$REG/hello-p2:bench" >"$WORK/push-p2.txt"
LEPTON_LOG=warn target/release/lepton push apps/hello-p3/spin.toml "$REG/hello-p3:bench" >/dev/null
P2_DIGEST=$(awk '/^digest:/ { print $2 }' "$WORK/push-p2.txt")
[[ "$P2_DIGEST" == sha256:* ]] || { echo "no digest in: $(cat "$WORK/push-p2.txt")" >&2; exit 1; }

LEPTON_LOG=warn LEPTON_ADMIN_TOKEN="$TOKEN" target/release/lepton serve \
    --db "$WORK/lepton.db" --admin "$ADMIN" --http "$INGRESS" --state-root "$WORK/state" \
    --cache-dir "$WORK/cache" --drain-timeout 2 >"$WORK/lepton.log" 2>&1 &
LEPTON_PID=$!
pids+=("$LEPTON_PID")
wait_http "http://$ADMIN/readyz"

# deploy NAME REFERENCE HOST [ADDRESS ...]: time PUT /v1/apps/NAME (waiting) and the first 200
# from HOST through the ingress, one line per app: "name put_ms first_response_ms".
deploy() {
    python3 - "$ADMIN" "$INGRESS" "$TOKEN" "$@" <<'PY'
import http.client, json, sys, time
admin, ingress, token = sys.argv[1:4]
args = sys.argv[4:]
def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=300)
while args:
    name, reference, host, address = args[:4]
    args = args[4:]
    spec = {"reference": reference, "hosts": [host]}
    if address != "-":
        spec["address"] = address
    body = json.dumps(spec).encode()
    api, app = conn(admin), conn(ingress)
    api.connect(); app.connect()  # connections are open before the clock starts
    t0 = time.perf_counter()
    api.request("PUT", f"/v1/apps/{name}", body, {
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    res = api.getresponse()
    answer = res.read()
    t_put = time.perf_counter()
    if res.status != 200:
        sys.exit(f"PUT {name}: {res.status} {answer.decode(errors='replace')}")
    while True:
        app.request("GET", "/", headers={"Host": host})
        got = app.getresponse()
        got.read()
        if got.status == 200:
            break
        if time.perf_counter() - t0 > 120:
            sys.exit(f"{host}: no 200 through the ingress 120 s after the PUT (last {got.status})")
        app.close(); app = conn(ingress)
    t_first = time.perf_counter()
    api.close(); app.close()
    print(name, f"{(t_put - t0) * 1000:.3f}", f"{(t_first - t0) * 1000:.3f}")
PY
}

# 1. The hello app on both: first deployed (also the first pull + compile in this process).
read -r _ first_put first_resp < <(deploy hello "$REG/hello-p2:bench" hello.example.com "$OWN")
wait_http "http://$OWN/"

# measure URL [wrk args...]: "req/s p99_ms" from one wrk run with latency percentiles.
measure() {
    local url="$1"
    shift
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" | awk '
        /Requests\/sec/ { rps = $2 }
        $1 == "99%" { v = $2; if (v ~ /ms$/) { sub(/ms$/, "", v); p = v } else if (v ~ /us$/) { sub(/us$/, "", v); p = v / 1000 } else if (v ~ /s$/) { sub(/s$/, "", v); p = v * 1000 } }
        END { print rps, p }'
}
HOST_HEADER=(-H 'Host: hello.example.com')
[[ "$(curl -fsS -H 'Host: hello.example.com' "http://$INGRESS/")" == "$(curl -fsS "http://$OWN/")" ]] \
    || { echo "the ingress and the own address answer differently" >&2; exit 1; }
wrk -t1 -c4 -d2s "http://$OWN/" >/dev/null
wrk -t1 -c4 -d2s "${HOST_HEADER[@]}" "http://$INGRESS/" >/dev/null
runs=()
for _ in 1 2; do
    runs+=("own:$(measure "http://$OWN/" | tr ' ' ':')")
    runs+=("ingress:$(measure "http://$INGRESS/" "${HOST_HEADER[@]}" | tr ' ' ':')")
done

# 2a. Cold: hello-p3 by tag, never pulled or compiled by this process (fresh cache dir).
read -r _ cold_put cold_resp < <(deploy cold "$REG/hello-p3:bench" cold.example.com -)

# 2b. Pinned and cached: new apps (fresh names and hosts) on hello-p2@sha256:…, pulled in part 1.
args=()
for i in $(seq -w 1 "$PINNED"); do
    args+=("pinned-$i" "$REG/hello-p2@$P2_DIGEST" "pinned-$i.example.com" -)
done
deploy "${args[@]}" >"$WORK/pinned.txt"
for i in $(seq -w 1 "$PINNED"); do
    curl -fsS -o /dev/null -X DELETE -H "Authorization: Bearer $TOKEN" "http://$ADMIN/v1/apps/pinned-$i"
done
kill -0 "$LEPTON_PID" || { echo "lepton serve exited; see $WORK/lepton.log" >&2; exit 1; }

python3 - "$CONNS" "$DURATION" "$THREADS" "$first_put" "$first_resp" "$cold_put" "$cold_resp" "$WORK/pinned.txt" "${runs[@]}" <<'PY'
import statistics, sys
conns, duration, threads = sys.argv[1:4]
first_put, first_resp, cold_put, cold_resp = map(float, sys.argv[4:8])
pinned = [tuple(map(float, line.split()[1:])) for line in open(sys.argv[8]) if line.strip()]
runs = {"own": [], "ingress": []}
for item in sys.argv[9:]:
    where, rps, p99 = item.split(":")
    runs[where].append((float(rps), float(p99)))
mean = lambda xs: sum(xs) / len(xs)

print("lepton serve: shared ingress vs own address, and API deploy-to-first-response")
print()
print(f"1. hello-p2 (wrk: {conns} connections, {threads} thread(s), {duration} per run; runs alternate own,")
print("   ingress, own, ingress after a warm-up; means). `own`: the app's own address;")
print("   `ingress`: the shared --http listener with `Host: hello.example.com`.")
for where in ("own", "ingress"):
    r = runs[where]
    print(f"   {where:<8}: {mean([x for x, _ in r]):9.0f} req/s  p99 {mean([p for _, p in r]):7.2f} ms"
          f"  (runs: {', '.join(f'{x:.0f} req/s {p:.2f} ms' for x, p in r)})")
o_rps, o_p99 = mean([x for x, _ in runs["own"]]), mean([p for _, p in runs["own"]])
i_rps, i_p99 = mean([x for x, _ in runs["ingress"]]), mean([p for _, p in runs["ingress"]])
print(f"   ratio ingress/own: {i_rps / o_rps:.3f} of the req/s, p99 x{i_p99 / o_p99:.2f}")
print()
print("2. Deploy-to-first-response: `PUT` is the time from sending PUT /v1/apps/{name} (it waits until")
print("   the app serves) to its 200; `first 200` is from sending the PUT to the first 200 from the")
print("   app through the ingress (by its host). Every app is new (fresh name and host).")
print(f"   first app of the process (hello-p2 by tag, pull + compile): PUT {first_put:8.1f} ms  first 200 {first_resp:8.1f} ms")
print(f"   cold (hello-p3 by tag, never pulled or compiled here)    : PUT {cold_put:8.1f} ms  first 200 {cold_resp:8.1f} ms")
puts = [p for p, _ in pinned]
firsts = [f for _, f in pinned]
print(f"   cached, digest-pinned (hello-p2@sha256:…), {len(pinned)} new apps:")
print(f"     PUT      : median {statistics.median(puts):7.2f} ms  max {max(puts):7.2f} ms   (target: <= 10 ms)")
print(f"     first 200: median {statistics.median(firsts):7.2f} ms  max {max(firsts):7.2f} ms")
print(f"     every PUT (ms, in order): {', '.join(f'{p:.1f}' for p in puts)}")
PY
