#!/usr/bin/env bash
# Real-client round trips against a registry over plain HTTP: buildah + skopeo,
# crane, oras (artifacts and referrers) and a multi-arch index. Every step is a
# named check; a failing check is reported and the run continues.
#
# Usage: tests/clients/run.sh [host:port]       (or env REGISTRY)
# Env:   USERNAME / PASSWORD   credentials (optional; written to a private
#                              auth file used by skopeo, buildah, crane, oras)
#        KEEP=1                keep the scratch directory even on success
#        VERBOSE=1             print every check's log, not only failing ones
# Output: one line per check, last line "clients: N passed, N failed";
#         exit 1 if any check failed, 2 on usage/setup problems.
set -uo pipefail

PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PATH"

REG=${1:-${REGISTRY:-}}
if [ -z "$REG" ]; then
  echo "usage: $0 host:port   (or set REGISTRY)" >&2
  exit 2
fi
missing=()
for t in buildah skopeo crane oras jq sha256sum gzip cmp; do
  command -v "$t" >/dev/null || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing tools: ${missing[*]} (run scripts/install-deps.sh clients)" >&2
  exit 2
fi

RUN="$(date +%s)-$$"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pier-clients.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/state" "$WORK/auth"

# Private auth + policy files so nothing from ~/.docker or /etc leaks in.
if [ -n "${USERNAME:-}" ]; then
  auth=$(printf '%s:%s' "$USERNAME" "${PASSWORD:-}" | base64 -w0)
  printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$REG" "$auth" >"$WORK/auth/config.json"
else
  echo '{"auths":{}}' >"$WORK/auth/config.json"
fi
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$WORK/auth/policy.json"
export DOCKER_CONFIG="$WORK/auth"                    # crane
export REGISTRY_AUTH_FILE="$WORK/auth/config.json"   # skopeo, buildah

SKOPEO=(skopeo --policy "$WORK/auth/policy.json")
BUILDAH=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/runroot")
ORAS_OPTS=(--plain-http --registry-config "$WORK/auth/config.json")
CRANE_OPTS=(--insecure)

# Repositories, unique per run.
APP="$REG/clients/app-$RUN"
APP2="$REG/clients/app2-$RUN"
CRANE_REPO="$REG/clients/crane-$RUN"
ORAS_REPO="$REG/clients/oras-$RUN"
MULTI="$REG/clients/multi-$RUN"

echo "clients: registry=$REG run=$RUN scratch=$WORK"

# ---------------------------------------------------------------- harness
npass=0
nfail=0
failed_names=()

# check NAME FUNCTION [ARGS...]: runs the function in a subshell with
# `set -e` (so any failing command fails the check), logging to a file.
check() {
  local name=$1; shift
  local log="$WORK/logs/$(printf '%02d' $((npass + nfail + 1)))-${name//[^A-Za-z0-9._-]/_}.log"
  ( set -euo pipefail; cd "$WORK"; "$@" ) >"$log" 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then
    npass=$((npass + 1))
    echo "PASS  $name"
    if [ -n "${VERBOSE:-}" ]; then sed 's/^/      /' "$log"; fi
  else
    nfail=$((nfail + 1))
    failed_names+=("$name")
    echo "FAIL  $name (exit $rc; log $log)"
    tail -n 25 "$log" | sed 's/^/      /'
  fi
}

# Small helpers usable inside checks.
die() { echo "ERROR: $*" >&2; exit 1; }
save() { printf '%s' "$2" >"$WORK/state/$1"; }
load() { [ -s "$WORK/state/$1" ] || die "missing state '$1' (an earlier check failed)"; cat "$WORK/state/$1"; }
sha() { sha256sum "$1" | awk '{print "sha256:"$1}'; }
blob() { local d=$2; echo "$1/blobs/${d%%:*}/${d#*:}"; } # LAYOUT DIGEST -> path
# layout_ref LAYOUT TAG -> digest of the manifest tagged TAG in an OCI layout
layout_ref() {
  jq -er --arg t "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$1/index.json" | head -n1
}
# expect_gone CMD...: the command must fail with a not-found style error
expect_gone() {
  local out
  if out=$("$@" 2>&1); then
    echo "$out"; die "still present: $*"
  fi
  echo "$out"
  grep -qiE 'manifest unknown|not found|404|MANIFEST_UNKNOWN|name unknown' <<<"$out" \
    || die "failed, but not with a not-found error"
}

