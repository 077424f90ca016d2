# `pier copy` checks; sourced by tests/mirror/run.sh (its harness and helpers).
start_pier src || exit 2
start_pier dst || exit 2
start_reference ref || exit 2
tests/auth/make-config.sh "$scratch/auth" >/dev/null || exit 2
start_pier secured -c "$scratch/auth/pier.toml" || exit 2
echo "copy: src=$src_addr dst=$dst_addr reference=$ref_addr secured=$secured_addr"

make_image "$src_addr/team/app:v1" 3000000 --oci-empty-base || exit 2
make_image "$src_addr/team/docker:v1" 1000000 || exit 2
make_image "$src_addr/team/amd64:v1" 2000000 --oci-empty-base || exit 2
crane index append --insecure -m "$src_addr/team/app:v1" -m "$src_addr/team/amd64:v1" \
  -t "$src_addr/team/multi:v1" >/dev/null || exit 2

between_two_piers() {
  pier copy --insecure "$src_addr/team/app:v1" "$dst_addr/copied/app:v1" | tee out.txt
  grep -q '2 copied' out.txt
  same_manifest "docker://$src_addr/team/app:v1" "docker://$dst_addr/copied/app:v1"
  same_blobs "$src_addr/team/app:v1" "$dst_addr/copied/app:v1"
  # Docker media types travel unchanged too.
  pier copy --insecure "$src_addr/team/docker:v1" "docker://$dst_addr/copied/docker:v1"
  same_manifest "docker://$src_addr/team/docker:v1" "docker://$dst_addr/copied/docker:v1"
}

a_second_copy_skips_every_blob() {
  pier copy --insecure "$src_addr/team/app:v1" "$dst_addr/copied/app:v2" | tee out.txt
  grep -q '0 copied (0 bytes), 0 mounted, 2 already there' out.txt
}

within_one_registry_blobs_are_mounted() {
  pier copy --insecure "$src_addr/team/app:v1" "$src_addr/promoted/app:v1" | tee out.txt
  grep -q '0 copied (0 bytes), 2 mounted' out.txt
  same_manifest "docker://$src_addr/team/app:v1" "docker://$src_addr/promoted/app:v1"
}

an_index_with_every_child() {
  pier copy --insecure "$src_addr/team/multi:v1" "$dst_addr/copied/multi:v1" | tee out.txt
  grep -q '(3 manifests;' out.txt
  same_manifest "docker://$src_addr/team/multi:v1" "docker://$dst_addr/copied/multi:v1"
  for child in $(crane manifest --insecure "$src_addr/team/multi:v1" | jq -r '.manifests[].digest'); do
    same_manifest "docker://$src_addr/team/multi@$child" "docker://$dst_addr/copied/multi@$child"
    same_blobs "$src_addr/team/multi@$child" "$dst_addr/copied/multi@$child"
  done
}

