#!/usr/bin/env bash
# Tags served from memory to pull-only clients (`[[policy]] tag_cache_secs`,
# docs/deploy-edge.md "Tags close to pullers"), end to end with crane and
# curl against a registry with auth. The same checks (shared.sh) run against
# each target:
#   native  two `pier serve` over one MinIO bucket with the policy in their
#           configuration file, the second making the moves and deletes
#           "elsewhere" (native.sh);
#   edge    the test Worker under local workerd with the policy in
#           PIER_POLICY and auth in PIER_AUTH, "elsewhere" being R2 written
#           behind its back (edge.sh).
# The policy gives prod/** and ci/** 3 s; public/** has none. What they check:
#   - read-your-writes for the pusher: the promoter moves prod/app:v1 ten
#     times and reads it back after each move with a pull-only token (as
#     `docker pull` asks for one), and always gets what it pushed;
#   - a pull-only client (prod-puller) is served the tag it read before for
#     up to the policy's seconds, then the moved one; in public/** (no
#     policy) it sees a move at once;
#   - a deleted tag: its deleter gets 404 at once, pull-only clients within
#     the seconds;
#   - a tag whose manifest was deleted meanwhile is read from the store
#     again at once, not answered 404 from memory;
#   - a tag_cache_secs over 3600 is refused at start, naming the policy;
#     without auth the policy is announced as having no effect (native).
#
# Usage: tests/tagcache/run.sh [native|edge]...
#        (default: native, and edge where the Worker toolchain is installed,
#        unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "tagcache: N passed, N failed";
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

HARNESS_NAME=tagcache
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools jq curl crane
need_pier || exit 2

if [ ${#targets[@]} -eq 0 ]; then
  targets=(native)
  if worker_suites_wanted; then
    targets+=(edge)
  fi
fi
tests/auth/make-config.sh "$scratch/auth" >/dev/null || exit 2
# shellcheck source=tests/tagcache/shared.sh
source "$here/shared.sh"
for target in "${targets[@]}"; do
  echo; echo "==> $target"
  # shellcheck source=/dev/null
  source "$here/$target.sh"
done

summary tagcache
