# bench/lib.sh: what the benchmark scripts share (sourced, not run, from the
# repository root with HARNESS_NAME set): the test harness (ports, servers,
# waiting, a scratch directory), where runs keep their results, logging, the
# load generator's build and wrk's install.

# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
BENCH_SRC=$PWD/bench
BENCH_DIR=${BENCH_DIR:-$PWD/target/bench}

# new_run_dir KIND: a fresh directory for one run's results and logs,
# $BENCH_DIR/KIND-<date>.
new_run_dir() {
  local dir; dir=$BENCH_DIR/$1-$(date -u +%Y%m%dT%H%M%SZ)
  mkdir -p "$dir" && echo "$dir"
}

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
