#!/usr/bin/env bash
# Builds everything and runs every test (unit, integration with real servers, browser), after
# checking every shell script of the repository with shellcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
mapfile -t shell_scripts < <(git ls-files 2>/dev/null | grep -E '\.sh$|\.sbatch$|^\.ci/run$' || ls scripts/*.sh .ci/run)
shellcheck "${shell_scripts[@]}"
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" --timeout 600
