#!/usr/bin/env bash
# docker and podman, the clients most users have, against `pier serve` over
# TLS with auth on, as a site would run them: a CA the suite makes, trusted
# through certs.d (no insecure-registries setting anywhere), a registry
# address that is not loopback (docker trusts 127.0.0.0/8 without TLS, which
# would prove nothing), login and logout of a pier user, push and pull of
# an image over 100 MB in three layers of random bytes built FROM scratch,
# `docker manifest inspect`, the pulled image's files compared with what
# was built, and a pull with no login by a machine holding a client
# certificate that [[auth.certificates]] names (mutual TLS).
#
# docker: the suite starts its own dockerd (tests/lib/engines.sh: vfs
# storage, no iptables, no bridge; its data, exec root, pid file and socket
# in the scratch directory), stopped at exit. dockerd reads certificates only from
# /etc/docker/certs.d/HOST:PORT/, so the suite puts the CA there for its
# registry's one address and removes it when done (containers/image, under
# podman, reads that directory too). podman: vfs storage in the scratch
# directory, the CA through --cert-dir.
#
# Usage: tests/clients/docker-podman.sh [docker|podman]...   (default: both)
# Env:   PIER_BIN  the pier binary [default: build it]
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "docker-podman: N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

HARNESS_NAME=docker-podman
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/certs.sh
source tests/lib/certs.sh
# shellcheck source=tests/lib/engines.sh
source tests/lib/engines.sh
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(docker podman)
for client in "${clients[@]}"; do
  case $client in
    docker) need_tools docker dockerd ;;
    podman) need_tools podman ;;
    *) echo "unknown client $client (docker or podman)" >&2; exit 2 ;;
  esac
done
need_tools curl openssl jq tar sha256sum
need_pier || exit 2

# ---------------------------------------------------------------- the registry

# An address of this host that is not loopback.
host=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | grep -v '^127\.' | head -n 1)
[ -n "$host" ] || { echo "docker-podman: this host has no IPv4 address besides loopback" >&2; exit 2; }

make_ca registry-ca
make_server_cert registry-ca registry "$host"
ca="$certs/registry-ca.crt"
make_ca clients-ca
make_client_cert clients-ca runner "/O=acme/CN=runner"

password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
pier auth new-signing-key >"$scratch/signing-keys.json"
cat >"$scratch/pier.toml" <<TOML
auth_signing_keys_file = "$scratch/signing-keys.json"

[auth]

[[auth.users]]
name = "alice"
password_hash = "$(printf %s "$password" | pier auth hash-password)"

[[auth.certificates]]
subject = "CN=runner,O=acme"
name = "runner"

[[auth.rules]]
repositories = "**"
pull = ["alice"]
push = ["alice"]

[[auth.rules]]
repositories = "machines/**"
pull = ["alice", "runner"]
push = ["alice"]
TOML
start_pier --host "$host" --ca "$ca" registry -c "$scratch/pier.toml" --tls-client-ca "$certs/clients-ca.crt" \
  --tls-cert "$certs/registry.crt" --tls-key "$certs/registry.key" || { summary docker-podman; exit 1; }
registry=$registry_addr

# ---------------------------------------------------------------- the image

# Three layers of random (incompressible) bytes, 112 MiB in all.
context="$scratch/context"
make_image_context "$context" one:48 two:40 three:24

# pier_manifest_digest REPO TAG: the digest of the manifest pier serves for
# REPO:TAG, asked with alice's password.
pier_manifest_digest() {
  curl -sf --cacert "$ca" -u "alice:$password" \
    -H 'accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' \
    "https://$registry/v2/$1/manifests/$2" | sha256sum | sed 's/^/sha256:/; s/ .*//'
}

# ---------------------------------------------------------------- docker

