#!/usr/bin/env bash
# bench/run.sh: pier's benchmark, side by side with the reference registry
# (CNCF Distribution v3, built from the Go module proxy by
# scripts/install-deps.sh bench) on this machine.
#
# Builds pier (release) and the load generator (bench/loadgen, Go), starts both
# registries on 127.0.0.1 with fresh data directories, and a ceiling: the
# smallest server that does what a push must (receive over loopback, hash,
# write into a fresh file; `loadgen sink`). Runs every workload on both
# registries (pushes of one large blob on the ceiling too), alternating, prints
# the table and writes it with the command, date and machine to
# docs/benchmarks.md (full runs) or to the run directory.
#
# Usage: bench/run.sh [--quick] [--reps N] [--only REGEX] [--pier-only] [--out FILE]
#   --quick      small counts and short loads, one repetition (~1 minute)
#   --reps N     repetitions per workload per registry (default 5; quick 1)
#   --only RE    only workloads whose id matches RE (ids: push-small-p1, push-small-p4,
#                pull-small-p1, pull-small-p4, blob-get-miss, blob-get-hit, push-small-chunked,
#                push-large-mono, push-large-chunked,
#                pull-large, head-c16, v2-c64, manifest-tag-c16|64|256, manifest-digest-c16|64|256,
#                sha256-1core)
#   --duration S seconds of each HEAD and GET load (default 3; quick 2)
#   --pier-only  do not start the reference (no ratios)
#   --out FILE   where to write the markdown (default: docs/benchmarks.md for a
#                full run of everything, else the run directory)
# Environment:
#   PIER_URL     benchmark an already-running pier (or the Worker) instead of
#                building and starting one; PIER_PID its process id for memory figures
#   CEILING_DIR  with PIER_URL: where the push ceiling writes (on the file system
#                the external pier writes to); without it, no ceiling is measured
#   CEILING_FSYNC whether the ceiling flushes (default: as pier, from PIER_ARGS)
#   PIER_ARGS    extra `pier serve` flags, e.g. '--fsync false'
#   BENCH_DIR    where runs keep results and logs (default target/bench)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND="bench/run.sh${*:+ $*}"

quick=0 reps="" only="" pier_only=0 out="" duration=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --reps) reps=$2; shift ;;
    --only) only=$2; shift ;;
    --duration) duration=$2; shift ;;
    --pier-only) pier_only=1 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ $quick = 1 ]; then
  reps=${reps:-1}
  loadargs=(-small-n 20 -large-size $((64 << 20)) -duration 2s)
else
  reps=${reps:-5}
  loadargs=(-small-n 100 -large-size $((256 << 20)) -duration 3s)
fi
[ -n "$duration" ] && loadargs+=(-duration "${duration}s")

HARNESS_NAME=bench
# shellcheck source=bench/lib.sh
. bench/lib.sh
RUN=$(new_run_dir run)

# --- tools ------------------------------------------------------------------
scripts/install-deps.sh bench >&2 || die "scripts/install-deps.sh bench failed"
REF_BIN=${PIER_TOOLS:-$HOME/.cache/pier-tools}/bin/registry
ref_version=$(cat "$(dirname "$REF_BIN")/.registry.version")
build_loadgen "$BENCH_DIR/bin"

# --- pier ---------------------------------------------------------------------
pier_pid=${PIER_PID:-0}
if [ -n "${PIER_URL:-}" ]; then
  PIER=${PIER_URL%/}
  pier_version="external: $PIER"
  log "using the running pier at $PIER (pid ${PIER_PID:-unknown})"
else
  command -v cargo >/dev/null || die "cargo is required"
  log "building pier (cargo build --release -p pier-server)"
  build_pier release || die "cargo build --release -p pier-server failed"
  # shellcheck disable=SC2086 # PIER_ARGS is a list of serve flags
  PIER_LOG=warn start_pier --log "$RUN/pier.log" pier ${PIER_ARGS:-} || die "pier did not start; see $RUN/pier.log"
  PIER=http://$pier_addr
  pier_version="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- core native-server Cargo.toml Cargo.lock 2>/dev/null || echo ' + uncommitted changes in core/native-server')"
  log "pier $pier_version on $PIER (pid $pier_pid)"
fi

# --- reference ----------------------------------------------------------------
ref_args=()
ref_pid=0
if [ $pier_only = 0 ]; then
  port=$(free_port)
  REF=http://127.0.0.1:$port
  cat >"$RUN/ref.yml" <<EOF
# The reference registry as its own example configuration sets it up
# (in-memory blob descriptor cache), delete enabled, on loopback, logging only
# warnings.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $scratch/ref-data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: pier-bench-only
EOF
  OTEL_TRACES_EXPORTER=none "$REF_BIN" serve "$RUN/ref.yml" 2>"$RUN/ref.log" &
  register ref "$port" $!
  wait_for "$REF/v2/" 200 "$ref_pid" "$RUN/ref.log" || die "the reference did not start; see $RUN/ref.log"
  ref_args=(-ref "$REF" -ref-pid "$ref_pid")
  log "reference: Distribution $ref_version on $REF (pid $ref_pid)"
