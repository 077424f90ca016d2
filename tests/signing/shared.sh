# The signing checks shared by the native server (native.sh) and the Worker
# (edge.sh), and the keys and configuration both are given; sourced by
# tests/signing/run.sh (its harness and helpers). The checks read:
#   MAIN  a registry configured with policies_json (natively: the CI key
#         from its file) and rules_json
#   KEYS  the directory of the cosign key pairs ci.* and other.*

KEYS=$scratch/keys

# make_keys: two cosign key pairs (empty password): ci, which prod/ trusts,
# and other, which it does not.
make_keys() {
  mkdir -p "$KEYS"
  (cd "$KEYS" && for name in ci other; do
    COSIGN_PASSWORD= cosign generate-key-pair --output-key-prefix "$name" || exit 1
  done) >"$scratch/keys.log" 2>&1 || { cat "$scratch/keys.log"; return 1; }
}

# The configuration as JSON arrays of tables (the Worker's PIER_POLICY and
# PIER_REPLICATE): prod/** requires the CI key, prod/open/** (more
# specific) nothing; release tags of ci/ are promoted to prod/, and copied
# to staging/ (no policy) with their tag-mode signatures.
policies_json() {
  jq -cn --rawfile key "$KEYS/ci.pub" '[{namespace: "prod/**", require_signature: [$key]}, {namespace: "prod/open/**"}]'
}
rules_json() {
  jq -cn '[{repository: "ci/**", tags: "v*", to_namespace: "prod/**"},
           {repository: "ci/**", tags: "v*", to_namespace: "staging/**", signature_tags: true}]'
}

# sign KEY REF [COSIGN_FLAGS...]: cosign's signature of REF by the key pair
# KEY, no transparency log, over plain HTTP (tag mode unless flags say).
sign() {
  COSIGN_PASSWORD= cosign sign --key "$KEYS/$1.key" --tlog-upload=false --allow-insecure-registry \
    --allow-http-registry -y "${@:3}" "$2"
}
# sign_as_referrer KEY REF: the same in cosign's referrers mode (OCI 1.1).
sign_as_referrer() { COSIGN_EXPERIMENTAL=1 sign "$1" "$2" --registry-referrers-mode=oci-1-1; }
# verify KEY REF [COSIGN_FLAGS...]: `cosign verify` of REF with KEY's public key.
verify() {
  COSIGN_EXPERIMENTAL=1 cosign verify --key "$KEYS/$1.pub" --insecure-ignore-tlog=true --allow-insecure-registry \
    --allow-http-registry "${@:3}" "$2"
}

digest_of() { crane digest --insecure "$1"; }
signature_tag() { echo "${1/:/-}.sig"; }
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# refusal REPO: why the promotion of REPO's push was refused (its dead letter).
refusal() {
  curl -fsS "http://$MAIN/_pier/events?dead=true" |
    jq -r --arg repo "$1" '.[] | select(.dead and .event.repository == $repo and .event.action == "push") | .last_error'
}
refused_with() { refusal "$1" | grep -qF -- "$2"; }
promoted() { [ "$(digest_of "$1")" = "$2" ]; }

signed_before_the_release_tag_is_promoted_with_its_signature() {
  make_image "$MAIN/ci/app:build-1" 1000
  local digest; digest=$(digest_of "$MAIN/ci/app:build-1")
  sign ci "$MAIN/ci/app@$digest"
  crane tag --insecure "$MAIN/ci/app@$digest" v1
  eventually promoted "$MAIN/prod/app:v1" "$digest"
  # Its signature came along: the image is pullable in prod/ and verifies there.
  crane pull --insecure "$MAIN/prod/app:v1" app.tar
  "${SKOPEO[@]}" copy --src-tls-verify=false "docker://$MAIN/prod/app:v1" oci:app-oci:v1
  verify ci "$MAIN/prod/app:v1" | tee verified.json
  jq -e --arg d "$digest" '.[0].critical.image["docker-manifest-digest"] == $d' verified.json
  fails verify other "$MAIN/prod/app:v1"
  # The signature itself is pullable in prod/, its payload too.
  local signatures; signatures=$(crane manifest --insecure "$MAIN/prod/app:$(signature_tag "$digest")")
  crane blob --insecure "$MAIN/prod/app@$(jq -r '.layers[0].digest' <<<"$signatures")" | jq -e .critical
  [ -z "$(refusal ci/app)" ]
  # Where nothing requires it, the signature goes only as the rule asks
  # (signature_tags), and cosign verifies the copy there too.
  eventually promoted "$MAIN/staging/app:v1" "$digest"
  eventually crane manifest --insecure "$MAIN/staging/app:$(signature_tag "$digest")"
  verify ci "$MAIN/staging/app:v1" >/dev/null
}

an_unsigned_image_is_not_promoted_and_the_reason_is_recorded() {
  make_image "$MAIN/ci/unsigned:v1" 1000
  local digest; digest=$(digest_of "$MAIN/ci/unsigned:v1")
  eventually refused_with ci/unsigned "no cosign signature"
  refusal ci/unsigned | tee reason.txt
  grep -qF "$digest" reason.txt
  grep -qF 'namespace policy "prod/**"' reason.txt
  fails crane manifest --insecure "$MAIN/prod/unsigned:v1"
  # staging/ has no policy: the same push went there.
  eventually promoted "$MAIN/staging/unsigned:v1" "$digest"
}

