#!/usr/bin/env bash
# Whole-process figures of `baton run` (start to exit, as a user times it): no-op steps/s and
# peak memory (max RSS) per job, with and without the journal.
#
#   bench/runtime/whole_process.sh [JOBS...]        # default: 25000
#   bench/runtime/whole_process.sh 25000 1000000
#
# Uses build/src/cli/baton and /usr/bin/time; a 4-step no-op pipeline on this machine's node.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
baton="$root/build/src/cli/baton"
[[ -x $baton ]] || { echo "whole_process.sh: build baton first (cmake --build build --target baton)" >&2; exit 2; }
work=$(mktemp -d /tmp/baton-whole-process.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat >"$work/noop.yaml" <<'YAML'
name: noop
steps:
  - {name: a, uses: sleep, resources: {cpu: 1}}
  - {name: b, uses: sleep, resources: {cpu: 1}}
  - {name: c, uses: sleep, resources: {cpu: 1}}
  - {name: d, uses: sleep, resources: {cpu: 1}}
YAML

echo "whole_process.sh: $(nproc) cores; baton run of 4 no-op steps per job; best of 3 (1 for a million jobs)"
printf '%-10s %-12s %12s %10s %14s %10s\n' jobs journal seconds steps/s "max RSS MiB" "KiB/job"
[[ $# -gt 0 ]] || set -- 25000
for jobs in "$@"; do
  runs=3
  [[ $jobs -ge 500000 ]] && runs=1
  for mode in on off; do
    flags=()
    [[ $mode == off ]] && flags=(--no-journal)
    best=""
    best_rss=0
    for ((i = 0; i < runs; i++)); do
      rm -rf "$work/out"
      /usr/bin/time -f '%e %M' -o "$work/time" "$baton" run "$work/noop.yaml" --jobs "$jobs" --out "$work/out" \
        --log-format none --progress never "${flags[@]}" 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
      read -r secs rss <"$work/time"
      if [[ -z $best ]] || awk -v a="$secs" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$secs; best_rss=$rss; fi
    done
    awk -v j="$jobs" -v m="$mode" -v s="$best" -v r="$best_rss" \
      'BEGIN { printf "%-10d %-12s %12.2f %10.0f %14.1f %10.2f\n", j, m, s, j * 4 / s, r / 1024, r / j }'
  done
done
