#!/usr/bin/env bash
# How fast `baton head` admits one large submission (no agents: only the admission), for each
# --turn-jobs given: the head is up first, then `baton submit --jobs JOBS` writes its inbox
# messages (5,000 jobs each) and the time runs until the head has acknowledged them all.
#   bench/cluster/admit.sh [JOBS=200000] [TURN_JOBS...=20000 1000000]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build}
baton=$BUILD_DIR/src/cli/baton
jobs=${1:-200000}
shift || true
[ $# -gt 0 ] || set -- 20000 1000000
port=$((20000 + RANDOM % 20000))
dir=$(mktemp -d /tmp/baton-admit.XXXXXX)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no > "$dir/redis.log" 2>&1 &
redis=$!
trap 'kill "$redis" 2> /dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" PING > /dev/null 2>&1; do sleep 0.05; done
printf 'name: b\nsteps:\n  - name: s\n    uses: sleep\n    with: {seconds: 0.01}\n' > "$dir/p.yaml"
url=redis://127.0.0.1:$port
n=0
for turn_jobs in "$@"; do
  n=$((n + 1))
  prefix=b$n
  "$baton" head --redis "$url" --prefix "$prefix" --turn-jobs "$turn_jobs" --retain 0 > "$dir/head.log" 2>&1 &
  head=$!
  until grep -q loaded "$dir/head.log"; do sleep 0.05; done
  start=$(date +%s.%N)
  "$baton" submit "$dir/p.yaml" --jobs "$jobs" --redis "$url" --prefix "$prefix" > /dev/null 2> "$dir/submit.log"
  submitted=$(date +%s.%N)
  while [ "$(redis-cli -p "$port" XLEN "$prefix:inbox")" != "0" ]; do sleep 0.02; done
  end=$(date +%s.%N)
  kill "$head"
  wait "$head" || true
  grep -F "lost the head lock" "$dir/head.log" || true
  echo "turn-jobs $turn_jobs: $jobs jobs submitted in $(echo "$submitted - $start" | bc) s," \
    "all admitted $(echo "$end - $start" | bc) s after the submission began"
done
