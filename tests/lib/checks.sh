# Pass/fail bookkeeping of the shell suites, and checks run in a subshell
# with their log kept; sourced by tests/lib/harness.sh (so check needs its
# $scratch), and alone by tests/gc/edge-stress.sh (record and summary only).
# Counts in npass, nfail and failed.
npass=0 nfail=0 failed=()
record() { # name rc
  if [ "$2" -eq 0 ]; then npass=$((npass + 1)); echo "PASS  $1"; else nfail=$((nfail + 1)); failed+=("$1"); echo "FAIL  $1"; fi
}
# check NAME FUNCTION [ARGS...]: a check in a subshell with set -e, log kept.
check() {
  local name=$1; shift
  local log="$scratch/logs/$(printf '%02d' $((npass + nfail + 1)))-${name//[^A-Za-z0-9._-]/_}.log"
  ( set -euo pipefail; cd "$scratch/work"; "$@" ) >"$log" 2>&1
  local rc=$?
  record "$name" $rc
  [ $rc -eq 0 ] || tail -n 20 "$log" | sed 's/^/      /'
}
fails() { if "$@"; then echo "unexpectedly succeeded: $*"; return 1; fi; }
# summary SUITE: the failed checks and the counts; fails if any check did.
summary() {
  echo
  if [ $nfail -gt 0 ]; then
    echo "failed:"; printf '  - %s\n' "${failed[@]}"
  fi
  echo "$1: $npass passed, $nfail failed"
  [ $nfail -eq 0 ]
}
