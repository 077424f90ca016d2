#!/usr/bin/env bash
# GC stress test against `pier serve`: the server collects every second with a
# 3 s grace window while tests/gc/stress.mjs pushes and deletes for
# GC_STRESS_SECS (default 60). Then, with the server stopped, a dry run of
# `pier gc` over the same data must find nothing unreferenced older than the
# grace window. Exits non-zero on failure.
# Env: PIER_BIN (default: build it), GC_STRESS_SECS, GC_STRESS_CLIENTS.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${PIER_BIN:-}" ]; then
  cargo build -q -p pier-server
  PIER_BIN=${CARGO_TARGET_DIR:-target}/debug/pier
fi
bin=$PIER_BIN
scratch=$(mktemp -d "${TMPDIR:-/tmp}/pier-gc-stress.XXXXXX")
port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat > "$scratch/pier.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$scratch/data"
[gc]
interval_secs = 1
grace_secs = 3
upload_expiry_secs = 60
page_size = 200
TOML
PIER_LOG=info,pier_server::gc=info "$bin" serve -c "$scratch/pier.toml" --log-format json 2> "$scratch/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$scratch"' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

status=0
PIER_URL="http://127.0.0.1:$port" node tests/gc/stress.mjs || status=1
# Let collections that start after the last delete (plus the grace window) run.
sleep 8
kill $server; wait $server 2>/dev/null || true
runs=$(grep -c "gc finished" "$scratch/server.log" || true)
# Collections cut short by the shutdown itself do not count.
failed_runs=$(grep "gc failed" "$scratch/server.log" | grep -vc "cancelled" || true)
freed=$(grep -o '"blobs_deleted":[0-9]*' "$scratch/server.log" | awk -F: '{n += $2} END {print n + 0}')
left=$("$bin" gc -c "$scratch/pier.toml")
echo "$left"
blobs_left=$(echo "$left" | sed -n 's/^gc would remove: \([0-9]*\) blobs.*/\1/p')
echo "gc-stress: server collections finished=$runs failed=$failed_runs blobs_deleted=${freed:-0}; unreferenced blobs left past grace=$blobs_left"
[ "$runs" -gt 10 ] || { echo "FAIL: the server collected only $runs times"; status=1; }
[ "$failed_runs" -eq 0 ] || { echo "FAIL: $failed_runs collections failed"; grep "gc failed" "$scratch/server.log" | grep -v cancelled | head; status=1; }
[ "${freed:-0}" -gt 0 ] || { echo "FAIL: the server's collections freed nothing"; status=1; }
[ "$blobs_left" = 0 ] || { echo "FAIL: $blobs_left unreferenced blobs older than the grace window remain"; status=1; }
exit $status
