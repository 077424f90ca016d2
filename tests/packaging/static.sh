# The static binary (sourced by tests/packaging/run.sh, which built it into
# $static_bin): static by `file` and `ldd`, and serving from a root directory
# that holds nothing but itself and its data, so it needs neither a libc nor
# the Rust toolchain nor CA certificates (without them only requests to other
# registries fail, and the log says so at start).
# Set by run.sh and the harness: $scratch, $static_bin, $context, NAME_addr.
# shellcheck shell=bash disable=SC2154

binary_is_static() {
  file -b "$static_bin"
  file -b "$static_bin" | grep -Eq 'statically linked|static-pie linked'
  fails grep -q interpreter <<<"$(file -b "$static_bin")"
  # A static PIE: "statically linked"; a static executable: "not a dynamic
  # executable"; anything else lists the libraries it needs.
  ldd "$static_bin" 2>&1 | tee "$scratch/work/ldd.txt" || true
  grep -Eq 'statically linked|not a dynamic executable' "$scratch/work/ldd.txt"
  fails grep -q '=>' "$scratch/work/ldd.txt"
}
check "the static binary has no dynamic dependencies" binary_is_static

# A root with the binary and a data directory, nothing else; chroot needs root.
bare_root="$scratch/bare-root"
bare_port=$(free_port)
start_bare_pier() {
  mkdir -p "$bare_root/data"
  install -m 0755 "$static_bin" "$bare_root/pier"
  env -i PATH=/ "$(command -v chroot)" "$bare_root" /pier serve --listen "127.0.0.1:$bare_port" --data-dir /data \
    >"$scratch/bare.log" 2>&1 &
  register bare "$bare_port" $!
  wait_for "http://$bare_addr/v2/" 200 "$bare_pid" "$scratch/bare.log"
}

serves_from_a_bare_root() {
  (cd "$bare_root" && find . -type f -not -path './data/*' | sort) | tee "$scratch/work/bare-files"
  diff "$scratch/work/bare-files" - <<<'./pier'
  grep -q 'need CA certificates' "$scratch/bare.log"
  curl -fsS "http://$bare_addr/v2/"
  make_image "$bare_addr/bare/app:v1" 300000
  # Every blob read back hashes to its digest.
  same_blobs "$bare_addr/bare/app:v1" "$bare_addr/bare/app:v1"
  crane pull --insecure "$bare_addr/bare/app:v1" "$scratch/work/bare-app.tar"
  tar -tf "$scratch/work/bare-app.tar" | grep -q manifest.json
  # What it stored is under the data directory inside that root.
  [ -d "$bare_root/data/blobs/sha256" ]
}

if [ "$(id -u)" -ne 0 ]; then
  record "the static binary serves from a bare root (needs root for chroot)" 1
elif start_bare_pier; then
  check "the static binary serves from a root holding only it (no libc, no CA certificates)" serves_from_a_bare_root
else
  record "the static binary starts in a root holding only it" 1
fi
