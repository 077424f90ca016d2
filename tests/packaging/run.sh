#!/usr/bin/env bash
# The ways pier is installed, each checked by installing it:
#   static   scripts/build-static.sh's binary is static and serves from an
#            empty root directory (no libc, no toolchain, no /etc), pushes
#            and pulls included;
#   image    the Containerfile builds around it with buildah, the image is
#            pushed into a running pier, pulled back and run by podman as
#            uid 65532, and the pier inside serves a push and a pull;
#   systemd  deploy/systemd: systemd-analyze verify finds nothing to say
#            about the unit, and every PIER_* setting of the unit, the
#            example env file, the image and the chart is one pier reads;
#   helm     deploy/helm/pier: helm lint, and helm template in disk and
#            bucket mode read back (replicas, claim, mounts, probes,
#            security), values that cannot work refused, and the settings
#            the disk-mode pod gets start the real binary.
#
# Usage: tests/packaging/run.sh [static|image|systemd|helm]...   (default: all)
# Env:   PIER_BIN  a pier binary for the registry the image is pushed to
#                  [default: the static build]; the binary under test is
#                  always the static build (scripts/build-static.sh, in
#                  CARGO_TARGET_DIR)
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "packaging: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

HARNESS_NAME=packaging
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools curl jq yq crane file openssl buildah podman helm systemd-analyze

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(static image systemd helm)

# The image's build context: the Containerfile's inputs, with the static
# binary built into it (incrementally: the first build takes a while).
context="$scratch/image-context"
mkdir -p "$context"
cp Containerfile .containerignore "$context/"
echo "==> scripts/build-static.sh"
static_bin=$(scripts/build-static.sh "$context/dist" 2>"$scratch/build-static.log" | tail -n 1) \
  || { tail -n 30 "$scratch/build-static.log"; exit 2; }
# The registry the image is pushed to, and the binary whose settings the
# checks read: the static one unless the caller names another.
PIER_BIN=${PIER_BIN:-$static_bin}
need_pier || exit 2

for part in "${parts[@]}"; do
  echo; echo "==> $part"
  # shellcheck source=/dev/null
  source "$here/$part.sh"
done

summary packaging
