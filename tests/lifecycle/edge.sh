# The lifecycle checks (shared.sh) on the test Worker under local workerd:
# the tables in PIER_GC, PIER_QUOTAS and PIER_LAST_PULL_PERIOD_SECS, pulls
# recorded once per period per location (its Cache API marks), collections
# run by the cron trigger. Sourced by tests/lifecycle/run.sh.
build_test_worker || exit 2
start_worker lifecycle 200 --test-scheduled --var "PIER_GC:$(lifecycle_rules)" \
  --var "PIER_QUOTAS:$(lifecycle_quotas)" --var "PIER_LAST_PULL_PERIOD_SECS:$PULL_PERIOD_SECS" || exit 2
REG=$lifecycle_addr
echo "edge: $REG"

read_object() { curl -fsS "http://$REG/_pier_test/objects/$1"; }
last_report_run() { curl -fsS "http://$REG/_pier/gc/report" 2>/dev/null | jq -r '.run // empty'; }
# One whole collection: cron invocations until a report newer than the last.
collect() {
  local before after
  before=$(last_report_run || true)
  for _ in $(seq 20); do
    curl -fsS -o /dev/null "http://$REG/__scheduled?cron=*/30%20*%20*%20*%20*"
    after=$(last_report_run || true)
    [ -n "$after" ] && [ "$after" != "$before" ] && return 0
  done
  echo "no collection finished in 20 cron invocations"; return 1
}

run_lifecycle_checks edge

# The cron's collection deletes the unpulled tag; its report says why.
retention_deletes_the_unpulled_tag_and_says_why() {
  retention_setup
  collect
  curl -fsS "http://$REG/_pier/gc/report" | jq -r '.removed[]' | tee removed.txt
  grep -qx 'tag ret/app:old (never pulled, pushed 1[0-9] s ago, unpulled_for_days 0.000116; rule ret/\*\*)' removed.txt
  [ "$(grep -c '^tag ret/' removed.txt)" = 1 ]
  retention_kept_what_was_used
}
check "edge: unpulled_for_days: the cron's collection deletes the unpulled tag, and its report says why" \
  retention_deletes_the_unpulled_tag_and_says_why
# (A bad PIER_QUOTAS is refused with the other vars in scripts/test-edge.sh.)
stop_worker lifecycle
