#!/usr/bin/env bash
# Builds everything and runs every test (unit, integration with real servers, browser, the fuzz
# targets' replay), after checking every shell script of the repository with shellcheck and that
# no line of C++ is over 120 columns (scripts/check-line-length.sh); then
# the sanitizer builds (scripts/sanitize.sh: TSan with -Wthread-safety, ASan+UBSan, 20 s of
# libFuzzer per target). BATON_SANITIZE=0 skips the sanitizer stage. Prints each stage's time.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stage() {  # stage NAME COMMAND...
  local name=$1 t0
  shift
  t0=$(date +%s)
  "$@"
  echo "== test.sh: $name: $(( $(date +%s) - t0 )) s (total $(( $(date +%s) - start )) s)"
}
stage build ./scripts/build.sh
mapfile -t shell_scripts < <(git ls-files 2>/dev/null | grep -E '\.sh$|\.sbatch$|^\.ci/run$' || ls scripts/*.sh bench/*.sh .ci/run)
stage shellcheck shellcheck "${shell_scripts[@]}"
stage line-length ./scripts/check-line-length.sh
BUILD_DIR=${BUILD_DIR:-build}
stage tests ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" --timeout 600
if [[ ${BATON_SANITIZE:-1} != 0 ]]; then
  stage sanitizers ./scripts/sanitize.sh all
fi
