#!/usr/bin/env bash
# Events end to end: webhooks and promotion/replication rules
# (docs/mirroring.md), with real clients (crane) against running registries
# and a webhook receiver (receiver.mjs) that fails first attempts. The same
# checks (shared.sh) run against each target:
#   native  pier instances configured with [[webhook]] and [[replicate]]
#           tables (native.sh);
#   edge    the test Worker under local workerd with the same tables in its
#           PIER_WEBHOOKS and PIER_REPLICATE vars, replicating to a native
#           pier (edge.sh).
# What they check:
#   - push, pull and delete events reach a webhook with the right fields,
#     after the receiver refused the first two attempts of each;
#   - a webhook's repository filter keeps other repositories' events away;
#   - a rule ci/** tags v* -> prod/** promotes ci/app:v1 with the same
#     digest, not ci/app:dev, and webhooks hear of the promoted push;
#   - a rule replicating ci/** to a second registry;
#   - with auth: the actor is the pushing robot, and the promotion into
#     prod/, where that robot may not push, is done by the registry;
#   - the durable outbox (outbox.sh): backfill, deletes that follow, dead
#     letters and their retry, 100 acknowledged pushes surviving kill -9
#     and a receiver refusing for a minute, the endpoints' bad requests;
#     natively also `pier events` and two instances over one bucket.
#
# Usage: tests/events/run.sh [native|edge]...
#        (default: native, and edge where the Worker toolchain is installed,
#        unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it, then $CARGO_TARGET_DIR/debug/pier]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#                              [default: scripts/edge-build.sh --test first]
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "events: N passed, N failed";
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

HARNESS_NAME=events
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools node jq curl sha256sum skopeo crane oras
need_pier || exit 2

if [ ${#targets[@]} -eq 0 ]; then
  targets=(native)
  if worker_suites_wanted; then
    targets+=(edge)
  fi
fi
# shellcheck source=tests/events/shared.sh
source "$here/shared.sh"
# shellcheck source=tests/events/outbox.sh
source "$here/outbox.sh"
tests/auth/make-config.sh "$scratch/auth" >/dev/null || exit 2
for target in "${targets[@]}"; do
  echo; echo "==> $target"
  # shellcheck source=/dev/null
  source "$here/$target.sh"
done

summary events
