# bench/lib.sh: helpers shared by bench/run.sh and bench/edge.sh (sourced, not run):
# logging, the load generator's build, wrk's install and waiting for a registry.

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] ERROR: $*" >&2; exit 1; }

export PATH="/usr/local/go/bin:$HOME/.cargo/bin:$PATH"

# build_loadgen DIR: builds bench/loadgen into DIR/loadgen and sets LOADGEN.
build_loadgen() {
  command -v go >/dev/null || die "go is required (Go >= 1.24)"
  mkdir -p "$1"
  LOADGEN=$1/loadgen
  log "building the load generator"
  (cd "$BENCH_SRC/loadgen" && GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0 go build -o "$LOADGEN" .) ||
    die "go build bench/loadgen failed"
}

# ensure_wrk: installs Debian's wrk if it is missing.
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  log "installing wrk (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends wrk >/dev/null; } ||
    die "could not install wrk (apt-get install wrk)"
}

# wait_ready URL PID NAME LOGFILE SECONDS: waits until URL/v2/ answers 200 or 401.
wait_ready() {
  local deadline=$(($(date +%s) + ${5:-30}))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ -n "$2" ] && ! kill -0 "$2" 2>/dev/null; then die "$3 exited at start; see $4"; fi
    if curl -s --noproxy '*' -o /dev/null -m 2 -w '%{http_code}' "$1/v2/" | grep -qE '^(200|401)$'; then return 0; fi
    sleep 0.1
  done
  die "$3 did not answer on $1/v2/ within ${5:-30} s; see $4"
}
