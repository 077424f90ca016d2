#!/usr/bin/env bash
# docker against the edge Worker (under local workerd), and the way around
# the Worker's request-body limit that docs/scale-out.md documents:
#
#  1. docker pushes each layer in one PATCH, so a layer larger than the
#     Worker's body limit (PIER_MAX_BODY_BYTES, 100 MB in the test env, as on
#     Cloudflare's plans) cannot be pushed to the Worker: the push fails,
#     and docker shows the registry's error, which names the limit;
#  2. "push natively, pull at the edge": the same image pushed with docker
#     to `pier serve`, whose objects then are the Worker's (copied key for
#     key into its R2 bucket, as a native instance over the bucket's S3 API
#     would have written them), is pulled with docker from the Worker, and
#     its files are byte-identical to those built.
#
# The Worker listens on 127.0.0.1, which docker reaches over plain HTTP
# without configuration (loopback is an insecure registry by default).
#
# Usage: tests/edge/docker.sh WORKER_HOST:PORT
# Env:   PIER_BIN              the native pier binary [default: build it]
#        PIER_MAX_BODY_BYTES   the Worker's body limit [default: 100000000]
# Output: one line per check, last line "edge-docker: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
EDGE=${1:?usage: $0 WORKER_HOST:PORT}
HARNESS_NAME=edge-docker
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/engines.sh
source tests/lib/engines.sh
need_tools docker dockerd jq curl tar
need_pier || exit 2
limit=${PIER_MAX_BODY_BYTES:-100000000}

start_dockerd || { record "dockerd starts" 1; summary edge-docker; exit 1; }
# One layer over the limit (112 MiB > 100 MB), one small.
context="$scratch/context"
make_image_context "$context" big:112 small:1
repo="edge-docker/app-$(date +%s)-$$"
docker build -q -t "$EDGE/$repo:v1" -f "$context/Containerfile" "$context" >"$scratch/build.log" 2>&1
record "docker build" $?

check_body_limit() {
  fails docker push "$EDGE/$repo:v1" 2>&1 | tee push.log
  # The registry's 413 SIZE_INVALID reaches the user, naming the limit and
  # the way out (docker retries the layer a few times first).
  grep "request bodies are limited to $limit bytes" push.log
}
check "docker push of a layer over the Worker's body limit fails naming the limit" check_body_limit

start_pier native
check_native_push() {
  docker tag "$EDGE/$repo:v1" "$native_addr/$repo:v1"
  docker push "$native_addr/$repo:v1" | tee push.log
  sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' push.log >"$scratch/pushed-digest"
  [ -s "$scratch/pushed-digest" ]
}
check "docker push of the same image to pier serve" check_native_push
stop native

check "the native server's objects copied into the Worker's bucket" import_into_worker "$scratch/native-data" "$EDGE"

check_edge_pull() {
  docker rmi "$EDGE/$repo:v1" "$native_addr/$repo:v1"
  docker pull "$EDGE/$repo:v1" | tee pull.log
  grep -q "Digest: $(cat "$scratch/pushed-digest")" pull.log
  docker save -o "$scratch/work/pulled.tar" "$EDGE/$repo:v1"
  holds_the_built_files "$scratch/work/pulled.tar" "$context"
}
check "docker pull from the Worker: the same files back" check_edge_pull

summary edge-docker
