#!/usr/bin/env bash
# Build lepton's container image from the Containerfile without a container daemon, a registry or
# privileges: the daemon-less equivalent of `buildah bud -f Containerfile target/image/context`.
#
#   scripts/build-image.sh                       # cargo build --release, then the image
#   scripts/build-image.sh --binaries target/debug   # use lepton and tauon already built there
#   scripts/build-image.sh --context-only        # stage target/image/context only (for buildah)
#
# Options: --out DIR (default target/image), --tag TAG (default latest).
#
# 1. Stages the build context in OUT/context: bin/ (lepton and tauon, debug information stripped
#    with objcopy, symbols kept), runtime/ (every shared library `ldd` names for them and the
#    dynamic loader, copied from this machine at the paths `ldd` prints; /etc/passwd and
#    /etc/group naming user 65532 `lepton`; nsswitch.conf; the CA bundle; /tmp), and the empty
#    state/ and cache/ directories.
# 2. Reads the Containerfile and writes an OCI image layout at OUT/oci (tag TAG) with umoci: one
#    layer per COPY, each a reproducible tar (names sorted, numeric owners, every mtime set to
#    SOURCE_DATE_EPOCH, default the last commit's time), then the image config from the other
#    instructions. Only FROM scratch, COPY [--chown=UID:GID] SRC DEST, USER, ENV K=V, WORKDIR,
#    VOLUME, EXPOSE, STOPSIGNAL, LABEL K=V, ENTRYPOINT and CMD (JSON forms) are understood;
#    anything else is refused with its line.
#
# Push it with skopeo, e.g. `skopeo copy oci:target/image/oci:latest docker://REGISTRY/lepton:TAG`.
# Needs umoci, jq, GNU tar, objcopy and ldd (scripts/install-deps.sh installs them).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/target/image"
TAG="latest"
BINARIES=""
CONTEXT_ONLY=0
# The image's user: the Containerfile's USER and --chown say the same number.
IMAGE_UID=65532

die() {
    echo "build-image: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
    --binaries) BINARIES="${2:?--binaries needs a directory}"; shift 2 ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    --context-only) CONTEXT_ONLY=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac

for tool in jq tar objcopy ldd; do
    command -v "$tool" >/dev/null || die "$tool is required (scripts/install-deps.sh installs it)"
done
[ "$CONTEXT_ONLY" = 1 ] || command -v umoci >/dev/null ||
    die "umoci is required (scripts/install-deps.sh installs it)"

# The binaries.
if [ -z "$BINARIES" ]; then
    echo "build-image: cargo build --release --bin lepton --bin tauon" >&2
    (cd "$ROOT" && cargo build --release --locked --bin lepton --bin tauon)
    BINARIES="$ROOT/target/release"
fi
for bin in lepton tauon; do
    [ -x "$BINARIES/$bin" ] || die "$BINARIES/$bin: no such executable (build it, or pass --binaries)"
done

started=$(date +%s%N)
CONTEXT="$OUT/context"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT"/{bin,runtime,state,cache}

# bin/: the binaries, without their debug information.
for bin in lepton tauon; do
    objcopy --strip-debug "$BINARIES/$bin" "$CONTEXT/bin/$bin"
    chmod 0755 "$CONTEXT/bin/$bin"
done

# runtime/: what the binaries load, at the paths they load it from.
rt="$CONTEXT/runtime"
for bin in lepton tauon; do
    ldd "$CONTEXT/bin/$bin"
