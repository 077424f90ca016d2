#!/usr/bin/env bash
# Scheduled, pull-based sync ([[sync]], docs/replication.md) end to end: an
# upstream pier holding 50 small images (pushed with crane, tags v1 and dev,
# two of them signed with `oras attach`), behind a proxy that can slow it
# down and lies for a few repositories (upstream-proxy.mjs), and a site that
# pulls from it. The same checks (shared.sh) run against each target:
#   native  the site is `pier serve` over a data directory, passes run by
#           hand with `pier sync` (native.sh), and by `pier serve`'s scheduler;
#   edge    the site is the test Worker under local workerd, its rules in
#           PIER_SYNC, passes advanced by cron invocations with a budget of
#           0 s (one step each) (edge.sh).
# What they check:
#   - a rule added to a site with 50 existing upstream images backfills all
#     of them (same digests and blobs, signatures carried), tag filter honoured;
#   - a second pass copies nothing (its record's counts);
#   - a tag moved upstream moves at the site; a tag deleted upstream is
#     deleted with delete = true and kept with delete = false; a signature
#     made later comes with the next pass;
#   - a pass interrupted half-way resumes from its stored progress (native:
#     kill -9 of `pier sync` mid-pass; edge: passes spanning invocations);
#   - a hostile upstream: a manifest not matching its digest, a tag list
#     linking to another origin, a token realm no rule allows (credentials
#     never sent there) are refused, counted and reported;
#   - bad [[sync]] tables (native file, Worker var) refused at start, named.
#
# Usage: tests/sync/run.sh [native|edge]...
#        (default: native, and edge where the Worker toolchain is installed,
#        unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it, then $CARGO_TARGET_DIR/debug/pier]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#                              [default: scripts/edge-build.sh --test first]
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "sync: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

targets=("$@")
for target in "${targets[@]}"; do
  case $target in
    native | edge) ;;
    *) echo "usage: $0 [native|edge]..." >&2; exit 2 ;;
  esac
done

HARNESS_NAME=sync
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools node jq curl crane oras
need_pier || exit 2

if [ ${#targets[@]} -eq 0 ]; then
  targets=(native)
  if worker_suites_wanted; then
    targets+=(edge)
  fi
fi
# shellcheck source=tests/sync/shared.sh
source "$here/shared.sh"

# The sites' webhook receiver (the events suite's).
HOOKS=$scratch/sync-hooks.jsonl
touch "$HOOKS"
node tests/events/receiver.mjs "$HOOKS" 0 >"$scratch/receiver.port" 2>"$scratch/receiver.log" &
kill_at_exit $!
eventually test -s "$scratch/receiver.port" || { cat "$scratch/receiver.log"; exit 2; }
RECEIVER=http://127.0.0.1:$(cat "$scratch/receiver.port")

# start_upstream NAME: a pier holding the images every target syncs, and the
# proxy in front of it; sets UPSTREAM, PROXY and COLLECTED.
start_upstream() {
  start_pier "$1" || return 1
  local addr_var=${1}_addr
  UPSTREAM=${!addr_var}
  COLLECTED=$scratch/$1-collected.jsonl
  node "$here/upstream-proxy.mjs" "$UPSTREAM" "$COLLECTED" >"$scratch/$1-proxy.ports" 2>"$scratch/$1-proxy.log" &
  kill_at_exit $!
  eventually test -s "$scratch/$1-proxy.ports" || { cat "$scratch/$1-proxy.log"; return 1; }
  PROXY=127.0.0.1:$(jq -r .proxy "$scratch/$1-proxy.ports")
  prepare_upstream
}

for target in "${targets[@]}"; do
  echo; echo "==> $target"
  # Each target pulls from an upstream of its own: the checks change it.
  start_upstream "${target}_upstream" || exit 2
  echo "$target: upstream=$UPSTREAM proxy=$PROXY"
  # shellcheck source=/dev/null
  source "$here/$target.sh"
done

summary sync
