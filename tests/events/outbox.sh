# The durable outbox's checks (docs/replication.md), shared by the native
# server and the Worker; sourced by tests/events/run.sh after shared.sh.
# The target's file (native.sh, edge.sh) provides:
#   start_outbox [CONFIGURED]  starts (or restarts, on the same storage) the
#                              registry OUTBOX, with the tables below when
#                              CONFIGURED is given; sets OUTBOX
#   crash_outbox               kills it hard (kill -9), nothing flushed
#   drain_outbox               whatever makes the target drain its outbox
#                              besides its own timers (the Worker's cron)
# What they check:
#   - a rule added to a registry that holds images backfills them, and on
#     request again; a delete at the source follows to the destination;
#   - a delivery given up after its last attempt is a dead letter, listed,
#     and delivered once retried;
#   - 100 pushes acknowledged while the receiver refuses, then kill -9:
#     after the restart all 100 events arrive, in the order they were pushed
#     (each at least once, told apart by id), the receiver refusing for the
#     first minute;
#   - the outbox endpoints refuse wrong methods and bad arguments.

outbox_webhooks() {
  jq -cn --arg receiver "$RECEIVER" '[
    {url: "\($receiver)/closed/durable", events: ["push"], repository: "durable/**"},
    {url: "\($receiver)/closed/dead", events: ["push"], repository: "doomed/**", attempts: 2}
  ]'
}
outbox_rules() { jq -cn '[{repository: "src/**", to_namespace: "copy/**", deletes: true, backfill: true}]'; }

# close_receiver NAME / open_receiver NAME: the receiver's /closed/NAME
# answers 503 while closed.
close_receiver() { touch "$HOOKS.$1"; }
open_receiver() { rm -f "$HOOKS.$1"; }

# pending [JQ-FILTER]: how many deliveries the outbox lists (dead ones too).
pending() {
  curl -fsS "http://$OUTBOX/_pier/events?dead=true" | jq "[.[] | select(${1:-true})] | length"
}

# pending_is N [JQ-FILTER]: the outbox lists N such deliveries.
pending_is() { [ "$(pending "${2:-true}")" = "$1" ]; }

# rule_id: the outbox id of the one rule, from the registry's log.
rule_id() { grep -o 'replication rule r[0-9a-f]*' "$OUTBOX_LOG" | tail -n1 | cut -d' ' -f3; }

# copied REF-A REF-B: eventually the same digest, the outbox drained meanwhile.
copied() { drain_outbox; same_digest "$1" "$2"; }
gone() { drain_outbox; ! crane digest --insecure "$1"; }

a_new_rule_backfills_existing_tags_and_deletes_follow() {
  eventually copied "$OUTBOX/src/app:v1" "$OUTBOX/copy/app:v1"
  eventually copied "$OUTBOX/src/app:v2" "$OUTBOX/copy/app:v2"
  eventually copied "$OUTBOX/src/lib:v1" "$OUTBOX/copy/lib:v1"
  # A delete of a tag at the source: the destination's tag goes too, not the other.
  curl -fsS -X DELETE "http://$OUTBOX/v2/src/app/manifests/v2"
  eventually gone "$OUTBOX/copy/app:v2"
  crane digest --insecure "$OUTBOX/copy/app:v1"
  # Backfill on request brings back what the destination lost.
  curl -fsS -X DELETE "http://$OUTBOX/v2/copy/lib/manifests/v1"
  local id; id=$(rule_id); [ -n "$id" ]
  curl -fsS -X POST "http://$OUTBOX/_pier/events/backfill?rule=$id" | tee backfill.json
  jq -e '.queued == 2' backfill.json
  eventually copied "$OUTBOX/src/lib:v1" "$OUTBOX/copy/lib:v1"
}

a_given_up_delivery_is_a_dead_letter_until_retried() {
  close_receiver dead
  make_image "$OUTBOX/doomed/app:v1" 1000
  # Two attempts (1 s apart), then a dead letter with the receiver's answer.
  WAIT_SECS=60 eventually pending_is 1 '.dead and .event.repository == "doomed/app"'
  curl -fsS "http://$OUTBOX/_pier/events?dead=true" | jq -e '.[] | select(.event.repository == "doomed/app")
    | .attempts == 2 and (.last_error | test("503")) and .event.tag == "v1"'
  [ "$(jq -s 'map(select(.path == "/closed/dead")) | length' "$HOOKS")" = 2 ]
  open_receiver dead
  curl -fsS -X POST "http://$OUTBOX/_pier/events/retry" | jq -e '.lanes == 1'
  eventually arrived /closed/dead '.repository == "doomed/app" and .tag == "v1"'
  pending_is 0 '.event.repository == "doomed/app"'
}