fi

# --- the push ceiling ------------------------------------------------------------
# Beside pier's data, so both fill pages of the same file system.
ceiling_args=()
if [ -z "${PIER_URL:-}" ] || [ -n "${CEILING_DIR:-}" ]; then
  port=$(free_port)
  # The ceiling flushes when pier does.
  ceiling_fsync=${CEILING_FSYNC:-$([[ " ${PIER_ARGS:-} " =~ \ --fsync[=\ ]false\  ]] && echo false || echo true)}
  "$LOADGEN" sink -fsync="$ceiling_fsync" -addr "127.0.0.1:$port" -dir "${CEILING_DIR:-$scratch/ceiling}" 2>"$RUN/ceiling.log" &
  register ceiling "$port" $!
  wait_for "http://127.0.0.1:$port/v2/" 200 "$ceiling_pid" "$RUN/ceiling.log" || die "the push ceiling did not start; see $RUN/ceiling.log"
  ceiling_args=(-ceiling "http://127.0.0.1:$port")
fi

# --- workloads ----------------------------------------------------------------
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "running workloads: reps=$reps ${loadargs[*]} ${only:+only=$only} (results: $RUN/results.jsonl)"
t0=$(date +%s)
"$LOADGEN" suite -pier "$PIER" -pier-pid "$pier_pid" "${ref_args[@]}" -reps "$reps" "${loadargs[@]}" \
  "${ceiling_args[@]}" ${only:+-only "$only"} -wrk "$(command -v wrk)" -out "$RUN/results.jsonl"
elapsed=$(($(date +%s) - t0))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

alive_note=""
for p in pier:$pier_pid ref:$ref_pid; do
  name=${p%%:*} pid=${p#*:}
  if [ "$pid" != 0 ] && ! kill -0 "$pid" 2>/dev/null; then alive_note+="- **$name (pid $pid) was no longer running at the end of the run.**"$'\n'; fi
done

# --- report -------------------------------------------------------------------
if [ -z "$out" ]; then
  if [ $quick = 0 ] && [ -z "$only" ] && [ $pier_only = 0 ] && [ -z "${PIER_URL:-}" ]; then
    out=$ROOT/docs/benchmarks.md
  else
    out=$RUN/benchmarks.md
  fi
fi
mkdir -p "$(dirname "$out")"
tables=$("$LOADGEN" report -in "$RUN/results.jsonl")

server_log_lines() { # file: a count of lines per level and the first few, shortened
  [ -s "$1" ] || { echo "nothing logged at warn level or above."; return; }
  local levels
  levels=$(grep -oiE '(level=|"level":")?\b(warn|warning|error|fatal|panic)\b' "$1" | tr 'A-Z' 'a-z' |
    sed -E 's/^(level=|"level":")//' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')
  echo "$(wc -l <"$1") line(s) (${levels:-no level found}); the first ones, cut to 240 characters:"
  echo
  echo '```'
  head -n 5 "$1" | cut -c1-240
  echo '```'
}

{
  cat <<EOF
# Benchmarks: pier and the reference registry, side by side

Produced by \`$COMMAND\` (the harness is described in [bench/README.md](../bench/README.md)).
Do not edit by hand: rerun the command.

The web UI with 10,000 repositories (its first page in Chromium) is measured by \`bench/ui.sh\`: see [ui.md](ui.md#benchmark-10000-repositories).

- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); workloads took ${elapsed} s.
- pier: $pier_version, release build, \`pier serve${PIER_ARGS:+ $PIER_ARGS}\` on loopback, local filesystem, \`PIER_LOG=warn\`$([ "${ceiling_fsync:-true}" = true ] && echo ', writes flushed to the disk before they are acknowledged (the default)' || echo ', writes not flushed').
- Reference: CNCF Distribution $ref_version (\`go install github.com/distribution/distribution/v3/cmd/registry@$ref_version\`, $(go version | awk '{print $3}')), filesystem storage, in-memory blob descriptor cache, delete enabled, log level warn, access log off, tracing off.
- Load generators: bench/loadgen ($(go version | awk '{print $3}'), HTTP/1.1 keep-alive) and $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}') for manifest GETs, on the same machine.
- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r); load average $load_start at the start, $load_end at the end.

\`\`\`
\$ free -g
$(free -g)
\`\`\`

**Noise.** The machine has $(nproc) cores, shared by both servers, the load
generator and whatever else runs (builds in parallel): absolute numbers drift
from run to run and between machines. Trust the ratio pier / reference (both
measured in the same minutes, alternating pier, ref, then ref, pier) more than
the absolute figures, and look at the spread column before reading much into a
difference of a few percent.

## Results

$tables

### Server logs

pier's standard error: $(if [ -n "${PIER_URL:-}" ]; then echo "not captured (external server)."; else server_log_lines "$RUN/pier.log"; fi)

The reference's standard error: $(if [ $pier_only = 1 ]; then echo "not run."; else server_log_lines "$RUN/ref.log"; fi)

$alive_note
EOF
} >"$out"

echo
echo "$tables"
echo
log "written: $out (results and logs: $RUN)"
