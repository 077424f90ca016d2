#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite against a registry over plain
# HTTP with OCI_VERSION=dev and every feature toggle switched on, then counts
# the leaf test cases in junit.xml by status.
#
# Usage: tests/conformance/run.sh [host:port]      (or env REGISTRY)
# Env:   USERNAME / PASSWORD   credentials (optional)
#        OUT                   results directory (default: a new temp dir)
#        OCI_FILTER_TEST       run only one branch, e.g. "OCI Conformance Test/sha256 blobs"
#        OCI_LOG               suite log level (default warn)
#        OCI_*                 any suite setting given in the environment wins
#                              over the defaults below
# Output: last line "conformance: N passed, N failed, N skipped"; exit 1 if any
#         test failed (or errored), 2 on usage/setup problems.
set -uo pipefail

PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PATH"

REGISTRY=${1:-${REGISTRY:-}}
if [ -z "$REGISTRY" ]; then
  echo "usage: $0 host:port   (or set REGISTRY)" >&2
  exit 2
fi
command -v conformance >/dev/null || {
  echo "conformance binary not found (run scripts/install-deps.sh core)" >&2
  exit 2
}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/pier-conformance.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

run_id="$(date +%s)-$$"

# Registry and run settings.
export OCI_REGISTRY="$REGISTRY"
export OCI_TLS=${OCI_TLS:-disabled}
export OCI_VERSION=${OCI_VERSION:-dev}
export OCI_REPO1=${OCI_REPO1:-conformance/r1-$run_id}
export OCI_REPO2=${OCI_REPO2:-conformance/r2-$run_id}
export OCI_RESULTS_DIR="$OUT"
export OCI_LOG=${OCI_LOG:-warn}
# Never pick up a stray oci-conformance.yaml from the working directory.
export OCI_CONFIGURATION=${OCI_CONFIGURATION:-/dev/null}
if [ -n "${USERNAME:-}" ]; then export OCI_USERNAME="$USERNAME"; fi
if [ -n "${PASSWORD:-}" ]; then export OCI_PASSWORD="$PASSWORD"; fi

# Every toggle the suite knows (config.go of the pinned module), all on. The
# "atomic" toggles mean deletes must take effect immediately, also required.
toggles=(
  OCI_API_PING
  OCI_API_PULL
  OCI_API_PUSH
  OCI_API_BLOBS_ATOMIC
  OCI_API_BLOBS_DELETE
  OCI_API_BLOBS_DIGEST_HEADER
  OCI_API_BLOBS_MOUNT_ANONYMOUS
  OCI_API_BLOBS_UPLOAD_CANCEL
  OCI_API_MANIFESTS_ATOMIC
  OCI_API_MANIFESTS_DELETE
  OCI_API_MANIFESTS_DIGEST_HEADER
  OCI_API_MANIFESTS_TAG_PARAM
  OCI_API_TAGS_ATOMIC
  OCI_API_TAGS_DELETE
  OCI_API_TAGS_LIST
  OCI_API_REFERRER
  OCI_DATA_IMAGE
  OCI_DATA_INDEX
  OCI_DATA_INDEX_LIST
  OCI_DATA_SPARSE
  OCI_DATA_ARTIFACT
  OCI_DATA_SUBJECT
  OCI_DATA_SUBJECT_MISSING
  OCI_DATA_ARTIFACT_LIST
  OCI_DATA_SUBJECT_LIST
  OCI_DATA_DATA_FIELD
  OCI_DATA_NONDISTRIBUTABLE
  OCI_DATA_CUSTOM_FIELDS
  OCI_DATA_NO_LAYERS
  OCI_DATA_EMPTY_BLOB
  OCI_DATA_SHA512
)
for t in "${toggles[@]}"; do
  export "$t=${!t:-true}"
done

echo "conformance: registry=$OCI_REGISTRY version=$OCI_VERSION repos=$OCI_REPO1,$OCI_REPO2 results=$OUT"
disabled=()
for t in "${toggles[@]}"; do
  [ "${!t}" = true ] || disabled+=("$t=${!t}")