done | sort -u | while read -r line; do
    case "$line" in
    *"not found"*) die "a library the binaries need is missing here: $line" ;;
    *" => /"*) lib="${line#* => }"; lib="${lib%% (*}"; mode=0644 ;;
    /*) lib="${line%% (*}"; mode=0755 ;; # the dynamic loader
    *) continue ;;                        # the vDSO
    esac
    install -D -m "$mode" "$(readlink -f "$lib")" "$rt$lib"
done
[ -n "$(find "$rt" -name 'ld-linux*' -print -quit)" ] || die "ldd named no dynamic loader"
mkdir -p "$rt/etc/ssl/certs" "$rt/tmp"
cat >"$rt/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
lepton:x:$IMAGE_UID:$IMAGE_UID:lepton:/var/lib/lepton:/usr/sbin/nologin
EOF
cat >"$rt/etc/group" <<EOF
root:x:0:
lepton:x:$IMAGE_UID:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$rt/etc/nsswitch.conf"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA_BUNDLE" ] || die "$CA_BUNDLE is missing (Debian package ca-certificates)"
install -m 0644 "$CA_BUNDLE" "$rt/etc/ssl/certs/ca-certificates.crt"
find "$rt" -type d -exec chmod 0755 {} +
chmod 0644 "$rt"/etc/{passwd,group,nsswitch.conf}
chmod 1777 "$rt/tmp"
chmod 0750 "$CONTEXT/state" "$CONTEXT/cache"

if [ "$CONTEXT_ONLY" = 1 ]; then
    echo "build-image: context staged in $CONTEXT" >&2
    exit 0
fi

# The image.
EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}"
CREATED="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
LAYOUT="$OUT/oci"
IMAGE="$LAYOUT:$TAG"
WORK="$(mktemp -d "$OUT/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
rm -rf "$LAYOUT"
umoci init --layout "$LAYOUT"
umoci new --image "$IMAGE"

# layer_tar SRC DEST UID:GID TAR: a reproducible tar of the context's SRC (a directory's
# contents, or a file) placed at DEST. DEST and everything under it belong to UID:GID; the
# directories above DEST are root's.
layer_tar() {
    local src="$CONTEXT/${1%/}" dest="${2#/}" uid="${3%:*}" gid="${3#*:}" tarball="$4"
    local stage="$WORK/stage"
    dest="${dest%/}"
    rm -rf "$stage"
    mkdir -p "$stage"
    if [ -d "$src" ]; then
        mkdir -p "$stage/$dest"
        cp -a "$src/." "$stage/$dest/"
    elif [ -f "$src" ]; then
        case "$2" in */) dest="$dest/$(basename "$src")" ;; esac
        mkdir -p "$(dirname "$stage/$dest")"
        cp -a "$src" "$stage/$dest"
    else
        die "Containerfile: COPY $1: no such file or directory in $CONTEXT"
    fi
    local common=(--format=gnu --sort=name --numeric-owner "--mtime=@$EPOCH" -C "$stage")
    if [ -z "$dest" ]; then
        local entries=()
        mapfile -t entries < <(cd "$stage" && LC_ALL=C ls -A)
        tar "${common[@]}" "--owner=$uid" "--group=$gid" -cf "$tarball" -- "${entries[@]}"
        return
    fi
    local parents=() path=""
    local IFS=/
    for part in $dest; do
        path="${path:+$path/}$part"
        [ "$path" = "$dest" ] || parents+=("$path")
    done
    unset IFS
    if [ "${#parents[@]}" -gt 0 ]; then
        tar "${common[@]}" --owner=0 --group=0 --no-recursion -cf "$tarball" -- "${parents[@]}"
        tar "${common[@]}" "--owner=$uid" "--group=$gid" -rf "$tarball" -- "$dest"
    else
        tar "${common[@]}" "--owner=$uid" "--group=$gid" -cf "$tarball" -- "$dest"
    fi
}

# JSON array → one umoci flag per element.
json_flags() {
    local flag="$1" json="$2" where="$3"
    jq -e 'type == "array" and all(type == "string")' <<<"$json" >/dev/null 2>&1 ||
        die "$where: only the JSON array form is understood"
    jq -r '.[]' <<<"$json" | while IFS= read -r item; do printf '%s\0%s\0' "$flag" "$item"; done
}

