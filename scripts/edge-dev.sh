#!/usr/bin/env bash
# Runs the edge Worker locally under workerd (wrangler dev --local), with R2, KV
# and the Cache API simulated on disk so data survives restarts.
#
# Usage: scripts/edge-dev.sh [--port PORT] [--persist DIR] [--env test] [-- WRANGLER_ARGS...]
#   --port PORT    listen on 127.0.0.1:PORT (default 8787)
#   --persist DIR  keep local R2/KV/cache state in DIR (default .wrangler/state)
#   --env test     the test configuration (test-only routes, sparse manifests)
# Env: PIER_EDGE_PREBUILT=1 skips the build when edge-worker/build*/ exists.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/node/bin:$PIER_TOOLS/bin:$HOME/.cargo/bin:$PATH"
# Offline: no usage metrics, no request.cf lookup (it would fail and slow start-up).
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

port=8787 persist="$ROOT/.wrangler/state" env_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --port) port=$2; shift 2 ;;
    --persist) persist=$2; shift 2 ;;
    --env) env_args=(--env "$2"); shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "edge-dev: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

node_major=$(node --version 2>/dev/null | sed 's/^v\([0-9]*\).*/\1/')
if [ "${node_major:-0}" -lt 22 ] || [ ! -x "$ROOT/node_modules/.bin/wrangler" ]; then
  echo "edge-dev: needs Node 22 and wrangler (run scripts/install-deps.sh edge)" >&2
  exit 2
fi
mkdir -p "$persist"
cd "$ROOT"
exec node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "$port" \
  --persist-to "$persist" --show-interactive-dev-session=false "${env_args[@]}" "$@"
