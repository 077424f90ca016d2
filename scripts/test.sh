#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (skipping
# what is already there), then runs the Rust tests, the wasm32 build check of
# the core, a short run of the fuzz targets, the black-box HTTP suite, real
# clients and the OCI conformance suite against `pier serve`, the crash test,
# TLS, docker and podman, and the edge Worker's suites.
#
# Usage: scripts/test.sh            (PIER_SKIP_EDGE=1 to leave out the Worker)
set -uo pipefail
cd "$(dirname "$0")/.."

HARNESS_NAME=test
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
with_edge=1
[ "${PIER_SKIP_EDGE:-}" = 1 ] && with_edge=0
[ -x scripts/test-edge.sh ] || with_edge=0

steps_passed=() steps_failed=()
step() { # name command...
  local name=$1; shift
  echo
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    steps_passed+=("$name"); echo "<== $name: ok ($((SECONDS - t0)) s)"
  else
    steps_failed+=("$name"); echo "<== $name: FAILED ($((SECONDS - t0)) s)"
  fi
}

step "install dependencies" bash -c 'scripts/install-deps.sh core && scripts/install-deps.sh clients &&
  scripts/install-deps.sh packaging'
step "cargo test" cargo test --workspace --exclude pier-edge
step "core builds for wasm32" cargo check -q -p pier-core --target wasm32-unknown-unknown
# Core's lints (lib.rs) forbid unwrap, expect, panics and unchecked indexing
# outside tests: no client or peer input can reach a panic.
step "clippy (native and wasm32)" bash -c 'cargo clippy -q -p pier-core -p pier-server --tests -- -D warnings &&
  cargo clippy -q -p pier-core --target wasm32-unknown-unknown -- -D warnings'
# Every fuzz target for a short while from its committed corpus (nightly;
# docs/fuzzing.md has the long runs). PIER_FUZZ_SECONDS per target.
step "fuzz (short)" scripts/fuzz.sh "${PIER_FUZZ_SECONDS:-30}"
step "build pier" build_pier

# Two servers: default settings, and sparse manifests allowed (the conformance
# suite's OCI_DATA_SPARSE data set needs it; the HTTP suite checks the default).
strict_addr= sparse_addr=
start_servers() {
  start_pier strict && start_pier sparse --allow-sparse-manifests true
}
step "start pier" start_servers
step "HTTP suite (native)" env PIER_URL="http://$strict_addr" node --test tests/http/*.test.mjs
step "real clients (native)" bash tests/clients/run.sh "$strict_addr"
# docker and podman over TLS, against a pier of their own (it needs auth and
# an address that is not loopback).
step "docker and podman over TLS (native)" bash tests/clients/docker-podman.sh
step "OCI conformance (native)" env OUT="$scratch/conformance" bash tests/conformance/run.sh "$sparse_addr"
step "crash safety (native)" node --test tests/native/*.test.mjs
step "TLS and mutual TLS (native)" bash tests/native/tls.sh
# Suites that start their own servers (auth, GC under concurrent pushes for a
# minute, scale-out over S3, mirroring, events, pulled sites (sync), lifecycle (last pulls,
# retention by pulls, quotas), the archive tier, signatures (cosign), tags served from memory to
# pull-only clients (tag cache), the web UI in Chromium,
# the adversarial suite, the static binary, image, systemd unit and Helm chart), with the
# binary built above (PIER_BIN).
for suite in tests/auth/run.sh tests/gc/run.sh tests/scaleout/run.sh tests/mirror/run.sh tests/events/run.sh tests/sync/run.sh \
  tests/lifecycle/run.sh tests/archive/run.sh tests/signing/run.sh tests/tagcache/run.sh tests/ui/run.sh \
  tests/security/run.sh \
  tests/packaging/run.sh; do
  # Their Worker parts run in scripts/test-edge.sh, once the Worker is built.
  [ -f "$suite" ] && step "$(basename "$(dirname "$suite")") suite" env PIER_SKIP_EDGE=1 bash "$suite"
done
if [ $with_edge = 1 ]; then
  step "edge Worker suites" scripts/test-edge.sh
else
  echo; echo "(edge Worker suites skipped)"
fi

echo
echo "==> summary"
for s in "${steps_passed[@]}"; do echo "  ok      $s"; done
for s in "${steps_failed[@]}"; do echo "  FAILED  $s"; done
echo "test-suites: ${#steps_passed[@]} passed, ${#steps_failed[@]} failed"
[ ${#steps_failed[@]} -eq 0 ]
