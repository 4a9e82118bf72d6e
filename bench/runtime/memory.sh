#!/usr/bin/env bash
# Peak memory of `baton run` against the number of jobs (issue 22: memory follows the jobs in
# flight, not the run): whole-process wall time, steps/s and max RSS, journal on, no-op steps.
#
#   bench/runtime/memory.sh 4 1000000                 # 1M jobs x 4 steps (--jobs N)
#   bench/runtime/memory.sh 1 1000000 2000000 4000000 # one-step jobs: the same peak for each
#   bench/runtime/memory.sh 1 stdin:10000000          # 10M one-step jobs from --inputs - (words)
#   bench/runtime/memory.sh 1 resume:10000000         # the same, then its resume (every job skipped):
#                                                     # the second row is the resume's time and peak
#
# Uses build/src/cli/baton and /usr/bin/time; each figure is one run (big ones take minutes).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
baton="$root/build/src/cli/baton"
[[ -x $baton ]] || { echo "memory.sh: build baton first (cmake --build build --target baton)" >&2; exit 2; }
[[ $# -ge 2 ]] || { echo "usage: memory.sh STEPS JOBS|stdin:JOBS..." >&2; exit 2; }
steps=$1
shift
work=$(mktemp -d "${TMPDIR:-/tmp}/baton-memory.XXXXXX")
trap 'rm -rf "$work"' EXIT

{
  echo "name: noop"
  echo "steps:"
  for ((s = 0; s < steps; s++)); do echo "  - {name: s$s, uses: sleep, resources: {cpu: 1}}"; done
} >"$work/noop.yaml"

echo "memory.sh: $(nproc) cores; baton run of $steps no-op step(s) per job, journal on"
printf '%-18s %10s %12s %14s %12s\n' jobs seconds steps/s "max RSS MiB" "bytes/job"
for spec in "$@"; do
  rm -rf "$work/out"
  if [[ $spec == stdin:* || $spec == resume:* ]]; then
    jobs=${spec#*:}
    awk -v n="$jobs" 'BEGIN { for (i = 0; i < n; i++) printf "v%d\n", i }' >"$work/inputs"
    runs=1
    [[ $spec == resume:* ]] && runs=2
    for ((r = 1; r <= runs; r++)); do
      if ((r == 2)); then
        read -r secs rss <"$work/time"
        awk -v j="$jobs" -v k="$steps" -v s="$secs" -v r="$rss" -v n="run:$jobs" \
          'BEGIN { printf "%-18s %10.2f %12.0f %14.1f %12.1f\n", n, s, j * k / s, r / 1024, r * 1024 / j }'
      fi
      /usr/bin/time -f '%e %M' -o "$work/time" "$baton" run "$work/noop.yaml" --inputs - --out "$work/out" \
        --log-format none --progress never <"$work/inputs" 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
    done
  else
    jobs=$spec
    /usr/bin/time -f '%e %M' -o "$work/time" "$baton" run "$work/noop.yaml" --jobs "$jobs" --out "$work/out" \
      --log-format none --progress never 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
  fi
  read -r secs rss <"$work/time"
  awk -v j="$jobs" -v k="$steps" -v s="$secs" -v r="$rss" -v n="$spec" \
    'BEGIN { printf "%-18s %10.2f %12.0f %14.1f %12.1f\n", n, s, j * k / s, r / 1024, r * 1024 / j }'
done
