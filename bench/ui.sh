#!/usr/bin/env bash
# The web UI with 10,000 repositories (docs/ui.md): a native pier (release
# build, no auth) filled by bench/ui-seed.mjs, then headless Chromium
# (tests/ui's puppeteer-core) timing, from navigation to the rendered list,
# the first page of the repository list: the first visit (nothing cached),
# later visits (files revalidated by ETag), and a filter matching one name
# in ten thousand. Prints the medians; results also in $BENCH_DIR/ui-<date>/.
#
# Usage: bench/ui.sh [N]   (default 10000 repositories)
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS_NAME=bench-ui
# shellcheck source=bench/lib.sh
source bench/lib.sh
count=${1:-10000}
need_tools node curl
run_dir=$(new_run_dir ui)
log "building pier (release)"
build_pier release || die "cargo build --release failed"
(cd tests/ui && npm ci --ignore-scripts --no-audit --no-fund --silent) || die "npm ci in tests/ui failed"
start_pier bench || die "pier did not start"
log "pushing $count repositories"
seconds=$SECONDS
node bench/ui-seed.mjs "http://$bench_addr" "$count" || die "seeding failed"
log "seeded in $((SECONDS - seconds)) s"
PIER_URL="http://$bench_addr" node bench/ui.mjs "$count" | tee "$run_dir/result.txt"