# ---------------------------------------------------------------- buildah + skopeo
build_image() {
  mkdir -p ctx
  printf 'hello from pier client test %s\n' "$RUN" >ctx/hello.txt
  head -c 65536 /dev/urandom >ctx/random.bin
  local c
  c=$("${BUILDAH[@]}" from --name "app-$RUN" scratch)
  "${BUILDAH[@]}" copy "$c" ctx/hello.txt /hello.txt
  "${BUILDAH[@]}" copy "$c" ctx/random.bin /data/random.bin
  "${BUILDAH[@]}" config --os linux --arch amd64 --label "pier.test=$RUN" "$c"
  "${BUILDAH[@]}" commit --format oci "$c" "oci:$WORK/built:v1"
  "${BUILDAH[@]}" rm "$c"
  local m
  m=$(layout_ref built v1)
  [ "$(sha "$(blob built "$m")")" = "$m" ] || die "built manifest digest mismatch"
  jq -e '.layers | length >= 1' "$(blob built "$m")"
  save built_manifest "$m"
}

skopeo_push() {
  "${SKOPEO[@]}" copy --dest-tls-verify=false "oci:$WORK/built:v1" "docker://$APP:v1"
}

skopeo_inspect() {
  "${SKOPEO[@]}" inspect --tls-verify=false "docker://$APP:v1" >inspect.json
  "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$APP:v1" >pushed-manifest.json
  cat inspect.json
  local d raw
  d=$(jq -er .Digest inspect.json)
  raw=$(sha pushed-manifest.json)
  [ "$d" = "$raw" ] || die "inspect Digest $d != sha256 of raw manifest $raw"
  jq -e '.Architecture == "amd64" and .Os == "linux"' inspect.json
  jq -e --arg r "$RUN" '.Labels["pier.test"] == $r' inspect.json
  jq -e '.mediaType == "application/vnd.oci.image.manifest.v1+json"' pushed-manifest.json
  # the layer list of the registry's manifest and of inspect agree
  diff <(jq -r '.layers[].digest' pushed-manifest.json) <(jq -r '.Layers[]' inspect.json)
  save app_digest "$d"
}

skopeo_list_tags() {
  "${SKOPEO[@]}" list-tags --tls-verify=false "docker://$APP" | tee tags.json
  jq -e '.Tags | index("v1")' tags.json
}

skopeo_copy_registry_to_registry() {
  "${SKOPEO[@]}" copy --src-tls-verify=false --dest-tls-verify=false "docker://$APP:v1" "docker://$APP2:v1"
  local d2
  d2=$("${SKOPEO[@]}" inspect --tls-verify=false --format '{{.Digest}}' "docker://$APP2:v1")
  [ "$d2" = "$(load app_digest)" ] || die "copy changed the digest: $d2 != $(load app_digest)"
}

# Verify an OCI layout pulled from the registry: the manifest is the one the
# registry serves, every blob hashes to its name and has the declared size.
verify_layout() { # LAYOUT TAG EXPECTED_MANIFEST_DIGEST
  local m
  m=$(layout_ref "$1" "$2")
  [ "$m" = "$3" ] || die "$1: manifest $m, registry says $3"
  [ "$(sha "$(blob "$1" "$m")")" = "$m" ] || die "$1: manifest blob corrupt"
  local d size
  while read -r d size; do
    [ -f "$(blob "$1" "$d")" ] || die "$1: blob $d missing"
    [ "$(sha "$(blob "$1" "$d")")" = "$d" ] || die "$1: blob $d content does not match digest"
    [ "$(stat -c %s "$(blob "$1" "$d")")" = "$size" ] || die "$1: blob $d size != $size"
  done < <(jq -r '.config, .layers[] | "\(.digest) \(.size)"' "$(blob "$1" "$m")")
}

