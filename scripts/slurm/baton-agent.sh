#!/usr/bin/env bash
# One Baton agent in a Slurm job step (started by baton.sbatch through srun): named after its node,
# given the GPUs Slurm allocated to this step (CUDA_VISIBLE_DEVICES; the agent maps its GPU i to
# the i-th entry), the Redis address and password file from the environment. exec, so that Slurm's
# SIGTERM reaches the agent, which drains.
set -euo pipefail
baton=${BATON:-baton}
gpus=0
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && [ "${CUDA_VISIBLE_DEVICES}" != "-1" ]; then
  IFS=, read -r -a visible <<< "$CUDA_VISIBLE_DEVICES"
  gpus=${#visible[@]}
elif [ -n "${SLURM_GPUS_ON_NODE:-}" ]; then
  gpus=$SLURM_GPUS_ON_NODE
fi
cpus=${SLURM_CPUS_ON_NODE:-$(nproc)}
name=$(hostname -s)
workdir="${BATON_WORKDIR:-${TMPDIR:-/tmp}/baton-${SLURM_JOB_ID:-0}}/$name"
mkdir -p "$workdir"
exec "$baton" node --prefix "${BATON_PREFIX:-baton}" --name "$name" --gpus "$gpus" --cpus "$cpus" \
  --workdir "$workdir" --drain-timeout "${BATON_DRAIN_TIMEOUT:-20s}" --address "${BATON_AGENT_ADDRESS:-$(hostname -s)}" --listen "${BATON_AGENT_LISTEN:-0.0.0.0}"
