#!/usr/bin/env bash
# Signature-gated promotion and pulls (docs/lifecycle.md, "Signed releases
# only in prod") with the real cosign client: keys made by `cosign
# generate-key-pair`, images signed without a transparency log, over plain
# HTTP, in cosign's tag mode (`sha256-<hex>.sig`) and its referrers mode
# (`--registry-referrers-mode=oci-1-1`). The same checks (shared.sh) run
# against each target:
#   native  a pier with a [[policy]] table (prod/** requires the CI key, read
#           from its file) and a [[replicate]] rule ci/** tags v* -> prod/**
#           (native.sh);
#   edge    the test Worker under local workerd with the same tables in its
#           PIER_POLICY (the key as PEM text) and PIER_REPLICATE vars (edge.sh).
# What they check:
#   - an image signed in ci/ by the CI key is promoted to prod/ with its
#     signature, is pullable there (crane, skopeo) and `cosign verify`
#     passes against prod/ (tag mode, and referrers mode);
#   - an unsigned image is not promoted, the refusal's reason is a dead
#     letter in GET /_pier/events?dead=true; one signed by another key, or
#     whose signature was tampered with (payload edited, signature swapped
#     for one of another image), is refused the same way;
#   - a signature pushed after the image (the refusal already recorded)
#     promotes it;
#   - in prod/ a manifest pushed directly is pulled (GET, HEAD) only once
#     signed: 403 DENIED naming the digest and the policy before; the
#     signatures themselves stay pullable, an image tagged like one does not;
#     a narrower policy without keys (prod/open/**) exempts its namespace;
#   - an index signed with `cosign sign --recursive` is promoted and its
#     children pulled by digest in prod/; signed without it, its children
#     are refused;
#   - a configuration with a bad key or a bad namespace glob is refused at
#     start, naming the policy.
#
# Usage: tests/signing/run.sh [native|edge]...
#        (default: native, and edge where the Worker toolchain is installed,
#        unless PIER_SKIP_EDGE=1)
# Env:   PIER_BIN  the pier binary [default: build it]
#        PIER_EDGE_PREBUILT=1  edge: use edge-worker/build-test/ as it is
#        KEEP=1    keep the scratch directory
# Output: one line per check; last line "signing: N passed, N failed";
#         exit 1 if anything failed, 2 on setup problems.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."

targets=("$@")
for target in "${targets[@]}"; do
  case $target in
    native | edge) ;;
    *) echo "usage: $0 [native|edge]..." >&2; exit 2 ;;
  esac
done

HARNESS_NAME=signing
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
scripts/install-deps.sh signing >"$scratch/install-cosign.log" 2>&1 ||
  { echo "cosign did not install: $scratch/install-cosign.log"; tail -n 20 "$scratch/install-cosign.log"; exit 2; }
need_tools jq curl skopeo crane oras cosign
need_pier || exit 2

if [ ${#targets[@]} -eq 0 ]; then
  targets=(native)
  if worker_suites_wanted; then
    targets+=(edge)
  fi
fi
# shellcheck source=tests/signing/shared.sh
source "$here/shared.sh"
make_keys || exit 2
for target in "${targets[@]}"; do
  echo; echo "==> $target"
  # shellcheck source=/dev/null
  source "$here/$target.sh"
done

summary signing