skopeo_pull_and_compare() {
  local d
  d=$(load app_digest)
  "${SKOPEO[@]}" copy --src-tls-verify=false "docker://$APP:v1" "oci:$WORK/pull1:v1"
  "${SKOPEO[@]}" copy --src-tls-verify=false "docker://$APP2@$d" "oci:$WORK/pull2:v1"
  verify_layout pull1 v1 "$d"
  verify_layout pull2 v1 "$d"
  # both pulls byte for byte identical (config + layers + manifest)
  cmp pull1/blobs/sha256/"${d#sha256:}" pushed-manifest.json
  local x
  for x in $(jq -r '.config.digest, .layers[].digest' pushed-manifest.json); do
    cmp "$(blob pull1 "$x")" "$(blob pull2 "$x")"
  done
  # the registry's layers are (re)compressed forms of what buildah built:
  # decompressing each must give back the built tar exactly (= its diff_id)
  local bm i n built_layer pulled_layer
  bm=$(load built_manifest)
  n=$(jq '.layers | length' "$(blob built "$bm")")
  [ "$n" = "$(jq '.layers | length' pushed-manifest.json)" ] || die "layer count changed"
  for ((i = 0; i < n; i++)); do
    built_layer=$(jq -r ".layers[$i].digest" "$(blob built "$bm")")
    pulled_layer=$(jq -r ".layers[$i].digest" pushed-manifest.json)
    case $(jq -r ".layers[$i].mediaType" pushed-manifest.json) in
      *+gzip | *.tar.gzip) gzip -dc "$(blob pull1 "$pulled_layer")" | cmp - "$(blob built "$built_layer")" ;;
      *) cmp "$(blob pull1 "$pulled_layer")" "$(blob built "$built_layer")" ;;
    esac
  done
  # and the config is unchanged
  cmp "$(blob pull1 "$(jq -r .config.digest pushed-manifest.json)")" \
      "$(blob built "$(jq -r .config.digest "$(blob built "$bm")")")"
}

skopeo_delete() {
  local d
  d=$(load app_digest)
  "${SKOPEO[@]}" delete --tls-verify=false "docker://$APP:v1"
  expect_gone "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$APP@$d"
  expect_gone "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$APP:v1"
  # the tag is gone from the listing (an error for an emptied repo is fine)
  local tags
  if tags=$("${SKOPEO[@]}" list-tags --tls-verify=false "docker://$APP" 2>&1); then
    echo "$tags"
    if jq -e '.Tags | index("v1")' <<<"$tags" >/dev/null; then die "v1 still listed"; fi
  fi
  # the copy in the other repository is untouched
  "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$APP2@$d" >/dev/null
}

# ---------------------------------------------------------------- crane
crane_copy() {
  crane copy "${CRANE_OPTS[@]}" "$APP2:v1" "$CRANE_REPO:v1"
  crane copy "${CRANE_OPTS[@]}" "$APP2:v1" "$CRANE_REPO:v2"
}

crane_ls() {
  crane ls "${CRANE_OPTS[@]}" "$CRANE_REPO" | tee crane-tags.txt
  grep -qx v1 crane-tags.txt || die "v1 not listed"
  grep -qx v2 crane-tags.txt || die "v2 not listed"
}

crane_digest() {
  local d
  d=$(crane digest "${CRANE_OPTS[@]}" "$CRANE_REPO:v1")
  echo "$d"
  [ "$d" = "$(load app_digest)" ] || die "crane digest $d != $(load app_digest)"
}

crane_manifest() {
  crane manifest "${CRANE_OPTS[@]}" "$CRANE_REPO:v1" >crane-manifest.json
  cat crane-manifest.json
  [ "$(sha crane-manifest.json)" = "$(load app_digest)" ] || die "manifest bytes hash to $(sha crane-manifest.json)"
  cmp crane-manifest.json pushed-manifest.json
  # fetch a layer with crane too and compare with the skopeo pull
  local l
  l=$(jq -r '.layers[0].digest' crane-manifest.json)
  crane blob "${CRANE_OPTS[@]}" "$CRANE_REPO@$l" >crane-layer
  cmp crane-layer "$(blob pull1 "$l")"
}

crane_delete() {
  local d
  d=$(load app_digest)
  crane delete "${CRANE_OPTS[@]}" "$CRANE_REPO@$d"
  expect_gone crane manifest "${CRANE_OPTS[@]}" "$CRANE_REPO@$d"
  expect_gone crane digest "${CRANE_OPTS[@]}" "$CRANE_REPO:v1"
  expect_gone crane digest "${CRANE_OPTS[@]}" "$CRANE_REPO:v2"
}

# ---------------------------------------------------------------- oras
oras_push() {
  mkdir -p oras-src && cd oras-src
  printf 'artifact payload %s\n' "$RUN" >artifact.txt
  printf '{"note":"config for %s"}\n' "$RUN" >config.json
  oras push "${ORAS_OPTS[@]}" --artifact-type application/vnd.example.artifact \
    --config config.json:application/vnd.example.config+json \
    --format json "$ORAS_REPO:v1" artifact.txt:text/plain >../oras-push.json
  cat ../oras-push.json
  local d
  d=$(jq -er .digest ../oras-push.json)
  save oras_subject "$d"
  oras manifest fetch "${ORAS_OPTS[@]}" "$ORAS_REPO:v1" >../oras-manifest.json
  [ "$(sha ../oras-manifest.json)" = "$d" ] || die "fetched manifest does not hash to $d"
}

