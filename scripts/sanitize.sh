#!/usr/bin/env bash
# Builds the engine's tests with sanitizers in their own build folders and runs them; fails on
# any report (docs/development.md: sanitizers and fuzzing).
#
#   scripts/sanitize.sh tsan   build-tsan: clang++ -fsanitize=thread, plus -Wthread-safety as an
#                              error (BATON_THREAD_SAFETY): core, driver, runtime, rates, config,
#                              protocol, liveness, dashboard tests
#   scripts/sanitize.sh asan   build-asan: clang++ -fsanitize=address,undefined (no recovery) with
#                              libFuzzer hooks (BATON_FUZZ), at -O0 (a third of -O1's build time):
#                              the same tests plus the download, llm and document steps' tests, the
#                              multi-process cluster tests (head, agents and redis-server as
#                              separate processes, each an ASan `baton`) and the fuzz targets' replay
#   scripts/sanitize.sh fuzz   the libFuzzer targets of build-asan, FUZZ_SECONDS each (default 20)
#   scripts/sanitize.sh all    tsan, asan, then fuzz (the default)
#
# Both builds use -DBATON_SKIP_STEPS=ON (no media libraries; the analyze step is left out: its
# tests are long media runs that exercise FFmpeg/Tesseract more than Baton). SANITIZE_FULL=1 adds
# the multi-process cluster tests to the TSan run too. Set SANITIZE_JOBS to change the build's parallelism (default:
# nproc), SANITIZE_TESTS to a ctest -R regex.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=${1:-all}
jobs=${SANITIZE_JOBS:-$(nproc)}
CXX=${SANITIZE_CXX:-clang++}

# The engine's tests; the steps' own tests and the cluster's are added to the ASan run. The
# multi-process cluster tests (head, agents and redis-server as separate processes, and the `baton`
# binary they run) go into the TSan run only with SANITIZE_FULL=1: TSan's -O1 build of them does
# not fit CI's 30 minutes next to ASan's.
engine_targets=(baton_core_test baton_driver_test baton_runtime_test baton_rates_test baton_config_test
  baton_protocol_test baton_liveness_test dashboard_test baton_worker_step_test)
cluster_targets=(baton baton_cluster_test baton_node_test baton_head_turn_test baton_operations_test
  baton_scenario_test baton_work_cleanup_test)
# In-process cluster tests (a head and an agent on threads, a real redis-server): the cluster
# library is in the TSan build already (dashboard_test links it), so they cost one file each.
tsan_targets=("${engine_targets[@]}" baton_head_turn_test baton_node_test)
if [[ ${SANITIZE_FULL:-0} == 1 ]]; then
  tsan_targets+=("${cluster_targets[@]}")
fi
step_targets=(baton_download_test llm_test document_test)

# Reports stop the test at once with a non-zero status, and ctest then fails.
export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$root/scripts/sanitize/tsan.supp"
export ASAN_OPTIONS="halt_on_error=1:exitcode=66:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=66:suppressions=$root/scripts/sanitize/ubsan.supp"
export LSAN_OPTIONS="suppressions=$root/scripts/sanitize/lsan.supp"

stage() {  # stage NAME COMMAND...: runs and times a stage
  local name=$1 start
  shift
  start=$(date +%s)
  echo "== sanitize: $name"
  "$@"
  echo "== sanitize: $name: $(( $(date +%s) - start )) s"
}

configure() {  # configure DIR EXTRA_CMAKE_ARGS...
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=None -DBATON_SKIP_STEPS=ON \
    -DCMAKE_CXX_COMPILER="$CXX" "$@" >/dev/null
}

run_tests() {  # run_tests DIR EXCLUDE_REGEX
  # Tests of targets this script does not build register as *_NOT_BUILT (the custom-step example
  # is not built either); the browser test runs chromium, not Baton's code: leave them out.
  ctest --test-dir "$1" --output-on-failure -j "$jobs" --timeout 900 \
    -E "_NOT_BUILT|^dashboard_browser\$|^slurm_test\$|^example\\.${2:+|$2}" ${SANITIZE_TESTS:+-R "$SANITIZE_TESTS"}
}

tsan() {
  # -O1 keeps TSan's slowdown near 5x; -g1 gives line numbers in reports at little build cost.
  stage "tsan configure" configure build-tsan -DBATON_THREAD_SAFETY=ON \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread -O1 -g1" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread
  stage "tsan build" cmake --build build-tsan -j "$jobs" --target "${tsan_targets[@]}"
  stage "tsan tests" run_tests build-tsan "^fuzz_"
}

asan() {
  stage "asan configure" configure build-asan -DBATON_FUZZ=ON -DBATON_LIGHT_STEPS=ON \
    -DCMAKE_CXX_FLAGS="-O0 -g1 -fno-omit-frame-pointer"
  stage "asan build" cmake --build build-asan -j "$jobs" --target "${engine_targets[@]}" \
    "${cluster_targets[@]}" "${step_targets[@]}" fuzz_all
  # Tests of whole video jobs need the media steps this build leaves out (BATON_SKIP_STEPS); the
  # pacing test measures a 20 ms margin against a server's clock, which an -O0 ASan build on a
  # busy machine does not keep (it runs in the plain build's tests).
  stage "asan tests" run_tests build-asan "VideoReport|PacedAtTheProvidersExactRate"
}

fuzz() {
  [[ -d build-asan/fuzz ]] || asan
  stage "fuzz smoke" ./bench/fuzz.sh "${FUZZ_SECONDS:-20}" build-asan
}

case $mode in
  tsan) tsan ;;
  asan) asan ;;
  fuzz) fuzz ;;
  all) tsan; asan; fuzz ;;
  *) echo "usage: scripts/sanitize.sh [tsan|asan|fuzz|all]" >&2; exit 2 ;;
esac
echo "sanitize: $mode: no reports"
