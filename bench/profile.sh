#!/usr/bin/env bash
# bench/profile.sh: where pier's CPU goes during one benchmark workload.
#
# Builds pier (release), starts it on a fresh data directory, samples it with
# `perf record` while bench/run.sh runs the workload against it (pier only),
# and prints the functions that took the most samples (kernel and user), then
# the user-space functions by inclusive time (with what they call). The
# release build keeps no frame pointers, so stacks are unwound from DWARF
# (about 16 MB of samples a second: profile one workload, not a whole run).
#
# Usage: bench/profile.sh WORKLOAD_REGEX [REPS]
#   e.g. bench/profile.sh push-large-mono 3
#        bench/profile.sh push-small-p1
# Output: the workload's lines from bench/run.sh, the top 25 symbols by self
#         time, the top 40 user-space ones by inclusive time;
#         perf.data is kept under target/bench/profile-<workload>/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
workload=${1:?usage: bench/profile.sh WORKLOAD_REGEX [REPS]}
reps=${2:-3}
command -v perf >/dev/null || { echo "profile.sh: needs perf (apt-get install linux-perf)" >&2; exit 2; }
HARNESS_NAME=profile
# shellcheck source=bench/lib.sh
. bench/lib.sh

build_pier release
out=$BENCH_DIR/profile-${workload//[^A-Za-z0-9_-]/_}
rm -rf "$out" && mkdir -p "$out"
PIER_LOG=warn start_pier --log "$out/pier.log" pier
perf_pid=
at_exit '[ -z "$perf_pid" ] || kill -INT "$perf_pid" 2>/dev/null'

perf record -F 499 --call-graph dwarf,16384 -p "$pier_pid" -o "$out/perf.data" 2>"$out/perf.log" &
perf_pid=$!
sleep 0.5
PIER_URL="http://$pier_addr" PIER_PID=$pier_pid bench/run.sh --pier-only --only "$workload" --reps "$reps" 2>&1 |
  grep -E " rep [0-9]+:" || true
kill -INT $perf_pid
wait $perf_pid 2>/dev/null || true
perf_pid=
echo
echo "top symbols (self time, share of pier's samples):"
perf report -i "$out/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
  grep -E "^ +[0-9.]+%" | head -n 25 | cut -c1-110 || true
echo
echo "user-space functions by inclusive time (with what they call):"
perf report -i "$out/perf.data" --children --sort symbol --stdio -g none 2>/dev/null |
  grep -E "^ +[0-9.]+%" | grep -v "\[k\]" | head -n 40 | cut -c1-150 || true