oras_attach() {
  mkdir -p oras-src && cd oras-src
  printf '{"signature":"not-really-%s"}\n' "$RUN" >sig.json
  oras attach "${ORAS_OPTS[@]}" --artifact-type application/vnd.example.sig \
    --annotation "pier.test=$RUN" --format json \
    "$ORAS_REPO@$(load oras_subject)" sig.json:application/vnd.example.sig.v1+json >../oras-attach.json
  cat ../oras-attach.json
  save oras_sig "$(jq -er .digest ../oras-attach.json)"
}

oras_discover() {
  local s sig
  s=$(load oras_subject)
  sig=$(load oras_sig)
  oras discover "${ORAS_OPTS[@]}" --format json "$ORAS_REPO@$s" >discover.json
  cat discover.json
  jq -e --arg d "$sig" '[.. | objects | select(.digest? == $d and .artifactType? == "application/vnd.example.sig")] | length == 1' discover.json \
    || die "signature $sig not among the referrers"
  oras discover "${ORAS_OPTS[@]}" --artifact-type application/vnd.example.sig "$ORAS_REPO@$s"
  # Which mechanism did it go through? The fallback tag sha256-<hex> exists
  # only when the registry lacks the referrers API (informational).
  if oras repo tags "${ORAS_OPTS[@]}" "$ORAS_REPO" | grep -qx "sha256-${s#sha256:}"; then
    echo "NOTE: referrers tag schema fallback in use (tag sha256-${s#sha256:} exists)"
    echo "referrers-tag-schema" >"$WORK/state/oras_mode"
  else
    echo "NOTE: referrers API in use (no fallback tag)"
    echo "referrers-api" >"$WORK/state/oras_mode"
  fi
}

oras_pull() {
  oras pull "${ORAS_OPTS[@]}" -o oras-out "$ORAS_REPO:v1"
  cmp oras-out/artifact.txt oras-src/artifact.txt
  oras pull "${ORAS_OPTS[@]}" -o oras-sig-out "$ORAS_REPO@$(load oras_sig)"
  cmp oras-sig-out/sig.json oras-src/sig.json
}

