#!/usr/bin/env bash
# Builds the edge Worker with worker-build, offline: wasm-bindgen, wasm-opt and
# esbuild come from the machine (scripts/install-deps.sh edge), never from the
# internet. Output: edge-worker/build/{index.js,index_bg.wasm}.
#
# Usage: scripts/edge-build.sh [--test]
#   --test   the test build: also compiles the test-only routes (feature
#            test-endpoints) into edge-worker/build-test/, which only
#            `wrangler --env test` runs. The production build never has them.
# Env:   PIER_EDGE_PREBUILT=1  do nothing if the output exists (a test harness
#                              that built it already starts wrangler)
#        PIER_EDGE_KEEP_NAMES=1  keep the wasm's function names in the
#                              production build (stack traces name Rust
#                              functions; 104 KB more gzipped)
#        CARGO_TARGET_DIR      defaults to <repo>/target
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
out=build
build_args=()
case ${1:-} in
  --test) out=build-test; build_args=(--out-dir build-test --features test-endpoints) ;;
  "") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac
if [ "${PIER_EDGE_PREBUILT:-}" = 1 ] && [ -f "$ROOT/edge-worker/$out/index.js" ]; then
  exit 0
fi
PIER_TOOLS=${PIER_TOOLS:-$HOME/.cache/pier-tools}
export PATH="$PIER_TOOLS/bin:$PIER_TOOLS/node/bin:$HOME/.cargo/bin:$PATH"

for tool in worker-build wasm-bindgen; do
  command -v "$tool" >/dev/null || { echo "edge-build: $tool missing (run scripts/install-deps.sh edge)" >&2; exit 2; }
done
for tool in wasm-opt esbuild; do
  [ -x "$ROOT/node_modules/.bin/$tool" ] || { echo "edge-build: node_modules/.bin/$tool missing (run scripts/install-deps.sh edge)" >&2; exit 2; }
done

# Every crate optimized for size, not only pier-edge: 15% less wasm
# (1,291,515 -> 1,096,857 bytes gzipped) for no CPU per request or push
# throughput the benchmarks could tell apart (docs/performance.md). The
# native server's release builds keep the profile's opt-level 3.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
cd "$ROOT/edge-worker"
worker-build --release "${build_args[@]}"

# worker-build keeps the wasm's names section: 382 KB raw, 104 KB gzipped,
# a tenth of what every deploy uploads and every cold start fetches, and
# what kept the Worker over its 1 MiB gzipped goal. A panic is logged with
# its message and source line by pier's own hook (edge-worker/src/entry.rs),
# which needs no names, so the production build drops them. The test build
# keeps them for the stack traces of failing tests. wasm-opt reads the
# features to keep from the module's target_features section.
if [ "$out" = build ] && [ "${PIER_EDGE_KEEP_NAMES:-}" != 1 ]; then
  "$WASM_OPT_BIN" --strip-debug build/index_bg.wasm -o build/index_bg.wasm
fi
