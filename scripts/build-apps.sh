#!/usr/bin/env bash
# Build the guest components in apps/ (release, wasm32-wasip2) with Debian's rustc-web
# toolchain and -Zbuild-std. Runs scripts/install-deps.sh first. Works from any directory.
# Extra arguments are passed to cargo (e.g. --locked, -p hello-p2).
#
# Outputs: apps/target/wasm32-wasip2/release/{hello_p2,hello_p3,fileserver,kv_p2,outbound_p2,outbound_p3,outbound_legacy,data_p2,data_p3}.wasm
#          apps/target/wasm32-wasip2/release/{redis_rs,redis_p3,cron_rs}.wasm
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/install-deps.sh"

cd "$ROOT/apps"
# apps/.cargo/config.toml selects the target, /usr/bin/rustc, build-std and -L /usr/lib/wasm32-wasi;
# the variables below repeat it so the build does not depend on cargo's config discovery.
# Ignore a rustup toolchain or flags inherited from the host build.
unset RUSTUP_TOOLCHAIN RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS RUSTC_WRAPPER CARGO_BUILD_TARGET
export RUSTC_BOOTSTRAP=1
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_DIR="$ROOT/apps/target"

/usr/bin/cargo build --release --target wasm32-wasip2 -Zbuild-std=std,panic_abort "$@"

OUT="$CARGO_TARGET_DIR/wasm32-wasip2/release"
for name in hello_p2 hello_p3 hostile_p2 hostile_p3 fileserver kv_p2 outbound_p2 outbound_p3 outbound_legacy data_p2 data_p3; do
    if [ -f "$OUT/$name.wasm" ]; then
        echo "$OUT/$name.wasm"
    fi
done
# Non-HTTP trigger guests: Redis (spin-sdk 5.2 and 7) and cron (spin-trigger-cron's WIT).
for name in redis_rs redis_p3 cron_rs; do
    if [ -f "$OUT/$name.wasm" ]; then
        echo "$OUT/$name.wasm"
    fi
done

# wasm32-wasip1 core modules (core-p1: the classic Spin shape with a component-type section;
# wagi: a plain `_start` command), which lepton turns into components at load. Built on a full
# build, or when one of them is named with -p.
build_p1=1
p1_flags=()
for arg in "$@"; do
    case "$arg" in
        -p | --package) build_p1=0 ;;
        --locked | --offline | --frozen) p1_flags+=("$arg") ;;
    esac
done
for arg in "$@"; do
    case "$arg" in core-p1 | wagi) build_p1=1 ;; esac
done
if [ "$build_p1" = 1 ]; then
    /usr/bin/cargo build --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
        -p core-p1 -p wagi "${p1_flags[@]}"
    for name in core_p1 wagi; do
        echo "$CARGO_TARGET_DIR/wasm32-wasip1/release/$name.wasm"
    done
fi

# Python (componentize-py) and JavaScript (j2w) apps: apps/py-p2, apps/py-p3, apps/js, built into
# apps/target/polyglot/ by scripts/build-polyglot.sh. On a full build only (no -p).
case " $* " in
    *" -p "* | *" --package "*) ;;
    *) "$ROOT/scripts/build-polyglot.sh" ;;
esac
