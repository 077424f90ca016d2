# The events checks (shared.sh) on the test Worker under local workerd: the
# tables in its PIER_WEBHOOKS and PIER_REPLICATE vars, deliveries and copies
# sent with `fetch` under `waitUntil`, replication to a native pier. One
# Worker without auth, then one with PIER_AUTH and the signing-keys secret.
# Sourced by tests/events/run.sh.
build_test_worker || exit 2
start_receiver edge-receiver || exit 2
start_pier edgesite || exit 2
SITE=$edgesite_addr
# The webhooks carry a shared secret: a secret of the Worker, as a deployment
# would hold them (`wrangler secret put`), here from a .env file.
printf "PIER_WEBHOOKS='%s'\n" "$(main_webhooks)" >"$scratch/edge-main.env"
start_worker edgemain 200 --env-file "$scratch/edge-main.env" --var "PIER_REPLICATE:$(main_rules)" || exit 2
MAIN=$edgemain_addr
echo "edge: main=$MAIN site=$SITE receiver=$RECEIVER"
run_open_checks edge
stop_worker edgemain

printf "PIER_AUTH_SIGNING_KEYS='%s'\n" "$(jq -c . "$scratch/auth/signing-keys.json")" >"$scratch/edge-secured.env"
start_worker edgesecured 401 --var "PIER_AUTH:$(jq -c . "$scratch/auth/auth.json")" --env-file "$scratch/edge-secured.env" \
  --var "PIER_WEBHOOKS:$(secured_webhooks)" --var "PIER_REPLICATE:$(secured_rules)" || exit 2
SECURED=$edgesecured_addr
echo "edge: secured=$SECURED"
run_auth_checks edge

# The outbox checks (outbox.sh) on a Worker restarted on its persisted state,
# kill -9 of its process group for the crash; the cron (`* * * * *`, the
# events-only trigger) drains what the queue's messages did not.
OUTBOX_LOG=$scratch/outbox.log
printf "PIER_WEBHOOKS='%s'\n" "$(outbox_webhooks)" >"$scratch/outbox.env"
repo_root=$PWD
start_outbox() {
  local config=() here=$PWD status=0
  [ -n "${1:-}" ] && config=(--env-file "$scratch/outbox.env" --var "PIER_REPLICATE:$(outbox_rules)")
  # (checks run in $scratch/work; the Worker's scripts are the repository's)
  cd "$repo_root" && start_worker outbox 200 --test-scheduled "${config[@]}" || status=1
  cd "$here" && OUTBOX=$outbox_addr
  return $status
}
# Restarts happen inside checks (subshells): whichever Worker runs at the end is stopped then.
at_exit 'kill -9 -- "-$(cat "$scratch/outbox.pgid")" 2>/dev/null'
crash_outbox() { kill -9 -- "-$(cat "$scratch/outbox.pgid")"; refused "$OUTBOX"; }
drain_outbox() { curl -fsS -o /dev/null "http://$OUTBOX/__scheduled?cron=*%20*%20*%20*%20*"; }
run_outbox_checks edge
crash_outbox

# A 1 GiB image (16 layers of 64 MiB, each under the Worker's body limit)
# replicated from the Worker to a native pier in steps of 2 s: each queue
# invocation starts blobs for 2 s and the next goes on, until the copy is whole.
big_image_is_replicated_in_steps() {
  local n files=()
  for n in $(seq -w 1 16); do
    mkdir -p "big/$n" && head -c $((64 << 20)) /dev/urandom >"big/$n/data"
    tar -C "big/$n" -cf "big/$n.tar" data && rm "big/$n/data"
    files+=(-f "big/$n.tar")
  done
  crane append --insecure "${files[@]}" -t "$BIG/big/app:v1" >/dev/null
  WAIT_SECS=600 eventually same_digest "$BIG/big/app:v1" "$SITE/big-copy/app:v1"
  same_blobs "$BIG/big/app:v1" "$SITE/big-copy/app:v1"
  local steps invocations
  steps=$(grep -c "this step's time is up" "$scratch/big.log")
  invocations=$(grep -c 'QUEUE pier-test-events' "$scratch/big.log")
  echo "copy steps cut at their budget: $steps; queue consumer invocations: $invocations"
  [ "$steps" -ge 1 ] && [ "$invocations" -gt "$steps" ]
}
start_worker big 200 --var "PIER_REPLICATE:$(jq -cn --arg site "http://$SITE" \
  '[{repository: "big/**", to_registry: $site, to_namespace: "big-copy/**"}]')" \
  --var PIER_REPLICATION_STEP_SECS:2 || exit 2
BIG=$big_addr
check "edge: a 1 GiB image is replicated to a native pier over several queue invocations" big_image_is_replicated_in_steps
stop_worker big

# Concurrent drains over one R2: the queue's consumer and eight cron
# invocations at once, while 20 events are recorded, deliver each event
# once (the lanes' leases). (Two local workerd processes cannot share one
# persisted state: SQLite answers SQLITE_BUSY and R2 fails; on Cloudflare
# every location's isolates share the bucket. Two instances over one bucket
# are checked natively, over MinIO.)
start_worker racing 200 --test-scheduled --var "PIER_WEBHOOKS:$(jq -cn --arg receiver "$RECEIVER" \
  '[{url: "\($receiver)/closed/racing", events: ["push"], repository: "racing/**"}]')" || exit 2
racing_events_arrived() { [ "$(received /closed/racing '.repository == "racing/app"' | jq -r .id | sort -u | wc -l)" = 20 ]; }
crons_at_once() {
  local n
  for n in $(seq 1 8); do curl -fsS -o /dev/null "http://$racing_addr/__scheduled?cron=*%20*%20*%20*%20*" & done
  wait
}
concurrent_drains_deliver_each_event_once() {
  local n deadline=$((SECONDS + 300))
  close_receiver racing
  for n in $(seq 1 20); do make_image "$racing_addr/racing/app:r$n" 100; done
  open_receiver racing
  # The queue's retries and the crons race for the lane until all are in.
  until racing_events_arrived; do
    crons_at_once
    [ $SECONDS -lt $deadline ] || { echo "not all 20 arrived"; return 1; }
  done
  sleep 3
  crons_at_once
  echo "deliveries accepted: $(received /closed/racing '.repository == "racing/app"' | wc -l) for 20 events"
  [ "$(received /closed/racing '.repository == "racing/app"' | wc -l)" = 20 ]
}
check "edge: concurrent drains (queue and cron) deliver each event once" concurrent_drains_deliver_each_event_once
stop_worker racing
