# The archive checks, run against one registry REG (host:port) per target.
# Each target defines:
#   archive_pass   runs passes until the archive is settled (nothing the
#                  rules select left in the main store, no move under way,
#                  no blob asked back);
#   collect        one whole garbage collection, applied.
# Sourced by tests/archive/run.sh.

# The [archive] table (the Worker's PIER_ARCHIVE): cold/** tags big-* go at
# once; aging/** images nobody pulled for 10 s go.
archive_table() {
  jq -cn '{promote_on_pull: true, rules: [{namespace: "cold/**", tags: "big-*"},
    {namespace: "aging/**", unpulled_for_days: 0.000116}]}'
}
ARCHIVE_PULL_PERIOD_SECS=1

admin() { # METHOD PATH: an archive endpoint's JSON
  curl -fsS -X "$1" "http://$REG/_pier/archive$2"
}
archive_status() { admin GET "" | jq -c .status; }
verified_clean() { # every blob where its record says, no copy elsewhere
  admin GET /verify | tee verify.json
  jq -e '.missing == [] and .strays == []' verify.json >/dev/null
}
image_line() { # IMAGE: "archived/blobs" as GET /_pier/archive lists it, or "none"
  admin GET "" | jq -r --arg image "$1" \
    '(.images[] | select(.image == $image) | "\(.archived_blobs)/\(.blobs)") // "none"'
}
settled() {
  admin POST "/run?dry_run=true" | jq -e '.moved_out == 0' >/dev/null &&
    admin GET "" | jq -e '.status.moves_pending == 0 and .status.wanted == 0' >/dev/null
}
blobs_of() { # REF: config and layer digests of a one-platform image
  crane manifest --insecure "$1" | jq -r '.config.digest, .layers[].digest'
}
pulls_byte_identical() { # REF: every blob read back hashes to its digest
  local ref=$1 repo=${1%:*} digest
  for digest in $(blobs_of "$ref"); do
    [ "sha256:$(crane blob --insecure "$repo@$digest" | sha256sum | cut -d' ' -f1)" = "$digest" ] ||
      { echo "blob $digest of $ref reads back wrong"; return 1; }
  done
}
layer_tar() { # NAME SIZE: a tar of one file of SIZE random bytes
  mkdir -p "$1" && head -c "$2" /dev/urandom >"$1/data" && tar -C "$1" -cf "$1.tar" data
}

dry_run_lists_what_the_rules_select_and_moves_nothing() {
  layer_tar base 2000000 && layer_tar one 3000000 && layer_tar two 1500000 && layer_tar three 1000000
  crane append --insecure -f base.tar -t "$REG/cold/base:v1" >/dev/null
  crane append --insecure -f one.tar -t "$REG/cold/app:big-1" >/dev/null
  crane append --insecure -b "$REG/cold/base:v1" -f two.tar -t "$REG/cold/app:big-2" >/dev/null
  crane append --insecure -b "$REG/cold/base:v1" -f three.tar -t "$REG/cold/app:hot" >/dev/null
  admin POST "/run?dry_run=true" | tee dry.json
  jq -e '.dry_run and .moved_out == 4' dry.json
  jq -e --arg base "$(crane manifest --insecure "$REG/cold/base:v1" | jq -r '.layers[0].digest')" \
    '[.listed[] | select(contains($base))] == []' dry.json
  jq -e '[.listed[] | select(test("tag cold/app:big-1 matches big-\\* \\(rule cold/\\*\\*\\)"))] | length == 2' dry.json
  [ "$(archive_status | jq .archived_blobs)" = 0 ]
}

an_archived_image_is_pulled_back_byte_identical() {
  local before after
  before=$(crane digest --insecure "$REG/cold/app:big-2")
  archive_pass
  admin GET "" | tee archive.json
  [ "$(image_line cold/app:big-1)" = 2/2 ]
  # the base layer cold/app:hot uses stays in the main store
  [ "$(image_line cold/app:big-2)" = 2/3 ]
  [ "$(image_line cold/app:hot)" = none ]
  verified_clean
  jq -e '.archived == 4' verify.json
  pulls_byte_identical "$REG/cold/app:big-1"
  pulls_byte_identical "$REG/cold/app:big-2"
  after=$(crane digest --insecure "$REG/cold/app:big-2")
  [ "$before" = "$after" ]
}

unpulled_images_go_and_a_pull_brings_them_back() {
  make_image "$REG/aging/app:v1" 500000
  make_image "$REG/aging/app:v2" 500000
  sleep 11
  crane manifest --insecure "$REG/aging/app:v2" >/dev/null
  archive_pass
  [ "$(image_line aging/app:v1)" = 2/2 ]
  [ "$(image_line aging/app:v2)" = none ]
  # A pull reads the archive, records the pull and asks the blobs back.
  crane pull --insecure "$REG/aging/app:v1" v1.tar
  pulls_byte_identical "$REG/aging/app:v1"
  archive_status | tee status.json
  jq -e '.wanted == 2' status.json
  archive_pass
  [ "$(image_line aging/app:v1)" = none ]
  verified_clean
  pulls_byte_identical "$REG/aging/app:v1"
}

collection_deletes_archived_bytes_from_the_archive() {
  local digest archived
  archived=$(archive_status | jq .archived_blobs)
  digest=$(crane digest --insecure "$REG/cold/app:big-1")
  curl -fsS -X DELETE "http://$REG/v2/cold/app/manifests/$digest"
  collect
  archive_status | tee status.json
  [ "$(jq .archived_blobs status.json)" = $((archived - 2)) ]
  # a copy left in the archive would be a stray: in the archive, named by no record
  verified_clean
}

run_archive_checks() { # TARGET
  check "$1: a dry run lists what the rules select, and why, and moves nothing" \
    dry_run_lists_what_the_rules_select_and_moves_nothing
  check "$1: an archived image pulls back byte-identical; a layer a hot image shares stays" \
    an_archived_image_is_pulled_back_byte_identical
  check "$1: unpulled_for_days archives what nobody pulls; a pull reads the archive and brings it back" \
    unpulled_images_go_and_a_pull_brings_them_back
  check "$1: a collection deletes an archived blob's bytes from the archive" \
    collection_deletes_archived_bytes_from_the_archive
}