a_signature_added_after_the_image_promotes_it() {
  make_image "$MAIN/ci/late:v1" 1000
  local digest; digest=$(digest_of "$MAIN/ci/late:v1")
  eventually refused_with ci/late "no cosign signature"
  fails crane manifest --insecure "$MAIN/prod/late:v1"
  # cosign signs after the push, here in its referrers mode.
  sign_as_referrer ci "$MAIN/ci/late@$digest"
  eventually promoted "$MAIN/prod/late:v1" "$digest"
  curl -fsS "http://$MAIN/v2/prod/late/referrers/$digest" | tee referrers.json
  jq -e '.manifests | length == 1 and .[0].artifactType == "application/vnd.dev.cosign.artifact.sig.v1+json"' \
    referrers.json
  # The referrer is pullable by digest, and cosign verifies the image in prod/.
  crane manifest --insecure "$MAIN/prod/late@$(jq -r '.manifests[0].digest' referrers.json)" >/dev/null
  verify ci "$MAIN/prod/late:v1" --experimental-oci11
  # The refusal was retried and is gone from the dead letters.
  [ -z "$(refusal ci/late)" ]
}

a_signature_by_another_key_is_refused() {
  make_image "$MAIN/ci/stranger:v1" 1000
  eventually refused_with ci/stranger "no cosign signature"
  sign other "$MAIN/ci/stranger:v1"
  # The signature's push retries the promotion, which is refused again.
  eventually refused_with ci/stranger "none of its 1 cosign signatures verifies"
  fails crane manifest --insecure "$MAIN/prod/stranger:v1"
}

# tamper REPO DIGEST HOW: rewrites the tag-mode signature of DIGEST in REPO
# (a signature by the CI key):
#   payload  its payload blob edited (a claim added), the signature kept;
#   swapped  its layer replaced by the CI key's valid signature of another image.
tamper() {
  local repo=$1 digest=$2 tag; tag=$(signature_tag "$2")
  crane manifest --insecure "$repo:$tag" >signatures.json
  case $3 in
    payload)
      crane blob --insecure "$repo@$(jq -r '.layers[0].digest' signatures.json)" |
        jq -c '.optional = {"edited": "after signing"}' | tr -d '\n' >payload.json
      local edited; edited=sha256:$(sha256sum payload.json | cut -d' ' -f1)
      oras blob push --plain-http "$repo@$edited" payload.json >/dev/null
      jq --arg d "$edited" --argjson size "$(wc -c <payload.json)" \
        '.layers[0].digest = $d | .layers[0].size = $size' signatures.json >tampered.json
      ;;
    swapped)
      make_image "$repo:other" 1000
      local other; other=$(digest_of "$repo:other")
      sign ci "$repo@$other"
      crane manifest --insecure "$repo:$(signature_tag "$other")" >others.json
      jq --slurpfile others others.json '.layers[0] = $others[0].layers[0]' signatures.json >tampered.json
      ;;
  esac
  oras manifest push --plain-http --media-type "$(jq -r .mediaType signatures.json)" "$repo:$tag" tampered.json
}

a_tampered_signature_is_refused() {
  local how digest
  for how in payload swapped; do
    make_image "$MAIN/ci/tampered-$how:build" 1000
    digest=$(digest_of "$MAIN/ci/tampered-$how:build")
    sign ci "$MAIN/ci/tampered-$how@$digest"
    tamper "$MAIN/ci/tampered-$how" "$digest" "$how"
    crane tag --insecure "$MAIN/ci/tampered-$how@$digest" v1
  done
  eventually refused_with ci/tampered-payload "none of its 1 cosign signatures verifies"
  eventually refused_with ci/tampered-swapped "another manifest"
  fails crane manifest --insecure "$MAIN/prod/tampered-payload:v1"
  fails crane manifest --insecure "$MAIN/prod/tampered-swapped:v1"
}

