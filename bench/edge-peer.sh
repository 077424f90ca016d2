#!/usr/bin/env bash
# bench/edge-peer.sh: pier's edge Worker beside cloudflare/serverless-registry
# (issue 15), both under local workerd on this machine, in one run:
#   - starts pier's production Worker (edge-worker/build/, its bindings and
#     vars from wrangler.toml's top level, no auth unless --pier-var sets it)
#     and the peer (its checkout bundled by pier's pinned wrangler, Basic auth
#     hello:world as its dev vars set it) on free ports with fresh persist
#     directories, each under Miniflare (bench/edge-serve.mjs): workerd with
#     nothing in front, as in production, where `wrangler dev`'s proxy chain
#     would cap both near the same few hundred requests per second;
#   - runs the workloads of issue 15 on both, alternating (bench/loadgen suite):
#     manifest GET by tag and by digest at 1 and 64 connections (wrk, the
#     Accept header clients send, OCI and Docker types), GET /v2/ as the HTTP
#     floor, 1 MiB blob GETs on a first read (a miss for pier's edge caches)
#     and on a read after one (a hit), 1 MiB pushes as docker makes them
#     (POST, one PATCH, PUT) and a 256 MiB push in 16 MiB chunks;
#   - measures the CPU time of each Worker's own isolate per kind of request
#     (bench/worker-cpu.mjs: V8's sampling profiler over the inspector);
#   - measures pier alone as bench/edge.sh does (size, per-request latency and
#     CPU of the Worker's process tree);
#   - starts pier's test build (edge-worker/build-test/) and counts the R2, KV
#     and Cache API operations of each kind of request (bench/loadgen ops, the
#     x-pier-test-ops header) under `wrangler dev --env test`.
# Prints and writes one markdown report with the command, date, machine and
# commits. Without the peer it measures pier alone and prints no peer columns.
# It does not build the Worker: run scripts/edge-build.sh and
# scripts/edge-build.sh --test first.
#
# Usage: bench/edge-peer.sh [--reps N] [--duration S] [--small-n N] [--only RE] [--out FILE]
#                           [--pier-var NAME=VALUE]... [--pier-user USER:PASSWORD] [--pier-build DIR] [PEER_DIR]
#   PEER_DIR      a serverless-registry checkout with its dependencies installed
#                 (default $SERVERLESS_REGISTRY_DIR; docs/benchmarks-edge.md says how to get one)
#   --reps N      repetitions of every workload on each registry (default 3)
#   --duration S  seconds of each wrk load (default 3)
#   --small-n N   1 MiB blobs per blob workload and repetition (default 50)
#   --only RE     only the workloads whose id matches RE (ids: v2-c64,
#                 manifest-tag-c1|64, manifest-digest-c1|64, blob-get-miss,
#                 blob-get-hit, push-small-chunked, push-large-chunked)
#   --out FILE    where the report goes (default target/bench/edge-peer-<date>/edge-peer.md)
#   --pier-var NAME=VALUE  a var for pier's Worker over wrangler.toml's (auth,
#                 caching: PIER_AUTH='{...}' and so on; repeatable); also
#                 $PIER_BENCH_VARS, one NAME=VALUE a line
#   --pier-user USER:PASSWORD  Basic credentials on every request to pier
#                 (when a --pier-var turns auth on)
#   --pier-build DIR  pier's production build (default edge-worker/build/,
#                 or $PIER_EDGE_BUILD)
#   --pier-prod SECS  pier set up as a production namespace: auth on, a robot
#                 that pushes and a pull-only robot on bench/** (pushes carry
#                 the first's credentials, GETs and HEADs the second's, both
#                 Basic, checked on every request as the peer's are), and the
#                 namespace policy tag_cache_secs = SECS
#                 (docs/deploy-edge.md#tags-close-to-pullers). Needs the pier
#                 binary for its keys: $PIER_BIN, else target/release/pier.
#   --storage-latency MS  every R2 and KV operation of both Workers waits MS
#                 milliseconds first (bench/edge-serve.mjs): a location far
#                 from the bucket, where a round trip costs what it does in
#                 production; the Cache API, the location's own, stays local
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND="bench/edge-peer.sh${*:+ $*}"

