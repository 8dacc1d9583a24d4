#!/usr/bin/env bash
# Run every fuzz target (or the ones named) for SECONDS each, one after the other:
#   fuzz/run.sh SECONDS [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); without them it says
# so and exits 0. Each target starts from its committed seeds (fuzz/corpus/<t>/seed-*) plus
# what earlier runs kept there; a crash stops that target, its input is in
# fuzz/artifacts/<t>/ and the script exits 1 (make it a regression test: README "Fuzzing").
# FUZZ_TARGET_DIR: cargo's target directory for the instrumented build (default fuzz/target).
# FUZZ_JOBS: run that many libFuzzer processes per target (-jobs; their logs: fuzz/fuzz-N.log).
set -uo pipefail
cd "$(dirname "$0")"

secs="${1:-}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
  echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2
  exit 2
fi
shift
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: skipped: cargo-fuzz not installed (cargo install cargo-fuzz)"
  exit 0
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
tdir=(--target-dir "${FUZZ_TARGET_DIR:-target}")
jobs=()
if [ -n "${FUZZ_JOBS:-}" ]; then
  jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
fi
if ! cargo +nightly fuzz build -O "${tdir[@]}" >build.log 2>&1; then
  tail -30 build.log
  echo "fuzz: build failed (fuzz/build.log)"
  exit 1
fi

failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t/last-run.log"
  cargo +nightly fuzz run -O "${tdir[@]}" "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
    -print_final_stats=1 "${jobs[@]}" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
  last=$(grep -E '#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | awk '{print $2}')
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | awk '{print $2}')
  corpus=$(grep -o 'corp: [0-9]*' <<<"$last" | awk '{print $2}')
  if [ "$rc" -eq 0 ]; then
    echo "fuzz $t: ${runs} runs in ${secs} s, coverage ${cov:-?} edges, ${ft:-?} features, corpus ${corpus:-?}: no crash"
  else
    failed=1
    echo "fuzz $t: FAILED after ${runs} runs (exit $rc); input in fuzz/artifacts/$t/, log $log:"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -10
  fi
done
exit "$failed"