docker_suite() {
  local certs_d="/etc/docker/certs.d/$registry"
  mkdir -p "$certs_d" && cp "$ca" "$certs_d/ca.crt"
  at_exit "rm -rf '$certs_d'"
  start_dockerd || return 1
  local image="$registry/docker/app:v1"

  check_docker_login() {
    docker login "$registry" -u alice --password-stdin <<<"$password" | tee login.log
    grep -q 'Login Succeeded' login.log
    fails docker login "$registry" -u alice --password-stdin <<<"wrong"
  }
  check "docker login over TLS with the CA in certs.d" check_docker_login

  check_docker_push() {
    docker build -q -t "$image" -f "$context/Containerfile" "$context"
    docker push "$image" | tee push.log
    local pushed
    pushed=$(sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' push.log)
    [ "$pushed" = "$(pier_manifest_digest docker/app v1)" ]
    echo "$pushed" >"$scratch/docker-pushed"
    # The same image where the runner's certificate may pull (the layers are there already).
    docker tag "$image" "$registry/machines/docker-app:v1"
    docker push "$registry/machines/docker-app:v1"
  }
  check "docker push: a 112 MiB image in three layers" check_docker_push

  check_docker_manifest_inspect() {
    docker manifest inspect --verbose "$image" | tee inspect.json
    jq -e --arg digest "$(cat "$scratch/docker-pushed")" '.Descriptor.digest == $digest' inspect.json
    jq -e '.SchemaV2Manifest.layers | length == 3' inspect.json
    jq -e '[.SchemaV2Manifest.layers[].size] | add > 100 * 1024 * 1024' inspect.json
  }
  check "docker manifest inspect" check_docker_manifest_inspect

  check_docker_pull() {
    docker rmi "$image"
    fails docker image inspect "$image" >/dev/null
    docker pull "$image" | tee pull.log
    grep -q "Digest: $(cat "$scratch/docker-pushed")" pull.log
    docker save -o "$scratch/work/docker-pulled.tar" "$image"
    holds_the_built_files "$scratch/work/docker-pulled.tar" "$context"
  }
  check "docker pull: the same files back" check_docker_pull

  check_docker_logout() {
    docker logout "$registry"
    fails grep -q "$registry" "$DOCKER_CONFIG/config.json"
    docker rmi "$image"
    fails docker pull "$image" 2>&1 | tee refused.log
    grep -Eiq 'unauthorized|denied|authentication required' refused.log
  }
  check "docker logout: pulls are refused again" check_docker_logout

  check_docker_client_certificate() {
    local machine_image="$registry/machines/docker-app:v1"
    docker rmi "$machine_image"
    fails docker pull "$machine_image"
    # docker sends the client certificate it finds beside the CA; no login.
    cp "$certs/runner.crt" "$certs_d/client.cert"
    cp "$certs/runner.key" "$certs_d/client.key"
    docker pull "$machine_image" | tee pull.log
    grep -q "Digest: $(cat "$scratch/docker-pushed")" pull.log
    # The certificate's identity has only its own rights.
    fails docker pull "$image"
  }
  check "docker with a client certificate pulls with no login (mutual TLS)" check_docker_client_certificate
  rm -rf "$certs_d"
}

# ---------------------------------------------------------------- podman

podman_suite() {
  # podman reads no docker setting (docker's certs.d, a docker config) here.
  unset DOCKER_HOST DOCKER_CONFIG
  local root="$scratch/podman" certs_dir="$scratch/podman-certs"
  mkdir -p "$root" "$certs_dir"
  cp "$ca" "$certs_dir/ca.crt"
  local auth_file="$scratch/podman-auth.json" image="$registry/podman/app:v1"
  podman_() {
    podman --root "$root/storage" --runroot "$root/run" --storage-driver vfs \
      --cgroup-manager cgroupfs --events-backend file "$@"
  }

  check_podman_login() {
    podman_ login --cert-dir "$certs_dir" --authfile "$auth_file" -u alice --password-stdin "$registry" \
      <<<"$password" | tee login.log
    grep -q 'Login Succeeded' login.log
    fails podman_ login --cert-dir "$certs_dir" --authfile "$auth_file.wrong" -u alice --password-stdin \
      "$registry" <<<"wrong"
    # Without the CA the registry is not trusted.
    fails podman_ login --authfile "$auth_file.untrusted" -u alice --password-stdin "$registry" <<<"$password"
  }
  check "podman login over TLS with --cert-dir" check_podman_login

  check_podman_push() {
    podman_ build -q -t "$image" -f "$context/Containerfile" "$context"
    podman_ push --cert-dir "$certs_dir" --authfile "$auth_file" --digestfile "$scratch/podman-pushed" "$image"
    [ "$(cat "$scratch/podman-pushed")" = "$(pier_manifest_digest podman/app v1)" ]
    podman_ push --cert-dir "$certs_dir" --authfile "$auth_file" "$image" "docker://$registry/machines/podman-app:v1"
    local manifest
    manifest=$(curl -sf --cacert "$ca" -u "alice:$password" \
      -H 'accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' \
      "https://$registry/v2/podman/app/manifests/v1")
    jq -e '.layers | length == 3' <<<"$manifest"
    jq -e '[.layers[].size] | add > 100 * 1024 * 1024' <<<"$manifest"
  }
  check "podman push: a 112 MiB image in three layers" check_podman_push

  check_podman_pull() {
    podman_ rmi "$image"
    podman_ pull --cert-dir "$certs_dir" --authfile "$auth_file" "$image"
    podman_ save --format docker-archive -o "$scratch/work/podman-pulled.tar" "$image"
    holds_the_built_files "$scratch/work/podman-pulled.tar" "$context"
  }
  check "podman pull: the same files back" check_podman_pull

  check_podman_logout() {
    podman_ logout --authfile "$auth_file" "$registry"
    podman_ rmi "$image"
    fails podman_ pull --cert-dir "$certs_dir" --authfile "$auth_file" "$image" 2>&1 | tee refused.log
    grep -Eiq 'unauthorized|denied|authentication required' refused.log
  }
  check "podman logout: pulls are refused again" check_podman_logout

  check_podman_client_certificate() {
    local machine_image="$registry/machines/podman-app:v1" machine_certs="$scratch/podman-runner-certs"
    mkdir -p "$machine_certs"
    cp "$ca" "$machine_certs/ca.crt"
    cp "$certs/runner.crt" "$machine_certs/runner.cert"
    cp "$certs/runner.key" "$machine_certs/runner.key"
    fails podman_ pull --cert-dir "$certs_dir" --authfile "$auth_file" "$machine_image"
    podman_ pull --cert-dir "$machine_certs" --authfile "$auth_file" "$machine_image"
    podman_ image inspect "$machine_image" --format '{{.Digest}}' | tee digest
    [ "$(cat digest)" = "$(cat "$scratch/podman-pushed")" ]
    fails podman_ pull --cert-dir "$machine_certs" --authfile "$auth_file" "$image"
  }
  check "podman with a client certificate pulls with no login (mutual TLS)" check_podman_client_certificate
}

for client in "${clients[@]}"; do
  echo; echo "==> $client"
  "${client}_suite" || record "$client starts" 1
done

summary docker-podman
