# bench/lib.sh: helpers shared by bench/run.sh and bench/edge.sh (sourced, not
# run, after tests/lib/harness.sh, which gives them ports, servers and
# waiting): logging, the load generator's build and wrk's install.

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] ERROR: $*" >&2; exit 1; }

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
