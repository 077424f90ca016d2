#!/usr/bin/env bash
# Events end to end on the native server: webhooks and promotion/replication
# rules (docs/mirroring.md), with real clients (crane) against running pier
# instances and a webhook receiver (receiver.mjs) that fails first attempts.
#   - push, pull and delete events reach a webhook with the right fields,
#     after the receiver refused the first two attempts of each;
#   - a webhook's repository filter keeps other repositories' events away;
#   - a rule ci/** tags v* -> prod/** promotes ci/app:v1 with the same
#     digest, not ci/app:dev, and webhooks hear of the promoted push;
#   - a rule replicating ci/** to a second pier instance;
#   - with [auth]: the actor is the pushing robot, and the promotion into
#     prod/, where that robot may not push, is done by the registry.
#
# Usage: tests/events/run.sh
# Env:   PIER_BIN  the pier binary [default: build it, then $CARGO_TARGET_DIR/debug/pier]
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "events: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

HARNESS_NAME=events
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh

hooks=$scratch/hooks.jsonl
touch "$hooks"
node "$here/receiver.mjs" "$hooks" 2 >"$scratch/receiver.port" 2>"$scratch/receiver.log" &
pids+=("$!")
for _ in $(seq 1 100); do [ -s "$scratch/receiver.port" ] && break; sleep 0.1; done
receiver="http://127.0.0.1:$(cat "$scratch/receiver.port")"

# The site replication copies to.
start_pier site || exit 2

cat >"$scratch/events.toml" <<TOML
[[webhook]]
url = "$receiver/flaky"
events = ["push", "delete", "pull"]
repository = "team/**"
headers = { Authorization = "Bearer hook-secret" }
timeout_secs = 5

[[webhook]]
url = "$receiver/pushes"
events = ["push"]

[[replicate]]
repository = "ci/**"
tags = "v*"
to_namespace = "prod/**"

[[replicate]]
repository = "ci/**"
tags = "v*"
to_registry = "http://$site_addr"
to_namespace = "site-a/**"
TOML
start_pier main -c "$scratch/events.toml" || exit 2

PIER="$PIER_BIN" tests/auth/make-config.sh "$scratch/auth" >/dev/null || exit 2
cat >>"$scratch/auth/pier.toml" <<TOML

[[webhook]]
url = "$receiver/secured"

[[replicate]]
repository = "ci/**"
tags = "v*"
to_namespace = "prod/**"
TOML
start_pier secured -c "$scratch/auth/pier.toml" || exit 2
echo "events: main=$main_addr site=$site_addr secured=$secured_addr receiver=$receiver"

# eventually CMD...: CMD succeeds within a bounded number of tries (30 s at most).
eventually() {
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "never true: $*"; "$@"
}

# received PATH JQ-FILTER: the events (JSON lines) delivered to PATH (answered
# 200) that match the filter.
received() {
  jq -c --arg path "$1" "select(.path == \$path and .status == 200) | .event | select($2)" "$hooks"
}
# arrived PATH JQ-FILTER: at least one such event was delivered.
arrived() { [ -n "$(received "$@")" ]; }
# attempts PATH ID: the attempts the receiver saw of one event.
attempts() { jq -s --arg path "$1" --arg id "$2" '[.[] | select(.path == $path and .event.id == $id)] | length' "$hooks"; }

