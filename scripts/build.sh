#!/usr/bin/env bash
# Builds Baton into ./build (installing missing Debian packages first). Idempotent.
#   ./scripts/build.sh [cmake --build flags, e.g. --target baton]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" "$@"
