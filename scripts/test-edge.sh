#!/usr/bin/env bash
# The edge Worker's suites, from a fresh machine: installs the edge tooling
# (scripts/install-deps.sh edge; core and clients tools only if missing),
# builds the production Worker (measuring its size and checking it carries no
# test routes) and the test Worker, starts it under local workerd (wrangler dev)
# on a free port, and runs against it:
#   - tests/edge/edge.test.mjs: the storage contract on R2, bodies sent as
#     stored (with and without gzip), the edge caches, the body limit, cron;
#   - the black-box HTTP suite (tests/http);
#   - real clients (tests/clients/run.sh);
#   - the shared layout with the native server (tests/edge/shared-layout.sh);
#   - docker: a layer over the body limit refused with the limit named, and
#     the same image pushed natively and pulled from the Worker (tests/edge/docker.sh);
#   - a 1 GiB push in 64 MiB chunks and pull, with workerd's memory sampled;
#   - garbage collection from the cron trigger (tests/edge/gc.test.mjs), on a
#     Worker with PIER_GC set and one collection step per invocation;
#   - the GC stress test (tests/gc/edge-stress.sh) with the cron collecting
#     every second while clients push, delete and pull;
#   - Workers with a broken PIER_AUTH, PIER_GC, PIER_WEBHOOKS, PIER_REPLICATE, PIER_SYNC or PIER_POLICY:
#     every request a 500 naming it;
#   - the pull-through cache (tests/mirror/run.sh edge);
#   - webhooks and promotion/replication rules (tests/events/run.sh edge);
#   - last pulls, retention by pulls and quotas (tests/lifecycle/run.sh edge);
#   - pulled sites: [[sync]] passes from the cron trigger (tests/sync/run.sh edge);
#   - signature-gated promotion and pulls with cosign (tests/signing/run.sh edge);
#   - tags served from the isolate's memory to pull-only clients
#     (tests/tagcache/run.sh edge);
#   - the archive tier: moves across cron invocations, kill -9 (tests/archive/run.sh edge);
#   - the web UI in Chromium and its JSON API (tests/ui/run.sh edge);
#   - the auth suite (tests/auth/run.sh --edge: its own Worker with PIER_AUTH
#     and the signing-keys secret), and the token endpoint's latency and CPU;
#   - the adversarial suite (tests/security/run.sh edge);
#   - the OCI conformance suite, on a Worker that allows sparse manifests.
# Then stops the Workers and prints measurements and one counts line.
#
# Usage: scripts/test-edge.sh
# Env:   PIER_EDGE_SKIP_BIG=1   leave out the 1 GiB push
#        KEEP=1                 keep the scratch directory (logs, local state;
#                               kept anyway when anything failed)
# Output: last line "edge: N passed, N failed"; exit 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
STARTED=$SECONDS

HARNESS_NAME=test-edge
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
MEASUREMENTS=$scratch/measurements.txt
: >"$MEASUREMENTS"

total_pass=0 total_fail=0 parts=()
count_part() { # PART PASSED FAILED
  total_pass=$((total_pass + $2)); total_fail=$((total_fail + $3))
  parts+=("$(printf '%-34s %4d passed, %d failed' "$1:" "$2" "$3")")
}
measure() { echo "$*" | tee -a "$MEASUREMENTS"; }

print_results() {
  echo
  echo "==> edge measurements"
  sed 's/^/  /' "$MEASUREMENTS"
  echo "  cold time of the edge run: $((SECONDS - STARTED)) s"
  echo "==> edge results"
  for part in "${parts[@]}"; do echo "  $part"; done
  echo "edge: $total_pass passed, $total_fail failed"
}
at_exit print_results

fail_setup() { echo "test-edge: $*" >&2; count_part "setup" 0 1; exit 1; }

echo "==> tools"
scripts/install-deps.sh edge || fail_setup "install-deps.sh edge failed"
command -v conformance >/dev/null || scripts/install-deps.sh core || fail_setup "install-deps.sh core failed"
for tool in skopeo buildah crane oras jq dockerd; do
  command -v "$tool" >/dev/null || { scripts/install-deps.sh clients || fail_setup "install-deps.sh clients failed"; break; }
done

echo "==> build"
t0=$SECONDS
scripts/edge-build.sh >"$scratch/build.log" 2>&1 || { tail -n 30 "$scratch/build.log"; fail_setup "production build failed"; }
wasm=edge-worker/build/index_bg.wasm
measure "wasm (production): $(stat -c %s "$wasm") bytes raw, $(gzip -9c "$wasm" | wc -c) bytes gzipped (build $((SECONDS - t0)) s)"
# Test routes and the per-request round-trip counts (x-pier-test-ops).
if grep -qE "_pier_test|x-pier-test-ops" "$wasm" edge-worker/build/index.js; then
  count_part "production build has no test code" 0 1
else
  count_part "production build has no test code" 1 0