unquote() {
    local v="$1"
    case "$v" in \"*\") v="${v#\"}"; v="${v%\"}" ;; esac
    printf '%s' "$v"
}

config=()
layers=0
seen_from=0
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    where="Containerfile:$lineno"
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in '' | '#'*) continue ;; esac
    case "$line" in *\\) die "$where: line continuations are not understood" ;; esac
    instr="${line%%[[:space:]]*}"
    args="${line#"$instr"}"
    args="${args#"${args%%[![:space:]]*}"}"
    instr="${instr^^}"
    if [ "$seen_from" = 0 ] && [ "$instr" != FROM ]; then
        die "$where: the first instruction must be FROM scratch"
    fi
    case "$instr" in
    FROM)
        [ "$args" = scratch ] || die "$where: only FROM scratch is understood (no registry is used)"
        [ "$seen_from" = 0 ] || die "$where: one FROM only"
        seen_from=1
        ;;
    COPY)
        owner="0:0"
        read -r -a words <<<"$args"
        case "${words[0]:-}" in
        --chown=*)
            owner="${words[0]#--chown=}"
            words=("${words[@]:1}")
            [[ "$owner" =~ ^[0-9]+:[0-9]+$ ]] || die "$where: --chown takes numeric UID:GID"
            ;;
        --*) die "$where: COPY ${words[0]} is not understood" ;;
        esac
        [ "${#words[@]}" -eq 2 ] || die "$where: COPY takes one source and one destination"
        case "${words[1]}" in /*) ;; *) die "$where: COPY's destination must be absolute" ;; esac
        layer_tar "${words[0]}" "${words[1]}" "$owner" "$WORK/layer.tar"
        umoci raw add-layer --image "$IMAGE" --history.created "$CREATED" \
            --history.created_by "COPY $args" "$WORK/layer.tar"
        layers=$((layers + 1))
        ;;
    USER) config+=(--config.user "$args") ;;
    WORKDIR) config+=(--config.workingdir "$args") ;;
    STOPSIGNAL) config+=(--config.stopsignal "$args") ;;
    ENV | LABEL)
        [[ "$args" =~ ^([^=[:space:]]+)=(.*)$ ]] || die "$where: $instr takes KEY=VALUE"
        flag=--config.env
        [ "$instr" = LABEL ] && flag=--config.label
        config+=("$flag" "${BASH_REMATCH[1]}=$(unquote "${BASH_REMATCH[2]}")")
        ;;
    EXPOSE)
        read -r -a ports <<<"$args"
        for port in "${ports[@]}"; do
            [[ "$port" =~ ^[0-9]+(/(tcp|udp))?$ ]] || die "$where: EXPOSE $port is not PORT[/tcp|udp]"
            config+=(--config.exposedports "$port")
        done
        ;;
    VOLUME | ENTRYPOINT | CMD)
        flag="--config.${instr,,}"
        mapfile -d '' -t items < <(json_flags "$flag" "$args" "$where")
        [ "${#items[@]}" -gt 0 ] || die "$where: $instr needs at least one element"
        config+=("${items[@]}")
        ;;
    *) die "$where: $instr is not understood by this builder" ;;
    esac
done <"$ROOT/Containerfile"
[ "$layers" -gt 0 ] || die "Containerfile: no COPY, so no layer"

case "$(uname -m)" in
x86_64) arch=amd64 ;;
aarch64) arch=arm64 ;;
*) arch="$(uname -m)" ;;
esac
version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml")"
config+=(--config.label "org.opencontainers.image.version=$version")
if revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null)"; then
    config+=(--config.label "org.opencontainers.image.revision=$revision")
fi
umoci config --image "$IMAGE" --os linux --architecture "$arch" --created "$CREATED" \
    --history.created "$CREATED" --history.created_by "scripts/build-image.sh: config" \
    "${config[@]}"
umoci gc --layout "$LAYOUT"

manifest="$(jq -r --arg tag "$TAG" \
    '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag) | .digest' \
    "$LAYOUT/index.json")"
blob() { printf '%s/blobs/%s' "$LAYOUT" "${1/://}"; }
compressed="$(jq '[.layers[].size] | add' "$(blob "$manifest")")"
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "build-image: $IMAGE: manifest $manifest, $layers layers, $((compressed / 1024 / 1024)) MiB" \
    "compressed (built in $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000))) s, without cargo)" >&2
