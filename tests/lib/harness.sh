# The harness of the suites that start their own pier servers and check them
# with real clients (tests/mirror/run.sh, tests/events/run.sh): tools on the
# PATH, the binary, a scratch directory removed at exit, servers (and test
# Workers under local workerd) on free ports stopped at exit, and checks
# counted PASS/FAIL with their logs kept.
# Sourced from the repository root with HARNESS_NAME set (it names the
# scratch directory); the caller prints the summary from $npass and $nfail.
PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PIER_TOOLS/node/bin:$PATH"
for tool in node jq curl skopeo crane docker-registry sha256sum; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/install-deps.sh clients)" >&2; exit 2; }
done
if [ -z "${PIER_BIN:-}" ]; then
  cargo build -q -p pier-server || exit 2
  PIER_BIN=${CARGO_TARGET_DIR:-target}/debug/pier
fi
PIER_BIN=$(cd "$(dirname "$PIER_BIN")" && pwd)/$(basename "$PIER_BIN")

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pier-${HARNESS_NAME:?}.XXXXXX")
mkdir -p "$scratch/logs" "$scratch/work"
pids=() edge_groups=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  # wrangler and workerd run in a process group of their own.
  for group in "${edge_groups[@]}"; do kill -- "-$group" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${KEEP:-}" ] || [ "$rc" -ne 0 ]; then echo "scratch kept in $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# wait_http URL STATUS PID LOG: until URL answers STATUS (the process must live).
wait_http() {
  for _ in $(seq 1 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "$2" ] && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.1
  done
  echo "no answer $2 from $1:"; cat "$4"; return 1
}

# register NAME PORT PID: a server to stop at the end; sets NAME_addr, NAME_pid.
register() {
  pids+=("$3")
  printf -v "${1}_addr" '%s' "127.0.0.1:$2"
  printf -v "${1}_pid" '%s' "$3"
}

# start_pier NAME [serve args...]: a pier on a free port (or $PORT); sets
# NAME_addr, NAME_pid. Its data stays in $scratch/NAME-data across restarts.
start_pier() {
  local name=$1; shift
  local port=${PORT:-$(free_port)}
  "$PIER_BIN" serve --listen "127.0.0.1:$port" --data-dir "$scratch/$name-data" "$@" 2>>"$scratch/$name.log" &
  register "$name" "$port" $!
  wait_http "http://127.0.0.1:$port/healthz" 200 "$!" "$scratch/$name.log"
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
# wrangler and workerd run in a process group of their own, stopped at exit
# or by stop_worker.
start_worker() {
  local name=$1 status=$2 port; shift 2
  port=$(free_port)
  PIER_EDGE_PREBUILT=1 setsid --wait bash -c 'echo $$ >"$0.pgid"; exec scripts/edge-dev.sh "$@"' "$scratch/$name" \
    --port "$port" --persist "$scratch/$name-state" --env test -- "$@" >"$scratch/$name.log" 2>&1 &
  local launcher=$! ready=
  printf -v "${name}_addr" '%s' "127.0.0.1:$port"
  # The first start of workerd on a busy machine takes a while.
  for _ in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" = "$status" ] && { ready=1; break; }
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$scratch/$name.pgid" ] && edge_groups+=("$(cat "$scratch/$name.pgid")")
  [ -n "$ready" ] || { echo "the $name Worker never answered $status on port $port:"; tail -n 30 "$scratch/$name.log"; return 1; }
}

# stop_worker NAME: stops a Worker start_worker started, until its port refuses.
stop_worker() {
  local group addr_var=${1}_addr kept=() kept_group
  group=$(cat "$scratch/$1.pgid")
  kill -- "-$group" 2>/dev/null
  for kept_group in "${edge_groups[@]}"; do [ "$kept_group" = "$group" ] || kept+=("$kept_group"); done
  edge_groups=("${kept[@]}")
  refused "${!addr_var}"
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

# worker_suites_wanted: the Worker's toolchain is installed
# (scripts/install-deps.sh edge) and PIER_SKIP_EDGE=1 does not leave it out.
worker_suites_wanted() {
  [ "${PIER_SKIP_EDGE:-}" != 1 ] && [ -x node_modules/.bin/wrangler ] && command -v worker-build >/dev/null
}

# start_reference NAME: the reference registry (CNCF Distribution) on a free port.
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
  wait_http "http://127.0.0.1:$port/v2/" 200 "$!" "$scratch/$name.log"
}

# eventually CMD...: CMD succeeds within a bounded number of tries (30 s at most).
eventually() {
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "never true: $*"; "$@"
}

# refused ADDR: waits until ADDR refuses connections.
refused() {
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/v2/")" = 000 ] && return 0
    sleep 0.1
  done
  echo "$1 still answers"; return 1
}

# stop PID ADDR: stops a server and waits until its port refuses connections.
stop() {
  kill "$1" 2>/dev/null || true
  refused "$2"
}

# shellcheck source=tests/lib/checks.sh
source "$(dirname "${BASH_SOURCE[0]}")/checks.sh"

echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$scratch/policy.json"
mkdir -p "$scratch/docker"; echo '{"auths":{}}' >"$scratch/docker/config.json"
export DOCKER_CONFIG="$scratch/docker" REGISTRY_AUTH_FILE="$scratch/docker/config.json"
SKOPEO=(skopeo --policy "$scratch/policy.json")
pier() { "$PIER_BIN" "$@"; }

# The manifest bytes' digest as skopeo reads them (docker:// or oci:).
raw_digest() { echo "sha256:$("${SKOPEO[@]}" inspect --tls-verify=false --raw "$1" | sha256sum | cut -d' ' -f1)"; }

same_manifest() { # REF-A REF-B: byte-identical manifests (skopeo inspect --raw)
  local a b; a=$(raw_digest "$1"); b=$(raw_digest "$2")
  echo "$1 $a"; echo "$2 $b"
  [ "$a" = "$b" ]
}

repo_of() { case $1 in *@*) echo "${1%@*}" ;; *) echo "${1%:*}" ;; esac; }

same_blobs() { # REF-A REF-B: every layer and config has the same bytes in both
  local layer ref
  for layer in $(crane manifest --insecure "$1" | jq -r '.config.digest, .layers[].digest'); do
    for ref in "$1" "$2"; do
      [ "$(crane blob --insecure "$(repo_of "$ref")@$layer" | sha256sum | cut -d' ' -f1)" = "${layer#sha256:}" ]
    done
  done
}

# attach REPO@DIGEST ARTIFACT-TYPE TEXT: a referrer of that manifest (a
# signature, say) pushed with oras, TEXT as its one layer; prints its digest.
attach() {
  local file; file=$(mktemp "$scratch/work/attached.XXXXXX")
  printf '%s' "$3" >"$file"
  (cd "$(dirname "$file")" && oras attach --plain-http --artifact-type "$2" --format json \
    "$1" "$(basename "$file"):application/vnd.example.attached.v1+json") | jq -er .digest
}

# referrers_of REGISTRY REPO DIGEST: the digests the referrers API lists, sorted.
referrers_of() { curl -fs "http://$1/v2/$2/referrers/$3" | jq -r '.manifests[].digest' | sort; }

# make_image REF SIZE [crane flags]: a one-layer image of SIZE random bytes.
make_image() {
  local dir; dir=$(mktemp -d "$scratch/work/layer.XXXXXX")
  head -c "$2" /dev/urandom >"$dir/data"
  tar -C "$dir" -cf "$dir.tar" data
  crane append --insecure "${@:3}" -f "$dir.tar" -t "$1" >/dev/null
}
