# Pull-through cache checks; sourced by tests/mirror/run.sh (its harness and helpers).
start_pier upstream || exit 2
upstream_port=${upstream_addr##*:}
start_reference refup || exit 2
[ -f "$scratch/auth/pier.toml" ] || PIER="$PIER_BIN" tests/auth/make-config.sh "$scratch/auth" >/dev/null || exit 2
start_pier tokens -c "$scratch/auth/pier.toml" || exit 2
gate_log=$scratch/gated.log
node tests/mirror/gated-upstream.mjs $((8 << 20)) >"$scratch/gated.port" 2>"$gate_log" &
pids+=($!)
for _ in $(seq 1 50); do [ -s "$scratch/gated.port" ] && break; sleep 0.1; done
gated_addr=127.0.0.1:$(cat "$scratch/gated.port")
alice=$(jq -r .sandbox.username "$scratch/auth/credentials.json")
alice_password=$(jq -r .sandbox.password "$scratch/auth/credentials.json")

cat >"$scratch/cache.toml" <<TOML
# Cached for an hour: re-tags upstream are not seen before then.
[[mirror]]
namespace = "hub/**"
upstream = "http://$upstream_addr"
tag_ttl_secs = 3600

# Asked again on every pull (TTL 0), under another prefix upstream.
[[mirror]]
namespace = "fresh/**"
upstream = "http://$upstream_addr"
upstream_prefix = "team"
tag_ttl_secs = 0

[[mirror]]
namespace = "ref/**"
upstream = "http://$refup_addr"

# An upstream with token auth: pier's own, as alice, whose sandbox/ it mirrors.
[[mirror]]
namespace = "secure/**"
upstream = "http://$tokens_addr"
upstream_prefix = "sandbox"
username = "$alice"
password = "$alice_password"

# The same upstream without credentials: it refuses.
[[mirror]]
namespace = "anonymous/**"
upstream = "http://$tokens_addr"
upstream_prefix = "sandbox"

[[mirror]]
namespace = "gated/**"
upstream = "http://$gated_addr"
upstream_prefix = "gated"
TOML
start_pier cache -c "$scratch/cache.toml" || exit 2
echo "cache: cache=$cache_addr upstream=$upstream_addr reference=$refup_addr tokens=$tokens_addr gated=$gated_addr"

make_image "$upstream_addr/team/app:v1" 3000000 --oci-empty-base || exit 2
make_image "$upstream_addr/team/amd64:v1" 2000000 --oci-empty-base || exit 2
crane index append --insecure -m "$upstream_addr/team/app:v1" -m "$upstream_addr/team/amd64:v1" \
  -t "$upstream_addr/team/multi:v1" >/dev/null || exit 2
make_image "$refup_addr/library/base:3" 1500000 || exit 2
PIER_COPY_DEST_CREDS="$alice:$alice_password" "$PIER_BIN" copy -q --insecure \
  "$upstream_addr/team/app:v1" "$tokens_addr/sandbox/app:v1" >/dev/null || exit 2

status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
blob_record() { echo "$scratch/cache-data/blobs/sha256/${1#sha256:}"; }
layers_of() { crane manifest --insecure "$1" | jq -r '.config.digest, .layers[].digest'; }

first_pull_goes_upstream() {
  local digest; digest=$(crane digest --insecure "$upstream_addr/team/app:v1")
  for blob in $(layers_of "$upstream_addr/team/app:v1"); do [ ! -e "$(blob_record "$blob")" ]; done
  crane pull --insecure "$cache_addr/hub/team/app:v1" first.tar
  [ "$(crane digest --insecure "$cache_addr/hub/team/app:v1")" = "$digest" ]
  same_manifest "docker://$upstream_addr/team/app:v1" "docker://$cache_addr/hub/team/app:v1"
  for blob in $(layers_of "$upstream_addr/team/app:v1"); do
    [ -e "$(blob_record "$blob")" ]
    [ "$(crane blob --insecure "$cache_addr/hub/team/app@$blob" | sha256sum | cut -d' ' -f1)" = "${blob#sha256:}" ]
  done
}

skopeo_pulls_an_index_through_the_cache() {
  "${SKOPEO[@]}" copy --all --src-tls-verify=false "docker://$cache_addr/hub/team/multi:v1" "oci:$scratch/work/multi:v1"
  same_manifest "docker://$upstream_addr/team/multi:v1" "docker://$cache_addr/hub/team/multi:v1"
  # skopeo rewrites the index it stores (dropping what it does not model),
  # but every platform's manifest arrives unchanged.
  children() { "${SKOPEO[@]}" inspect --tls-verify=false --raw "$1" | jq -r '[.manifests[].digest] | sort | join(" ")'; }
  [ "$(children "docker://$upstream_addr/team/multi:v1")" = "$(children "oci:$scratch/work/multi:v1")" ]
  for child in $(children "docker://$upstream_addr/team/multi:v1"); do
    same_blobs "$upstream_addr/team/multi@$child" "$cache_addr/hub/team/multi@$child"
  done
  # And the fresh/ namespace maps to team/ upstream.
  crane pull --insecure "$cache_addr/fresh/app:v1" fresh.tar
  same_manifest "docker://$upstream_addr/team/app:v1" "docker://$cache_addr/fresh/app:v1"
}

served_with_the_upstream_stopped() {
  [ "$(status_of "http://$upstream_addr/v2/")" = 000 ]
  crane pull --insecure "$cache_addr/hub/team/app:v1" second.tar
  cmp first.tar second.tar
  "${SKOPEO[@]}" copy --all --src-tls-verify=false "docker://$cache_addr/hub/team/multi:v1" "oci:$scratch/work/multi2:v1"
  same_manifest "oci:$scratch/work/multi:v1" "oci:$scratch/work/multi2:v1"
  # TTL 0: upstream is asked and cannot answer, so the cached copy is served.
  crane pull --insecure "$cache_addr/fresh/app:v1" fresh2.tar
  cmp fresh.tar fresh2.tar
  # Never cached: 503 UNAVAILABLE naming the upstream, not a 500.
  curl -s "http://$cache_addr/v2/hub/team/never/manifests/v1" -o never.json -w '%{http_code}\n' | tee code.txt
  grep -q 503 code.txt
  jq -e '.errors[0].code == "UNAVAILABLE"' never.json
  grep -q "$upstream_addr" never.json
}

a_retag_upstream_is_seen_after_the_ttl() {
  local old new
  old=$(crane digest --insecure "$upstream_addr/team/app:v1")
  make_image "$upstream_addr/team/app:v1" 1000000 --oci-empty-base
  new=$(crane digest --insecure "$upstream_addr/team/app:v1")
  [ "$old" != "$new" ]
  # TTL 0: the HEAD sees the new digest and the new manifest is fetched.
  [ "$(crane digest --insecure "$cache_addr/fresh/app:v1")" = "$new" ]
  crane pull --insecure "$cache_addr/fresh/app:v1" retagged.tar
  # Within its hour, hub/ still serves what it cached.
  [ "$(crane digest --insecure "$cache_addr/hub/team/app:v1")" = "$old" ]
  # The old manifest stays readable by digest.
  [ "$(crane digest --insecure "$cache_addr/fresh/app@$old")" = "$old" ]
}

an_upstream_with_token_auth() {
  [ "$(status_of "http://$tokens_addr/v2/sandbox/app/manifests/v1")" = 401 ]
  crane pull --insecure "$cache_addr/secure/app:v1" secure.tar
  same_manifest "docker://$upstream_addr/team/app@$(crane digest --insecure "$cache_addr/secure/app:v1")" \
    "docker://$cache_addr/secure/app:v1"
  for blob in $(layers_of "$cache_addr/secure/app:v1"); do [ -e "$(blob_record "$blob")" ]; done
  # Without credentials upstream says 401: the cache answers 503 and says why.
  curl -s "http://$cache_addr/v2/anonymous/app/manifests/v1" -o anon.json -w '%{http_code}\n' | tee code.txt
  grep -q 503 code.txt
  jq -r '.errors[0].message' anon.json | tee message.txt
  grep -q '401' message.txt
}

the_reference_registry_as_upstream() {
  crane pull --insecure "$cache_addr/ref/library/base:3" base.tar
  same_manifest "docker://$refup_addr/library/base:3" "docker://$cache_addr/ref/library/base:3"
  same_blobs "$refup_addr/library/base:3" "$cache_addr/ref/library/base:3"
  stop "$refup_pid" "$refup_addr"
  crane pull --insecure "$cache_addr/ref/library/base:3" base2.tar
  cmp base.tar base2.tar
}

pushes_into_a_mirror_are_denied() {
  curl -s -X POST "http://$cache_addr/v2/hub/team/app/blobs/uploads/" -o denied.json -w '%{http_code}\n' | tee code.txt
  grep -q 403 code.txt
  jq -e '.errors[0].code == "DENIED"' denied.json
  jq -r '.errors[0].message' denied.json | grep 'pull-through cache'
  fails crane copy --insecure "$cache_addr/hub/team/app:v1" "$cache_addr/hub/team/copy:v1" 2>err.txt
  grep -q DENIED err.txt
  # Elsewhere pushes work as ever.
  crane copy --insecure "$cache_addr/hub/team/app:v1" "$cache_addr/local/app:v1"
}

the_first_puller_streams_while_upstream_sends() {
  local good size
  good=$(curl -s "http://$gated_addr/digests" | jq -r .good)
  size=$(curl -s "http://$gated_addr/digests" | jq -r .size)
  curl -s "http://$cache_addr/v2/gated/blob/blobs/$good" -o streamed.bin &
  local puller=$!
  # Upstream has sent half and waits: the client already has bytes, and
  # nothing is cached yet.
  for _ in $(seq 1 300); do
    [ "$(stat -c %s streamed.bin 2>/dev/null || echo 0)" -ge $((size / 4)) ] && break
    sleep 0.1
  done
  echo "received $(stat -c %s streamed.bin) of $size bytes before upstream finished"
  [ "$(stat -c %s streamed.bin)" -ge $((size / 4)) ]
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
  bad=$(curl -s "http://$gated_addr/digests" | jq -r .bad)
  size=$(curl -s "http://$gated_addr/digests" | jq -r .size)
  # The transfer breaks off before its last bytes: the client cannot take
  # the wrong content for the blob, and nothing is cached.
  fails curl -sf "http://$cache_addr/v2/gated/blob/blobs/$bad" -o wrong.bin
  [ "$(stat -c %s wrong.bin)" -lt "$size" ]
  [ ! -e "$(blob_record "$bad")" ]
}

a_puller_leaving_half_way_leaves_nothing_partial() {
  curl -s -X POST "http://$gated_addr/hold"
  local other size
  other=$(curl -s "http://$gated_addr/digests" | jq -r .other)
  size=$(curl -s "http://$gated_addr/digests" | jq -r .size)
  curl -s "http://$cache_addr/v2/gated/blob/blobs/$other" -o half.bin &
  local puller=$!
  for _ in $(seq 1 300); do
    [ "$(stat -c %s half.bin 2>/dev/null || echo 0)" -ge $((size / 4)) ] && break
    sleep 0.1
  done
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
stop "$upstream_pid" "$upstream_addr"
check "second pull is served with the upstream stopped"             served_with_the_upstream_stopped
PORT=$upstream_port start_pier upstream || exit 2
check "a re-tag upstream is seen after the tag TTL, not before"     a_retag_upstream_is_seen_after_the_ttl
check "an upstream with token auth (and one refusing us)"          an_upstream_with_token_auth
check "the reference registry as upstream"                          the_reference_registry_as_upstream
check "pushes into a mirrored namespace are DENIED"                 pushes_into_a_mirror_are_denied
check "the first puller gets bytes while upstream still sends"      the_first_puller_streams_while_upstream_sends
check "wrong bytes from upstream break the pull and cache nothing" wrong_bytes_from_upstream_cache_nothing
check "a puller leaving half way leaves nothing partial"            a_puller_leaving_half_way_leaves_nothing_partial
check "a 100 MiB image: first and cached pull"                      a_hundred_mib_image_first_and_cached
[ -f "$scratch/measurements.txt" ] && sed 's/^MEASURE /measured: /' "$scratch/measurements.txt"