fi
scripts/edge-build.sh --test >"$scratch/build-test.log" 2>&1 || { tail -n 30 "$scratch/build-test.log"; fail_setup "test build failed"; }
# The native pier for the suites below (PIER_BIN); the Workers are the fresh builds.
build_pier 2>"$scratch/build-native.log" || { tail -n 30 "$scratch/build-native.log"; fail_setup "native build failed"; }
export PIER_EDGE_PREBUILT=1

# start_timed_worker NAME STATUS [WRANGLER_ARGS...]: start_worker, with its
# time to ready measured; a Worker that never gets ready ends the run.
start_timed_worker() {
  local started_ms; started_ms=$(date +%s%3N)
  start_worker "$@" || fail_setup "the $1 Worker did not get ready"
  measure "time to ready ($1): $(($(date +%s%3N) - started_ms)) ms"
}

# node_suite PART LOG node-test-args...: runs node's test runner, records its counts.
node_suite() {
  local part=$1 log=$2; shift 2
  echo "==> $part"
  node --test --test-reporter=tap "$@" >"$log" 2>&1
  local pass fail
  pass=$(awk '/^# pass /{print $3}' "$log" | tail -n 1)
  fail=$(awk '/^# fail /{print $3}' "$log" | tail -n 1)
  if [ -z "$pass" ]; then tail -n 30 "$log"; count_part "$part" 0 1; return; fi
  grep -E "^\s*not ok|^# (big push|storage)" "$log" | head -n 40
  count_part "$part" "$pass" "${fail:-0}"
}

# script_suite PART LOG PATTERN command...: records the "PATTERN: N passed, N failed" line.
script_suite() {
  local part=$1 log=$2 pattern=$3; shift 3
  echo "==> $part"
  "$@" >"$log" 2>&1
  local counts
  counts=$(grep -E "^$pattern: [0-9]+ passed, [0-9]+ failed" "$log" | tail -n 1)
  grep -E "^FAIL|^  FAIL" "$log" | head -n 40
  if [ -z "$counts" ]; then tail -n 30 "$log"; count_part "$part" 0 1; return; fi
  echo "  $counts"
  count_part "$part" "$(echo "$counts" | awk '{print $2}')" "$(echo "$counts" | awk '{print $4}' | tr -d ,)"
}

start_timed_worker strict 200
URL=http://$strict_addr
# First, on the fresh Worker: its wasm memory after the big push is then that
# push's own bound, and the last edge check grows it past the hot blobs' cap.
if [ -z "${PIER_EDGE_SKIP_BIG:-}" ]; then
  PIER_URL=$URL PIER_EDGE_PGID=$(cat "$scratch/strict.pgid") PIER_EDGE_MEASUREMENTS=$MEASUREMENTS \
    node_suite "1 GiB push in 64 MiB chunks" "$scratch/big.tap" tests/edge/big-push.test.mjs
