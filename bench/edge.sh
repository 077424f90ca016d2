#!/usr/bin/env bash
# bench/edge.sh: measures pier's edge Worker locally (issue 4, edge part):
#   - wasm size of the build output under edge-worker/build/ (or
#     $PIER_EDGE_BUILD), raw and gzipped;
#   - time for the local Worker (bench/edge-serve.mjs: Miniflare, workerd with
#     nothing in front, wrangler.toml's bindings and vars) to answer GET /v2/,
#     for a first start and a restart on the same persisted state;
#   - per-request latency for manifest GET (by tag, by digest) and blob GET
#     (first read = cache miss, repeated reads = cache hit), with the CPU time
#     per request of the Worker's process tree, and a short 64-connection wrk load.
# It does not build the Worker: it expects the build output to be there.
#
# Usage: bench/edge.sh [--n N] [--starts K] [--duration SECS] [--out FILE]
#        bench/edge.sh --url http://127.0.0.1:8787 [--pid PID]   (a Worker already running,
#            e.g. by bench/edge-serve.mjs or scripts/edge-dev.sh; PID: the root of its process tree)
#   --n N         requests per latency measurement (default 200)
#   --starts K    number of starts timed (default 2: first, then restart)
#   --duration S  seconds of the wrk load (default 5; 0 skips it)
#   --out FILE    markdown output (default target/bench/edge-<date>.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND="bench/edge.sh${*:+ $*}"

n=200 starts=2 duration=5 out="" url="" pid=0
while [ $# -gt 0 ]; do
  case $1 in
    --n) n=$2; shift ;;
    --starts) starts=$2; shift ;;
    --duration) duration=$2; shift ;;
    --out) out=$2; shift ;;
    --url) url=${2%/}; shift ;;
    --pid) pid=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "edge.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

HARNESS_NAME=edge-bench
# shellcheck source=bench/lib.sh
. bench/lib.sh
RUN=$(new_run_dir edge)
out=${out:-$RUN/edge.md}

# --- the pieces the Worker engineer provides -----------------------------------
BUILD=$(cd "${PIER_EDGE_BUILD:-$ROOT/edge-worker/build}" 2>/dev/null && pwd) ||
  die "no build directory ${PIER_EDGE_BUILD:-edge-worker/build/}: build the Worker first (scripts/edge-build.sh)"
mapfile -t wasms < <(find "$BUILD" -name '*.wasm' -type f 2>/dev/null | sort)
if [ ${#wasms[@]} -eq 0 ]; then
  die "no .wasm under ${BUILD#"$ROOT"/}: the Worker is not built yet (build it with the edge tooling, e.g. scripts/edge-build.sh, then rerun)"
fi
if [ -z "$url" ] && [ ! -d "$ROOT/node_modules/miniflare" ]; then
  die "no miniflare in node_modules (scripts/install-deps.sh edge); pass --url to measure a Worker started by hand"
fi

ensure_wrk
build_loadgen "$BENCH_DIR/bin"

report() { echo "$*" | tee -a "$out.tmp" >/dev/null; }
: >"$out.tmp"

# --- sizes -------------------------------------------------------------------
report "# Edge Worker: size, start-up and per-request cost"
report ""
report "Produced by \`$COMMAND\` on $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average $(cut -d' ' -f1-3 /proc/loadavg); pier $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
report ""
report "## Size of the build output"
report ""
report "| file | raw bytes | gzip -9 bytes | gzipped MiB |"
report "|---|---:|---:|---:|"
for f in "${wasms[@]}"; do
  raw=$(stat -c %s "$f")
  gz=$(gzip -9 -c "$f" | wc -c)
  report "| ${f#"$ROOT"/} | $raw | $gz | $(awk -v g="$gz" 'BEGIN{printf "%.2f", g/1048576}') |"
done
total_raw=$(find "$BUILD" -type f -printf '%s\n' | awk '{s+=$1} END{print s+0}')
total_gz=$(tar -C "$BUILD" -cf - . | gzip -9 -c | wc -c)
report "| all of ${BUILD#"$ROOT"/}/ (wasm and JS glue) | $total_raw | $total_gz (tar.gz) | $(awk -v g="$total_gz" 'BEGIN{printf "%.2f", g/1048576}') |"
report ""
report "Goal (issue 3): under 1 MiB gzipped."
report ""

# --- start-up -----------------------------------------------------------------
dev_pid=0
stop_dev() {
  if [ "$dev_pid" != 0 ] && kill -0 "$dev_pid" 2>/dev/null; then
    kill -TERM -- "-$dev_pid" 2>/dev/null || kill -TERM "$dev_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
  dev_pid=0
}
at_exit stop_dev
PERSIST=$scratch/state

if [ -z "$url" ]; then
  port=$(free_port)
  url=http://127.0.0.1:$port
  report "## Time to ready"
  report ""
  report "From launching \`node bench/edge-serve.mjs --script ${BUILD#"$ROOT"/}/index.js --config wrangler.toml --port $port --persist DIR\` (the build output as it is) to the first answer (200 or 401) on \`GET /v2/\`."
  report ""
  report "| start | seconds |"
  report "|---|---:|"
  for i in $(seq 1 "$starts"); do
    [ "$i" -gt 1 ] && stop_dev
    t0=$(date +%s.%N)
    setsid node bench/edge-serve.mjs --script "$BUILD/index.js" --config wrangler.toml --port "$port" \
      --persist "$PERSIST" >"$RUN/edge-serve-$i.log" 2>&1 &
    dev_pid=$!
    WAIT_SECS=300 wait_for "$url/v2/" '200|401' "$dev_pid" "$RUN/edge-serve-$i.log" ||
      die "bench/edge-serve.mjs did not answer on $url/v2/; see $RUN/edge-serve-$i.log"
    t1=$(date +%s.%N)
    what=$([ "$i" = 1 ] && echo "first start (fresh persist directory)" || echo "restart $((i - 1)) (same persist directory)")
    report "| $what | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') |"
    log "start $i ready after $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s"
  done
  pid=$dev_pid
  report ""
fi

# --- per request ---------------------------------------------------------------
report "## Per request (sequential, one connection, keep-alive)"
report ""
report "CPU per request: user+system time of the Worker's process tree (under bench/edge-serve.mjs, Miniflare's Node process and workerd, which also runs Miniflare's entry Worker and the R2, KV and Cache API simulators; the workerd column counts processes named workerd only) over the measurement, divided by the request count; 10 ms clock-tick resolution, so read it over many requests."
report ""
log "measuring per-request latency against $url"
edge_out=$("$LOADGEN" edge -url "$url" -pid "$pid" -n "$n" -wrk "$(command -v wrk)" -duration "${duration}s" 2>"$RUN/loadgen-edge.err") ||
  { cat "$RUN/loadgen-edge.err" >&2; die "edge measurements failed (see above; Worker log: $RUN/)"; }
report "$edge_out"
if [ -s "$RUN/loadgen-edge.err" ]; then
  report ""
  report "Errors:"
  report ""
  report '```'
  report "$(head -n 20 "$RUN/loadgen-edge.err")"
  report '```'
fi

mv "$out.tmp" "$out"
echo
cat "$out"
echo
log "written: $out (logs: $RUN)"
