# The sync checks shared by the native site (native.sh) and the Worker as
# the site (edge.sh), and the rules both are given; sourced by
# tests/sync/run.sh (its harness and helpers). The checks read:
#   UPSTREAM   the upstream pier itself (for the digests to expect)
#   PROXY      the proxy in front of it (upstream-proxy.mjs) the rules pull from
#   COLLECTED  what reached the proxy's collector (must stay empty)
#   SITE       the site's registry (host:port), for crane
# and call the target's own
#   sync_pass NAME     one whole pass of rule NAME, begun after the call
#                      (its output in NAME.out in the check's directory)
#   last_record NAME   the JSON of sync/NAME/last
# The upstream holds factory/img-01..50, each tagged v1 and dev (the same
# image), signatures attached to img-01 and img-02, tampered/app:v1 and
# badlink/app:v1.

SIG_TYPE=application/vnd.dev.cosign.artifact.sig.v1+json

# sync_rules INTERVAL_SECS: the rules as a JSON array of tables (the
# Worker's PIER_SYNC; native.sh writes them as [[sync]] tables).
#   factory   factory/* tags v*, deletes followed, signatures carried
#   keep      factory/img-04 under kept/**, deletes not followed
#   tampered, badlink, realm   the proxy's lying repositories
sync_rules() {
  jq -cn --arg up "http://$PROXY" --argjson every "$1" '[
    {name: "factory", upstream: $up, repositories: ["factory/*"], tags: "v*", delete: true,
     referrers: ["application/vnd.dev.cosign.*"], interval_secs: $every},
    {name: "keep", upstream: $up, repositories: ["factory/img-04"], tags: "v*", to_namespace: "kept/**",
     interval_secs: $every},
    {name: "tampered", upstream: $up, repositories: ["tampered/app"], interval_secs: $every},
    {name: "badlink", upstream: $up, repositories: ["badlink/app"], interval_secs: $every},
    {name: "realm", upstream: $up, repositories: ["realm/app"], username: "factory", password: "s3cret",
     interval_secs: $every}
  ]'
}

# prepare_upstream: the images every target syncs, pushed with crane (four
# at a time) and oras.
prepare_upstream() {
  local n
  export -f make_image
  export scratch
  seq -w 1 50 | xargs -P 4 -I{} bash -c \
    'make_image "$0/factory/img-{}:v1" 2048 && crane tag --insecure "$0/factory/img-{}:v1" dev' "$UPSTREAM" || return 1
  make_image "$UPSTREAM/tampered/app:v1" 1000 && make_image "$UPSTREAM/badlink/app:v1" 1000 || return 1
  for n in 01 02; do
    attach "$UPSTREAM/factory/img-$n@$(crane digest --insecure "$UPSTREAM/factory/img-$n:v1")" "$SIG_TYPE" "sig-$n" \
      >/dev/null || return 1
  done
}

upstream_digest() { crane digest --insecure "$UPSTREAM/$1"; }
site_digest() { crane digest --insecure "$SITE/$1"; }

# counts NAME JQ: the last record of NAME satisfies JQ (shown first).
counts() { last_record "$1" | tee "last-$1.json" | jq -e "$2" >/dev/null; }

a_new_rule_backfills_every_existing_image_with_its_signatures() {
  sync_pass factory
  sync_pass keep
  counts factory '.counts.tags_copied == 50 and .counts.tags_failed == 0 and .counts.repositories == 50
    and .finished_ms != null'
  local n
  for n in $(seq -w 1 50); do
    [ "$(site_digest "factory/img-$n:v1")" = "$(upstream_digest "factory/img-$n:v1")" ] || { echo "img-$n differs"; return 1; }
  done
  same_blobs "$UPSTREAM/factory/img-07:v1" "$SITE/factory/img-07:v1"
  # The tag filter: dev is not v*.
  fails site_digest factory/img-01:dev
  for n in 01 02; do
    local digest; digest=$(upstream_digest "factory/img-$n:v1")
    [ "$(referrers_of "$SITE" "factory/img-$n" "$digest")" = "$(referrers_of "$UPSTREAM" "factory/img-$n" "$digest")" ]
    [ -n "$(referrers_of "$SITE" "factory/img-$n" "$digest")" ]
  done
  [ "$(site_digest kept/factory/img-04:v1)" = "$(upstream_digest factory/img-04:v1)" ]
  # (A scheduled rule may have copied it in a pass before the one asked for.)
  counts keep '.counts.tags_copied + .counts.tags_unchanged == 1 and .counts.tags_failed == 0'
}

a_second_pass_copies_nothing() {
  local first; first=$(last_record factory | jq -r .pass)
  sync_pass factory
  counts factory ".pass != \"$first\""
  counts factory '.counts.tags_copied == 0 and .counts.tags_unchanged == 50 and .counts.tags_deleted == 0
    and .counts.blobs_copied == 0 and .counts.tags_failed == 0'
}

