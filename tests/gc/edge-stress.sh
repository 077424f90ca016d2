#!/usr/bin/env bash
# The GC stress test (tests/gc/stress.mjs) against the edge Worker: the cron
# trigger collects every second (wrangler dev --test-scheduled) while clients
# push images sharing base layers, delete others and pull their own. Then:
# every manifest left must pull whole (stress.mjs checks it), a collection
# started after the last delete plus the grace window runs to its end, and
# the next one must find nothing more to delete: nothing unreferenced and
# older than the grace window was left behind.
#
# Usage: PIER_URL=http://127.0.0.1:PORT tests/gc/edge-stress.sh
#   (a test Worker started with --test-scheduled and PIER_GC with grace_secs 3;
#   scripts/test-edge.sh starts it)
# Env: GC_STRESS_SECS (default 60), GC_GRACE_SECS (default 3).
# Output: last line "gc-stress: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
url=${PIER_URL:?PIER_URL of a Worker with PIER_GC and --test-scheduled}
grace=${GC_GRACE_SECS:-3}
cron="$url/__scheduled?cron=$(node -e 'console.log(encodeURIComponent("*/30 * * * *"))')"
# shellcheck source=tests/lib/checks.sh
source tests/lib/checks.sh
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const r=JSON.parse(s);console.log(r[process.argv[1]]??"")}catch{console.log("")}})' "$1"; }
report() { curl -s "$url/_pier/gc/report"; }

( while :; do curl -s -o /dev/null "$cron"; sleep 1; done ) &
collector=$!
node tests/gc/stress.mjs
record "concurrent pushes, deletes and pulls while the cron collects: no lost blob" $?
kill $collector 2>/dev/null; wait $collector 2>/dev/null

# A collection that starts after the last delete plus the grace window.
sleep $((grace + 1))
after_ms=$(date +%s%3N)
finished_after() { # ms: triggers the cron until a collection started after ms has finished
  for _ in $(seq 1 300); do
    started=$(report | field started_ms)
    [ -n "$started" ] && [ "$started" -gt "$1" ] && return 0
    curl -s -o /dev/null "$cron"
  done
  return 1
}
finished_after "$after_ms"
record "a collection started after the stress runs to its end" $?
first=$(report)
echo "  that collection: blobs_deleted=$(echo "$first" | field blobs_deleted) blobs_examined=$(echo "$first" | field blobs_examined) steps=$(echo "$first" | field steps)"
second_after=$(echo "$first" | field finished_ms)
finished_after "${second_after:-$after_ms}"
second=$(report)
left=$(echo "$second" | field blobs_deleted)
echo "  the next collection: blobs_deleted=$left"
[ "$left" = 0 ]
record "the next collection finds no unreferenced blob left past the grace window" $?

summary gc-stress
