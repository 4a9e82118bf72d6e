#!/usr/bin/env bash
# Runs every libFuzzer target of a BATON_FUZZ=ON build for SECONDS each (default 300) and prints
# executions per second (fuzz/README.md). CI runs it for 30 s each through scripts/sanitize.sh.
#
#   bench/fuzz.sh [SECONDS] [BUILD_DIR] [TARGET...]      BUILD_DIR defaults to build-asan
#
# New inputs libFuzzer finds go to a scratch corpus (the seeds in fuzz/corpus/ are not touched);
# a crash leaves its input in fuzz-artifacts/TARGET/ and the script fails: copy that file into
# fuzz/regressions/TARGET/, fix the bug, and the replay test fuzz_TARGET keeps it fixed.
# FUZZ_JOBS targets run at once (default: nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
build=${2:-build-asan}
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(find "$build/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x ! -name 'fuzz_replay_*' -printf '%f\n' | sed 's/^fuzz_//' | sort)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
  echo "bench/fuzz.sh: no libFuzzer targets in $build/fuzz (configure with -DBATON_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++)" >&2
  exit 2
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {  # run_one TARGET: fuzzes, then prints "TARGET RUNS EXECS_PER_S" or fails
  local t=$1 log="$scratch/$1.log"
  mkdir -p "$scratch/$t" "fuzz-artifacts/$t"
  if ! "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
      -print_final_stats=1 -artifact_prefix="fuzz-artifacts/$t/" \
      "$scratch/$t" "fuzz/corpus/$t" "fuzz/regressions/$t" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz_$t: crash; its input is in fuzz-artifacts/$t/" >&2
    return 1
  fi
  local runs eps
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  echo "fuzz_$t $runs $eps"
}

jobs=${FUZZ_JOBS:-$(nproc)}
failed=0
pids=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/regressions/$t"
  run_one "$t" >"$scratch/$t.result" &
  pids+=($!)
  if [[ ${#pids[@]} -ge $jobs ]]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
printf '%-26s %12s %10s\n' target executions "execs/s"
for t in "${targets[@]}"; do
  if [[ -s "$scratch/$t.result" ]]; then
    read -r name runs eps <"$scratch/$t.result"
    printf '%-26s %12s %10s\n' "$name" "$runs" "$eps"
  fi
done
find fuzz-artifacts -type d -empty -delete 2>/dev/null || true
exit "$failed"
