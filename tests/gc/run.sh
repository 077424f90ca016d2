#!/usr/bin/env bash
# GC stress test against `pier serve`: the server collects every second with a
# 3 s grace window while tests/gc/stress.mjs pushes and deletes for
# GC_STRESS_SECS (default 60). Then, with the server stopped, a dry run of
# `pier gc` over the same data must find nothing unreferenced older than the
# grace window. Exits non-zero on failure.
# Env: PIER_BIN (default: build it), GC_STRESS_SECS, GC_STRESS_CLIENTS.
set -euo pipefail
cd "$(dirname "$0")/../.."
HARNESS_NAME=gc-stress
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
need_pier
# `pier gc` reads the data directory from here; start_pier names the same one.
cat >"$scratch/pier.toml" <<TOML
data_dir = "$scratch/gc-data"
[gc]
interval_secs = 1
grace_secs = 3
upload_expiry_secs = 60
page_size = 200
TOML
PIER_LOG=info,pier_server::gc=info start_pier gc -c "$scratch/pier.toml" --log-format json
log=$scratch/gc.log

status=0
PIER_URL="http://$gc_addr" node tests/gc/stress.mjs || status=1
stress_end_ms=$(date +%s%3N)
# A collection that starts after the last delete plus the grace window sees
# everything those deletes left unreferenced: wait until one has finished
# (from its end and duration in the log; a fixed wait was too short once
# collections over the stress's thousands of blobs took 15 s).
collected_after() { # MS: a collection that started after MS has finished
  jq -s -e --argjson after "$1" 'map(select(.fields.message == "gc finished")
    | (.timestamp | sub("\\.[0-9]+Z$"; "Z") | fromdate) * 1000 - .fields.duration_ms) | any(. > $after)' "$log" >/dev/null
}
WAIT_SECS=120 eventually collected_after $((stress_end_ms + 4000))
stop gc
runs=$(grep -c "gc finished" "$log" || true)
# Collections cut short by the shutdown itself do not count.
failed_runs=$(grep "gc failed" "$log" | grep -vc "cancelled" || true)
freed=$(grep -o '"blobs_deleted":[0-9]*' "$log" | awk -F: '{n += $2} END {print n + 0}')
left=$(pier gc -c "$scratch/pier.toml")
echo "$left"
blobs_left=$(echo "$left" | sed -n 's/^gc would remove: \([0-9]*\) blobs.*/\1/p')
echo "gc-stress: server collections finished=$runs failed=$failed_runs blobs_deleted=${freed:-0}; unreferenced blobs left past grace=$blobs_left"
[ "$runs" -gt 10 ] || { echo "FAIL: the server collected only $runs times"; status=1; }
[ "$failed_runs" -eq 0 ] || { echo "FAIL: $failed_runs collections failed"; grep "gc failed" "$log" | grep -v cancelled | head; status=1; }
[ "${freed:-0}" -gt 0 ] || { echo "FAIL: the server's collections freed nothing"; status=1; }
[ "$blobs_left" = 0 ] || { echo "FAIL: $blobs_left unreferenced blobs older than the grace window remain"; status=1; }
exit $status
