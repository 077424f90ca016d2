# The sync checks (shared.sh) with the test Worker under local workerd as
# the site: the rules in its PIER_SYNC var (a pass every second), passes
# advanced by cron invocations (wrangler's --test-scheduled route) with
# PIER_SYNC_BUDGET_SECS=0, so each invocation takes one step of each pass
# and every pass spans many invocations; then a Worker with a bad PIER_SYNC.
# Sourced by tests/sync/run.sh.
[ "${PIER_EDGE_PREBUILT:-}" = 1 ] || build_test_worker || exit 2
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
start_worker edgesite 200 --test-scheduled --var "PIER_SYNC:$(sync_rules 1)" --var PIER_SYNC_BUDGET_SECS:0 \
  --var "PIER_WEBHOOKS:$(sync_webhooks)" || exit 2
SITE=$edgesite_addr
CRON="http://$SITE/__scheduled?cron=$(jq -rn '"*/30 * * * *" | @uri')"

last_record() { curl -fs "http://$SITE/_pier_test/objects/sync/$1/last"; }

# started_since NAME MS: the last pass of NAME began at or after MS.
started_since() { last_record "$1" | jq -e --argjson since "$2" '.started_ms >= $since' >/dev/null; }

# One pass of NAME that begins after the call: cron invocations until its
# record says so (passes of the other rules advance meanwhile).
sync_pass() {
  local since invocations=0
  since=$(date +%s%3N)
  until started_since "$1" "$since"; do
    invocations=$((invocations + 1))
    [ $invocations -le 1000 ] || { echo "no pass of $1 within 1000 invocations"; return 1; }
    curl -fs -o /dev/null "$CRON" || { echo "cron invocation failed"; return 1; }
  done
  echo "$invocations invocations" | tee "$1.out"
}

# With a budget of 0 s each invocation takes one tag: a pass of 50 tags is
# resumed from its record by dozens of invocations, and completes.
a_budgeted_pass_spans_invocations_and_completes() {
  sync_pass factory
  last_record factory | tee last.json
  jq -e '.runs >= 10 and .finished_ms != null and .counts.repositories == 50
    and .counts.tags_unchanged + .counts.tags_copied == 49' last.json
}

a_bad_sync_var_is_refused_naming_it() {
  curl -s "http://$badsync_addr/v2/" | tee bad.json
  jq -e '.errors[0].message | test("PIER_SYNC: sync rule \"Factory\": name must be")' bad.json
}

run_shared_checks edge
check "edge: a pass with a 0 s budget spans cron invocations and completes" a_budgeted_pass_spans_invocations_and_completes
stop_worker edgesite

start_worker badsync 500 --var 'PIER_SYNC:[{"name":"Factory","upstream":"http://127.0.0.1:1","repositories":["a"]}]' || exit 2
check "edge: a bad PIER_SYNC is refused, naming the var and the rule" a_bad_sync_var_is_refused_naming_it
stop_worker badsync
