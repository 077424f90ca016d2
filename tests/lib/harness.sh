# The one harness of pier's shell suites and scripts (scripts/test.sh,
# scripts/test-edge.sh, tests/*/run.sh, tests/edge/shared-layout.sh, and
# bench/*.sh through bench/lib.sh), so that each says what it tests and none
# re-implements how: the tools on the PATH, the cargo target directory and
# the pier binary, a scratch directory, what is stopped and removed when the
# run ends, free ports, waiting for servers and conditions, pier servers and
# test Workers, and (tests/lib/checks.sh) checks counted PASS/FAIL with their
# logs kept.
#
# Sourced from the repository root with HARNESS_NAME set, which names the
# scratch directory $scratch (${TMPDIR:-/tmp}/pier-NAME.XXXXXX, with logs/
# and work/ in it). At exit the processes the harness started are stopped
# and $scratch is removed, unless KEEP=1 or the run failed (then its path is
# printed). Sourcing does that and exports PATH and CARGO_TARGET_DIR, nothing
# more: a suite calls need_pier, need_tools and the rest for what it uses.

export PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PIER_TOOLS/node/bin:$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
# Build outputs live outside the clone, so fresh clones (CI) reuse them and a
# suite run alone finds the binary scripts/test.sh built.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pier/target}

# ------------------------------------------------------------------ tools and binary

# need_tools TOOL...: every TOOL is on the PATH; otherwise the run ends (exit 2).
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh installs it)" >&2; exit 2; }
  done
}

# build_pier [release]: builds pier (the debug profile, or release) and
# exports PIER_BIN, its absolute path.
build_pier() {
  local profile=${1:-debug} flags=()
  [ "$profile" = release ] && flags=(--release)
  cargo build -q -p pier-server "${flags[@]}" || return 1
  PIER_BIN=$(realpath "$CARGO_TARGET_DIR/$profile/pier") && export PIER_BIN
}

# need_pier: the pier binary the caller named in PIER_BIN, else the debug
# build (built now); exported as an absolute path for what the run starts.
need_pier() {
  [ -n "${PIER_BIN:-}" ] || { build_pier; return; }
  [ -x "$PIER_BIN" ] || { echo "PIER_BIN=$PIER_BIN is not an executable" >&2; return 1; }
  PIER_BIN=$(realpath "$PIER_BIN") && export PIER_BIN
}

# pier ARGS...: the binary under test (`pier copy`, `pier auth`, `pier gc` in checks).
pier() { "$PIER_BIN" "$@"; }

# ------------------------------------------------------------------ scratch and exit

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pier-${HARNESS_NAME:?set HARNESS_NAME before sourcing tests/lib/harness.sh}.XXXXXX")
mkdir -p "$scratch/logs" "$scratch/work"
harness_pids=() harness_groups=() harness_exit_commands=()

# kill_at_exit PID: a process to stop when the run ends.
kill_at_exit() { harness_pids+=("$1"); }

# at_exit COMMAND: a command (one string, run with eval) for the end of the
# run, before the harness stops its processes; commands run in the order given.
at_exit() { harness_exit_commands+=("$1"); }

