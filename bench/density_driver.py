#!/usr/bin/env python3
"""The client side of bench/density.sh: stores apps through lepton serve's admin API, waits until
they are routable, requests each once (timing every request), and reads the server's RSS.

usage: density_driver.py ADMIN INGRESS TOKEN PID COMMAND ARGS...
  put N DISTINCT          store apps a0..a(N-1), app i on component d(i % DISTINCT), host ai.bench
  routable N T0           wait until every host answers its health check; print time since T0
  hit N LABEL [--peak] [--clients C]
                          one GET / to each app (C clients, default 8; 1 measures latency without
                          queueing); total time, p50/p99, errors
  rss LABEL               the server's RSS and threads now
  wait_evicted            wait until lepton_apps_loaded is 0
  wait_optimized N DIR    wait until N Cranelift artifacts are under DIR (the quick tier's
                          background compiles are done); print the time and peak RSS
  ready T0                wait until /readyz answers 200 (every app tried); print time since T0

DENSITY_REFERENCE, when set, is the reference every app `put` stores (e.g. one digest-pinned
component) instead of d(i % DISTINCT) on DENSITY_REGISTRY.
"""
import http.client
import os
import json
import sys
import threading
import time

admin, ingress, token, pid = sys.argv[1:5]
command, args = sys.argv[5], sys.argv[6:]


def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=600)


