# The sync checks (shared.sh) with a native site: `pier serve` over a data
# directory, its [[sync]] tables on demand (interval 0) in its configuration
# file, each pass run by hand with `pier sync` while the server is stopped
# (a data directory belongs to one process); then what only the native
# server has: a pass killed with kill -9 that the next `pier sync` resumes,
# the exit status, `pier serve`'s scheduler, and bad tables refused at start.
# Sourced by tests/sync/run.sh.

SITE_CONFIG=$scratch/site.toml
SITE_DATA=$scratch/site-data
{
  echo "data_dir = \"$SITE_DATA\""
  toml_tables sync "$(sync_rules 0)"
  toml_tables webhook "$(sync_webhooks)"
} >"$SITE_CONFIG"
SITE=127.0.0.1:$(free_port)

# The site's server is restarted by checks (each a subshell of its own), so
# its process id lives in a file, and the run's end stops it.
start_site() {
  "$PIER_BIN" serve -c "$SITE_CONFIG" --listen "$SITE" >>"$scratch/site.log" 2>&1 &
  echo $! >"$scratch/site.pid"
  wait_for "http://$SITE/healthz" 200 "$(cat "$scratch/site.pid")" "$scratch/site.log"
}
stop_site() {
  kill "$(cat "$scratch/site.pid")" 2>/dev/null
  refused "$SITE"
}
at_exit stop_site
start_site || exit 2

sync_pass() {
  stop_site
  local rc=0
  pier sync -c "$SITE_CONFIG" "$1" >"$1.out" 2>&1 || rc=$?
  echo "$rc" >"$1.rc"
  cat "$1.out"
  start_site
}
last_record() { cat "$SITE_DATA/sync/$1/last"; }

# A pass over slow upstream answers, killed once ten repositories are done,
# then run again: the same pass goes on from its record (same id, a second
# run, nothing counted twice but the few tags after the last save).
a_pass_killed_half_way_resumes_where_it_stopped() {
  local data=$scratch/slow-data pid pass done_before
  {
    echo "data_dir = \"$data\""
    toml_tables sync "$(sync_rules 0 | jq -c '[.[0] | .name = "slow"]')"
  } >slow.toml
  curl -fs -X POST "http://$PROXY/_proxy/delay?ms=40"
  # (the binary itself, not the `pier` function's subshell, is what gets killed)
  "$PIER_BIN" sync -c slow.toml slow >slow-1.out 2>&1 &
  pid=$!
  WAIT_SECS=120 WHILE_PID=$pid eventually jq -e '.next_repository >= 10' "$data/sync/slow/pass"
  kill -9 "$pid"
  wait "$pid" || true
  curl -fs -X POST "http://$PROXY/_proxy/delay?ms=0"
  jq . "$data/sync/slow/pass"
  pass=$(jq -r .pass "$data/sync/slow/pass")
  done_before=$(jq .next_repository "$data/sync/slow/pass")
  jq -e '.finished_ms == null and .runs == 1 and .next_repository < 50' "$data/sync/slow/pass"
  pier sync -c slow.toml slow 2>&1 | tee slow-2.out
  grep "resuming pass $pass at repository $((done_before + 1)) of 50" slow-2.out
  jq . "$data/sync/slow/last"
  jq -e --arg pass "$pass" '.pass == $pass and .runs == 2 and .counts.repositories == 50
    and .counts.tags_copied + .counts.tags_unchanged == 50 and .counts.tags_unchanged < 10
    and .counts.tags_failed == 0' "$data/sync/slow/last"
}

pier_sync_fails_when_tags_failed() {
  [ "$(cat factory.rc)" = 0 ] && [ "$(cat tampered.rc)" != 0 ] && [ "$(cat realm.rc)" != 0 ]
  grep -F "FAILED" tampered.out
}

has_digest() { [ "$(crane digest --insecure "$1")" = "$2" ]; }

# `pier serve` with a rule every second: the images arrive, and a tag moved
# upstream follows, with no one running anything by hand.
the_scheduler_of_pier_serve_runs_passes() {
  {
    toml_tables sync "$(sync_rules 1 | jq -c '[.[0] | .name = "scheduled" | .repositories = ["factory/img-06"]
      | .to_namespace = "sched/**"]')"
  } >scheduled.toml
  start_pier scheduled -c scheduled.toml
  trap 'stop scheduled' EXIT
  local ref=$scheduled_addr/sched/factory/img-06:v1 moved
  eventually has_digest "$ref" "$(upstream_digest factory/img-06:v1)"
  has_digest "$ref" "$(upstream_digest factory/img-06:v1)"
  crane copy --insecure "$UPSTREAM/factory/img-08:v1" "$UPSTREAM/factory/img-06:v1" >/dev/null
  moved=$(upstream_digest factory/img-08:v1)
  eventually has_digest "$ref" "$moved"
  has_digest "$ref" "$moved"
  grep -q "sync pass finished" "$scratch/scheduled.log"
}

bad_tables_are_refused_at_start_naming_the_rule() {
  local port; port=$(free_port)
  printf '[[sync]]\nname = "Factory"\nupstream = "http://%s"\nrepositories = ["a"]\n' "$PROXY" >bad-name.toml
  printf '[[sync]]\nname = "ok"\nupstream = "http://%s"\nrepositories = ["a"]\nintervl_secs = 5\n' "$PROXY" >bad-key.toml
  printf '[[sync]]\nname = "glob"\nupstream = "http://%s"\nrepositories = ["a/***"]\n' "$PROXY" >bad-glob.toml
  fails timeout 20 "$PIER_BIN" serve -c bad-name.toml --listen "127.0.0.1:$port" --data-dir bad-data >serve.out 2>&1
  cat serve.out; grep -F 'sync rule "Factory": name must be' serve.out
  fails pier sync -c bad-name.toml >sync.out 2>&1
  cat sync.out; grep -F 'sync rule "Factory"' sync.out
  fails timeout 20 "$PIER_BIN" serve -c bad-key.toml --listen "127.0.0.1:$port" --data-dir bad-data >key.out 2>&1
  cat key.out; grep -F 'unknown field `intervl_secs`' key.out
  fails timeout 20 "$PIER_BIN" serve -c bad-glob.toml --listen "127.0.0.1:$port" --data-dir bad-data >glob.out 2>&1
  cat glob.out; grep -F 'sync rule "glob": repositories' glob.out
}

check "native: a pass killed with kill -9 half-way resumes from its record" a_pass_killed_half_way_resumes_where_it_stopped
run_shared_checks native
check "native: pier sync exits non-zero when tags failed" pier_sync_fails_when_tags_failed
check "native: pier serve's scheduler runs due passes" the_scheduler_of_pier_serve_runs_passes
check "native: bad [[sync]] tables are refused at start, naming the rule" bad_tables_are_refused_at_start_naming_the_rule
stop_site
