# Helpers of the suites that drive container engines (tests/clients/docker-podman.sh
# against the native server, tests/edge/docker.sh against the Worker): a
# dockerd of the suite's own, images of random layers built FROM scratch,
# and the check that a pulled image holds exactly the files built. Sourced
# after tests/lib/harness.sh.

# start_dockerd: a dockerd for this run only (vfs storage, no iptables, no
# bridge; data root, exec root, pid file, socket and configuration under
# $scratch/dockerd), stopped at exit; exports DOCKER_HOST and DOCKER_CONFIG
# for the docker CLI, and the classic builder (the daemon is Debian's 20.10,
# whatever the CLI).
start_dockerd() {
  local root="$scratch/dockerd"
  mkdir -p "$root" "$scratch/docker-config"
  echo '{}' >"$root/daemon.json"
  export DOCKER_HOST="unix://$root/docker.sock" DOCKER_CONFIG="$scratch/docker-config"
  export DOCKER_BUILDKIT=0 DOCKER_CLI_EXPERIMENTAL=enabled
  dockerd --config-file "$root/daemon.json" --storage-driver=vfs --iptables=false --ip6tables=false \
    --bridge=none --data-root "$root/data" --exec-root "$root/exec" --pidfile "$root/docker.pid" \
    -H "$DOCKER_HOST" >"$scratch/dockerd.log" 2>&1 &
  kill_at_exit $!
  WHILE_PID=$! WAIT_SECS=60 eventually docker info >/dev/null || { tail -n 20 "$scratch/dockerd.log"; return 1; }
}

# make_image_context DIR NAME:MIB...: a build context in DIR whose
# Containerfile makes one layer per NAME: a file /NAME of MIB MiB of random
# (incompressible) bytes, FROM scratch.
make_image_context() {
  local dir=$1 layer; shift
  mkdir -p "$dir"
  echo "FROM scratch" >"$dir/Containerfile"
  for layer in "$@"; do
    head -c "${layer#*:}M" /dev/urandom >"$dir/${layer%:*}"
    echo "COPY ${layer%:*} /${layer%:*}" >>"$dir/Containerfile"
  done
}

# holds_the_built_files ARCHIVE DIR: a docker-archive (docker save, podman
# save) with one layer per file the context DIR built, each byte-identical.
holds_the_built_files() {
  local archive=$1 dir=$2 unpacked layer file count=0 built
  built=$(awk '$1 == "COPY" {print $2}' "$dir/Containerfile")
  unpacked=$(mktemp -d "$scratch/work/unpacked.XXXXXX")
  tar -C "$unpacked" -xf "$archive"
  mkdir "$unpacked/files"
  for layer in $(jq -r '.[0].Layers[]' "$unpacked/manifest.json"); do
    tar -C "$unpacked/files" -xf "$unpacked/$layer"
    count=$((count + 1))
  done
  echo "$count layers"
  [ "$count" = "$(wc -w <<<"$built")" ]
  for file in $built; do
    cmp "$dir/$file" "$unpacked/files/$file"
  done
  rm -rf "$unpacked"
}
