#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing (Debian packages, the guest
# toolchain), builds the guest apps from apps/, then runs formatting, clippy and every test
# (unit tests and end-to-end tests against a real docker-registry on loopback), then fuzzes each
# parser of untrusted input for a bounded time (scripts/fuzz.sh).
# Fast when everything is already installed and built. `.ci/run` calls this.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

echo "==> installing dependencies (skipped when present)"
scripts/install-deps.sh

echo "==> building guest apps (apps/)"
scripts/build-apps.sh >/dev/null

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "==> cargo test"
TEST_LOG="$(mktemp)"
trap 'rm -f "$TEST_LOG"' EXIT
cargo test --workspace 2>&1 | tee "$TEST_LOG"

echo "==> container image and Kubernetes manifests"; scripts/check-deploy.sh

echo "==> fuzzing every parser of untrusted input (bounded: 20 s per target)"
scripts/fuzz.sh 20

# The tests' total, last, so the closing line speaks for the whole suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$TEST_LOG"