# received_tags: the distinct tags of durable/app whose event reached
# /closed/durable (answered 200), one per line.
durable_tags() { received /closed/durable '.repository == "durable/app"' | jq -r .tag | sort -u; }
all_hundred_arrived() { drain_outbox; [ "$(durable_tags | grep -c '^t')" = 100 ]; }

a_hundred_acknowledged_pushes_survive_kill_9_and_a_refusing_receiver() {
  close_receiver durable
  local opened_at=$((SECONDS + 60)) manifest type tag
  make_image "$OUTBOX/durable/app:base" 1000
  manifest=$(crane manifest --insecure "$OUTBOX/durable/app:base")
  type=$(jq -r .mediaType <<<"$manifest")
  for tag in $(seq -f 't%03g' 0 99); do
    curl -fsS -o /dev/null -X PUT -H "Content-Type: $type" --data-binary "$manifest" \
      "http://$OUTBOX/v2/durable/app/manifests/$tag"
  done
  # Every acknowledged push has its delivery recorded (none could be made).
  pending_is 100 '.event.repository == "durable/app" and (.event.tag | startswith("t"))'
  crash_outbox
  start_outbox configured
  # The receiver refuses for the first minute, then takes them.
  sleep $((opened_at > SECONDS ? opened_at - SECONDS : 0))
  open_receiver durable
  WAIT_SECS=240 eventually all_hundred_arrived
  # In order: one repository's events arrive in the order they were pushed.
  received /closed/durable '.repository == "durable/app" and (.tag | startswith("t"))' | jq -r .tag | awk '!seen[$0]++' >order.txt
  sort -c order.txt
  # At least once: duplicates are told apart by id, one tag per id.
  received /closed/durable '.repository == "durable/app"' | jq -s -e 'group_by(.id) | all(map(.tag) | unique | length == 1)'
  echo "deliveries: $(received /closed/durable '.repository == "durable/app"' | wc -l) for 101 events"
  pending_is 0 '.event.repository == "durable/app"'
}

status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

the_outbox_endpoints_refuse_bad_requests() {
  # Tried: the wrong method on each endpoint, a backfill naming no rule or an
  # unknown one, a retry of ids no dead letter has, limits out of range.
  [ "$(status_of -X POST "http://$OUTBOX/_pier/events")" = 405 ]
  [ "$(status_of -X DELETE "http://$OUTBOX/_pier/events")" = 405 ]
  [ "$(status_of "http://$OUTBOX/_pier/events/retry")" = 405 ]
  [ "$(status_of "http://$OUTBOX/_pier/events/backfill")" = 405 ]
  [ "$(status_of -X POST "http://$OUTBOX/_pier/events/backfill")" = 400 ]
  [ "$(status_of -X POST "http://$OUTBOX/_pier/events/backfill?rule=r000")" = 404 ]
  curl -fsS -X POST "http://$OUTBOX/_pier/events/retry?id=nonesuch" | jq -e '.lanes == 0'
  # A listing's limit: 1 to 10,000.
  [ "$(status_of "http://$OUTBOX/_pier/events?limit=0")" = 400 ]
  [ "$(status_of "http://$OUTBOX/_pier/events?limit=10001")" = 400 ]
  [ "$(status_of "http://$OUTBOX/_pier/events?limit=ten")" = 400 ]
  curl -fsS "http://$OUTBOX/_pier/events?dead=true&limit=1" | jq -e 'length <= 1'
  # A registry without webhooks or rules has no outbox.
  [ "$(status_of "http://$SITE/_pier/events")" = 404 ]
}

# run_outbox_checks LABEL: starts OUTBOX with images, then configured, and checks.
run_outbox_checks() {
  start_outbox || return 1
  make_image "$OUTBOX/src/app:v1" 1000 && make_image "$OUTBOX/src/app:v2" 1000 && make_image "$OUTBOX/src/lib:v1" 1000
  crash_outbox
  start_outbox configured || return 1
  check "$1: a new rule backfills existing tags, on request too; deletes follow" \
    a_new_rule_backfills_existing_tags_and_deletes_follow
  check "$1: a delivery given up is a dead letter, delivered once retried" \
    a_given_up_delivery_is_a_dead_letter_until_retried
  check "$1: the outbox endpoints refuse wrong methods and arguments" the_outbox_endpoints_refuse_bad_requests
  check "$1: 100 acknowledged pushes survive kill -9 and a receiver refusing for a minute" \
    a_hundred_acknowledged_pushes_survive_kill_9_and_a_refusing_receiver
}
