#!/usr/bin/env bash
# `uses: worker` figures (docs/steps/worker.md), ratios measured in one run of this script:
#  1. the stand-in model (load 2 s, a batch of n costs 0.3 + 0.05 n s), 48 jobs, one node, 1 GPU,
#     batch {max: 16, wait: 200ms}: makespan against the bound 2 + 3 x 1.1 = 5.3 s, loads, batch
#     sizes, each job its own answer;
#  2. the same with 2 GPUs: two workers, two CUDA_VISIBLE_DEVICES;
#  3. the same model as `command` (one process per job, so one load per job), per item, against 1;
#  4. worker overhead per item: the C++ no-op worker, batch 1, N jobs: wall time per item.
#
#   bench/worker/run.sh [NOOP_JOBS]     # default 5000
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
baton="$root/build/src/cli/baton"
cxx_worker="$root/build/examples/worker/baton_example_worker"
for b in "$baton" "$cxx_worker"; do
  [[ -x $b ]] || { echo "run.sh: build first (cmake --build build --target baton baton_example_worker)" >&2; exit 2; }
done
noop_jobs=${1:-5000}
work=$(mktemp -d /tmp/baton-worker-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
standin="$root/examples/worker/standin.py"

cluster() {  # GPUS
  printf 'nodes:\n  - {name: n0, cpus: 8, gpus: %s, labels: {role: head}}\n' "$1" >"$work/cluster-$1.yaml"
  echo "$work/cluster-$1.yaml"
}
pipeline() {  # NAME USES ARGV-YAML [BATCH]
  {
    printf 'name: %s\nsteps:\n  - name: model\n    uses: %s\n    with:\n      argv: %s\n' "$1" "$2" "$3"
    [[ -n ${4:-} ]] && printf '      batch: %s\n' "$4"
    printf '    resources: {gpu: 1}\n'
  } >"$work/$1.yaml"
  echo "$work/$1.yaml"
}
run() {  # OUT PIPELINE CLUSTER JOBS -> prints wall seconds
  local start end
  start=$(date +%s.%N)
  "$baton" run "$2" --cluster "$3" --jobs "$4" --out "$work/$1" --log-format none --progress never --no-journal \
    >/dev/null 2>"$work/$1.stderr" || { cat "$work/$1.stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.3f}')"
}

echo "bench/worker: $(nproc) cores; $(date -u +%F)"
p1=$(pipeline w1 worker "[python3, $standin, --load, '2', --cost, '0.3', '0.05', --record, $work/w1.rec]" \
  "{max: 16, wait: 200ms}")
t1=$(run w1 "$p1" "$(cluster 1)" 48)
p2=$(pipeline w2 worker "[python3, $standin, --load, '2', --cost, '0.3', '0.05', --record, $work/w2.rec]" \
  "{max: 16, wait: 200ms}")
t2=$(run w2 "$p2" "$(cluster 2)" 48)
cmd_jobs=6
p3=$(pipeline c1 command "[python3, $standin, --load, '2', --cost, '0.3', '0.05', --command, --job, '{job}']")
t3=$(run c1 "$p3" "$(cluster 1)" $cmd_jobs)
p4=$(pipeline noop worker "[$cxx_worker, --load, '0', --cost, '0', '0']" "{max: 1}")
t4=$(run noop "$p4" "$(cluster 1)" "$noop_jobs")
p5=$(pipeline noop0 command "[/bin/true]")
t5=$(run noop0 "$p5" "$(cluster 1)" 200)

python3 - "$work" "$t1" "$t2" "$t3" "$cmd_jobs" "$t4" "$noop_jobs" "$t5" <<'PY'
import json, sys
work, t1, t2, t3, cmd_jobs, t4, noop_jobs, t5 = sys.argv[1], *map(float, sys.argv[2:4]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
def rec(name):
    return [json.loads(l) for l in open(f"{work}/{name}.rec")]
def answers_ok(out):
    jobs = [json.loads(l) for l in open(f"{work}/{out}/jobs.jsonl")]
    return sum(1 for j in jobs if j["state"] == "succeeded" and j["results"]["model"]["answer"] == f'{j["id"]} saw ')
bound = 2 + 3 * (0.3 + 0.05 * 16)
b1 = rec("w1")
print(f"1 GPU, 48 jobs, batch max 16: makespan {t1:.2f} s (whole process), bound {bound:.2f} s, ratio {t1 / bound:.2f}; "
      f"loads {len({b['pid'] for b in b1})}, batches {len(b1)}, sizes {[b['size'] for b in b1]}, "
      f"jobs with their own answer {answers_ok('w1')}/48")
b2 = rec("w2")
print(f"2 GPUs, 48 jobs: makespan {t2:.2f} s; workers {len({b['pid'] for b in b2})} on CUDA_VISIBLE_DEVICES "
      f"{sorted({b['gpus'] for b in b2})}; sizes {[b['size'] for b in b2]}")
per_cmd, per_worker = t3 / cmd_jobs, t1 / 48
print(f"same model as command: {cmd_jobs} jobs in {t3:.2f} s = {per_cmd:.3f} s/item; as worker {per_worker:.3f} s/item: "
      f"worker {per_cmd / per_worker:.1f}x faster per item")
print(f"worker overhead, C++ no-op model, batch 1: {noop_jobs} items in {t4:.2f} s = {1000 * t4 / noop_jobs:.3f} ms/item "
      f"(whole process, start and load included); no-op command: {1000 * t5 / 200:.2f} ms/item")
PY