reps=3 duration=3 small_n=50 out="" peer=${SERVERLESS_REGISTRY_DIR:-}
pier_build=${PIER_EDGE_BUILD:-edge-worker/build} pier_user="" pier_vars=() pier_prod="" storage_latency=0
if [ -n "${PIER_BENCH_VARS:-}" ]; then mapfile -t pier_vars <<<"$PIER_BENCH_VARS"; fi
only='^(v2-c64|manifest-(tag|digest)-c(1|64)|blob-get-(miss|hit)|push-small-chunked|push-large-chunked)$'
while [ $# -gt 0 ]; do
  case $1 in
    --reps) reps=$2; shift ;;
    --duration) duration=$2; shift ;;
    --small-n) small_n=$2; shift ;;
    --only) only=$2; shift ;;
    --out) out=$2; shift ;;
    --pier-var) pier_vars+=("$2"); shift ;;
    --pier-user) pier_user=$2; shift ;;
    --pier-build) pier_build=$2; shift ;;
    --pier-prod) pier_prod=$2; shift ;;
    --storage-latency) storage_latency=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "edge-peer.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    *) peer=$1 ;;
  esac
  shift
done

HARNESS_NAME=edge-peer
# shellcheck source=bench/lib.sh
. bench/lib.sh
RUN=$(new_run_dir edge-peer)
out=${out:-$RUN/edge-peer.md}
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

if [ ! -f "$pier_build/index.js" ]; then
  die "no pier build in $pier_build: build the Worker first (scripts/edge-build.sh)"
fi
pier_build=$(cd "$pier_build" && pwd)
[ -f edge-worker/build-test/index.js ] || die "edge-worker/build-test/ is missing: scripts/edge-build.sh --test"
WRANGLER=$ROOT/node_modules/.bin/wrangler
if [ ! -x "$WRANGLER" ] || [ ! -d "$ROOT/node_modules/miniflare" ]; then
  die "no wrangler or miniflare in node_modules: run scripts/install-deps.sh edge"
