#!/usr/bin/env bash
# Check the container image and the Kubernetes manifests (scripts/test.sh runs it after the
# tests, whose build left the debug binaries it packs):
#
# 1. image: scripts/build-image.sh packs target/debug/{lepton,tauon} (no release build);
# 2. inspect: every blob's digest, one layer per COPY of the Containerfile with its diff_id,
#    the config (numeric non-root user, entrypoint, workdir, volumes, cache dir), and every
#    layer's entries (owners: root, except the image user's state and cache dirs; no set-id bits);
# 3. run: the image's rootfs unpacked; its binaries load only its own libraries; as root, in a
#    chroot as the image's user (else through the image's own dynamic loader), `lepton serve`
#    from the image answers /healthz and /readyz, refuses the admin API without the token,
#    serves hello-p2 pulled from a loopback registry through its ingress, stores its compiled
#    component in the image's cache dir, and exits 0 on SIGTERM;
# 4. manifests: each variant in deploy/k8s (a directory of plain manifests, what
#    `kubectl apply -f deploy/k8s/<variant>/` applies) validated offline and strictly against
#    pinned Kubernetes API schemas (kubernetes-validate), and checked against the image, each
#    other and their `Kustomization` (deploy/k8s/check-manifests.py); a misspelled field, a wrong
#    fsGroup, variants that drift apart and a Kustomization that leaves a manifest out must each
#    fail those checks. With kubectl 1.21+ on the PATH, also `kubectl kustomize` of each variant
#    (no warnings, the same objects as the plain manifests); without it, that check is skipped.
#
# Prints the image's size, layers and the time of each step. Needs scripts/install-deps.sh's
# tools and the apps built by scripts/build-apps.sh; not kubectl.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

# The Kubernetes API versions the manifests must validate against (oldest and newest supported).
K8S_VERSIONS=(1.30 1.37)
KV="$ROOT/.tools/kubernetes-validate"
TOKEN="check-deploy-admin-token-0123456789"

fail() {
    echo "check-deploy: FAIL: $*" >&2
    exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }

[ -x "$KV/bin/kubernetes-validate" ] || fail "kubernetes-validate is missing: run scripts/install-deps.sh"
command -v umoci >/dev/null || fail "umoci is missing: run scripts/install-deps.sh"

