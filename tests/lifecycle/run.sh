#!/usr/bin/env bash
# Lifecycle end to end (docs/lifecycle.md): last-pull times, retention by
# last pull and namespace quotas, with real clients (crane, curl) against a
# running registry. The same checks (shared.sh) run against each target:
#   native  `pier serve` with the tables in its configuration file, and
#           `pier gc` (dry run, then --apply) on its stopped storage
#           (native.sh);
#   edge    the test Worker under local workerd with the same tables in
#           PIER_GC, PIER_QUOTAS and PIER_LAST_PULL_PERIOD_SECS, collected by
#           its cron trigger (edge.sh).
# What they check:
#   - a GET of a manifest records its last pull, at most once per period
#     (20 pulls in the period leave the first time; a pull after it moves
#     it); a HEAD records nothing;
#   - `unpulled_for_days` deletes a tag nobody pulled and keeps one pulled
#     lately and one pushed lately; natively the dry run lists exactly what
#     --apply then deletes, each with its reason;
#   - a push over a quota is refused 403 DENIED naming the quota and its
#     usage, by crane and by a bare monolithic push, and leaves nothing: the
#     blob is not in the repository and the usage did not move;
#   - a blob or manifest is counted once per namespace, not per repository,
#     and not at all outside it;
#   - a full quota refuses the upload at its POST;
#   - usage after a delete and a collection equals a recount of what the
#     namespace's repositories hold (made by the test through the API);
#   - ten pushes racing into a namespace: usage equals what was accepted;
#   - natively: /metrics shows the usage; bad [[quota]] tables stop the
#     server with the reason.
#
# Usage: tests/lifecycle/run.sh [native|edge]...
#        (default: native, and edge where the Worker toolchain is installed,
#        unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "lifecycle: N passed, N failed";
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

HARNESS_NAME=lifecycle
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools jq curl crane sha256sum
need_pier || exit 2

if [ ${#targets[@]} -eq 0 ]; then
  targets=(native)
  if worker_suites_wanted; then
    targets+=(edge)
  fi
fi
# shellcheck source=tests/lifecycle/shared.sh
source "$here/shared.sh"
for target in "${targets[@]}"; do
  echo; echo "==> $target"
  # shellcheck source=/dev/null
  source "$here/$target.sh"
done

summary lifecycle