harness_exit() {
  local status=$? keep= command pid group
  set +e
  if [ "${KEEP:-}" = 1 ] || [ "$status" -ne 0 ]; then keep=1; echo "scratch kept in $scratch"; fi
  for command in "${harness_exit_commands[@]}"; do eval "$command"; done
  for pid in "${harness_pids[@]}"; do kill "$pid" 2>/dev/null; done
  # wrangler and workerd run in a process group of their own.
  for group in "${harness_groups[@]}"; do kill -- "-$group" 2>/dev/null; done
  [ ${#harness_pids[@]} -eq 0 ] || wait "${harness_pids[@]}" 2>/dev/null
  [ -n "$keep" ] || rm -rf "$scratch"
}
trap harness_exit EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ ports and waiting

# free_port: a TCP port of 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# answers URL STATUS [CURL_ARGS...]: URL answers with STATUS, an extended
# regular expression (200, 200|401; 000 is no answer at all).
answers() {
  local url=$1 status=$2 got; shift 2
  got=$(curl -s --noproxy '*' -m 10 -o /dev/null -w '%{http_code}' "$@" "$url" || true)
  [[ $got =~ ^($status)$ ]]
}

# eventually CMD...: CMD succeeds, tried every 0.1 s for at most $WAIT_SECS
# seconds (default 30) and, if WHILE_PID is set, while that process lives.
# If it never does: says so and runs CMD once more, its output shown.
eventually() {
  local deadline=$((SECONDS + ${WAIT_SECS:-30}))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || { [ -n "${WHILE_PID:-}" ] && ! kill -0 "$WHILE_PID" 2>/dev/null; }; then
      echo "never true: $*"
      "$@"
      return
    fi
    sleep 0.1
  done
}

# wait_for URL [STATUS [PID [LOG [CURL_ARGS...]]]]: eventually URL answers
# STATUS (default 200), while the server PID lives; if not, the end of its
# LOG is shown.
wait_for() {
  WHILE_PID=${3:-} eventually answers "$1" "${2:-200}" "${@:5}" && return 0
  [ -z "${4:-}" ] || tail -n 30 "$4"
  return 1
}

# refused ADDR: eventually ADDR refuses connections.
refused() { eventually answers "http://$1/v2/" 000; }

# ------------------------------------------------------------------ servers

# register NAME PORT PID [HOST]: a server on HOST:PORT (default 127.0.0.1),
# stopped at exit; sets NAME_addr (host:port) and NAME_pid.
register() {
  kill_at_exit "$3"
  printf -v "${1}_addr" '%s' "${4:-127.0.0.1}:$2"
  printf -v "${1}_pid" '%s' "$3"
}

# stop NAME: stops a server register knows, until its port refuses.
stop() {
  local pid_var=${1}_pid addr_var=${1}_addr
  kill "${!pid_var:-}" 2>/dev/null || true
  # A child of this shell has let go of its files and locks once waited for.
  wait "${!pid_var:-}" 2>/dev/null || true
  refused "${!addr_var:-}"
}

# start_pier [--port N] [--log FILE] [--host H] [--ca FILE [--client CERT KEY]] NAME [SERVE_ARGS...]:
# `pier serve` on 127.0.0.1 (or H) on a free port (or N, to restart where it
# listened), its data in $scratch/NAME-data (kept across restarts), its
# output appended to $scratch/NAME.log (or FILE); registered as NAME once
# /healthz answers: over HTTPS trusting the CA certificate FILE with --ca
# (the TLS flags are among SERVE_ARGS; --client: asked with that client
# certificate, for servers that require one), else plain HTTP. Variables given
# with the call (PIER_LOG=..., credentials) reach the server.
start_pier() {
  local port= log= host=127.0.0.1 ca= client=()
  while :; do
    case ${1:-} in
      --client) client=(--cert "$2" --key "$3"); shift 3 ;;
      --port) port=$2; shift 2 ;;
      --log) log=$2; shift 2 ;;
      --host) host=$2; shift 2 ;;
      --ca) ca=$2; shift 2 ;;
      *) break ;;
    esac
  done
  local name=$1; shift
  [ -n "${PIER_BIN:-}" ] || { echo "start_pier $name: no pier binary (need_pier)"; return 1; }
  port=${port:-$(free_port)} log=${log:-$scratch/$name.log}
  "$PIER_BIN" serve --listen "$host:$port" --data-dir "$scratch/$name-data" "$@" >>"$log" 2>&1 &
  register "$name" "$port" $! "$host"
  if [ -n "$ca" ]; then
    wait_for "https://$host:$port/healthz" 200 $! "$log" --cacert "$ca" "${client[@]}"
  else
    wait_for "http://$host:$port/healthz" 200 $! "$log"
  fi
}

# start_reference NAME: the reference registry (CNCF Distribution) on a free
# port, its data in $scratch/NAME-data; registered as NAME.
start_reference() {
  local name=$1 port; port=$(free_port)
  cat >"$scratch/$name.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $scratch/$name-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: pier-mirror-test
YML
  # (REGISTRY_* variables would override its configuration: skopeo's auth file is one)
  env -u REGISTRY_AUTH_FILE docker-registry serve "$scratch/$name.yml" 2>"$scratch/$name.log" &
  register "$name" "$port" $!
  wait_for "http://127.0.0.1:$port/v2/" 200 $! "$scratch/$name.log"
}

# toml_tables NAME JSON: a JSON array of tables (a Worker's var) as the
# native configuration's [[NAME]] tables.
toml_tables() {
  jq -r --arg name "$1" '
    def toml: if type == "object" then "{ \(to_entries | map("\(.key | tojson) = \(.value | toml)") | join(", ")) }"
      elif type == "array" then "[\(map(toml) | join(", "))]"
      else tojson end;
    .[] | "[[\($name)]]", (to_entries[] | "\(.key) = \(.value | toml)"), ""' <<<"$2"
}

