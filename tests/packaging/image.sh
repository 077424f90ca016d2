# The container image (sourced by tests/packaging/run.sh, with the static
# binary in $context/dist): built by buildah from the Containerfile, pushed
# into a running pier, pulled back by podman from there (its own storage, so
# the image really travels through pier) and run with a named volume; the
# pier inside serves as uid 65532 and keeps a push in that volume. With the
# TLS flags in this pier, it also serves HTTPS from a certificate mounted at
# /etc/pier/tls.
# Set by run.sh and the harness: $scratch, $static_bin, $context, NAME_addr.
# shellcheck shell=bash disable=SC2154

containers="$scratch/containers"
BUILDAH=(buildah --storage-driver vfs --root "$containers/buildah" --runroot "$containers/buildah-run")
# podman_at NAME: podman with storage of its own, NAME. Made for the sandbox:
# no systemd (cgroupfs, events in a file), and cgroups v1 beside v2, which
# crun refuses and runc takes.
# podman's run root must have a short path (at most 50 characters).
podman_runroots=$(mktemp -d /tmp/pier-podman.XXXXXX)
podman_at() {
  podman --storage-driver vfs --root "$containers/$1" --runroot "$podman_runroots/$1" \
    --cgroup-manager cgroupfs --events-backend file --runtime runc "${@:2}"
}
PODMAN=(podman_at outside)
built_image=localhost/pier:test
revision=$(git rev-parse HEAD)
container="pier-test-$$"
volume="pier-test-data-$$"
at_exit "${PODMAN[*]} rm -f -t 5 $container >/dev/null 2>&1; ${PODMAN[*]} volume rm -f $volume >/dev/null 2>&1"
at_exit "rm -rf $podman_runroots"

builds_the_image() {
  "${BUILDAH[@]}" bud --build-arg "REVISION=$revision" -t "$built_image" "$context"
  local config
  config=$("${BUILDAH[@]}" inspect --type image "$built_image" | jq .OCIv1.config)
  echo "$config" | jq .
  jq -e '.User == "65532:65532"' <<<"$config"
  jq -e '.Volumes | has("/var/lib/pier")' <<<"$config"
  jq -e '.Entrypoint == ["/usr/local/bin/pier"] and .Cmd == ["serve"]' <<<"$config"
  jq -e '.Env | index("PIER_LISTEN=0.0.0.0:5000") and index("PIER_TLS_DIR=/etc/pier/tls")' <<<"$config"
  jq -e --arg r "$revision" '.Labels["org.opencontainers.image.revision"] == $r' <<<"$config"
  jq -e '.Labels["org.opencontainers.image.title"] == "pier"' <<<"$config"
  # The file system: the binary, the CA bundle and the data directory, the
  # last one only owned by pier's user.
  local working root
  working=$("${BUILDAH[@]}" from "$built_image")
  root=$("${BUILDAH[@]}" mount "$working")
  (cd "$root" && find . -mindepth 1 -printf '%p %U\n' | sort) | tee "$scratch/work/image-files"
  diff <(cut -d' ' -f1 "$scratch/work/image-files") - <<'FILES'
./etc
./etc/ssl
./etc/ssl/certs
./etc/ssl/certs/ca-certificates.crt
./usr
./usr/local
./usr/local/bin
./usr/local/bin/pier
./var
./var/lib
./var/lib/pier
FILES
  [ "$(awk '$2 != 0 {print $1}' "$scratch/work/image-files")" = ./var/lib/pier ]
  grep -q '^./var/lib/pier 65532$' "$scratch/work/image-files"
  cmp "$root/usr/local/bin/pier" "$static_bin"
  "${BUILDAH[@]}" umount "$working" && "${BUILDAH[@]}" rm "$working"
}
check "buildah builds the image from the Containerfile" builds_the_image

pushed_ref=
pushes_into_pier() {
  curl -fsS "http://$hub_addr/v2/"
  "${BUILDAH[@]}" push --tls-verify=false "$built_image" "docker://$hub_addr/infra/pier:test"
  crane manifest --insecure "$hub_addr/infra/pier:test" | jq -e '.layers | length == 1'
}
if start_pier hub; then
  check "buildah pushes the image into a running pier" pushes_into_pier
  pushed_ref="$hub_addr/infra/pier:test"
else
  record "a pier to push the image to starts" 1
fi