to_a_layout_and_back() {
  pier copy --insecure "$src_addr/team/multi:v1" "oci:$scratch/work/layout:v1"
  pier copy --insecure "$src_addr/team/app:v1" "oci:$scratch/work/layout:app"
  jq -e '.manifests | length == 2' layout/index.json
  jq -e '.imageLayoutVersion == "1.0.0"' layout/oci-layout
  # skopeo reads what pier wrote, byte for byte.
  same_manifest "docker://$src_addr/team/multi:v1" "oci:$scratch/work/layout:v1"
  same_manifest "docker://$src_addr/team/app:v1" "oci:$scratch/work/layout:app"
  for blob in layout/blobs/sha256/*; do
    [ "$(sha256sum <"$blob" | cut -d' ' -f1)" = "$(basename "$blob")" ]
  done
  pier copy --insecure "oci:$scratch/work/layout:v1" "$dst_addr/fromdisk/multi:v1"
  same_manifest "docker://$src_addr/team/multi:v1" "docker://$dst_addr/fromdisk/multi:v1"
  pier copy --insecure "oci:$scratch/work/layout:app" "$dst_addr/fromdisk/app:v1"
  same_blobs "$src_addr/team/app:v1" "$dst_addr/fromdisk/app:v1"
}

skopeo_and_pier_share_layouts() {
  # skopeo copies pier's layout to the reference registry: same digest.
  "${SKOPEO[@]}" copy --dest-tls-verify=false "oci:$scratch/work/layout:app" "docker://$ref_addr/byskopeo/app:v1"
  same_manifest "docker://$src_addr/team/app:v1" "docker://$ref_addr/byskopeo/app:v1"
  # pier copies a layout skopeo wrote.
  "${SKOPEO[@]}" copy --src-tls-verify=false "docker://$src_addr/team/app:v1" "oci:$scratch/work/skopeo-layout:v1"
  pier copy --insecure "oci:$scratch/work/skopeo-layout:v1" "$dst_addr/fromskopeo/app:v1"
  same_manifest "oci:$scratch/work/skopeo-layout:v1" "docker://$dst_addr/fromskopeo/app:v1"
  same_blobs "$dst_addr/fromskopeo/app:v1" "$src_addr/team/app:v1"
}

to_and_from_the_reference_registry() {
  # Small chunks: the push to the reference registry goes PATCH by PATCH.
  pier copy --insecure --chunk-size 500000 "$src_addr/team/multi:v1" "$ref_addr/mirror/multi:v1"
  same_manifest "docker://$src_addr/team/multi:v1" "docker://$ref_addr/mirror/multi:v1"
  pier copy --insecure "$ref_addr/mirror/multi:v1" "$dst_addr/viaref/multi:v1"
  same_manifest "docker://$src_addr/team/multi:v1" "docker://$dst_addr/viaref/multi:v1"
  for child in $(crane manifest --insecure "$src_addr/team/multi:v1" | jq -r '.manifests[].digest'); do
    same_blobs "$ref_addr/mirror/multi@$child" "$dst_addr/viaref/multi@$child"
  done
}

into_a_registry_with_token_auth() {
  local user pass
  user=$(jq -r .sandbox.username "$scratch/auth/credentials.json")
  pass=$(jq -r .sandbox.password "$scratch/auth/credentials.json")
  # Without credentials: refused, nothing written.
  fails pier copy --insecure "$src_addr/team/app:v1" "$secured_addr/sandbox/app:v1" 2>err.txt
  cat err.txt; grep -q '401' err.txt
  PIER_COPY_DEST_CREDS="$user:$pass" pier copy --insecure "$src_addr/team/app:v1" "$secured_addr/sandbox/app:v1"
  # And back out of it, with the credentials on the command line.
  pier copy --insecure --src-creds "$user:$pass" "$secured_addr/sandbox/app:v1" "$dst_addr/fromsecured/app:v1"
  same_manifest "docker://$src_addr/team/app:v1" "docker://$dst_addr/fromsecured/app:v1"
  # A namespace the user may not push to: DENIED, said so.
  fails env PIER_COPY_DEST_CREDS="$user:$pass" "$PIER_BIN" copy --insecure "$src_addr/team/app:v1" \
    "$secured_addr/prod/app:v1" 2>err.txt
  cat err.txt; grep -Eq 'DENIED|401|403' err.txt
}

corrupted_blobs_are_refused() {
  pier copy --insecure "$src_addr/team/app:v1" "oci:$scratch/work/corrupt:v1"
  local layer; layer=$(crane manifest --insecure "$src_addr/team/app:v1" | jq -r '.layers[0].digest')
  local file="corrupt/blobs/sha256/${layer#sha256:}"
  chmod u+w "$file"
  printf 'XXXX' | dd of="$file" bs=1 seek=100 conv=notrunc 2>/dev/null
  fails pier copy --insecure "oci:$scratch/work/corrupt:v1" "$dst_addr/corrupt/app:v1" 2>err.txt
  cat err.txt; grep -q 'arrived with digest' err.txt
  [ "$(curl -s -o /dev/null -w '%{http_code}' -I "http://$dst_addr/v2/corrupt/app/blobs/$layer")" = 404 ]
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$dst_addr/v2/corrupt/app/manifests/v1")" = 404 ]
}

bad_references_and_missing_images_are_errors() {
  fails pier copy --insecure "$src_addr/team/app:nosuchtag" "$dst_addr/x/y:v1" 2>err.txt
  cat err.txt; grep -q 'has no manifest :nosuchtag' err.txt
  fails pier copy --insecure "$src_addr/Team/App:v1" "$dst_addr/x/y:v1" 2>err.txt
  cat err.txt; grep -q 'invalid repository name' err.txt
  fails pier copy --insecure "oci:$scratch/work/nowhere:v1" "$dst_addr/x/y:v1" 2>err.txt
  cat err.txt; grep -q 'has no manifest' err.txt
  fails pier copy --insecure "oci:$scratch/work/layout" "$dst_addr/x/y:v1" 2>err.txt
  cat err.txt; grep -q 'name one with oci:DIR:TAG' err.txt
  local closed; closed=$(free_port)
  fails pier copy --insecure "127.0.0.1:$closed/a/b:v1" "$dst_addr/x/y:v1" 2>err.txt
  cat err.txt; grep -q "127.0.0.1:$closed" err.txt
  fails pier copy --insecure --src-creds nocolon "$src_addr/team/app:v1" "$dst_addr/x/y:v1" 2>err.txt
  cat err.txt; grep -q 'USER:PASSWORD' err.txt
}

referrers_travel_with_the_image() {
  local subject sig countersig
  subject=$(crane digest --insecure "$src_addr/team/app:v1")
  sig=$(attach "$src_addr/team/app@$subject" application/vnd.example.sig '{"signature":"not-really"}')
  # A referrer of the referrer (a countersignature) travels too.
  countersig=$(attach "$src_addr/team/app@$sig" application/vnd.example.countersig '{"countersignature":1}')
  pier copy --insecure "$src_addr/team/app:v1" "$dst_addr/signed/app:v1" | tee out.txt
  grep -q '(3 manifests;' out.txt
  [ "$(referrers_of "$dst_addr" signed/app "$subject")" = "$sig" ]
  [ "$(referrers_of "$dst_addr" signed/app "$sig")" = "$countersig" ]
  same_manifest "docker://$src_addr/team/app@$sig" "docker://$dst_addr/signed/app@$sig"
  same_blobs "$src_addr/team/app@$countersig" "$dst_addr/signed/app@$countersig"
  # Through a layout (listed in its index.json, untagged) and out of it.
  pier copy --insecure "$src_addr/team/app:v1" "oci:$scratch/work/signed:v1"
  jq -e --arg s "$sig" --arg c "$countersig" '[.manifests[].digest] | index($s) != null and index($c) != null' \
    signed/index.json
  pier copy --insecure "oci:$scratch/work/signed:v1" "$dst_addr/signedfromdisk/app:v1"
  [ "$(referrers_of "$dst_addr" signedfromdisk/app "$subject")" = "$sig" ]
  [ "$(referrers_of "$dst_addr" signedfromdisk/app "$sig")" = "$countersig" ]
  # The reference registry (Distribution 2.8) has no referrers API: the image
  # is copied, its referrers are not (there is nothing to list them by).
  pier copy --insecure "$src_addr/team/app:v1" "$ref_addr/signed/app:v1"
  same_manifest "docker://$src_addr/team/app:v1" "docker://$ref_addr/signed/app:v1"
  pier copy --insecure "$ref_addr/signed/app:v1" "$dst_addr/viaref/app:v1"
}

check "pier copy between two pier instances, byte-identical"         between_two_piers
check "a second copy skips every blob the destination has"          a_second_copy_skips_every_blob
check "within one registry blobs are mounted, not sent"             within_one_registry_blobs_are_mounted
check "an index is copied with every child"                         an_index_with_every_child
check "to an OCI layout and back, byte-identical (skopeo reads it)" to_a_layout_and_back
check "skopeo copies pier's layout, pier copies skopeo's"           skopeo_and_pier_share_layouts
check "to and from the reference registry (chunked pushes)"         to_and_from_the_reference_registry
check "into and out of a registry with token auth"                  into_a_registry_with_token_auth
check "a corrupted blob fails the copy and nothing is left"         corrupted_blobs_are_refused
check "bad references and missing images are errors"               bad_references_and_missing_images_are_errors
check "referrers (and theirs) travel with the image, via a layout too" referrers_travel_with_the_image
