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
# Usage: tests/edge/shared-layout.sh NATIVE_BINARY WORKER_HOST:PORT
# Output: one line per check, last line "shared-layout: N passed, N failed".
set -uo pipefail

PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PATH"
NATIVE=${1:?usage: $0 NATIVE_BINARY WORKER_HOST:PORT}
EDGE=${2:?usage: $0 NATIVE_BINARY WORKER_HOST:PORT}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pier-shared-layout.XXXXXX")
REPO="shared/app-$(date +%s)-$$"
export DOCKER_CONFIG="$WORK/docker" && mkdir -p "$DOCKER_CONFIG" && echo '{"auths":{}}' >"$DOCKER_CONFIG/config.json"

npass=0 nfail=0 native_pid=""
check() { # NAME COMMAND...
  local name=$1; shift
  if "$@" >"$WORK/last.log" 2>&1; then
    npass=$((npass + 1)); echo "PASS  $name"
  else
    nfail=$((nfail + 1)); echo "FAIL  $name"; sed 's/^/      /' "$WORK/last.log" | tail -n 20
  fi
}
finish() {
  [ -n "$native_pid" ] && kill "$native_pid" 2>/dev/null && wait "$native_pid" 2>/dev/null
  echo "shared-layout: $npass passed, $nfail failed"
  [ "$nfail" -eq 0 ] && rm -rf "$WORK"
  exit $((nfail > 0))
}
trap finish EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf "http://$1/v2/" >/dev/null && return 0; sleep 0.1; done; return 1; }

NATIVE_ADDR=127.0.0.1:$(free_port)
DATA=$WORK/native-data
"$NATIVE" serve --data-dir "$DATA" --listen "$NATIVE_ADDR" >"$WORK/native.log" 2>&1 &
native_pid=$!
check "native server up" wait_http "$NATIVE_ADDR"

push_image() {
  mkdir -p "$WORK/l1/etc" "$WORK/l2/usr/share"
  head -c 300000 /dev/urandom >"$WORK/l1/etc/blob.bin"
  echo "pier shared layout $REPO" >"$WORK/l2/usr/share/note.txt"
  tar -C "$WORK/l1" -czf "$WORK/l1.tar.gz" .
  tar -C "$WORK/l2" -czf "$WORK/l2.tar.gz" .
  crane append --insecure -f "$WORK/l1.tar.gz" -f "$WORK/l2.tar.gz" -t "$NATIVE_ADDR/$REPO:v1"
  crane digest --insecure "$NATIVE_ADDR/$REPO:v1" >"$WORK/native.digest"
  crane manifest --insecure "$NATIVE_ADDR/$REPO:v1" >"$WORK/native.manifest"
}
check "push a two-layer image to the native server" push_image

stop_native() { kill "$native_pid" && wait "$native_pid"; native_pid=""; }
check "stop the native server" stop_native

import_objects() {
  local count=0
  while IFS= read -r -d '' file; do
    local key=${file#"$DATA"/}
    curl -sf -X PUT --data-binary @"$file" "http://$EDGE/_pier_test/objects/$key" >/dev/null || {
      echo "import of $key failed"; return 1; }
    count=$((count + 1))
  done < <(find "$DATA" -type f -not -path '*/.*' -print0)
  echo "imported $count objects"
  [ "$count" -gt 0 ]
}
check "import the native data directory into R2" import_objects

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