moved_and_deleted_tags_follow_upstream_as_the_rule_says() {
  local moved_to signed
  moved_to=$(upstream_digest factory/img-02:v1)
  crane copy --insecure "$UPSTREAM/factory/img-02:v1" "$UPSTREAM/factory/img-03:v1" >/dev/null
  curl -fs -X DELETE "http://$UPSTREAM/v2/factory/img-04/manifests/v1" >/dev/null
  # A signature made after the image reached the site comes with the next pass.
  signed=$(upstream_digest factory/img-05:v1)
  attach "$UPSTREAM/factory/img-05@$signed" "$SIG_TYPE" "late signature" >/dev/null
  sync_pass factory
  sync_pass keep
  counts factory '.counts.tags_copied == 1 and .counts.tags_deleted == 1 and .counts.referrers_copied == 1
    and .counts.tags_failed == 0'
  [ "$(site_digest factory/img-03:v1)" = "$moved_to" ]
  fails site_digest factory/img-04:v1
  # Its dev tag was never the rule's (not v*), so it is not the rule's to delete either.
  [ "$(referrers_of "$SITE" factory/img-05 "$signed")" = "$(referrers_of "$UPSTREAM" factory/img-05 "$signed")" ]
  # delete = false: kept/ keeps what upstream dropped.
  [ "$(site_digest kept/factory/img-04:v1)" != "" ]
  counts keep '.counts.tags_deleted == 0 and .counts.tags_copied == 0'
}

a_manifest_that_does_not_match_its_digest_is_refused() {
  sync_pass tampered
  counts tampered '.counts.tags_failed == 1 and .counts.tags_copied == 0
    and (.errors | any(test("digest")))'
  fails site_digest tampered/app:v1
}

a_tag_list_linking_elsewhere_is_not_followed() {
  sync_pass badlink
  counts badlink '.counts.repositories_failed == 1 and .counts.tags_copied == 0
    and (.errors | any(test("another origin")))'
  fails site_digest badlink/app:v1
  [ ! -s "$COLLECTED" ] || { cat "$COLLECTED"; return 1; }
}

credentials_never_go_to_a_token_realm_not_allowed() {
  sync_pass realm
  counts realm '.counts.repositories_failed == 1 and (.errors | any(test("realm")))'
  [ ! -s "$COLLECTED" ] || { cat "$COLLECTED"; return 1; }
}

# sync_webhooks: the site's webhook (a receiver, tests/events/receiver.mjs,
# started by run.sh, one path per target; HOOKS is what it was sent).
sync_webhooks() {
  jq -cn --arg url "$RECEIVER/sync-$target" '[{url: $url, events: ["push", "delete"], repository: "factory/**"}]'
}
# sync_events JQ: how many distinct events the target's site sent (answered 200) match JQ.
sync_events() {
  jq -r --arg path "/sync-$target" "select(.path == \$path and .status == 200) | .event | select($1) | .id" "$HOOKS" |
    sort -u | wc -l
}
factory_pushes_arrived() { [ "$(sync_events '.action == "push" and .tag == "v1" and .actor == "pier"')" -ge 50 ]; }
a_deletion_arrived() { [ "$(sync_events '.action == "delete" and .repository == "factory/img-04" and .tag == "v1"')" = 1 ]; }

# What the passes above copied and deleted was told to the site's webhook:
# the 50 backfilled v1 tags (and the moved one) as pushes by pier, the tag
# upstream dropped as a delete.
the_passes_copies_and_deletes_are_events_of_the_site() {
  WAIT_SECS=120 eventually factory_pushes_arrived
  WAIT_SECS=120 eventually a_deletion_arrived
  [ "$(sync_events '.repository | startswith("kept/")')" = 0 ]
}

# run_shared_checks TARGET: the checks above, in order (each builds on the last).
run_shared_checks() {
  check "$1: a new rule backfills every existing image (50), tag filter and signatures" \
    a_new_rule_backfills_every_existing_image_with_its_signatures
  check "$1: a second pass copies nothing" a_second_pass_copies_nothing
  check "$1: a moved tag moves, a deleted one goes with delete = true, stays with false" \
    moved_and_deleted_tags_follow_upstream_as_the_rule_says
  check "$1: the passes' copies and deletes are events of the site (webhook)" \
    the_passes_copies_and_deletes_are_events_of_the_site
  check "$1: hostile upstream: a manifest not matching its digest is refused" \
    a_manifest_that_does_not_match_its_digest_is_refused
  check "$1: hostile upstream: a tag list linking to another origin is not followed" \
    a_tag_list_linking_elsewhere_is_not_followed
  check "$1: hostile upstream: credentials never reach a token realm not allowed" \
    credentials_never_go_to_a_token_realm_not_allowed
}