mkdir -p "$ROOT/target"
WORK="$(mktemp -d "$ROOT/target/check-deploy.XXXXXX")"
REG_PID=""
SERVE_PID=""
cleanup() {
    for pid in $SERVE_PID $REG_PID; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. The image, from the debug binaries `cargo test --workspace` built for the end-to-end tests.
# The same command, so a no-op after it (`cargo build` may resolve other features and rebuild).
cargo test --workspace --no-run --quiet
t0=$(now_ms)
scripts/build-image.sh --binaries "$ROOT/target/debug" --out "$WORK/image" 2>"$WORK/build.log" ||
    { cat "$WORK/build.log" >&2; fail "scripts/build-image.sh failed"; }
build_ms=$(($(now_ms) - t0))

# 2. Inspect the OCI layout.
t0=$(now_ms)
L="$WORK/image/oci"
blob() { printf '%s/blobs/%s' "$L" "${1/://}"; }
for f in "$L"/blobs/sha256/*; do
    [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$(basename "$f")" ] || fail "blob $f does not match its digest"
done
manifest="$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "latest") | .digest' "$L/index.json")"
[ -n "$manifest" ] || fail "index.json has no manifest tagged latest"
M="$(blob "$manifest")"
C="$(blob "$(jq -r .config.digest "$M")")"
copies=$(grep -c '^COPY ' Containerfile)
layers=$(jq '.layers | length' "$M")
[ "$layers" = "$copies" ] || fail "$layers layers for $copies COPY instructions"
[ "$(jq '.rootfs.diff_ids | length' "$C")" = "$layers" ] || fail "diff_ids do not match the layers"
user="$(jq -r .config.User "$C")"
if ! [[ "$user" =~ ^([1-9][0-9]*):([0-9]+)$ ]]; then
    fail "the image's user '$user' is not a numeric non-root UID:GID"
fi
check_config() { jq -e "$1" "$C" >/dev/null || fail "image config: expected $1, got $(jq -c .config "$C")"; }
check_config '.os == "linux"'
check_config '.config.Entrypoint == ["/usr/local/bin/lepton"]'
check_config '.config.WorkingDir == "/var/lib/lepton"'
check_config '.config.Volumes | keys == ["/var/cache/lepton", "/var/lib/lepton"]'
check_config '.config.Env | index("LEPTON_CACHE_DIR=/var/cache/lepton") != null'
compressed=0
uncompressed=0
for i in $(seq 0 $((layers - 1))); do
    digest="$(jq -r ".layers[$i].digest" "$M")"
    compressed=$((compressed + $(jq ".layers[$i].size" "$M")))
    gzip -dc "$(blob "$digest")" >"$WORK/layer.tar"
    diff_id="sha256:$(sha256sum <"$WORK/layer.tar" | cut -d' ' -f1)"
    [ "$diff_id" = "$(jq -r ".rootfs.diff_ids[$i]" "$C")" ] || fail "layer $i: diff_id mismatch"
    uncompressed=$((uncompressed + $(stat -c %s "$WORK/layer.tar")))
    # Owners and modes of every entry: the image user owns its state and cache dirs, root the
    # rest; no set-id bits; no path out of the root.
    tar -tvf "$WORK/layer.tar" --numeric-owner | while read -r mode owner _ _ _ name _; do
        case "$name" in /* | ../* | */../*) fail "layer $i: entry $name escapes the root" ;; esac
        case "$mode" in *[sS]*) fail "layer $i: $name has a set-id bit ($mode)" ;; esac
        case "$name" in
        var/lib/lepton* | var/cache/lepton*) want="${user/:/\/}" ;;
        *) want="0/0" ;;
        esac
        [ "$owner" = "$want" ] || fail "layer $i: $name is owned by $owner, expected $want"
    done
done
rm -f "$WORK/layer.tar"
inspect_ms=$(($(now_ms) - t0))

# 3. Run it.
t0=$(now_ms)
R="$WORK/rootfs"
if [ "$(id -u)" = 0 ]; then
    umoci raw unpack --image "$L:latest" "$R" 2>/dev/null
    mode=chroot
    CHROOT="$(command -v chroot)"
else
    umoci raw unpack --rootless --image "$L:latest" "$R" 2>/dev/null
    mode=loader
fi
loader=""
for f in "$R"/lib64/ld-linux*.so* "$R"/lib/ld-linux*.so*; do
    [ -e "$f" ] && loader="${f#"$R"/}" && break
done
[ -n "$loader" ] || fail "no dynamic loader in the image"
libpath="$(find "$R" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)"
# image_loader BIN ARGS: the image's BIN through the image's own loader and libraries.
image_loader() { "$R/$loader" --library-path "$libpath" "$R$1" "${@:2}"; }
for bin in lepton tauon; do
    "$R/$loader" --library-path "$libpath" --list "$R/usr/local/bin/$bin" | while read -r line; do
        case "$line" in
        *" => "*) lib="${line#* => }"; lib="${lib%% (*}" ;;
        *) continue ;;
        esac
        case "$lib" in "$R"/*) ;; *) fail "$bin loads $lib from outside the image" ;; esac
    done
done
image_env=()
mapfile -t image_env < <(jq -r '.config.Env[]' "$C")
# in_image BIN ARGS: run the image's BIN as the image would (chroot as its user, its Env), or
# through its loader with host paths when not root. It execs: call it in a subshell (`$(…)`, `&`),
# so a background one's PID is BIN's own.
in_image() {
    if [ "$mode" = chroot ]; then
        exec env -i "${image_env[@]}" "${RUN_ENV[@]}" "$CHROOT" --userspec="$user" "$R" "$@"
    else
        exec env "${RUN_ENV[@]}" "$R/$loader" --library-path "$libpath" "$R$1" "${@:2}"
    fi
}
RUN_ENV=()
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
for bin in lepton tauon; do
    out="$(in_image /usr/local/bin/$bin --version)" || fail "$bin --version failed in the image"
    [[ "$out" == *" $version" ]] || fail "$bin --version printed '$out', expected version $version"
done

REG="127.0.0.1:$(free_port)"
start_registry "$WORK/registry" "$REG" >/dev/null
image_loader /usr/local/bin/lepton push apps/hello-p2/spin.toml "$REG/hello:v1" >"$WORK/push.log" 2>&1 ||
    { cat "$WORK/push.log" >&2; fail "lepton push from the image failed"; }
ADMIN="127.0.0.1:$(free_port)"
HTTP="127.0.0.1:$(free_port)"
if [ "$mode" = chroot ]; then
    state=/var/lib/lepton
    RUN_ENV=(LEPTON_ADMIN_TOKEN="$TOKEN")
else
    state="$WORK/state"
    mkdir -p "$state" "$WORK/cache"
    RUN_ENV=(LEPTON_ADMIN_TOKEN="$TOKEN" LEPTON_CACHE_DIR="$WORK/cache")
fi
in_image /usr/local/bin/lepton serve --db "$state/lepton.db" --state-root "$state/state" \
    --admin "$ADMIN" --http "$HTTP" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
wait_http "http://$ADMIN/healthz" || { cat "$WORK/serve.log" >&2; fail "/healthz never answered"; }
curl -fsS "http://$ADMIN/readyz" >/dev/null || fail "/readyz did not answer 200"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/v1/apps")"
[ "$code" = 401 ] || fail "the admin API answered $code without a token"
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data "{\"reference\": \"$REG/hello:v1\", \"hosts\": [\"hello.test\"]}" \
    "http://$ADMIN/v1/apps/hello" >"$WORK/put.json" ||
    { cat "$WORK/put.json" "$WORK/serve.log" >&2; fail "PUT /v1/apps/hello failed"; }
body="$(curl -fsS -H 'Host: hello.test' "http://$HTTP/")" || fail "the ingress did not serve hello"
[ "$body" = "Hello from hello (p2)" ] || fail "the ingress answered '$body'"
if [ "$mode" = chroot ]; then
    compiled="$(find "$R/var/cache/lepton/compiled" -name '*.cwasm' -user "${user%%:*}" 2>/dev/null | head -1)"
    [ -n "$compiled" ] || fail "no compiled component owned by $user in the image's cache dir"
fi
kill -TERM "$SERVE_PID"
rc=0
wait "$SERVE_PID" || rc=$?
SERVE_PID=""
[ "$rc" = 0 ] || { cat "$WORK/serve.log" >&2; fail "lepton serve exited $rc on SIGTERM"; }
run_ms=$(($(now_ms) - t0))

# 4. The manifests: each directory in deploy/k8s is a variant, its files applied as they are.
t0=$(now_ms)
CHECK_MANIFESTS=("$KV/bin/python3" deploy/k8s/check-manifests.py)
for want in serve-postgres tauon-configmap; do
    [ -d "deploy/k8s/$want" ] || fail "deploy/k8s/$want is missing"
done
variants=()
# Variants are the directories of manifests (not Python's byte-code cache, should one appear).
export PYTHONDONTWRITEBYTECODE=1
for dir in deploy/k8s/*/; do
    case "$dir" in */__pycache__/) continue ;; esac
    variants+=("${dir%/}")
