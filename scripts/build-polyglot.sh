#!/usr/bin/env bash
# Build the Python and JavaScript Spin apps in apps/ from source with the real SDKs:
#
#   apps/py-p2  spin-sdk 3.4.1 + componentize-py 0.17.2 (wasi:http@0.2)  -> apps/target/polyglot/py_p2.wasm
#   apps/py-p3  spin-sdk 5.0.0 + componentize-py 0.25.1 (wasi:http@0.3)  -> apps/target/polyglot/py_p3.wasm
#   apps/js     j2w from @spinframework/build-tools 1.0.7                -> apps/target/polyglot/js.wasm
#
# Runs scripts/install-guest-tools.sh first. An app is rebuilt only when its sources or pins
# changed (a sha256 stamp next to the output). Arguments: the apps to build (default: all).
# Prints each output path on stdout; progress and build times go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/apps/target/polyglot"
"$ROOT/scripts/install-guest-tools.sh"
mkdir -p "$OUT"

log() { echo "build-polyglot: $*" >&2; }

# fresh OUTPUT INPUTS...: true when OUTPUT exists and was built from exactly these inputs.
fresh() {
    local output="$1"
    shift
    [ -f "$output" ] && [ -f "$output.stamp" ] \
        && [ "$(cat "$@" | sha256sum | cut -d' ' -f1)" = "$(cat "$output.stamp")" ]
}
stamp() {
    local output="$1"
    shift
    cat "$@" | sha256sum | cut -d' ' -f1 >"$output.stamp"
}

# build APP: build one app into $OUT.
build() {
    local app="$1" dir="$ROOT/apps/$1" output start inputs=()
    output="$OUT/${app//-/_}.wasm"
    case "$app" in
        py-p2 | py-p3) inputs=("$dir/app.py" "$dir/requirements.txt") ;;
        js) inputs=("$dir/src/index.js" "$dir/wit/spin-imports.wit" "$dir/package.json" "$dir/package-lock.json") ;;
        *) log "unknown app \`$app\` (expected py-p2, py-p3 or js)"; exit 1 ;;
    esac
    if fresh "$output" "${inputs[@]}"; then
        log "$app: up to date"
        echo "$output"
        return
    fi
    log "$app: building"
    start=$(date +%s%N)
    rm -f "$output" "$output.stamp"
    case "$app" in
        py-p2)
            (cd "$dir" && PATH="$ROOT/.tools/py-p2/bin:$PATH" VIRTUAL_ENV="$ROOT/.tools/py-p2" \
                componentize-py -w spin-http componentize app -o "$output" >&2)
            ;;
        py-p3)
            (cd "$dir" && PATH="$ROOT/.tools/py-p3/bin:$PATH" VIRTUAL_ENV="$ROOT/.tools/py-p3" \
                componentize-py -w spin:up/http-trigger@4.1.0 componentize app -o "$output" >&2)
            ;;
        js)
            # j2w writes its intermediate files next to its input: build from a copy in $OUT.
            # It reads package.json (and the WIT it names) from the working directory.
            mkdir -p "$OUT/js-build"
            cp "$dir/src/index.js" "$OUT/js-build/index.js"
            (cd "$dir" && ./node_modules/.bin/j2w -i "$OUT/js-build/index.js" -o "$output" >&2)
            ;;
    esac
    # j2w reports failures on stderr but exits 0: the output file is the proof.
    if [ ! -s "$output" ]; then
        log "$app: no component was written to $output"
        exit 1
    fi
    stamp "$output" "${inputs[@]}"
    log "$app: built in $(( ($(date +%s%N) - start) / 1000000 )) ms, $(stat -c %s "$output") bytes"
    echo "$output"
}

apps=("$@")
[ "${#apps[@]}" -eq 0 ] && apps=(py-p2 py-p3 js)
for app in "${apps[@]}"; do
    build "$app"
done
