# The archive checks (shared.sh) on the test Worker under local workerd: the
# [archive] table in PIER_ARCHIVE, the archive store its second R2 bucket
# (PIER_ARCHIVE_BUCKET), passes run by the collecting cron trigger with a
# budget of 1 s, so a large blob's move spans invocations. Sourced by
# tests/archive/run.sh.
build_test_worker || exit 2
start_edge() {
  start_worker archive 200 --test-scheduled --var "PIER_ARCHIVE:$(archive_table)" \
    --var 'PIER_GC:{"grace_secs":0}' --var PIER_ARCHIVE_BUDGET_SECS:1 \
    --var "PIER_LAST_PULL_PERIOD_SECS:$ARCHIVE_PULL_PERIOD_SECS"
}
start_edge || exit 2
REG=$archive_addr
echo "edge: $REG"

cron() { curl -fsS -o /dev/null "http://$REG/__scheduled?cron=*/30%20*%20*%20*%20*"; }
# Cron invocations (each collects, then runs an archive pass for 1 s) until
# settled, for up to 90 s: a pass killed with its Worker holds the lease for
# its 30 s (R2 is shared), and the passes after it wait that out.
archive_pass() {
  local deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    cron
    settled && return 0
    sleep 1
  done
  echo "not settled after 90 s of cron invocations"; return 1
}
last_report_run() { curl -fsS "http://$REG/_pier/gc/report" 2>/dev/null | jq -r '.run // empty'; }
collect() {
  local before after
  before=$(last_report_run || true)
  for _ in $(seq 20); do
    cron
    after=$(last_report_run || true)
    [ -n "$after" ] && [ "$after" != "$before" ] && return 0
  done
  echo "no collection finished in 20 cron invocations"; return 1
}

run_archive_checks edge

# A 60 MiB layer moves in 10 MiB parts over several 1 s invocations; the
# Worker's process is killed with -9 in the middle of them and restarted on
# its persisted state: the move goes on from its saved progress.
a_move_spans_invocations_and_survives_kill_nine() {
  layer_tar w1 $((60 << 20))
  crane append --insecure -f w1.tar -t "$REG/cold/edge:big-1" >/dev/null
  cron
  admin GET "" | jq -c .status | tee status.json
  local pending
  pending=$(jq .moves_pending status.json)
  echo "moves under way after one invocation: $pending"
  cron &
  sleep 0.5
  kill -9 -- "-$(cat "$scratch/archive.pgid")"
  refused "$REG"
  local here=$PWD
  cd "$repo_root" && start_edge && cd "$here"
  REG=$archive_addr
  verified_clean
  archive_pass
  verified_clean
  [ "$(image_line cold/edge:big-1)" = 2/2 ]
  pulls_byte_identical "$REG/cold/edge:big-1"
  [ "$pending" -ge 1 ]
}
repo_root=$PWD
at_exit 'kill -9 -- "-$(cat "$scratch/archive.pgid")" 2>/dev/null'
check "edge: a 60 MiB move spans cron invocations and goes on after kill -9 of the Worker" \
  a_move_spans_invocations_and_survives_kill_nine
stop_worker archive