done
# manifests_in DIR: the files `kubectl apply -f DIR/` reads (check-manifests.py reads the same).
manifests_in() { find "$1" -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) | sort; }
files=()
for dir in "${variants[@]}"; do
    mapfile -t -O "${#files[@]}" files < <(manifests_in "$dir")
done
resources=$(cat "${files[@]}" | grep -c '^kind: ')
for v in "${K8S_VERSIONS[@]}"; do
    "$KV/bin/kubernetes-validate" --strict --quiet -k "$v" "${files[@]}" ||
        fail "the manifests do not validate against Kubernetes $v"
done
"${CHECK_MANIFESTS[@]}" "$C" "${variants[@]}" || fail "deploy/k8s/check-manifests.py"
# Not needed by anything above, so only when kubectl is here: kustomize builds each Kustomization
# without a warning and to exactly the plain manifests.
if kubectl kustomize --help >/dev/null 2>&1; then
    mkdir -p "$WORK/k8s"
    for dir in "${variants[@]}"; do
        [ -f "$dir/Kustomization" ] || continue
        out="$WORK/k8s/$(basename "$dir").yaml"
        kubectl kustomize "$dir" >"$out" 2>"$WORK/kustomize.err" ||
            { cat "$WORK/kustomize.err" >&2; fail "kubectl kustomize $dir failed"; }
        [ ! -s "$WORK/kustomize.err" ] || { cat "$WORK/kustomize.err" >&2; fail "kubectl kustomize $dir warned"; }
        "${CHECK_MANIFESTS[@]}" --same "$dir" "$out" || fail "kubectl kustomize $dir differs from its manifests"
    done
    kustomized=", built the same by kubectl kustomize"