fi
PIER_URL=$URL node_suite "edge checks" "$scratch/edge.tap" tests/edge/edge.test.mjs
# workerd resolves `..` before the Worker sees it, as Cloudflare does.
PIER_URL=$URL PIER_NORMALIZES_PATHS=1 node_suite "HTTP suite" "$scratch/http.tap" tests/http/*.test.mjs
script_suite "real clients" "$scratch/clients.log" clients bash tests/clients/run.sh "$strict_addr"
script_suite "shared layout with native" "$scratch/shared-layout.log" shared-layout \
  bash tests/edge/shared-layout.sh "$strict_addr"
# Last on this Worker: docker's refused one-PATCH layer pushes (three at
# once, retried, each streaming up to the body limit) grow its wasm memory,
# which never shrinks, to 192 MiB.
script_suite "docker against the Worker" "$scratch/docker.log" edge-docker bash tests/edge/docker.sh "$strict_addr"
stop_worker strict

# Garbage collection from the cron trigger, one step per invocation.
start_timed_worker gc 200 --test-scheduled --var PIER_GC_BUDGET_SECS:0 \
  --var 'PIER_GC:{"grace_secs":0,"upload_expiry_secs":0,"rules":[{"namespace":"locked/**","immutable_tags":true}]}'
PIER_URL=http://$gc_addr PIER_EDGE_MEASUREMENTS=$MEASUREMENTS \
  node_suite "GC from the cron trigger" "$scratch/gc.tap" tests/edge/gc.test.mjs
stop_worker gc

# The GC stress test with the cron collecting every second (3 s grace window).
start_timed_worker gc_stress 200 --test-scheduled --var PIER_GC_BUDGET_SECS:5 \
  --var 'PIER_GC:{"grace_secs":3,"upload_expiry_secs":60,"page_size":200}'
script_suite "GC stress under the cron trigger" "$scratch/gc-stress-run.log" gc-stress \
  env PIER_URL="http://$gc_stress_addr" GC_STRESS_SECS="${GC_STRESS_SECS:-60}" bash tests/gc/edge-stress.sh
stop_worker gc_stress

# bad_var VAR WRANGLER_ARGS...: a Worker with VAR broken answers every request
# with a 500 that names VAR.
bad_var() {
  local var=$1 addr_var=bad_${1}_addr; shift
  start_timed_worker "bad_$var" 500 "$@"
  PIER_URL=http://${!addr_var} PIER_EDGE_BAD_VAR=$var \
    node_suite "broken $var refused" "$scratch/bad-$var.tap" tests/edge/bad-config.test.mjs
  stop_worker "bad_$var"
}
bad_var PIER_AUTH --var 'PIER_AUTH:{"servise":"pier"}' --var 'PIER_AUTH_SIGNING_KEYS:{"keys":[]}'
bad_var PIER_GC --var 'PIER_GC:{"grace_sec":60}'
bad_var PIER_HOT_BLOB_BYTES --var PIER_HOT_BLOB_BYTES:134217728
bad_var PIER_WEBHOOKS --var 'PIER_WEBHOOKS:[{"url":"ftp://hooks.example/pier"}]'
bad_var PIER_REPLICATE --var 'PIER_REPLICATE:[{"repository":"ci/**","tags":"v*"}]'
bad_var PIER_QUOTAS --var 'PIER_QUOTAS:[{"namespace":"a/**","max_bytes":0}]'
bad_var PIER_ARCHIVE --var 'PIER_ARCHIVE:{"rules":[{"namespace":"a/**"}]}'
bad_var PIER_SYNC --var 'PIER_SYNC:[{"name":"Factory","upstream":"https://ci.example","repositories":["a"]}]'
bad_var PIER_POLICY --var 'PIER_POLICY:[{"namespace":"Prod/**"}]'

# The pull-through cache on a Worker (tests/mirror/edge.sh starts its own).
script_suite "pull-through cache" "$scratch/mirror.log" mirror bash tests/mirror/run.sh edge

# Webhooks and promotion/replication rules on Workers (tests/events/edge.sh
# starts its own), replicating to a native pier.
script_suite "events (webhooks, promotion, replication)" "$scratch/events.log" events bash tests/events/run.sh edge

# Pulled sites: [[sync]] rules in PIER_SYNC, advanced by the cron trigger
# (tests/sync/edge.sh starts its own Workers), from a native upstream.
script_suite "sync (pulled sites)" "$scratch/sync.log" sync bash tests/sync/run.sh edge

# Lifecycle: last pulls (marked per location in the Cache API), retention by
# pulls and quotas in PIER_GC and PIER_QUOTAS (tests/lifecycle/edge.sh).
script_suite "lifecycle (last pulls, retention by pulls, quotas)" "$scratch/lifecycle.log" lifecycle \
  bash tests/lifecycle/run.sh edge

# Signature-gated promotion and pulls: PIER_POLICY and PIER_REPLICATE, with
# cosign (tests/signing/edge.sh starts its own Workers).
script_suite "signing (cosign, gated promotion and pulls)" "$scratch/signing.log" signing bash tests/signing/run.sh edge

# Tags served from memory to pull-only clients: PIER_POLICY's tag_cache_secs
# with PIER_AUTH (tests/tagcache/edge.sh starts its own Worker).
script_suite "tag cache (pull-only clients, read-your-writes)" "$scratch/tagcache.log" tagcache \
  bash tests/tagcache/run.sh edge

# The archive tier: PIER_ARCHIVE and its second R2 bucket, passes in 1 s cron
# steps, kill -9 of the Worker mid-move (tests/archive/edge.sh).
script_suite "archive tier (moves, pulls, kill -9)" "$scratch/archive.log" archive bash tests/archive/run.sh edge

# The web UI in headless Chromium and its JSON API on a Worker with auth
# (tests/ui/run.sh starts its own), every other host blocked.
script_suite "web UI (Chromium, JSON API)" "$scratch/ui.log" ui bash tests/ui/run.sh edge

# Auth: the auth suite against a Worker configured with PIER_AUTH and the
# signing-keys secret (it starts its own), with the token endpoint measured.
script_suite "auth (matrix, flow, conformance, clients)" "$scratch/auth.log" auth \
  env PIER_AUTH_MEASUREMENTS="$MEASUREMENTS" bash tests/auth/run.sh --edge

# The adversarial suite (tests/security: hostile upstreams, crafted
# requests, bounds, auth abuse, abandoned uploads); its parts start their own.
script_suite "security (adversarial)" "$scratch/security.log" security bash tests/security/run.sh edge

start_timed_worker sparse 200 --var PIER_ALLOW_SPARSE_MANIFESTS:true
script_suite "OCI conformance (dev, all on)" "$scratch/conformance.log" conformance \
  env OUT="$scratch/conformance" bash tests/conformance/run.sh "$sparse_addr"
grep -E "^conformance: [0-9]+ passed" "$scratch/conformance.log" | sed 's/^/OCI /' >>"$MEASUREMENTS"

exit $((total_fail > 0))