# ---------------------------------------------------------------- multi-arch
build_multiarch() {
  local arch c m cfg
  mkdir -p mctx
  for arch in amd64 arm64; do
    printf 'platform %s run %s\n' "$arch" "$RUN" >"mctx/$arch.txt"
    c=$("${BUILDAH[@]}" from --name "multi-$arch-$RUN" scratch)
    "${BUILDAH[@]}" copy "$c" "mctx/$arch.txt" /platform.txt
    "${BUILDAH[@]}" config --os linux --arch "$arch" "$c"
    # gzip layers, so no client re-compresses and digests must survive intact
    "${BUILDAH[@]}" commit --format oci --disable-compression=false "$c" "oci:$WORK/mbuild:$arch"
    "${BUILDAH[@]}" rm "$c"
  done
  # Assemble an OCI image index over the two manifests, in a fresh layout.
  mkdir -p multi/blobs/sha256
  cp mbuild/blobs/sha256/* multi/blobs/sha256/
  printf '{"imageLayoutVersion":"1.0.0"}' >multi/oci-layout
  local entries=()
  for arch in amd64 arm64; do
    m=$(layout_ref mbuild "$arch")
    cfg=$(jq -r .config.digest "$(blob mbuild "$m")")
    jq -e --arg a "$arch" '.architecture == $a' "$(blob mbuild "$cfg")" >/dev/null
    entries+=("$(jq -cn --arg d "$m" --argjson s "$(stat -c %s "$(blob mbuild "$m")")" --arg a "$arch" \
      '{mediaType:"application/vnd.oci.image.manifest.v1+json",digest:$d,size:$s,platform:{architecture:$a,os:"linux"}}')")
  done
  printf '%s\n' "${entries[@]}" | jq -cs '{schemaVersion:2,mediaType:"application/vnd.oci.image.index.v1+json",manifests:.}' | tr -d '\n' >index.tmp
  local idx
  idx=$(sha index.tmp)
  mv index.tmp "$(blob multi "$idx")"
  jq -cn --arg d "$idx" --argjson s "$(stat -c %s "$(blob multi "$idx")")" \
    '{schemaVersion:2,manifests:[{mediaType:"application/vnd.oci.image.index.v1+json",digest:$d,size:$s,annotations:{"org.opencontainers.image.ref.name":"v1"}}]}' >multi/index.json
  cat "$(blob multi "$idx")"
  save multi_index "$idx"
}

multiarch_push() {
  "${SKOPEO[@]}" copy --all --dest-tls-verify=false "oci:$WORK/multi:v1" "docker://$MULTI:v1"
}

multiarch_inspect() {
  local idx
  idx=$(load multi_index)
  "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$MULTI:v1" >multi-raw.json
  cat multi-raw.json
  [ "$(sha multi-raw.json)" = "$idx" ] || die "registry index digest $(sha multi-raw.json) != pushed $idx"
  jq -e '.mediaType == "application/vnd.oci.image.index.v1+json" and (.manifests | length == 2)' multi-raw.json
  crane manifest "${CRANE_OPTS[@]}" "$MULTI:v1" >multi-crane.json
  cmp multi-crane.json multi-raw.json
  crane manifest "${CRANE_OPTS[@]}" "$MULTI@$idx" | cmp - multi-raw.json
  local arch want got
  for arch in amd64 arm64; do
    want=$(jq -r --arg a "$arch" '.manifests[] | select(.platform.architecture == $a) | .digest' multi-raw.json)
    got=$(crane digest "${CRANE_OPTS[@]}" --platform "linux/$arch" "$MULTI:v1")
    [ "$got" = "$want" ] || die "crane --platform linux/$arch: $got != $want"
    got=$("${SKOPEO[@]}" inspect --tls-verify=false --override-arch "$arch" --override-os linux "docker://$MULTI:v1" | jq -r '.Architecture')
    [ "$got" = "$arch" ] || die "skopeo inspect --override-arch $arch gave $got"
  done
}

multiarch_pull_and_compare() {
  local idx
  idx=$(load multi_index)
  "${SKOPEO[@]}" copy --all --src-tls-verify=false "docker://$MULTI:v1" "oci:$WORK/multi-back:v1"
  [ "$(layout_ref multi-back v1)" = "$idx" ] || die "pulled index $(layout_ref multi-back v1) != $idx"
  # every blob (index, manifests, configs, layers) identical to what was pushed
  local f n=0
  for f in multi/blobs/sha256/*; do
    cmp "$f" "multi-back/blobs/sha256/${f##*/}"
    n=$((n + 1))
  done
  [ "$(ls multi-back/blobs/sha256 | wc -l)" = "$n" ] || die "pulled layout has extra blobs"
  echo "$n blobs identical"
}

# ---------------------------------------------------------------- run
check "buildah build image"             build_image
check "skopeo push (oci -> registry)"   skopeo_push
check "skopeo inspect"                  skopeo_inspect
check "skopeo list-tags"                skopeo_list_tags
check "skopeo copy registry->registry"  skopeo_copy_registry_to_registry
check "skopeo pull + compare blobs"     skopeo_pull_and_compare
check "skopeo delete"                   skopeo_delete
check "crane copy"                      crane_copy
check "crane ls"                        crane_ls
check "crane digest"                    crane_digest
check "crane manifest + blob"           crane_manifest
check "crane delete"                    crane_delete
check "oras push"                       oras_push
check "oras attach"                     oras_attach
check "oras discover"                   oras_discover
check "oras pull + compare"             oras_pull
check "multi-arch build index"          build_multiarch
check "multi-arch skopeo copy --all"    multiarch_push
check "multi-arch inspect (skopeo, crane)" multiarch_inspect
check "multi-arch pull back + compare"  multiarch_pull_and_compare

if [ -f "$WORK/state/oras_mode" ]; then
  echo "note: oras referrers via $(cat "$WORK/state/oras_mode")"
fi
if [ $nfail -gt 0 ]; then
  echo "failed checks:"
  printf '  - %s\n' "${failed_names[@]}"
  echo "scratch kept in $WORK"
elif [ -n "${KEEP:-}" ]; then
  echo "scratch kept in $WORK"
else
  rm -rf "$WORK"
fi
echo "clients: $npass passed, $nfail failed"
[ $nfail -eq 0 ]
