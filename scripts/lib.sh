# Shared shell helpers for scripts/demo.sh, scripts/check-deploy.sh and the bench/ scripts. Source
# it; it defines functions only.

# free_port: print a TCP port free on loopback now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_http URL: wait up to 30 s for URL to answer 2xx, else fail.
wait_http() {
    for _ in $(seq 1 300); do
        curl -fsS "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# start_registry DIR ADDR: run Debian's docker-registry on ADDR with its storage and log in DIR,
# wait until it answers, and set REG_PID.
start_registry() {
    local dir="$1" addr="$2"
    mkdir -p "$dir/registry"
    cat >"$dir/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/registry
  delete:
    enabled: true
http:
  addr: $addr
YAML
    docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
    REG_PID=$!
    wait_http "http://$addr/v2/" || { echo "registry did not start; see $dir/registry.log" >&2; return 1; }
}