# cosign reads a manifest before it signs it, which prod/ refuses while it is
# unsigned: the image and its signatures are made in ci/ and copied to
# prod/ with crane, as another registry or a person would.
a_manifest_pushed_to_prod_is_pulled_only_once_signed() {
  make_image "$MAIN/ci/direct:build" 1000
  local digest; digest=$(digest_of "$MAIN/ci/direct:build")
  crane copy --insecure "$MAIN/ci/direct@$digest" "$MAIN/prod/direct:v1"
  local answer=(-H 'Accept: application/vnd.docker.distribution.manifest.v2+json')
  [ "$(curl -s "${answer[@]}" -o denied.json -w '%{http_code}' "http://$MAIN/v2/prod/direct/manifests/v1")" = 403 ]
  jq . denied.json
  jq -e --arg d "$digest" '.errors[0].code == "DENIED" and .errors[0].detail.namespace == "prod/**"
    and (.errors[0].message | contains($d) and contains("namespace policy \"prod/**\""))' denied.json
  [ "$(status_of -I "http://$MAIN/v2/prod/direct/manifests/$digest")" = 403 ]
  # The UI's tags API says so too: no required key signed it.
  curl -fsS "http://$MAIN/_pier/repositories/prod/direct/tags" | jq -e '.tags[] | select(.tag == "v1") | .signed_by == null'
  fails crane pull --insecure "$MAIN/prod/direct:v1" direct.tar
  fails "${SKOPEO[@]}" inspect --tls-verify=false "docker://$MAIN/prod/direct:v1"
  # Tagged like a signature, an image is still an image.
  local tag; tag=$(signature_tag "$digest")
  crane copy --insecure "$MAIN/ci/direct@$digest" "$MAIN/prod/sneaky:$tag"
  [ "$(status_of "http://$MAIN/v2/prod/sneaky/manifests/$tag")" = 403 ]
  # Signed by another key: still refused.
  sign other "$MAIN/ci/direct@$digest"
  crane copy --insecure "$MAIN/ci/direct:$tag" "$MAIN/prod/direct:$tag"
  [ "$(status_of "http://$MAIN/v2/prod/direct/manifests/v1")" = 403 ]
  # And by the CI key (cosign adds a layer to the same .sig manifest): pullable.
  sign ci "$MAIN/ci/direct@$digest"
  crane copy --insecure "$MAIN/ci/direct:$tag" "$MAIN/prod/direct:$tag"
  crane pull --insecure "$MAIN/prod/direct:v1" direct.tar
  verify ci "$MAIN/prod/direct:v1" >/dev/null
  curl -fsS "http://$MAIN/_pier/repositories/prod/direct/tags" |
    jq -e '.tags[] | select(.tag == "v1") | .signed_by | startswith("ecdsa-p256:")'
  # Where no policy requires signatures, the API says nothing of keys.
  curl -fsS "http://$MAIN/_pier/repositories/ci/direct/tags" | jq -e '.tags[] | has("signed_by") | not' 
  # A more specific policy without keys holds in prod/open/.
  crane copy --insecure "$MAIN/ci/direct:build" "$MAIN/prod/open/direct:v1"
  crane pull --insecure "$MAIN/prod/open/direct:v1" open.tar
}

# make_index REPO TAG: an index of two one-layer images (pushed as
# REPO:TAG-a and REPO:TAG-b) tagged REPO:TAG; prints its digest.
make_index() {
  make_image "$1:$2-a" 1000
  make_image "$1:$2-b" 1000
  crane index append --insecure -m "$1:$2-a" -m "$1:$2-b" -t "$1:$2" >/dev/null
  digest_of "$1:$2"
}
children_of() { crane manifest --insecure "$1" | jq -r '.manifests[].digest'; }

an_index_signed_recursively_is_promoted_and_pulled_whole() {
  local index child
  index=$(make_index "$MAIN/ci/multi" build)
  sign ci "$MAIN/ci/multi@$index" --recursive
  crane tag --insecure "$MAIN/ci/multi@$index" v1
  eventually promoted "$MAIN/prod/multi:v1" "$index"
  # Each child is pulled by digest, as a runtime picking its platform does.
  for child in $(children_of "$MAIN/prod/multi:v1"); do
    crane pull --insecure "$MAIN/prod/multi@$child" child.tar
  done
  verify ci "$MAIN/prod/multi:v1" >/dev/null
  # Signed without --recursive, the index is promoted but its children are
  # not pullable: nothing tells a pull by digest which index it came from.
  index=$(make_index "$MAIN/ci/flat" build)
  sign ci "$MAIN/ci/flat@$index"
  crane tag --insecure "$MAIN/ci/flat@$index" v1
  eventually promoted "$MAIN/prod/flat:v1" "$index"
  child=$(children_of "$MAIN/prod/flat:v1" | head -n 1)
  [ "$(status_of "http://$MAIN/v2/prod/flat/manifests/$child")" = 403 ]
  fails crane pull --insecure "$MAIN/prod/flat@$child" child.tar
}

run_signing_checks() {
  check "$1: an image signed in ci/ is promoted with its signature, pulled and verified in prod/" \
    signed_before_the_release_tag_is_promoted_with_its_signature
  check "$1: an unsigned image is not promoted; the reason is a dead letter" \
    an_unsigned_image_is_not_promoted_and_the_reason_is_recorded
  check "$1: a signature pushed after the image (referrers mode) promotes it" \
    a_signature_added_after_the_image_promotes_it
  check "$1: a signature by another key is refused" a_signature_by_another_key_is_refused
  check "$1: a tampered signature (payload edited, signature swapped) is refused" a_tampered_signature_is_refused
  check "$1: in prod/ an unsigned manifest is refused 403 DENIED, pulled once signed; prod/open/ is exempt" \
    a_manifest_pushed_to_prod_is_pulled_only_once_signed
  check "$1: an index signed with --recursive is promoted and pulled whole; without it, its children are refused" \
    an_index_signed_recursively_is_promoted_and_pulled_whole
}
