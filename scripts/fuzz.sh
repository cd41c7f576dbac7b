#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz) for FUZZ_SECONDS each, starting from its committed corpus, and prints
# executions, coverage and crashes per target. A crash saves its input under $FUZZ_BUILD_DIR/artifacts/<target>/ and
# fails the run. New inputs go to a working corpus in the build folder (the committed one stays small).
# A timeout (one input running longer than FUZZ_TIMEOUT seconds, 30) is replayed once at once: on a shared machine a
# fuzzer that was not scheduled for that long is not a hang, so only a timeout that reproduces fails the run.
# Usage: scripts/fuzz.sh   Env: FUZZ_SECONDS=60 (per target), FUZZ_BUILD_DIR=build-fuzz, FUZZ_TARGETS="lease ...",
#        FUZZ_JOBS=$(nproc) (build), FUZZ_TIMEOUT=30
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${FUZZ_SECONDS:-60}
timeout=${FUZZ_TIMEOUT:-30}
build=${FUZZ_BUILD_DIR:-build-fuzz}
targets=${FUZZ_TARGETS:-"watch_stream lease workload kubeconfig duration_time http_response operator_flags"}
launcher=$(command -v ccache || true)

CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSINGLETON_FUZZ=ON -DSINGLETON_BUILD_TESTS=OFF \
  ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher"} >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log" >&2; exit 1; }
cmake --build "$build" --target fuzzers -j"${FUZZ_JOBS:-$(nproc)}" >"$build.build.log" 2>&1 ||
  { tail -n 40 "$build.build.log" >&2; exit 1; }

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
total_execs=0
printf '%-16s %12s %10s %8s %8s %8s\n' target execs exec/s cov ft crashes
for t in $targets; do
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  log="$build/fuzz-$t.log"
  status=0
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 -timeout="$timeout" -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1 || status=$?
  if ((status != 0)) && grep -q 'ERROR: libFuzzer: timeout' "$log"; then
    slow=$(sed -n "s|.*Test unit written to \(.*timeout-[0-9a-f]*\)$|\1|p" "$log" | tail -n 1)
    if [[ -n "$slow" ]] && "$build/tests/fuzz/fuzz_$t" -timeout="$timeout" "$slow" >>"$log.replay" 2>&1; then
      echo "fuzz: $t: a timeout did not reproduce ($slow ran within ${timeout}s on replay): the machine was busy" >&2
      status=0
    fi
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  crashes=0
  if ((status != 0)); then
    crashes=1
    failed+=("$t")
  fi
  total_execs=$((total_execs + ${execs:-0}))
  printf '%-16s %12s %10s %8s %8s %8s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "$crashes"
done
echo "fuzz: $total_execs executions in total, ${seconds}s per target"
if ((${#failed[@]})); then
  for t in "${failed[@]}"; do
    echo "fuzz: $t FAILED; its log: $build/fuzz-$t.log; inputs: $build/artifacts/$t/" >&2
    grep -m 1 -A 12 'ERROR\|runtime error\|deadly signal' "$build/fuzz-$t.log" >&2 || tail -n 20 "$build/fuzz-$t.log" >&2
  done
  exit 1
fi
