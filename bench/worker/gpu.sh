#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the CUDA stand-in model (examples/worker/cuda_standin.cu:
# weights allocated once, a kernel per batch) through `uses: worker` against the same program as
# `command` (one load per job), each run sampled by nvidia-smi every 100 ms. Prints GPU busy % of
# each run and the per-item ratio. Needs nvcc (PATH or /usr/local/cuda/bin) and nvidia-smi.
#   bench/worker/gpu.sh [JOBS]     # default 256
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
jobs=${1:-256}
export PATH="/usr/local/cuda/bin:$PATH"
command -v nvidia-smi >/dev/null || { echo "gpu.sh: no nvidia-smi: run this on a GPU machine" >&2; exit 77; }
cmake -S "$root" -B "$root/build-gpu" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBATON_CUDA_EXAMPLES=ON >/dev/null
cmake --build "$root/build-gpu" -j "$(nproc)" --target baton baton_cuda_standin >/dev/null
baton="$root/build-gpu/src/cli/baton"
standin="$root/build-gpu/examples/worker/baton_cuda_standin"
work=$(mktemp -d /tmp/baton-gpu-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
printf 'nodes:\n  - {name: gpu, cpus: 8, gpus: 1, labels: {role: head}}\n' >"$work/cluster.yaml"
cat >"$work/worker.yaml" <<YAML
name: gpu-worker
steps:
  - name: model
    uses: worker
    with: {argv: [$standin], batch: {max: 32, wait: 50ms}}
    resources: {gpu: 1}
YAML
cat >"$work/command.yaml" <<YAML
name: gpu-command
steps:
  - name: model
    uses: command
    with: {argv: [$standin, --command, --job, "{job}"]}
    resources: {gpu: 1}
YAML
measure() {  # NAME JOBS -> "seconds busy_percent"
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 100 >"$work/$1.smi" &
  local smi=$! start end
  start=$(date +%s.%N)
  "$baton" run "$work/$1.yaml" --cluster "$work/cluster.yaml" --jobs "$2" --out "$work/out-$1" \
    --log-format none --progress never --no-journal >/dev/null
  end=$(date +%s.%N)
  kill "$smi"
  wait "$smi" 2>/dev/null || true
  python3 -c "
import sys
v = [int(l.split()[0]) for l in open('$work/$1.smi') if l.strip() and l.split()[0].isdigit()]
print(f'{$end - $start:.3f} {sum(v) / max(1, len(v)):.1f}')"
}
read -r tw bw <<<"$(measure worker "$jobs")"
cjobs=$((jobs / 8 > 8 ? jobs / 8 : 8))
read -r tc bc <<<"$(measure command "$cjobs")"
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
python3 -c "
tw, bw, tc, bc, j, cj = $tw, $bw, $tc, $bc, $jobs, $cjobs
print(f'worker:  {j} jobs in {tw:.2f} s, GPU busy {bw:.0f}% (nvidia-smi, 100 ms samples)')
print(f'command: {cj} jobs in {tc:.2f} s, GPU busy {bc:.0f}%')
print(f'per item: worker {tw / j * 1000:.1f} ms, command {tc / cj * 1000:.1f} ms: {tc / cj / (tw / j):.1f}x')"