def status_of(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_mib():
    s = status_of(pid)
    return int(s["VmRSS"].split()[0]) / 1024, int(s["Threads"])


def rss_split():
    """RSS as (anonymous, file-backed) MiB: heap and instances against mapped compiled code."""
    s = status_of(pid)
    kib = lambda key: int(s.get(key, "0 kB").split()[0])
    return kib("RssAnon") / 1024, kib("RssFile") / 1024


def metric(name):
    c = conn(admin)
    c.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = c.getresponse().read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def put(n, distinct):
    import os
    c = conn(admin)
    fixed = os.environ.get("DENSITY_REFERENCE")
    reg = None if fixed else sys_registry()
    t0 = time.perf_counter()
    for i in range(n):
        reference = fixed or f"{reg}/d{i % distinct}:v1"
        spec = {"reference": reference, "hosts": [f"a{i}.bench"]}
        c.request("PUT", f"/v1/apps/a{i}?wait=false", json.dumps(spec).encode(), {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        res = c.getresponse()
        body = res.read()
        if res.status not in (200, 202):
            sys.exit(f"PUT a{i}: {res.status} {body!r}")
    print(f"  stored {n} apps in {time.perf_counter() - t0:.1f} s")


def sys_registry():
    """The registry the variants were pushed to (DENSITY_REGISTRY)."""
    import os
    reg = os.environ.get("DENSITY_REGISTRY")
    if not reg:
        sys.exit("DENSITY_REGISTRY is not set")
    return reg


def get(c, host, path):
    c.request("GET", path, headers={"Host": host})
    res = c.getresponse()
    res.read()
    return res.status


def routable(n, t0):
    """Time until /readyz says every stored app was tried (routable), then until every host
    answered its health check; the checks run one after another, so the second time includes
    the checker's own ~0.3 ms per app."""
    ready(t0)
    deadline = time.time() + 600
    c = conn(ingress)
    for i in range(n):
        while True:
            try:
                if get(c, f"a{i}.bench", "/.well-known/spin/health") == 200:
                    break
            except (ConnectionError, http.client.HTTPException, OSError):
                c = conn(ingress)
            if time.time() > deadline:
                sys.exit(f"a{i} never routable")
            time.sleep(0.005)
    print(f"  all {n} apps answered their health check {time.time() - float(t0):.2f} s after start")


def hit(n, label, peak, clients):
    latencies = [None] * n
    errors = []
    next_i = [0]
    lock = threading.Lock()
    peak_rss = [0.0, 0, (0.0, 0.0)]
    done = threading.Event()

    def sample():
        while not done.is_set():
            r, t = rss_mib()
            if r > peak_rss[0]:
                peak_rss[0], peak_rss[2] = r, rss_split()
            peak_rss[1] = max(peak_rss[1], t)
            time.sleep(0.05)

    def client():
        c = conn(ingress)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n:
                return
            t = time.perf_counter()
            try:
                status = get(c, f"a{i}.bench", "/")
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                status = str(e)
                c = conn(ingress)
            latencies[i] = time.perf_counter() - t
            if status != 200:
                errors.append((i, status))

    sampler = threading.Thread(target=sample)
    if peak:
        sampler.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = time.perf_counter() - t0
    done.set()
    if peak:
        sampler.join()
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    print(f"  {label}: {n} requests ({clients} clients) in {total:.1f} s, latency p50 {p(0.5):.1f} ms p99 {p(0.99):.1f} ms, "
          f"{len(errors)} errors" + (f" (first: {errors[:3]})" if errors else ""))
    if peak:
        anon, file = peak_rss[2]
        print(f"  peak during it: RSS {peak_rss[0]:.0f} MiB (anonymous {anon:.0f}, file-backed {file:.0f}), {peak_rss[1]} threads")


def rss(label):
    r, t = rss_mib()
    anon, file = rss_split()
    loaded = metric("lepton_apps_loaded")
    print(f"  RSS {label}: {r:.0f} MiB (anonymous {anon:.0f}, file-backed {file:.0f}), {t} threads, {loaded:.0f} apps loaded")


def ready(t0):
    deadline = time.time() + 600
    while True:
        try:
            c = conn(admin)
            c.request("GET", "/readyz")
            res = c.getresponse()
            res.read()
            if res.status == 200:
                break
        except (ConnectionError, http.client.HTTPException, OSError):
            pass
        if time.time() > deadline:
            sys.exit("never ready")
        time.sleep(0.01)
    print(f"  ready (/readyz) {time.time() - float(t0):.2f} s after start")


def wait_optimized(n, compiled_dir):
    """Wait until n optimized (Cranelift) artifacts are on disk: every app then runs, or is
    being reloaded, on optimized code. Prints the time it took and the peak RSS meanwhile."""
    t0, peak = time.time(), 0.0
    while True:
        # One directory per engine: Cranelift's fills up to n while Winch's empties (its
        # artifacts are removed once Cranelift's are stored).
        counts = sorted(sum(1 for f in files if f.endswith(".cwasm"))
                        for root, _, files in os.walk(compiled_dir) if root != compiled_dir)
        count = counts[-1] if counts else 0
        peak = max(peak, rss_mib()[0])
        if count >= n and sum(counts) == count:
            break
        if time.time() - t0 > 1800:
            sys.exit(f"only {count} of {n} optimized artifacts after 30 min")
        time.sleep(0.2)
    print(f"  all {n} on Cranelift's code {time.time() - t0:.1f} s after the last first request (peak RSS {peak:.0f} MiB)")


def wait_evicted():
    t0 = time.time()
    while (metric("lepton_apps_loaded") or 0) > 0:
        if time.time() - t0 > 120:
            sys.exit("apps never evicted")
        time.sleep(0.2)
    print(f"  every app evicted {time.time() - t0:.1f} s after the last request")


if command == "put":
    put(int(args[0]), int(args[1]))
elif command == "wait_optimized":
    wait_optimized(int(args[0]), args[1])
elif command == "routable":
    routable(int(args[0]), args[1])
elif command == "hit":
    clients = int(args[args.index("--clients") + 1]) if "--clients" in args else 8
    hit(int(args[0]), args[1], "--peak" in args, clients)
elif command == "rss":
    rss(args[0])
elif command == "ready":
    ready(args[0])
elif command == "wait_evicted":
    wait_evicted()
else:
    sys.exit(f"unknown command {command}")
