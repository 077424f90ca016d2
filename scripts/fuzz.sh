#!/usr/bin/env bash
# Runs pier's fuzz targets (fuzz/, cargo-fuzz over libFuzzer) for a while
# each, starting from the committed corpora, and fails on any crash. Installs
# what is missing (a nightly toolchain through rustup, cargo-fuzz at a pinned
# version) and skips what is there. See docs/fuzzing.md.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 60, every target)
#
# The committed corpus of each target is copied to a scratch directory and
# the run grows that copy, so a run never changes the repository. Set
# PIER_FUZZ_CORPUS_OUT=DIR to keep the grown corpora (DIR/<target>/), e.g. to
# minimize them into fuzz/corpus/ afterwards. A crash leaves its input in
# fuzz/artifacts/<target>/ (not committed) and the run fails.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

export PATH="$HOME/.cargo/bin:$PATH"
# Builds outside the clone, so fresh clones (CI) reuse them; never the
# directory of the stable builds (other flags, other toolchain).
target_dir=${PIER_FUZZ_TARGET_DIR:-$HOME/.cache/pier/fuzz-target}

log() { echo "[fuzz] $*" >&2; }

seconds=${1:-60}
[ $# -gt 0 ] && shift
all_targets=(manifest references ranges challenge token config api)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
case $seconds in ''|*[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;; esac

scripts/install-deps.sh fuzz || exit 1

# One build of every requested target. The configuration target reads the
# native server's TOML and needs its crate (the `native` feature); the build
# always has it, so that running other targets does not rebuild them all.
features=(--features native)
log "building ${targets[*]} (nightly, sanitizer coverage; several minutes when cold)"
# `cargo fuzz build` builds one target or all of them.
one=()
[ ${#targets[@]} -eq 1 ] && one=("${targets[0]}")
build_log=${TMPDIR:-/tmp}/pier-fuzz-build.$$.log
if ! (cd fuzz && cargo +nightly fuzz build --sanitizer none "${features[@]}" --target-dir "$target_dir" "${one[@]}") >"$build_log" 2>&1; then
  cat "$build_log" >&2; rm -f "$build_log"; exit 1
fi
rm -f "$build_log"
bin_dir=$target_dir/x86_64-unknown-linux-gnu/release

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pier-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
failed=() summary=()
for t in "${targets[@]}"; do
  [ -x "$bin_dir/$t" ] || { log "no such target: $t (targets: ${all_targets[*]})"; failed+=("$t"); continue; }
  corpus=$scratch/$t
  mkdir -p "$corpus" "$root/fuzz/artifacts/$t"
  [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$corpus/"
  log "$t: ${seconds}s from $(ls "$corpus" | wc -l) seeds"
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  # One process (-jobs=1 is the default); inputs are small by construction.
  "$bin_dir/$t" "$corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/$t/" >"$scratch/$t.log" 2>&1
  status=$?
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$scratch/$t.log" | tail -1)
  stats=$(grep -E '^#[0-9]+' "$scratch/$t.log" | tail -1 | grep -oE '(cov|ft|corp): [0-9]+(/[0-9]+[a-zA-Z]*)?' | tr '\n' ' ')
  if [ $status -ne 0 ]; then
    failed+=("$t")
    summary+=("$t: CRASHED after ${runs:-?} runs; ${stats}")
    log "$t crashed:"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "$scratch/$t.log" | head -20 >&2
    cp "$scratch/$t.log" "$root/fuzz/artifacts/$t/last-run.log"
  else
    summary+=("$t: ${runs:-?} runs, ${stats}")
  fi
  if [ -n "${PIER_FUZZ_CORPUS_OUT:-}" ]; then
    mkdir -p "$PIER_FUZZ_CORPUS_OUT/$t" && cp -r "$corpus/." "$PIER_FUZZ_CORPUS_OUT/$t/"
  fi
done

echo
echo "==> fuzz summary (${seconds}s per target)"
for line in "${summary[@]}"; do echo "  $line"; done
echo "fuzz: $(( ${#targets[@]} - ${#failed[@]} )) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
