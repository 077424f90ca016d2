#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (skipping
# what is already there), then runs the Rust tests, the wasm32 build check of
# the core, a short run of the fuzz targets, the black-box HTTP suite, real
# clients and the OCI conformance suite against `pier serve`, the crash test,
# and the edge Worker's suites.
#
# Usage: scripts/test.sh            (PIER_SKIP_EDGE=1 to leave out the Worker)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PIER_TOOLS/node/bin:$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
# Build outputs live outside the clone so fresh clones (CI) reuse them.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pier/target}
with_edge=1
[ "${PIER_SKIP_EDGE:-}" = 1 ] && with_edge=0
[ -x scripts/test-edge.sh ] || with_edge=0

passed=() failed=()
step() { # name command...
  local name=$1; shift
  echo
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    passed+=("$name"); echo "<== $name: ok ($((SECONDS - t0)) s)"
  else
    failed+=("$name"); echo "<== $name: FAILED ($((SECONDS - t0)) s)"
  fi
}

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

servers=()
cleanup() { for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null; done; rm -rf "${scratch:-}"; }
trap cleanup EXIT
scratch=$(mktemp -d "${TMPDIR:-/tmp}/pier-test.XXXXXX")

start_pier() { # port datadir extra-args...
  local port=$1 dir=$2; shift 2
  "$CARGO_TARGET_DIR/debug/pier" serve --listen "127.0.0.1:$port" --data-dir "$dir" "$@" 2>"$dir.log" &
  servers+=($!)
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "pier did not start on $port:"; cat "$dir.log"; return 1
}

step "install dependencies" bash -c 'scripts/install-deps.sh core && scripts/install-deps.sh clients'
step "cargo test" cargo test --workspace --exclude pier-edge
step "core builds for wasm32" cargo check -q -p pier-core --target wasm32-unknown-unknown
# Core's lints (lib.rs) forbid unwrap, expect, panics and unchecked indexing
# outside tests: no client or peer input can reach a panic.
step "clippy (native and wasm32)" bash -c 'cargo clippy -q -p pier-core -p pier-server --tests -- -D warnings &&
  cargo clippy -q -p pier-core --target wasm32-unknown-unknown -- -D warnings'
# Every fuzz target for a short while from its committed corpus (nightly;
# docs/fuzzing.md has the long runs). PIER_FUZZ_SECONDS per target.
step "fuzz (short)" scripts/fuzz.sh "${PIER_FUZZ_SECONDS:-30}"
step "build pier" cargo build -q -p pier-server

# Two servers: default settings, and sparse manifests allowed (the conformance
# suite's OCI_DATA_SPARSE data set needs it; the HTTP suite checks the default).
strict=$(free_port); sparse=$(free_port)
start_servers() {
  start_pier "$strict" "$scratch/strict" && start_pier "$sparse" "$scratch/sparse" --allow-sparse-manifests true
}
step "start pier" start_servers
step "HTTP suite (native)" env PIER_URL="http://127.0.0.1:$strict" node --test tests/http/*.test.mjs
step "real clients (native)" bash tests/clients/run.sh "127.0.0.1:$strict"
step "OCI conformance (native)" env OUT="$scratch/conformance" bash tests/conformance/run.sh "127.0.0.1:$sparse"
step "crash safety (native)" env PIER_BIN="$CARGO_TARGET_DIR/debug/pier" node --test tests/native/*.test.mjs
# Suites that start their own servers (auth, GC under concurrent pushes for a
# minute, scale-out over S3, mirroring, events, the adversarial suite).
for suite in tests/auth/run.sh tests/gc/run.sh tests/scaleout/run.sh tests/mirror/run.sh tests/events/run.sh \
  tests/security/run.sh; do
  # Their Worker parts run in scripts/test-edge.sh, once the Worker is built.
  [ -f "$suite" ] && step "$(basename "$(dirname "$suite")") suite" \
    env PIER_BIN="$CARGO_TARGET_DIR/debug/pier" PIER_SKIP_EDGE=1 bash "$suite"
done
if [ $with_edge = 1 ]; then
  step "edge Worker suites" scripts/test-edge.sh
else
  echo; echo "(edge Worker suites skipped)"
fi

echo
echo "==> summary"
for s in "${passed[@]}"; do echo "  ok      $s"; done
for s in "${failed[@]}"; do echo "  FAILED  $s"; done
echo "test-suites: ${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