fi
pier_puller=""
if [ -n "$pier_prod" ]; then
  pier_bin=${PIER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/pier}
  [ -x "$pier_bin" ] || die "--pier-prod needs the pier binary: cargo build --release -p pier-server, or set PIER_BIN"
  robot() { # NAME: the robot's token, its [[auth.robots]] entry as JSON in $scratch/NAME.json
    local printed token digest
    printed=$("$pier_bin" auth new-robot "$1")
    token=$(sed -n 's/^token: //p' <<<"$printed")
    digest=$(sed -n 's/^token_sha256 = "\(.*\)"$/\1/p' <<<"$printed")
    jq -cn --arg name "$1" --arg digest "$digest" '{name: $name, token_sha256: $digest}' >"$scratch/$1.json"
    echo "$token"
  }
  pusher_token=$(robot bench-pusher) puller_token=$(robot bench-puller)
  pier_vars+=("PIER_AUTH=$(jq -cn --slurpfile pusher "$scratch/bench-pusher.json" --slurpfile puller "$scratch/bench-puller.json" \
    '{service: "pier", robots: [$pusher[0], $puller[0]],
      rules: [{repositories: "bench/**", pull: ["bench-pusher", "bench-puller"], push: ["bench-pusher"], delete: ["bench-pusher"]}]}')")
  pier_vars+=("PIER_AUTH_SIGNING_KEYS=$("$pier_bin" auth new-signing-key | jq -c .)")
  pier_vars+=("PIER_POLICY=$(jq -cn --argjson secs "$pier_prod" '[{namespace: "bench/**", tag_cache_secs: $secs}]')")
  pier_user=bench-pusher:$pusher_token pier_puller=bench-puller:$puller_token
fi
pier_var_args=()
for var in "${pier_vars[@]}"; do
  [ -z "$var" ] || pier_var_args+=(--var "$var")
done
if [ -n "$peer" ]; then
  peer=$(cd "$peer" && pwd) || die "no such directory: $peer"
  if [ ! -f "$peer/index.ts" ] || [ ! -d "$peer/node_modules/itty-router" ]; then
    die "$peer is not a serverless-registry checkout with its dependencies (npm install --omit=dev --ignore-scripts in it)"
  fi
fi
ensure_wrk
build_loadgen "$BENCH_DIR/bin"

# start_group NAME STATUS COMMAND...: runs COMMAND, a server on
# 127.0.0.1:$port, in a process group of its own (Node and workerd),
# until GET /v2/ answers STATUS; sets NAME_addr, stopped by stop_worker NAME
# or at exit.
start_group() {
  local name=$1 status=$2; shift 2
  setsid --wait bash -c 'echo $$ >"$0.pgid"; exec "$@"' "$scratch/$name" "$@" >"$RUN/$name.log" 2>&1 &
  local launcher=$!
  printf -v "${name}_addr" '%s' "127.0.0.1:$port"
  WAIT_SECS=120 wait_for "http://127.0.0.1:$port/v2/" "$status" "$launcher" "$RUN/$name.log" ||
    die "$name did not answer on 127.0.0.1:$port (log: $RUN/$name.log)"
  harness_groups+=("$(cat "$scratch/$name.pgid")")
}

# --- the two Workers ---------------------------------------------------------
port=$(free_port) pier_inspector=$(free_port)
start_group pier '200|401' node bench/edge-serve.mjs --script "$pier_build/index.js" --config wrangler.toml \
  --port "$port" --persist "$scratch/pier-state" --inspector-port "$pier_inspector" --storage-latency "$storage_latency" \
  "${pier_var_args[@]}"
PIER=http://${pier_user:+$pier_user@}$pier_addr
pier_commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- core edge-worker 2>/dev/null || echo ' + uncommitted changes')"
log "pier's Worker ($pier_commit, $pier_build) on http://$pier_addr"
worker_cpu_args=("pier=$PIER@$pier_inspector")
[ -z "$pier_puller" ] || worker_cpu_args=(--pull-as "pier=$pier_puller" "${worker_cpu_args[@]}")

ref_args=() peer_commit=""
if [ -n "$peer" ]; then
  # The peer's own wrangler.example.toml, dev environment, outside its checkout.
  cat >"$scratch/peer-wrangler.toml" <<EOF
name = "serverless-registry"
main = "$peer/index.ts"
compatibility_date = "2024-09-09"
compatibility_flags = ["nodejs_compat"]
[[r2_buckets]]
binding = "REGISTRY"
bucket_name = "r2-image-registry-dev"
[vars]
USERNAME = "hello"
PASSWORD = "world"
EOF
  # Bundled as `wrangler deploy` would upload it (offline: --dry-run).
  "$WRANGLER" deploy --dry-run --config "$scratch/peer-wrangler.toml" --outdir "$scratch/peer-bundle" \
    >"$RUN/peer-bundle.log" 2>&1 || die "bundling the peer failed: $RUN/peer-bundle.log"
  port=$(free_port) peer_inspector=$(free_port)
  start_group peer 401 node bench/edge-serve.mjs --script "$scratch/peer-bundle/index.js" \
    --config "$scratch/peer-wrangler.toml" --port "$port" --persist "$scratch/peer-state" --inspector-port "$peer_inspector" \
    --storage-latency "$storage_latency"
  ref_args=(-ref "http://hello:world@$peer_addr")
  worker_cpu_args+=("serverless-registry=http://hello:world@$peer_addr@$peer_inspector")
  peer_commit=$(git -C "$peer" rev-parse --short HEAD 2>/dev/null || echo '?')
  log "serverless-registry ($peer_commit) on http://$peer_addr"
fi

# --- the floor of a 1 MiB GET under workerd -------------------------------------
# First, while pier's isolate has room for the blob in its memory.
floor_table=""
if [[ blob-get-hit =~ $only ]]; then
  log "the floor of a 1 MiB GET (bench/blob-floor.mjs)"
  port=$(free_port)
  start_group floor 200 node bench/edge-serve.mjs --script bench/floor-worker.js --port "$port" \
    --persist "$scratch/floor-state" --compat-date 2024-09-09
  floor_args=("floor=http://$floor_addr" "pier=$PIER")
  [ -z "$pier_puller" ] || floor_args=(--pull-as "pier=$pier_puller" "${floor_args[@]}")
  [ -z "$peer" ] || floor_args+=("serverless-registry=http://hello:world@$peer_addr")
  floor_table=$(node bench/blob-floor.mjs --wrk "$(command -v wrk)" --reps "$reps" --duration "$duration" "${floor_args[@]}" \
    2>"$RUN/blob-floor.err") || die "bench/blob-floor.mjs failed: $(tail -n 5 "$RUN/blob-floor.err")"
  stop_worker floor
fi

# --- side by side ------------------------------------------------------------
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s)
"$LOADGEN" suite -pier "$PIER" ${pier_puller:+-pier-puller "$pier_puller"} "${ref_args[@]}" -reps "$reps" -small-n "$small_n" -duration "${duration}s" \
  -conns 1,64 -only "$only" -wrk "$(command -v wrk)" -out "$RUN/results.jsonl"
elapsed=$(($(date +%s) - t0))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
tables=$("$LOADGEN" report -in "$RUN/results.jsonl" -ref-label serverless-registry -goals "issue 15")

# --- CPU of each Worker's own isolate ------------------------------------------
log "CPU per request of each Worker's isolate (bench/worker-cpu.mjs)"
cpu_table=$(node bench/worker-cpu.mjs --profiles "$RUN/profiles" "${worker_cpu_args[@]}" 2>"$RUN/worker-cpu.err") ||
  die "bench/worker-cpu.mjs failed: $(tail -n 5 "$RUN/worker-cpu.err")"

# --- pier alone: size, latency and CPU per request ----------------------------
log "pier alone (bench/edge.sh)"
PIER_EDGE_BUILD=$pier_build bench/edge.sh --url "$PIER" --pid "$(cat "$scratch/pier.pgid")" --out "$RUN/edge.md" >"$RUN/edge.log" 2>&1 ||
  die "bench/edge.sh failed: $RUN/edge.log"
stop_worker pier
[ -z "$peer" ] || stop_worker peer

# --- round trips per request (the test build) --------------------------------
log "round trips per request (test build)"
start_worker ops 200 --inspector-port "$(free_port)" || die "the test build did not start: $scratch/ops.log"
ops_table=$("$LOADGEN" ops -url "http://$ops_addr") || die "loadgen ops failed"
stop_worker ops

peer_line="not run (no checkout given: pass PEER_DIR or set SERVERLESS_REGISTRY_DIR)."
if [ -n "$peer" ]; then
  peer_line="cloudflare/serverless-registry $peer_commit, its \`index.ts\` bundled by the same wrangler (\`wrangler deploy --dry-run --outdir\`) and served the same way, the \`REGISTRY\` R2 binding persisted to a fresh directory, \`USERNAME\`/\`PASSWORD\` vars hello/world as its \`env.dev\` sets them: every request carries Basic auth, as its README requires."
fi
pier_settings="no vars over wrangler.toml's, so no auth"
if [ ${#pier_vars[@]} -gt 0 ]; then
  pier_settings=$(printf '`%s`, ' "${pier_vars[@]%%=*}")
  pier_settings="vars over wrangler.toml's: ${pier_settings%, }"
fi
[ -z "$pier_user" ] || pier_settings+="; every request with Basic credentials"
if [ -n "$pier_prod" ]; then
  pier_settings="set up as a production namespace (\`--pier-prod $pier_prod\`): auth on, pushes by a robot that may push to bench/**, GETs and HEADs by a pull-only robot, both with Basic credentials on every request (a robot token is checked by its SHA-256), and the policy \`tag_cache_secs = $pier_prod\` on bench/**"
fi

latency_line=""
if [ "$storage_latency" != 0 ]; then
  latency_line=$'\n'"- **Storage far from the location**: every R2 and KV operation of both Workers waits $storage_latency ms before it starts (\`--storage-latency\`: bench/edge-serve.mjs wraps their bindings); the Cache API, the location's own, is not delayed."
fi
mkdir -p "$(dirname "$out")"
{
  cat <<EOF
# Edge: pier's Worker beside serverless-registry

Produced by \`$COMMAND\` ($(date -u '+%Y-%m-%d %H:%M UTC'); workloads took ${elapsed} s).

- pier: $pier_commit, the production build (\`${pier_build#"$ROOT"/}\`, \`scripts/edge-build.sh\`) with the bindings and vars of wrangler.toml's top level; $pier_settings.
- Peer: $peer_line
- Each Worker under Miniflare $(node -p "require('$ROOT/node_modules/miniflare/package.json').version") (\`bench/edge-serve.mjs\`: workerd with nothing in front of it, as in production; R2, KV and the Cache API simulated on disk, fresh persist directories), not \`wrangler dev\`, whose proxy chain caps any Worker near the same few hundred requests per second on this machine; wrangler $("$WRANGLER" --version 2>/dev/null | tail -n 1) (pier's pinned one) bundles the peer; Node $(node --version).$latency_line
- Load generators: bench/loadgen ($(go version | awk '{print $3}'), HTTP/1.1 keep-alive) and $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}') (manifest GETs), on the same machine.
- Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r); load average $load_start at the start, $load_end at the end.

## Getting the peer

cloudflare/serverless-registry is a repository, not a package, and is never
committed here. Clone it outside pier's tree, install its runtime dependencies
(its own wrangler is not needed: pier's pinned one runs it) and pass the
directory:

\`\`\`
git clone https://github.com/cloudflare/serverless-registry /work/peers/serverless-registry
cd /work/peers/serverless-registry && npm install --omit=dev --no-audit --no-fund --ignore-scripts
cd - && bench/edge-peer.sh /work/peers/serverless-registry    # or SERVERLESS_REGISTRY_DIR=...
\`\`\`

(npm warns that the peer asks for Node 24; it runs under the Node 22 that pier's
wrangler uses. Where GitHub is out of reach, clone from a mirror of it.) The
script runs the peer as its \`wrangler.example.toml\` sets up the \`dev\`
environment, from a config file of its own: the peer's checkout is not touched.

pier's vars for a run (auth, caching) are given with \`--pier-var NAME=VALUE\`
(or \`PIER_BENCH_VARS\`, one a line) and, when auth is on, the credentials with
\`--pier-user USER:PASSWORD\`; \`--pier-build DIR\` (or \`PIER_EDGE_BUILD\`)
measures another build than \`edge-worker/build/\`.

## Side by side

Each workload runs on both, alternating (pier then the peer on odd repetitions,
the peer then pier on even ones); the figure is the median of $reps
repetition(s). Both Workers, the load generators and whatever else runs share
the cores: trust the ratio more than the absolute figures.

$tables

$(if [ -n "$floor_table" ]; then cat <<FLOOR
## The floor of a 1 MiB GET

How fast workerd answers a 1 MiB GET at all on this machine
(\`bench/blob-floor.mjs\`): a Worker answering a constant 1 MiB buffer
(\`bench/floor-worker.js\`: no storage, no registry code) beside each
registry's GET of a 1 MiB blob read three times before, each loaded by wrk on
one connection for ${duration}s, in turns, $reps time(s). Unlike the rows above
(bench/loadgen: Go's HTTP client, 50 different blobs, which pier's default
memory budget of 32 MiB holds 32 of, the other 18 being Cache API hits),
this is one blob and a client in C, so these are closer to the servers' own
rates; one GET per target checks the digest after the run.

$floor_table

FLOOR
fi)
## CPU per request of each Worker's own code

The time each Worker's own isolate worked per request (\`bench/worker-cpu.mjs\`),
not its process tree: workerd's HTTP handling, Miniflare's entry Worker and the
R2, KV and Cache API simulators are left out. V8's sampling profiler runs over
the inspector (100 µs interval) around n sequential requests of one kind (the table's n) on
one kept-alive connection, after a warm-up; V8 samples an isolate only while it
holds the isolate's lock, so each sample taken while it worked (all but
\`(idle)\`: JavaScript, wasm, garbage collection, the runtime's calls) counts one
sampler tick, measured from back-to-back samples. Profiling itself slows the
isolate down (a signal and a stack walk every tick): read the figures as upper
bounds and compare them with each other. A blob read before is, for pier
with its default settings, served from its isolate's memory (from its
second read on). The profiles are kept in the run
directory (\`profiles/*.cpuprofile\`, for DevTools).

$cpu_table

## Round trips per request (pier's test build)

The \`x-pier-test-ops\` header of pier's test build (\`edge-worker/src/counted.rs\`)
for one request of each kind (\`loadgen ops\`), in the order a client makes
them: the R2, KV and Cache API operations made by the time the response was
built. Filling the caches after a miss (one more R2 read, then a KV or Cache
API write, under \`waitUntil\`) is in it only as far as it got by then, so a first read's row
may differ from run to run; the other rows miss nothing and do not. The
isolate that took the push keeps what it wrote, so its first reads fetch only
blob bytes over 64 KiB; "another isolate" rows are read after the test routes
made it forget them, and "cached" rows once the test routes say the edge
caches hold the object.

$ops_table

"Cached" rows come from the isolate's memory where it read or wrote the object in the
last 10 s (manifests, blob records and layer links; blob bytes under 64 KiB,
and larger ones from their second read on, \`PIER_HOT_BLOB_BYTES\`), else
from KV and the Cache API: no row by digest reaches R2. A manifest by tag
reads the tag from R2 (the pull-only clients of a namespace with
\`tag_cache_secs\` are served it from memory, docs/deploy-edge.md).
\`tests/edge/edge.test.mjs\` (round trips per request) asserts these counts for a
cached pull, GET and HEAD alike, so a change that adds a trip fails it: by
digest no R2 operation, and none at all once in memory; by tag 1 R2 read; a
1 MiB blob 1 Cache API match on its second read, then none (the isolate's
memory, \`PIER_HOT_BLOB_BYTES\`).

## pier's Worker alone (bench/edge.sh)
EOF
  sed '1,/^Produced by/d; s/^## /### /' "$RUN/edge.md"
} >"$out"

echo
cat "$out"
echo
log "written: $out (results and logs: $RUN)"
