#!/usr/bin/env bash
# The cluster soak: hundreds of jobs through two heads and three agents on a redis-server with AOF
# everysec while seeded random faults hit every 1-3 s (agents stopped, killed and restarted, every
# connection dropped, the active head killed with an agent or stalled past its lease, Redis killed,
# wall clocks jumped). Prints the fault counts and the time; every job must succeed once.
#   bench/cluster/soak.sh [JOBS=300] [SEED=7]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build}
export BATON_SOURCE_DIR=$PWD BATON_BINARY_DIR=$PWD/$BUILD_DIR
log=$(mktemp /tmp/baton-soak.XXXXXX.log)
if BATON_SOAK=1 BATON_SOAK_JOBS=${1:-300} BATON_SOAK_SEED=${2:-7} \
  "$BUILD_DIR/src/cluster/baton_chaos_test" --gtest_filter='ChaosTest.Soak' > "$log" 2>&1; then
  grep -E '^soak:' "$log"
  rm -f "$log"
else
  echo "soak FAILED (seed ${2:-7}); the whole log: $log" >&2
  grep -E 'Failure' -A6 "$log" | head -40 >&2
  exit 1
fi
echo "cores: $(nproc)"
