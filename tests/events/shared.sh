# The events checks shared by the native server (native.sh) and the Worker
# (edge.sh), and the configuration both are given; sourced by
# tests/events/run.sh (its harness and helpers). The checks read:
#   MAIN     a registry without auth, configured with main_webhooks and main_rules
#   SITE     the pier instance main_rules replicate to
#   SECURED  a registry with auth (tests/auth/make-config.sh in $scratch/auth),
#            configured with secured_webhooks and secured_rules
#   HOOKS    what the receiver (start_receiver) was sent, one JSON line per POST

# start_receiver NAME: a webhook receiver (receiver.mjs) on a free port,
# refusing the first two attempts on /flaky; sets RECEIVER (its URL) and HOOKS.
start_receiver() {
  HOOKS=$scratch/$1-hooks.jsonl
  touch "$HOOKS"
  node tests/events/receiver.mjs "$HOOKS" 2 >"$scratch/$1.port" 2>"$scratch/$1.log" &
  kill_at_exit $!
  eventually test -s "$scratch/$1.port" || { echo "the receiver did not start:"; cat "$scratch/$1.log"; return 1; }
  RECEIVER="http://127.0.0.1:$(cat "$scratch/$1.port")"
}

# The configuration as JSON arrays of tables: a Worker's PIER_WEBHOOKS and
# PIER_REPLICATE vars; the native configuration is written from them.
main_webhooks() {
  jq -cn --arg receiver "$RECEIVER" '[
    {url: "\($receiver)/flaky", events: ["push", "delete", "pull"], repository: "team/**",
     headers: {Authorization: "Bearer hook-secret"}, timeout_secs: 5},
    {url: "\($receiver)/pushes", events: ["push"]}
  ]'
}
# The rules carry signatures (the artifact type attach gives them below),
# also those made after the promotion; nothing else rides along.
main_rules() {
  jq -cn --arg site "http://$SITE" '[
    {repository: "ci/**", tags: "v*", to_namespace: "prod/**",
     referrers: ["application/vnd.example.sig"], follow_referrers: true},
    {repository: "ci/**", tags: "v*", to_registry: $site, to_namespace: "site-a/**",
     referrers: ["application/vnd.example.sig"], follow_referrers: true}
  ]'
}
secured_webhooks() { jq -cn --arg receiver "$RECEIVER" '[{url: "\($receiver)/secured"}]'; }
secured_rules() { jq -cn '[{repository: "ci/**", tags: "v*", to_namespace: "prod/**"}]'; }

# received PATH JQ-FILTER: the events (JSON lines) delivered to PATH (answered
# 200) that match the filter.
received() {
  jq -c --arg path "$1" "select(.path == \$path and .status == 200) | .event | select($2)" "$HOOKS"
}
# arrived PATH JQ-FILTER: at least one such event was delivered.
arrived() { [ -n "$(received "$@")" ]; }
# attempts PATH ID: the attempts the receiver saw of one event.
attempts() { jq -s --arg path "$1" --arg id "$2" '[.[] | select(.path == $path and .event.id == $id)] | length' "$HOOKS"; }

