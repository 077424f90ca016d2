#!/usr/bin/env bash
# Proves the storage layout is shared by both deployments: an image pushed to
# the native server is served by the Worker once the native data directory's
# objects are copied, key for key, into the Worker's R2 bucket.
#
#  1. start `pier serve` on a fresh data directory, push a two-layer image with
#     crane, stop the server;
#  2. copy every file under the data directory except dot-files and
#     dot-directories (the store's own scratch space) into R2, key = relative
#     path, through the Worker's test-only raw object route;
#  3. pull through the Worker: same manifest digest and bytes, every blob's
#     bytes match its digest (crane validate), layers byte-identical.
#
# Usage: tests/edge/shared-layout.sh WORKER_HOST:PORT
# Env:   PIER_BIN  the native pier binary [default: build it]
# Output: one line per check, last line "shared-layout: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
EDGE=${1:?usage: $0 WORKER_HOST:PORT}
HARNESS_NAME=shared-layout
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools crane jq curl sha256sum
need_pier || exit 2
REPO="shared/app-$(date +%s)-$$"
WORK=$scratch/work
DATA=$scratch/native-data

start_pier native
record "native server up" $?

push_image() {
  mkdir -p "$WORK/l1/etc" "$WORK/l2/usr/share"
  head -c 300000 /dev/urandom >"$WORK/l1/etc/blob.bin"
  echo "pier shared layout $REPO" >"$WORK/l2/usr/share/note.txt"
  tar -C "$WORK/l1" -czf "$WORK/l1.tar.gz" .
  tar -C "$WORK/l2" -czf "$WORK/l2.tar.gz" .
  crane append --insecure -f "$WORK/l1.tar.gz" -f "$WORK/l2.tar.gz" -t "$native_addr/$REPO:v1"
  crane digest --insecure "$native_addr/$REPO:v1" >"$WORK/native.digest"
  crane manifest --insecure "$native_addr/$REPO:v1" >"$WORK/native.manifest"
}
check "push a two-layer image to the native server" push_image

stop native
record "stop the native server" $?

check "import the native data directory into R2" import_into_worker "$DATA" "$EDGE"

same_manifest() {
  [ "$(crane digest --insecure "$EDGE/$REPO:v1")" = "$(cat "$WORK/native.digest")" ]
  crane manifest --insecure "$EDGE/$REPO:v1" | cmp - "$WORK/native.manifest"
}
check "the Worker serves the same manifest (digest and bytes)" same_manifest
check "every blob pulled through the Worker matches its digest" crane validate --insecure --remote "$EDGE/$REPO:v1"

same_layers() {
  for layer in $(jq -r '.layers[].digest' "$WORK/native.manifest"); do
    crane blob --insecure "$EDGE/$REPO@$layer" >"$WORK/pulled.tar.gz"
    [ "sha256:$(sha256sum <"$WORK/pulled.tar.gz" | cut -d' ' -f1)" = "$layer" ]
  done
  crane blob --insecure "$EDGE/$REPO@$(jq -r '.layers[0].digest' "$WORK/native.manifest")" | cmp - "$WORK/l1.tar.gz"
}
check "layers pulled through the Worker are the pushed files" same_layers

summary shared-layout
