# The events checks (shared.sh) on the native server: three pier instances,
# the tables in their configuration files. Sourced by tests/events/run.sh.
start_receiver native-receiver || exit 2
start_pier site || exit 2
SITE=$site_addr
{
  toml_tables webhook "$(main_webhooks)"
  toml_tables replicate "$(main_rules)"
} >"$scratch/events.toml"
start_pier main -c "$scratch/events.toml" || exit 2
MAIN=$main_addr
{
  cat "$scratch/auth/pier.toml"
  echo
  toml_tables webhook "$(secured_webhooks)"
  toml_tables replicate "$(secured_rules)"
} >"$scratch/secured.toml"
start_pier secured -c "$scratch/secured.toml" || exit 2
SECURED=$secured_addr
echo "native: main=$MAIN site=$SITE secured=$SECURED receiver=$RECEIVER"

run_open_checks native
run_auth_checks native

# The outbox checks (outbox.sh): OUTBOX is a pier restarted on its data
# directory, with kill -9 for the crash.
outbox_port=$(free_port)
OUTBOX_LOG=$scratch/outbox.log
{
  toml_tables webhook "$(outbox_webhooks)"
  toml_tables replicate "$(outbox_rules)"
} >"$scratch/outbox.toml"
# Restarts happen inside checks (subshells): the server's pid is kept in a
# file, and whichever is running at the end is stopped then.
start_outbox() {
  local config=()
  [ -n "${1:-}" ] && config=(-c "$scratch/outbox.toml")
  start_pier --port "$outbox_port" --log "$OUTBOX_LOG" outbox "${config[@]}" || return 1
  OUTBOX=$outbox_addr
  echo "$outbox_pid" >"$scratch/outbox.pid"
}
at_exit 'kill -9 "$(cat "$scratch/outbox.pid")" 2>/dev/null'
crash_outbox() { kill -9 "$(cat "$scratch/outbox.pid")"; refused "$OUTBOX"; }
stop_outbox() { kill "$(cat "$scratch/outbox.pid")"; refused "$OUTBOX"; }
drain_outbox() { :; }
run_outbox_checks native

# `pier events` on the stopped server's storage: what waits, what is dead,
# a retry; a stopped server's outbox is only reachable that way.
pier_events_lists_and_retries_on_the_storage() {
  close_receiver dead
  make_image "$OUTBOX/doomed/cli:v1" 1000
  WAIT_SECS=60 eventually pending_is 1 '.dead and .event.repository == "doomed/cli"'
  stop_outbox
  local cli=(pier events -c "$scratch/outbox.toml" --data-dir "$scratch/outbox-data")
  "${cli[@]}" list --dead --json | tee dead.jsonl
  jq -s -e 'map(select(.event.repository == "doomed/cli")) | length == 1 and .[0].dead and .[0].attempts == 2' dead.jsonl
  "${cli[@]}" list 2>&1 | tee pending.txt
  fails grep -q 'doomed/cli' pending.txt
  grep -q '^0 pending, 1 dead' pending.txt
  "${cli[@]}" retry "$(jq -r 'select(.event.repository == "doomed/cli") | .event.id' dead.jsonl)" | grep -q '^1 lanes'
  "${cli[@]}" list --json | jq -s -e 'map(select(.event.repository == "doomed/cli" and (.dead | not) and .attempts == 0)) | length == 1'
  # The next server delivers it.
  open_receiver dead
  start_outbox configured
  eventually arrived /closed/dead '.repository == "doomed/cli"'
  # Without a [[webhook]] or [[replicate]] table there is no outbox to show.
  stop_outbox
  fails pier events --data-dir "$scratch/outbox-data" list 2>cli.err
  grep -q 'no \[\[webhook\]\] or \[\[replicate\]\] table' cli.err
}
check "native: pier events lists, retries on the storage of a stopped server" \
  pier_events_lists_and_retries_on_the_storage

# Two instances over one bucket (MinIO, as tests/scaleout runs it): each
# event is delivered once while both run, and those the one killed left
# are delivered by the other.
if scripts/install-deps.sh scaleout >"$scratch/install-scaleout.log" 2>&1; then
  export AWS_ACCESS_KEY_ID=pier-events AWS_SECRET_ACCESS_KEY=pier-events-secret AWS_REGION=us-east-1
  s3_port=$(free_port)
  MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
    minio server "$scratch/minio" --address "127.0.0.1:$s3_port" --console-address "127.0.0.1:$(free_port)" \
    >"$scratch/minio.log" 2>&1 &
  kill_at_exit $!
  wait_for "http://127.0.0.1:$s3_port/minio/health/live" 200 $! "$scratch/minio.log"
  make_bucket() {
    local status
    status=$(curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      -X PUT -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3_port/pier-events")
    [ "$status" = 200 ]
  }
  eventually make_bucket
  jq -cn --arg receiver "$RECEIVER" '[{url: "\($receiver)/closed/shared", events: ["push"]}]' >"$scratch/shared.json"
  toml_tables webhook "$(cat "$scratch/shared.json")" >"$scratch/shared.toml"
  on_bucket=(-c "$scratch/shared.toml" --storage-url s3://pier-events/registry --s3-endpoint "http://127.0.0.1:$s3_port"
    --s3-allow-http true)
  start_pier shared_a "${on_bucket[@]}" && start_pier shared_b "${on_bucket[@]}"

  # shared_events_arrived JQ-FILTER N: N distinct such events reached /closed/shared.
  shared_events_arrived() { [ "$(received /closed/shared "$1" | jq -r .id | sort -u | wc -l)" = "$2" ]; }
  two_instances_over_one_bucket_deliver_each_event() {
    local n
    for n in $(seq 1 10); do
      make_image "$shared_a_addr/shared/app:a$n" 100
      make_image "$shared_b_addr/shared/app:b$n" 100
    done
    eventually shared_events_arrived '.repository == "shared/app"' 20
    # Both running, nothing failing: each event once.
    [ "$(received /closed/shared '.repository == "shared/app"' | wc -l)" = 20 ]
    # A's deliveries wait while the receiver is closed; A dies; B delivers them.
    close_receiver shared
    for n in $(seq 1 5); do make_image "$shared_a_addr/shared/app:late$n" 100; done
    kill -9 "$shared_a_pid"
    open_receiver shared
    # (within a pass of B, 30 s, after A's leases expired, 60 s)
    WAIT_SECS=150 eventually shared_events_arrived '.tag | startswith("late")' 5
  }
  check "native: two instances over one bucket deliver each event, and what a dead one left" \
    two_instances_over_one_bucket_deliver_each_event
else
  record "native: two instances over one bucket (MinIO did not install: $scratch/install-scaleout.log)" 1
fi
