#!/usr/bin/env bash
# Mirroring end to end on the native server, with real clients:
#   copy.sh   `pier copy` between two pier instances, within one (mounts),
#             to and from OCI image layout directories (and skopeo reading and
#             writing the same layouts), to and from the reference registry,
#             into a registry with token auth; byte-identical manifests and
#             blobs everywhere, refused and corrupted input.
#   cache.sh  the pull-through cache: a pier instance mirroring another (and
#             the reference registry): first pull upstream, second with the
#             upstream stopped, a tag re-check after its TTL seeing a re-tag,
#             an upstream with token auth, skopeo and crane as pullers.
#   edge.sh   the same cache on the edge Worker under local workerd.
#
# Usage: tests/mirror/run.sh [copy|cache|edge]...
#        (default: copy and cache, and edge where the Worker toolchain is
#        installed, unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it, then $CARGO_TARGET_DIR/debug/pier]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#                              [default: scripts/edge-build.sh --test first]
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "mirror: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

HARNESS_NAME=mirror
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools node jq curl sha256sum skopeo crane oras docker-registry
need_pier || exit 2

suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
  suites=(copy cache)
  if worker_suites_wanted; then
    suites+=(edge)
  fi
fi
# shellcheck source=tests/mirror/pulls.sh
source "$here/pulls.sh"
for suite in "${suites[@]}"; do
  echo; echo "==> $suite"
  # shellcheck source=/dev/null
  source "$here/$suite.sh"
done

summary mirror
