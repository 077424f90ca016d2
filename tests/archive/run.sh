#!/usr/bin/env bash
# The archive tier end to end (docs/lifecycle.md#the-archive-tier): blobs of
# images the [archive] rules select move to a second store and stay
# pullable, with real clients (crane) against running registries. The same
# checks (shared.sh) run against each target, through the admin endpoints
# /_pier/archive/*:
#   disk    pier over a data directory, the archive in another directory;
#   minio   pier over a MinIO bucket, the archive in a second bucket;
#   edge    the test Worker, the archive in its PIER_ARCHIVE_BUCKET, passes
#           run by the cron trigger in 1 s steps (edge.sh).
# What they check:
#   - a dry run lists what the rules select and why, and moves nothing;
#   - an archived image is pulled back byte-identical, its bytes only in
#     the archive (verify: every blob where its record says, no second copy);
#   - a layer a hot image shares stays in the main store;
#   - unpulled_for_days archives what nobody pulls; a pull of an archived
#     image reads the archive and the next pass brings it back;
#   - garbage collection deletes an archived blob's bytes from the archive;
#   - natively (native.sh): `pier archive run --apply` and `restore`
#     killed with -9 at random points over and over: after every kill
#     `pier archive verify` finds every blob whole where its record says and
#     no copy elsewhere, and the next run finishes the move (on disk, and on
#     MinIO while a client pulls the image the whole time); bad [archive]
#     tables stop the server with the reason.
#
# Usage: tests/archive/run.sh [disk|minio|edge]...
#        (default: disk and minio, and edge where the Worker toolchain is
#        installed, unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "archive: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

targets=("$@")
for target in "${targets[@]}"; do
  case $target in
    disk | minio | edge) ;;
    *) echo "usage: $0 [disk|minio|edge]..." >&2; exit 2 ;;
  esac
done

HARNESS_NAME=archive
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools jq curl crane sha256sum
need_pier || exit 2

if [ ${#targets[@]} -eq 0 ]; then
  targets=(disk minio)
  if worker_suites_wanted; then
    targets+=(edge)
  fi
fi
# shellcheck source=tests/archive/shared.sh
source "$here/shared.sh"
for target in "${targets[@]}"; do
  echo; echo "==> $target"
  case $target in
    edge)
      # shellcheck source=tests/archive/edge.sh
      source "$here/edge.sh" ;;
    *)
      # shellcheck source=tests/archive/native.sh
      source "$here/native.sh" ;;
  esac
done

summary archive