else
    echo "check-deploy: no kubectl with kustomize on the PATH: skipping the kubectl kustomize check of deploy/k8s"
    kustomized=" (kubectl kustomize skipped)"
fi
# The checks are live: each must refuse a broken copy, for the reason broken.
# must_refuse WHAT PATTERN CMD...: CMD fails and its output names PATTERN.
must_refuse() {
    if "${@:3}" >"$WORK/refused.log" 2>&1; then fail "$1 was accepted"; fi
    grep -qF -- "$2" "$WORK/refused.log" || { cat "$WORK/refused.log" >&2; fail "$1 was refused, but not for '$2'"; }
}
# broken NAME VARIANT FILE SED: a copy of VARIANT at $WORK/NAME/VARIANT, FILE edited with SED.
broken() {
    mkdir -p "$WORK/$1" && cp -r "deploy/k8s/$2" "$WORK/$1/"
    local f="$WORK/$1/$2/$3"
    sed -i "$4" "$f"
    ! cmp -s "$f" "deploy/k8s/$2/$3" || fail "self-check $1: '$4' changed nothing in deploy/k8s/$2/$3"
}
broken bad-field serve-postgres deployment.yaml 's/^\( *\)imagePullPolicy: IfNotPresent/&\n\1imagePulPolicy: Always/'
must_refuse "a misspelled field" "'imagePulPolicy' was unexpected" \
    "$KV/bin/kubernetes-validate" --strict --quiet -k "${K8S_VERSIONS[0]}" "$WORK/bad-field/serve-postgres/deployment.yaml"
broken bad-group serve-postgres deployment.yaml 's/fsGroup: [0-9]*/fsGroup: 1000/'
must_refuse "a wrong fsGroup" "fsGroup 1000 is not the image's group" \
    "${CHECK_MANIFESTS[@]}" "$C" "$WORK/bad-group/serve-postgres"
broken drift tauon-configmap hpa.yaml 's/maxReplicas: [0-9]*/maxReplicas: 99/'
must_refuse "variants that drift apart" "spec.maxReplicas: 99 here" \
    "${CHECK_MANIFESTS[@]}" "$C" deploy/k8s/serve-postgres "$WORK/drift/tauon-configmap"
broken unlisted serve-postgres Kustomization '/- pdb.yaml/d'
must_refuse "a Kustomization that leaves a manifest out" "does not list pdb.yaml" \
    "${CHECK_MANIFESTS[@]}" "$C" "$WORK/unlisted/serve-postgres"
manifests_ms=$(($(now_ms) - t0))

mib() { printf '%d.%d' $(($1 / 1048576)) $((($1 % 1048576) * 10 / 1048576)); }
echo "check-deploy: image ${manifest:7:12}: $layers layers, $(mib "$compressed") MiB compressed," \
    "$(mib "$uncompressed") MiB unpacked; built in $(secs "$build_ms") s (without cargo)," \
    "inspected in $(secs "$inspect_ms") s, run ($mode: serve, PUT, ingress, SIGTERM) in $(secs "$run_ms") s"
echo "check-deploy: manifests: ${#variants[@]} variants, ${#files[@]} files, $resources resources, valid for" \
    "Kubernetes ${K8S_VERSIONS[*]} and consistent with the image and each other$kustomized," \
    "in $(secs "$manifests_ms") s"
