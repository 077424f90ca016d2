# Pull-through cache checks; sourced by tests/mirror/run.sh (its harness and helpers).
start_pier upstream || exit 2
start_reference refup || exit 2
[ -f "$scratch/auth/pier.toml" ] || tests/auth/make-config.sh "$scratch/auth" >/dev/null || exit 2
start_pier tokens -c "$scratch/auth/pier.toml" || exit 2
gate_log=$scratch/gated.log
node tests/mirror/gated-upstream.mjs $((8 << 20)) >"$scratch/gated.port" 2>"$gate_log" &
kill_at_exit $!
eventually test -s "$scratch/gated.port" || { cat "$gate_log"; exit 2; }
gated_addr=127.0.0.1:$(cat "$scratch/gated.port")
alice=$(jq -r .sandbox.username "$scratch/auth/credentials.json")
alice_password=$(jq -r .sandbox.password "$scratch/auth/credentials.json")

U=$upstream_addr TOK=$tokens_addr CACHE_DATA=$scratch/cache-data
# The shared namespaces (pulls.sh), then the reference registry and the gated
# upstream, which only this part uses.
{
  toml_tables mirror "$(mirrors_json)"
  printf '[[mirror]]\nnamespace = "ref/**"\nupstream = "http://%s"\n\n' "$refup_addr"
  printf '[[mirror]]\nnamespace = "gated/**"\nupstream = "http://%s"\nupstream_prefix = "gated"\n' "$gated_addr"
} >"$scratch/cache.toml"
start_pier cache -c "$scratch/cache.toml" || exit 2
C=$cache_addr
echo "cache: cache=$cache_addr upstream=$upstream_addr reference=$refup_addr tokens=$tokens_addr gated=$gated_addr"

make_upstream_images || exit 2
make_image "$refup_addr/library/base:3" 1500000 || exit 2

blob_record() { echo "$CACHE_DATA/blobs/sha256/${1#sha256:}"; }
# gated KEY: what the gated upstream serves (good, other, bad: digests; size).
gated() { curl -s "http://$gated_addr/digests" | jq -r ".$1"; }

# holds_bytes FILE N: FILE holds at least N bytes.
holds_bytes() { [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" -ge "$2" ]; }

the_reference_registry_as_upstream() {
  crane pull --insecure "$cache_addr/ref/library/base:3" base.tar
  same_manifest "docker://$refup_addr/library/base:3" "docker://$cache_addr/ref/library/base:3"
  same_blobs "$refup_addr/library/base:3" "$cache_addr/ref/library/base:3"
  stop refup
  crane pull --insecure "$cache_addr/ref/library/base:3" base2.tar
  cmp base.tar base2.tar
}

# pull_part_way KEY FILE: pulls the gated blob KEY through the cache into
# FILE in the background, until a quarter of it has arrived; sets $puller.
pull_part_way() {
  curl -s "http://$cache_addr/v2/gated/blob/blobs/$(gated "$1")" -o "$2" &
  puller=$!
  eventually holds_bytes "$2" $(($(gated size) / 4))
}

the_first_puller_streams_while_upstream_sends() {
  local good size puller
  good=$(gated good)
  size=$(gated size)
  # Upstream sends half and waits: the client already has bytes, and
  # nothing is cached yet.
  pull_part_way good streamed.bin
  echo "received $(stat -c %s streamed.bin) of $size bytes before upstream finished"
  [ ! -e "$(blob_record "$good")" ]
  curl -s -X POST "http://$gated_addr/release"
  wait "$puller"
  [ "sha256:$(sha256sum <streamed.bin | cut -d' ' -f1)" = "$good" ]
  [ -e "$(blob_record "$good")" ]
  curl -s "http://$cache_addr/v2/gated/blob/blobs/$good" -o again.bin
  cmp streamed.bin again.bin
}

wrong_bytes_from_upstream_cache_nothing() {
  curl -s -X POST "http://$gated_addr/release"
  local bad size
  bad=$(gated bad)
  size=$(gated size)
  # The transfer breaks off before its last bytes: the client cannot take
  # the wrong content for the blob, and nothing is cached.
  fails curl -sf "http://$cache_addr/v2/gated/blob/blobs/$bad" -o wrong.bin
  [ "$(stat -c %s wrong.bin)" -lt "$size" ]
  [ ! -e "$(blob_record "$bad")" ]
}

a_puller_leaving_half_way_leaves_nothing_partial() {
  curl -s -X POST "http://$gated_addr/hold"
  local other puller
  other=$(gated other)
  pull_part_way other half.bin
  kill "$puller"; wait "$puller" || true
  [ ! -e "$(blob_record "$other")" ]
  curl -s -X POST "http://$gated_addr/release"
  # The next puller gets the whole blob, right, and it is cached.
  curl -sf "http://$cache_addr/v2/gated/blob/blobs/$other" -o whole.bin
  [ "sha256:$(sha256sum <whole.bin | cut -d' ' -f1)" = "$other" ]
  [ -e "$(blob_record "$other")" ]
}

a_hundred_mib_image_first_and_cached() {
  make_image "$upstream_addr/team/big:v1" $((100 << 20)) --oci-empty-base
  local t0 t1 t2
  t0=$(date +%s.%N)
  crane pull --insecure "$cache_addr/hub/team/big:v1" big1.tar
  t1=$(date +%s.%N)
  crane pull --insecure "$cache_addr/hub/team/big:v1" big2.tar
  t2=$(date +%s.%N)
  cmp big1.tar big2.tar
  same_manifest "docker://$upstream_addr/team/big:v1" "docker://$cache_addr/hub/team/big:v1"
  same_blobs "$upstream_addr/team/big:v1" "$cache_addr/hub/team/big:v1"
  printf 'MEASURE 100 MiB image through the cache: first pull %.2f s, cached pull %.2f s\n' \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" | tee -a "$scratch/measurements.txt"
}

check "first pull goes upstream and is cached (crane)"               first_pull_goes_upstream
check "skopeo pulls a multi-arch index through the cache"           skopeo_pulls_an_index_through_the_cache
stop upstream
check "second pull is served with the upstream stopped"             served_with_the_upstream_stopped
start_pier --port "${upstream_addr##*:}" upstream || exit 2
check "a re-tag upstream is seen after the tag TTL, not before"     a_retag_upstream_is_seen_after_the_ttl
check "an upstream with token auth (and one refusing us)"          an_upstream_with_token_auth
check "the reference registry as upstream"                          the_reference_registry_as_upstream
check "pushes into a mirrored namespace are DENIED"                 pushes_into_a_mirror_are_denied
check "containerd ?ns= requests are served from the mirror"         containerd_ns_requests_are_served_from_the_mirror
check "containerd fetches through the mirror (hosts.toml)" containerd_fetches_through_the_mirror
check "the first puller gets bytes while upstream still sends"      the_first_puller_streams_while_upstream_sends
check "wrong bytes from upstream break the pull and cache nothing" wrong_bytes_from_upstream_cache_nothing
check "a puller leaving half way leaves nothing partial"            a_puller_leaving_half_way_leaves_nothing_partial
check "a 100 MiB image: first and cached pull"                      a_hundred_mib_image_first_and_cached
[ -f "$scratch/measurements.txt" ] && sed 's/^MEASURE /measured: /' "$scratch/measurements.txt"