push_pull_and_delete_events_arrive_after_retries() {
  make_image "$MAIN/team/app:v1" 100000
  local digest size
  digest=$(crane digest --insecure "$MAIN/team/app:v1")
  size=$(crane manifest --insecure "$MAIN/team/app:v1" | wc -c)
  eventually arrived /flaky '.action == "push" and .repository == "team/app"'
  received /flaky '.action == "push"' | tee push.json
  jq -e --arg d "$digest" --argjson size "$size" '.tag == "v1" and .digest == $d and .size == $size
    and .actor == "anonymous" and (.mediaType | test("manifest")) and (.id | length) == 32
    and (.timestamp | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"))' push.json
  # The receiver refused twice, so pier sent it three times, headers and all.
  [ "$(attempts /flaky "$(jq -r .id push.json)")" = 3 ]
  jq -s -e 'map(select(.path == "/flaky")) | all(.authorization == "Bearer hook-secret" and .contentType == "application/json")' "$HOOKS"

  crane manifest --insecure "$MAIN/team/app:v1" >/dev/null
  eventually arrived /flaky '.action == "pull" and .tag == "v1"'
  received /flaky '.action == "pull"' | jq -e --arg d "$digest" '.digest == $d and .repository == "team/app"'

  crane delete --insecure "$MAIN/team/app@$digest"
  eventually arrived /flaky '.action == "delete"'
  received /flaky '.action == "delete"' | jq -e --arg d "$digest" '.digest == $d and .tag == null and .size > 0'
  # Pulls go only where asked for: /pushes wants pushes.
  fails arrived /pushes '.action != "push"'
}

a_filter_keeps_other_repositories_away() {
  make_image "$MAIN/other/app:v1" 1000
  # /pushes takes every repository: the event was made and sent there...
  eventually arrived /pushes '.repository == "other/app"'
  # ... and not to /flaky (team/** only), though a later team push arrives there
  # after its retries, long after other/app's would have.
  make_image "$MAIN/team/marker:v1" 1000
  eventually arrived /flaky '.repository == "team/marker"'
  fails arrived /flaky '.repository == "other/app"'
  [ "$(jq -s 'map(select(.path == "/flaky" and .event.repository == "other/app")) | length' "$HOOKS")" = 0 ]
}

same_digest() { # REF-A REF-B
  [ "$(crane digest --insecure "$1")" = "$(crane digest --insecure "$2")" ]
}

a_v_tag_pushed_to_ci_is_promoted_to_prod() {
  make_image "$MAIN/ci/app:v1" 200000
  eventually same_digest "$MAIN/ci/app:v1" "$MAIN/prod/app:v1"
  same_manifest "docker://$MAIN/ci/app:v1" "docker://$MAIN/prod/app:v1"
  same_blobs "$MAIN/ci/app:v1" "$MAIN/prod/app:v1"
  # Webhooks hear of the promoted push, made by pier itself.
  eventually arrived /pushes '.repository == "prod/app" and .tag == "v1"'
  received /pushes '.repository == "prod/app"' | jq -e '.actor == "pier"'
}

other_tags_are_not_promoted() {
  make_image "$MAIN/ci/app:dev" 1000
  make_image "$MAIN/ci/app:v2" 1000
  eventually same_digest "$MAIN/ci/app:v2" "$MAIN/prod/app:v2"
  arrived /pushes '.repository == "ci/app" and .tag == "dev"'
  fails crane digest --insecure "$MAIN/prod/app:dev"
  fails crane digest --insecure "$SITE/site-a/app:dev"
}

replicated_to_another_registry() {
  eventually same_digest "$MAIN/ci/app:v1" "$SITE/site-a/app:v1"
  same_manifest "docker://$MAIN/ci/app:v1" "docker://$SITE/site-a/app:v1"
  same_blobs "$MAIN/ci/app:v1" "$SITE/site-a/app:v1"
  eventually same_digest "$MAIN/ci/app:v2" "$SITE/site-a/app:v2"
}

# lists_referrer REGISTRY REPO SUBJECT REFERRER: the referrers API lists it.
lists_referrer() { referrers_of "$1" "$2" "$3" | grep -qx "$4"; }

signatures_go_with_the_promotion() {
  make_image "$MAIN/ci/app:rc3" 1000
  local subject sig late
  subject=$(crane digest --insecure "$MAIN/ci/app:rc3")
  sig=$(attach "$MAIN/ci/app@$subject" application/vnd.example.sig '{"signature":"by-ci"}')
  # The release tag on the signed build: the rules fire, the signature goes too.
  crane tag --insecure "$MAIN/ci/app:rc3" v3
  eventually same_digest "$MAIN/ci/app:v3" "$MAIN/prod/app:v3"
  eventually lists_referrer "$MAIN" prod/app "$subject" "$sig"
  same_manifest "docker://$MAIN/ci/app@$sig" "docker://$MAIN/prod/app@$sig"
  eventually lists_referrer "$SITE" site-a/app "$subject" "$sig"
  # A signature made after the promotion follows the image to both places.
  late=$(attach "$MAIN/ci/app@$subject" application/vnd.example.sig '{"signature":"by-release-manager"}')
  eventually lists_referrer "$MAIN" prod/app "$subject" "$late"
  eventually lists_referrer "$SITE" site-a/app "$subject" "$late"
  same_manifest "docker://$MAIN/ci/app@$late" "docker://$SITE/site-a/app@$late"
}

with_auth_the_actor_is_the_pusher_and_promotion_is_the_registrys() {
  local creds=$scratch/auth/credentials.json
  crane auth login "$SECURED" -u "$(jq -r .ci.username "$creds")" -p "$(jq -r .ci.password "$creds")"
  make_image "$SECURED/ci/app:v1" 1000
  # The CI robot may not push to prod/ ...
  fails crane copy --insecure "$SECURED/ci/app:v1" "$SECURED/prod/direct:v1"
  eventually arrived /secured '.action == "push" and .repository == "ci/app"'
  received /secured '.repository == "ci/app"' | jq -e --arg who "$(jq -r .ci.username "$creds")" '.actor == $who'
  # ... but the rule promotes its push there.
  eventually arrived /secured '.repository == "prod/app" and .actor == "pier"'
  crane auth login "$SECURED" -u "$(jq -r .production.username "$creds")" -p "$(jq -r .production.password "$creds")"
  [ "$(crane digest --insecure "$SECURED/prod/app:v1")" = "$(jq -r 'select(.repository == "ci/app") | .digest' <(received /secured true))" ]
}

# run_open_checks LABEL: the checks against MAIN and SITE.
run_open_checks() {
  check "$1: push, pull and delete events arrive, after retries" push_pull_and_delete_events_arrive_after_retries
  check "$1: a webhook's repository filter keeps other repositories away" a_filter_keeps_other_repositories_away
  check "$1: ci/app:v1 is promoted to prod/app:v1, same digest" a_v_tag_pushed_to_ci_is_promoted_to_prod
  check "$1: ci/app:dev is not promoted" other_tags_are_not_promoted
  check "$1: replication to a second pier instance, same digest" replicated_to_another_registry
  check "$1: signatures made before and after the promotion go with the image" \
    signatures_go_with_the_promotion
}

# run_auth_checks LABEL: the check against SECURED.
run_auth_checks() {
  check "$1: with auth: the pusher is the actor, the registry promotes" \
    with_auth_the_actor_is_the_pusher_and_promotion_is_the_registrys
}
