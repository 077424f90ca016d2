#!/usr/bin/env bash
# bench/profile.sh: where pier's CPU goes during one benchmark workload.
#
# Builds pier (release), starts it on a fresh data directory, samples it with
# `perf record` while bench/run.sh runs the workload against it (pier only),
# and prints the functions that took the most samples (kernel and user).
#
# Usage: bench/profile.sh WORKLOAD_REGEX [REPS]
#   e.g. bench/profile.sh push-large-mono 3
#        bench/profile.sh push-small-p1
# Output: the workload's lines from bench/run.sh, then the top 25 symbols;
#         perf.data is kept under target/bench/profile-<workload>/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
workload=${1:?usage: bench/profile.sh WORKLOAD_REGEX [REPS]}
reps=${2:-3}
command -v perf >/dev/null || { echo "profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 2; }

cargo build -q --release -p pier-server
bin=${CARGO_TARGET_DIR:-$ROOT/target}/release/pier
out=${BENCH_DIR:-$ROOT/target/bench}/profile-${workload//[^A-Za-z0-9_-]/_}
rm -rf "$out" && mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PIER_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data-dir "$out/data" 2>"$out/pier.log" &
pier=$!
perf_pid=
trap 'kill $pier 2>/dev/null; [ -n "$perf_pid" ] && kill -INT $perf_pid 2>/dev/null; true' EXIT
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

perf record -F 1999 -g -p "$pier" -o "$out/perf.data" 2>"$out/perf.log" &
perf_pid=$!
sleep 0.5
PIER_URL="http://127.0.0.1:$port" PIER_PID=$pier bench/run.sh --pier-only --only "$workload" --reps "$reps" 2>&1 |
  grep -E " rep [0-9]+:" || true
kill -INT $perf_pid
wait $perf_pid 2>/dev/null || true
perf_pid=
echo
echo "top symbols (self time, share of pier's samples):"
perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
  grep -E "^ +[0-9.]+%" | head -n 25 | cut -c1-110 || true
