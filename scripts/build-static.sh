#!/usr/bin/env bash
# Builds pier as one static executable for air-gapped sites and the container
# image (Containerfile): x86_64-unknown-linux-musl, release profile, no
# dynamic loader and no shared library needed at run time. Refuses to finish
# if the result is not static.
#
# Usage: scripts/build-static.sh [DIR]   (default DIR: dist)
# Writes DIR/pier, the binary, and beside it DIR/ca-certificates.crt, this
# host's CA bundle: the two files the container image is made of (pier
# verifies upstream registries and buckets against it). Prints the binary's
# path on its last line.
# Needs: scripts/install-deps.sh packaging (the musl target and musl-gcc).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pier/target}
target=x86_64-unknown-linux-musl
out=${1:-dist}
ca_bundle=/etc/ssl/certs/ca-certificates.crt

[ -s "$ca_bundle" ] || { echo "no CA bundle at $ca_bundle (the ca-certificates package)" >&2; exit 2; }
command -v musl-gcc >/dev/null || { echo "musl-gcc is missing (scripts/install-deps.sh packaging)" >&2; exit 2; }
rustup target list --installed | grep -qx "$target" \
  || { echo "the $target target is missing (scripts/install-deps.sh packaging)" >&2; exit 2; }

# The C parts (aws-lc, ring) are compiled against musl's headers. The link
# stays Rust's own for this target (its bundled musl and start files):
# musl-gcc as the linker would make a PIE that loads /lib/ld-musl at run time.
export CC_x86_64_unknown_linux_musl=musl-gcc
# crt-static is musl's default; said here so a changed default cannot undo it.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"

cargo build --release --locked -p pier-server --bin pier --target "$target"

built="$CARGO_TARGET_DIR/$target/release/pier"
description=$(file -b "$built")
case $description in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "not a static executable: $description" >&2; exit 1 ;;
esac
# ldd says "statically linked" of a static PIE, "not a dynamic executable"
# of a static non-PIE, and lists libraries otherwise.
ldd_says=$(ldd "$built" 2>&1 || true)
case $ldd_says in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) echo "ldd finds shared libraries in $built:" >&2; echo "$ldd_says" >&2; exit 1 ;;
esac

mkdir -p "$out"
# Stripped: the symbol table is a quarter of the file and of no use to an operator.
install -s -m 0755 "$built" "$out/pier"
install -m 0644 "$ca_bundle" "$out/ca-certificates.crt"
echo "static: $description" >&2
realpath "$out/pier"