push_pull_and_delete_events_arrive_after_retries() {
  make_image "$main_addr/team/app:v1" 100000
  local digest size
  digest=$(crane digest --insecure "$main_addr/team/app:v1")
  size=$(crane manifest --insecure "$main_addr/team/app:v1" | wc -c)
  eventually arrived /flaky '.action == "push" and .repository == "team/app"'
  received /flaky '.action == "push"' | tee push.json
  jq -e --arg d "$digest" --argjson size "$size" '.tag == "v1" and .digest == $d and .size == $size
    and .actor == "anonymous" and (.mediaType | test("manifest")) and (.id | length) == 32
    and (.timestamp | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"))' push.json
  # The receiver refused twice, so pier sent it three times, headers and all.
  [ "$(attempts /flaky "$(jq -r .id push.json)")" = 3 ]
  jq -s -e 'map(select(.path == "/flaky")) | all(.authorization == "Bearer hook-secret" and .contentType == "application/json")' "$hooks"

  crane manifest --insecure "$main_addr/team/app:v1" >/dev/null
  eventually arrived /flaky '.action == "pull" and .tag == "v1"'
  received /flaky '.action == "pull"' | jq -e --arg d "$digest" '.digest == $d and .repository == "team/app"'

  crane delete --insecure "$main_addr/team/app@$digest"
  eventually arrived /flaky '.action == "delete"'
  received /flaky '.action == "delete"' | jq -e --arg d "$digest" '.digest == $d and .tag == null and .size > 0'
  # Pulls go only where asked for: /pushes wants pushes.
  fails arrived /pushes '.action != "push"'
}

a_filter_keeps_other_repositories_away() {
  make_image "$main_addr/other/app:v1" 1000
  # /pushes takes every repository: the event was made and sent there...
  eventually arrived /pushes '.repository == "other/app"'
  # ... and not to /flaky (team/** only), though a later team push arrives there
  # after its retries, long after other/app's would have.
  make_image "$main_addr/team/marker:v1" 1000
  eventually arrived /flaky '.repository == "team/marker"'
  fails arrived /flaky '.repository == "other/app"'
  [ "$(jq -s 'map(select(.path == "/flaky" and .event.repository == "other/app")) | length' "$hooks")" = 0 ]
}

same_digest() { # REF-A REF-B
  [ "$(crane digest --insecure "$1")" = "$(crane digest --insecure "$2")" ]
}

a_v_tag_pushed_to_ci_is_promoted_to_prod() {
  make_image "$main_addr/ci/app:v1" 200000
  eventually same_digest "$main_addr/ci/app:v1" "$main_addr/prod/app:v1"
  same_manifest "docker://$main_addr/ci/app:v1" "docker://$main_addr/prod/app:v1"
  same_blobs "$main_addr/ci/app:v1" "$main_addr/prod/app:v1"
  # Webhooks hear of the promoted push, made by pier itself.
  eventually arrived /pushes '.repository == "prod/app" and .tag == "v1"'
  received /pushes '.repository == "prod/app"' | jq -e '.actor == "pier"'
}

other_tags_are_not_promoted() {
  make_image "$main_addr/ci/app:dev" 1000
  make_image "$main_addr/ci/app:v2" 1000
  eventually same_digest "$main_addr/ci/app:v2" "$main_addr/prod/app:v2"
  arrived /pushes '.repository == "ci/app" and .tag == "dev"'
  fails crane digest --insecure "$main_addr/prod/app:dev"
  fails crane digest --insecure "$site_addr/site-a/app:dev"
}

replicated_to_another_registry() {
  eventually same_digest "$main_addr/ci/app:v1" "$site_addr/site-a/app:v1"
  same_manifest "docker://$main_addr/ci/app:v1" "docker://$site_addr/site-a/app:v1"
  same_blobs "$main_addr/ci/app:v1" "$site_addr/site-a/app:v1"
  eventually same_digest "$main_addr/ci/app:v2" "$site_addr/site-a/app:v2"
}

with_auth_the_actor_is_the_pusher_and_promotion_is_the_registrys() {
  local creds=$scratch/auth/credentials.json
  crane auth login "$secured_addr" -u "$(jq -r .ci.username "$creds")" -p "$(jq -r .ci.password "$creds")"
  make_image "$secured_addr/ci/app:v1" 1000
  # The CI robot may not push to prod/ ...
  fails crane copy --insecure "$secured_addr/ci/app:v1" "$secured_addr/prod/direct:v1"
  eventually arrived /secured '.action == "push" and .repository == "ci/app"'
  received /secured '.repository == "ci/app"' | jq -e --arg who "$(jq -r .ci.username "$creds")" '.actor == $who'
  # ... but the rule promotes its push there.
  eventually arrived /secured '.repository == "prod/app" and .actor == "pier"'
  crane auth login "$secured_addr" -u "$(jq -r .production.username "$creds")" -p "$(jq -r .production.password "$creds")"
  [ "$(crane digest --insecure "$secured_addr/prod/app:v1")" = "$(jq -r 'select(.repository == "ci/app") | .digest' <(received /secured true))" ]
}

check "push, pull and delete events arrive, after retries" push_pull_and_delete_events_arrive_after_retries
check "a webhook's repository filter keeps other repositories away" a_filter_keeps_other_repositories_away
check "ci/app:v1 is promoted to prod/app:v1, same digest" a_v_tag_pushed_to_ci_is_promoted_to_prod
check "ci/app:dev is not promoted" other_tags_are_not_promoted
check "replication to a second pier instance, same digest" replicated_to_another_registry
check "with auth: the pusher is the actor, the registry promotes" with_auth_the_actor_is_the_pusher_and_promotion_is_the_registrys

echo
if [ $nfail -gt 0 ]; then
  echo "failed:"; printf '  - %s\n' "${failed[@]}"
fi
echo "events: $npass passed, $nfail failed"
[ $nfail -eq 0 ]