# The air-gapped way in (docs/deploy-native.md): the image carried as an OCI
# layout written by `pier copy`, pulled from there by podman.
# podman names the image after the layout's path, which must then be lowercase.
carried=/tmp/pier-carried-$$
at_exit "rm -rf $carried"
travels_as_a_layout() {
  pier copy --insecure "$pushed_ref" "oci:$carried:pier-test"
  local layout_podman=(podman_at inside)
  "${layout_podman[@]}" pull "oci:$carried:pier-test"
  [ "$("${layout_podman[@]}" images --format '{{.Digest}}')" = "$(crane digest --insecure "$pushed_ref")" ]
}
[ -n "$pushed_ref" ] && check "pier copy carries the image as an OCI layout, podman pulls it from there" \
  travels_as_a_layout

inner_port=$(free_port)
inner_addr=127.0.0.1:$inner_port
# run_image [PODMAN_RUN_ARGS...]: the pushed image as $container on the
# host's network (the sandbox has no bridge), listening on $inner_addr.
# podman raises the file and process limits by default, which needs
# CAP_SYS_RESOURCE (the sandbox withholds it): modest limits instead.
run_image() {
  "${PODMAN[@]}" run -d --name "$container" --network host --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 \
    -e "PIER_LISTEN=$inner_addr" -v "$volume:/var/lib/pier" "$@" "$pushed_ref"
}

pulls_and_runs() {
  "${PODMAN[@]}" pull --tls-verify=false "$pushed_ref"
  [ "$("${PODMAN[@]}" image inspect --format '{{.Digest}}' "$pushed_ref")" = \
    "$(crane digest --insecure "$pushed_ref")" ]
  run_image
  WAIT_SECS=60 eventually answers "http://$inner_addr/v2/" 200 || { "${PODMAN[@]}" logs "$container"; return 1; }
  curl -fsS "http://$inner_addr/v2/"
  local pid
  pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$container")
  grep -E '^(Uid|Gid):' "/proc/$pid/status"
  awk '/^Uid:/ {exit !($2 == 65532)}' "/proc/$pid/status"
}

serves_from_the_container() {
  make_image "$inner_addr/inner/app:v1" 500000
  # Every blob read back hashes to its digest.
  same_blobs "$inner_addr/inner/app:v1" "$inner_addr/inner/app:v1"
  crane copy --insecure "$inner_addr/inner/app:v1" "$hub_addr/copied/app:v1"
  same_manifest "docker://$inner_addr/inner/app:v1" "docker://$hub_addr/copied/app:v1"
  # What the push stored is in the named volume, written by uid 65532.
  local data
  data=$("${PODMAN[@]}" volume inspect --format '{{.Mountpoint}}' "$volume")
  find "$data/blobs" -type f | head -n 3
  [ -n "$(find "$data/blobs" -type f -uid 65532)" ]
  [ -z "$(find "$data" -not -uid 65532)" ]
}

if [ -n "$pushed_ref" ] && check "podman pulls the image from pier and runs it as uid 65532" pulls_and_runs \
  && answers "http://$inner_addr/v2/" 200; then
  check "the pier in the container serves a push and a pull into its volume" serves_from_the_container
fi

# A certificate for 127.0.0.1 signed by a CA made here, as a Kubernetes TLS
# secret would hold it (tls.crt, tls.key).
make_certificate() { # DIR
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=pier-test-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
    -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$dir/tls.crt" 2>/dev/null
  chmod 0644 "$dir/tls.key"
}

serves_tls_from_the_mounted_secret() {
  "${PODMAN[@]}" rm -f -t 5 "$container"
  make_certificate "$scratch/tls"
  run_image -v "$scratch/tls:/etc/pier/tls:ro"
  WAIT_SECS=60 eventually answers "https://$inner_addr/v2/" 200 --cacert "$scratch/tls/ca.crt" \
    || { "${PODMAN[@]}" logs "$container"; return 1; }
  # The push made over plain HTTP before is there over HTTPS.
  curl -fsS --cacert "$scratch/tls/ca.crt" "https://$inner_addr/v2/inner/app/tags/list" | jq -e '.tags == ["v1"]'
  fails curl -fsS "http://$inner_addr/v2/"
}

if ! "$static_bin" serve --help | grep -q -- '--tls-dir'; then
  echo "SKIP  TLS from /etc/pier/tls in the container (this pier has no --tls-dir yet)"
elif answers "http://$inner_addr/v2/" 200; then
  check "the container serves HTTPS when a certificate is mounted at /etc/pier/tls" serves_tls_from_the_mounted_secret
fi
