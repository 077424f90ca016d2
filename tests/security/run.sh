#!/usr/bin/env bash
# The adversarial suite: one part per threat of docs/security.md, each trying
# what an attacker or a misbehaving peer would (a hostile upstream, a crafted
# manifest, a flood of tiny requests) against servers the part starts itself.
# Every part in tests/security/parts/ is sourced once per deployment with
# $target set to `native` or `edge`; a part that does not apply to a
# deployment says so and returns.
#
# Usage: tests/security/run.sh [native|edge]...
#        (default: native, and edge where the Worker toolchain is installed,
#        unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it]
#        PIER_EDGE_PREBUILT=1  use edge-worker/build-test/ as it is
#        ONLY=PATTERN  run only the parts whose file name matches PATTERN
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "security: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

HARNESS_NAME=security
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools node jq curl sha256sum skopeo crane oras
need_pier || exit 2

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(native)
  worker_suites_wanted && targets+=(edge)
fi
for target in "${targets[@]}"; do
  case $target in
    native) ;;
    edge) build_test_worker || exit 2 ;;
    *) echo "usage: $0 [native|edge]..." >&2; exit 2 ;;
  esac
  for part in "$here"/parts/*.sh; do
    [ -f "$part" ] || continue
    case $(basename "$part") in *${ONLY:-}*) ;; *) continue ;; esac
    echo; echo "==> $target: $(basename "$part" .sh)"
    # shellcheck source=/dev/null
    source "$part"
  done
done

summary security