# start_minio NAME BUCKET...: a MinIO server (scripts/install-deps.sh
# scaleout installs it) on a free port, its data in $scratch/NAME, with the
# buckets made; exports AWS_* credentials for it and sets NAME_endpoint.
start_minio() {
  local name=$1 port bucket status; shift
  export AWS_ACCESS_KEY_ID=pier-test AWS_SECRET_ACCESS_KEY=pier-test-secret AWS_REGION=us-east-1
  port=$(free_port)
  MINIO_ROOT_USER=$AWS_ACCESS_KEY_ID MINIO_ROOT_PASSWORD=$AWS_SECRET_ACCESS_KEY \
    minio server "$scratch/$name" --address "127.0.0.1:$port" --console-address "127.0.0.1:$(free_port)" \
    >"$scratch/$name.log" 2>&1 &
  kill_at_exit $!
  wait_for "http://127.0.0.1:$port/minio/health/live" 200 $! "$scratch/$name.log" || return 1
  printf -v "${name}_endpoint" '%s' "http://127.0.0.1:$port"
  for bucket in "$@"; do
    # MinIO is live before it is ready: it answers 503 until it has initialised.
    WAIT_SECS=30 eventually minio_bucket_made "$port" "$bucket" || return 1
  done
}
minio_bucket_made() { # PORT BUCKET
  local status
  status=$(curl -sS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -X PUT -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/$2")
  [ "$status" = 200 ]
}

# ------------------------------------------------------------------ test Workers

# worker_suites_wanted: the Worker's toolchain is installed
# (scripts/install-deps.sh edge) and PIER_SKIP_EDGE=1 does not leave it out.
worker_suites_wanted() {
  [ "${PIER_SKIP_EDGE:-}" != 1 ] && [ -x node_modules/.bin/wrangler ] && command -v worker-build >/dev/null
}

# build_test_worker: the test build of the edge Worker, built every time
# (incrementally): a build left from older sources would pass for this one.
# PIER_EDGE_PREBUILT=1 skips it, for a caller that has just built it.
build_test_worker() {
  scripts/edge-build.sh --test >"$scratch/edge-build.log" 2>&1 || { tail -n 30 "$scratch/edge-build.log"; return 1; }
}

# start_worker NAME STATUS [WRANGLER_ARGS...]: the test Worker under local
# workerd (scripts/edge-dev.sh --env test) on a free port, its state in
# $scratch/NAME-state, ready when GET /v2/ answers STATUS; sets NAME_addr.
# wrangler and workerd run in a process group of their own (its id in
# $scratch/NAME.pgid), stopped at exit or by stop_worker.
start_worker() {
  local name=$1 status=$2 port ready=0; shift 2
  port=$(free_port)
  PIER_EDGE_PREBUILT=1 setsid --wait bash -c 'echo $$ >"$0.pgid"; exec scripts/edge-dev.sh "$@"' "$scratch/$name" \
    --port "$port" --persist "$scratch/$name-state" --env test -- "$@" >"$scratch/$name.log" 2>&1 &
  local launcher=$!
  printf -v "${name}_addr" '%s' "127.0.0.1:$port"
  # The first start of workerd on a busy machine takes a while.
  WAIT_SECS=120 wait_for "http://127.0.0.1:$port/v2/" "$status" "$launcher" "$scratch/$name.log" || ready=1
  [ -s "$scratch/$name.pgid" ] && harness_groups+=("$(cat "$scratch/$name.pgid")")
  return $ready
}

# stop_worker NAME: stops a Worker start_worker started, until its port refuses.
stop_worker() {
  local group addr_var=${1}_addr kept=() kept_group
  group=$(cat "$scratch/$1.pgid")
  kill -- "-$group" 2>/dev/null
  for kept_group in "${harness_groups[@]}"; do [ "$kept_group" = "$group" ] || kept+=("$kept_group"); done
  harness_groups=("${kept[@]}")
  refused "${!addr_var}"
}

# import_into_worker DATA_DIR WORKER_ADDR: every object of a native server's
# data directory (its files but dot-files and dot-directories, the store's
# scratch space), key for key, into a test Worker's R2 bucket through its
# test-only raw object route: what a native instance writing to the
# Worker's bucket would have left there.
import_into_worker() {
  local data=$1 worker=$2 file key count=0
  while IFS= read -r -d '' file; do
    key=${file#"$data"/}
    curl -sf -X PUT --data-binary @"$file" "http://$worker/_pier_test/objects/$key" >/dev/null || {
      echo "import of $key failed"; return 1; }
    count=$((count + 1))
  done < <(find "$data" -type f -not -path '*/.*' -print0)
  echo "imported $count objects"
  [ "$count" -gt 0 ]
}

# shellcheck source=tests/lib/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"