done
[ ${#disabled[@]} -eq 0 ] || echo "conformance: WARNING toggles overridden: ${disabled[*]}"

conformance >"$OUT/stdout.log" 2>"$OUT/stderr.log"
rc=$?
echo "conformance: suite exit code $rc (full output in $OUT/stdout.log, $OUT/stderr.log; report $OUT/report.html)"

if [ ! -s "$OUT/junit.xml" ]; then
  echo "conformance: no junit.xml produced; stderr follows" >&2
  tail -n 40 "$OUT/stderr.log" >&2
  echo "conformance: 0 passed, 1 failed, 0 skipped"
  exit 1
fi

# The suite writes one <testsuite> with a flat list of leaf <testcase>
# elements; each carries status="passed|skipped|failure|error" (skipped also
# covers tests disabled by configuration). Failure text is in <system-out>,
# the request/response log in <system-err>. Count defensively: a testcase that
# contains other testcases is not a leaf; a testcase without a status
# attribute falls back to its <failure>/<error>/<skipped> child elements.
"$PY" - "$OUT/junit.xml" "$OUT/summary.txt" <<'EOF'
import sys, xml.etree.ElementTree as ET
junit, summary = sys.argv[1], sys.argv[2]
root = ET.parse(junit).getroot()
passed, failed, skipped = [], [], []
for tc in root.iter("testcase"):
    if tc.find(".//testcase") is not None:
        continue  # not a leaf
    st = (tc.get("status") or "").lower()
    if not st:
        if tc.find("failure") is not None: st = "failure"
        elif tc.find("error") is not None: st = "error"
        elif tc.find("skipped") is not None: st = "skipped"
        else: st = "passed"
    name = tc.get("name") or "?"
    if st in ("passed", "pass", "success"):
        passed.append(name)
    elif st in ("skipped", "skip", "disabled"):
        skipped.append(name)
    else:
        msg = (tc.findtext("system-out") or "").strip()
        for child in ("failure", "error"):
            el = tc.find(child)
            if el is not None:
                msg = "\n".join(x for x in (el.get("message") or "", (el.text or "").strip(), msg) if x)
        failed.append((name, st, msg))
with open(summary, "w") as f:
    f.write(f"{len(passed)} {len(failed)} {len(skipped)}\n")
with open(summary.rsplit("/", 1)[0] + "/failures.txt", "w") as f:
    for name, st, msg in failed:
        f.write(f"FAIL [{st}] {name}\n")
        for line in msg.splitlines():
            f.write(f"    {line}\n")
if failed:
    print(f"conformance: {len(failed)} failed test(s); first {min(40, len(failed))} below, all in failures.txt:")
    for name, st, msg in failed[:40]:
        print(f"  FAIL [{st}] {name}")
        lines = msg.splitlines() or ["(no message)"]
        for line in lines[:4]:
            print(f"      {line[:300]}")
        if len(lines) > 4:
            print(f"      ... ({len(lines) - 4} more lines)")
EOF
prc=$?
if [ $prc -ne 0 ] || [ ! -s "$OUT/summary.txt" ]; then
  echo "conformance: could not parse $OUT/junit.xml" >&2
  echo "conformance: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
read -r npass nfail nskip <"$OUT/summary.txt"

status=0
if [ "$nfail" -gt 0 ]; then status=1; fi
if [ "$rc" -ne 0 ] && [ "$nfail" -eq 0 ]; then
  echo "conformance: suite exited $rc but junit.xml shows no failures; stderr tail:" >&2
  tail -n 20 "$OUT/stderr.log" >&2
  status=1
fi
if [ "$npass" -eq 0 ]; then
  echo "conformance: nothing passed; is the registry up at $REGISTRY?" >&2
  status=1
fi
echo "conformance: $npass passed, $nfail failed, $nskip skipped"
exit $status
