#!/usr/bin/env bash
# scripts/slurm/ run by a real one-machine Slurm (slurmctld, slurmd, munge from Debian), with two
# GPUs declared as GRES on fake device nodes so Slurm hands out CUDA_VISIBLE_DEVICES:
#   1. sbatch of baton.sbatch starts Redis (password file, AOF) and the head on the first node and an
#      agent per node with srun; every job ends with its report, its analysis saw a Slurm GPU;
#   2. scancel of an allocation whose agents run attempts: the agents drain and hand them back;
#      no job is cancelled, and an agent started afterwards finishes every job.
#   3. a one-node allocation that names no TCP address runs Redis on a Unix socket only.
# Needs root (daemons, device nodes); exits 77 (skipped) without it.
#   tests/slurm/slurm_test.sh BATON_BINARY
set -euo pipefail
# (A build that did not make the binary, such as the sanitizer builds, skips this test.)
[ -x "${1:-}" ] || { echo "SKIP: no baton binary at '${1:-}'"; exit 77; }
baton=$(realpath "$1")
repo=$(cd "$(dirname "$0")/../.." && pwd)
for tool in slurmctld slurmd srun sbatch munged redis-server python3; do
  command -v "$tool" > /dev/null || { echo "SKIP: $tool is not installed (scripts/install-deps.sh)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: a one-machine Slurm needs root"; exit 77; }

dir=$(mktemp -d /tmp/baton-slurm.XXXXXX)
h=$(hostname -s)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ctld_port=$(free_port)
slurmd_port=$(free_port)
redis_port=$(free_port)
export SLURM_CONF=$dir/slurm.conf
pids=()
cleanup() {
  set +e
  [ -f "$dir/slurmd.pid" ] && kill "$(cat "$dir/slurmd.pid")"
  [ -f "$dir/slurmctld.pid" ] && kill "$(cat "$dir/slurmctld.pid")"
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null; done
  pkill -f "$dir/" 2> /dev/null
  sleep 1
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$dir"/*.log "$dir"/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -40 "$f"; }; done
  exit 1
}
wait_for() {  # wait_for SECONDS COMMAND...: polls until COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.3
  done
}

# munge (shared with a munged already running), then slurmctld and slurmd on free ports.
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || mungekey --create
pgrep -x munged > /dev/null || su -s /bin/sh munge -c munged
munge -n | unmunge > /dev/null || fail "munge does not work"
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
mknod "$dir/nvidia0" c 195 0
mknod "$dir/nvidia1" c 195 1
cat > "$dir/slurm.conf" << CONF
ClusterName=batontest
SlurmctldHost=$h
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
ReturnToService=2
KillWait=30
NodeName=$h CPUs=$(nproc) RealMemory=2000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$dir/gres.conf" << CONF
AutoDetect=off
NodeName=$h Name=gpu File=$dir/nvidia[0-1]
CONF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
wait_for 30 sh -c "sinfo -h -o %t | grep -q idle" || fail "slurm did not come up"

# Test runs stay on loopback.
export BATON="$baton" BATON_SLURM_DIR="$repo/scripts/slurm"
export BATON_REDIS_HOST=127.0.0.1 BATON_REDIS_BIND=127.0.0.1 BATON_AGENT_ADDRESS=127.0.0.1 BATON_AGENT_LISTEN=127.0.0.1

# 1. A whole run inside one allocation.
cat > "$dir/p.yaml" << 'YAML'
name: slurm
steps:
  - name: download
    uses: sleep
    with: {seconds: 0.1}
  - name: analyze
    uses: command
    with:
      argv: [sh, -c, 'echo "gpu=$CUDA_VISIBLE_DEVICES" > analysis.txt']
    resources: {gpu: 1}
    placement: {same_node_as: download}
  - name: document
    uses: command
    with:
      argv: [sh, -c, 'mkdir -p "$1" && cp analysis.txt "$1/report.md"', sh, "{outdir}/{job}"]
YAML
BATON_STATE="$dir/run1" BATON_WORKDIR="$dir/work1" BATON_JOBS=6 BATON_REDIS_PORT=$redis_port BATON_PREFIX=one \
  sbatch --wait -N1 --gres=gpu:2 -o "$dir/run1.log" -e "$dir/run1.log" "$repo/scripts/slurm/baton.sbatch" "$dir/p.yaml" \
  > /dev/null || fail "the allocation's run did not succeed"
reports=$(find "$dir/work1" -name report.md | wc -l)
[ "$reports" -eq 6 ] || fail "expected 6 reports, found $reports"
grep -h gpu= "$dir"/work1/*/out/*/report.md | sort -u | grep -qE '^gpu=[01]$' || fail "analysis did not see a Slurm GPU"
[ "$(stat -c %a "$dir/run1/redis.pass")" = 600 ] || fail "the Redis password file is not 0600"
grep -q "^requirepass" "$dir/run1/redis.conf" || fail "Redis ran without a password"
grep -q "every job ended (submit exit status 0)" "$dir/run1.log" || fail "the script did not report the end"
echo "ok 1 - sbatch ran 6 jobs through an srun agent with Slurm's GPUs"

# 2. scancel drains: an external Redis and head; the allocation holds only agents.
redis2=$(free_port)
redis-server --port "$redis2" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" > "$dir/redis2.log" 2>&1 &
pids+=("$!")
url="redis://127.0.0.1:$redis2"
wait_for 10 "$baton" nodes --redis "$url" --prefix two > /dev/null 2>&1 || fail "redis did not start"
"$baton" head --redis "$url" --prefix two > "$dir/head2.log" 2>&1 &
pids+=("$!")
cat > "$dir/p2.yaml" << 'YAML'
name: slurm-slow
steps:
  - name: download
    uses: sleep
    with: {seconds: 0.1}
  - name: analyze
    uses: sleep
    with: {seconds: 6}
    resources: {gpu: 1}
    placement: {same_node_as: download}
    retries: 0
  - name: document
    uses: sleep
    with: {seconds: 0.1}
YAML
job=$(BATON_REDIS="$url" BATON_WORKDIR="$dir/work2" BATON_JOBS=2 BATON_PREFIX=two BATON_DRAIN_TIMEOUT=1s \
  sbatch --parsable -N1 --gres=gpu:2 -o "$dir/run2.log" -e "$dir/run2.log" "$repo/scripts/slurm/baton.sbatch" "$dir/p2.yaml")
running() { "$baton" status --redis "$url" --prefix two --json 2> /dev/null | python3 -c '
import json, sys
jobs = json.load(sys.stdin)["jobs"]
sys.exit(0 if sum(1 for j in jobs for s in j["steps"] if s["name"] == "analyze" and s["state"] == "running") == 2 else 1)'; }
wait_for 60 running || fail "the analyses did not start under Slurm"
scancel "$job"
wait_for 60 sh -c "! squeue -h -j $job 2>/dev/null | grep -q ." || fail "the allocation did not end"
grep -q "draining" "$dir/run2.log" || fail "the agent did not drain on scancel"
"$baton" status --redis "$url" --prefix two --json > "$dir/after-scancel.json"
python3 - "$dir/after-scancel.json" << 'PY' || fail "jobs were cancelled or not handed back"
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
assert len(jobs) == 2, jobs
for j in jobs:
    assert j["state"] not in ("cancelled", "failed"), j
PY
for id in job-0 job-1; do
  "$baton" status "$id" --redis "$url" --prefix two --json | grep -q "handed back by node $h (draining)" \
    || fail "$id: no attempt handed back"
done
# An agent started afterwards finishes both jobs: nothing was lost.
"$baton" node --redis "$url" --prefix two --name after --gpus 1 --cpus 2 --workdir "$dir/work-after" \
  --address 127.0.0.1 --listen 127.0.0.1 > "$dir/after.log" 2>&1 &
pids+=("$!")
done2() { "$baton" status --redis "$url" --prefix two --json | python3 -c '
import json, sys
sys.exit(0 if all(j["state"] == "succeeded" for j in json.load(sys.stdin)["jobs"]) else 1)'; }
wait_for 60 done2 || fail "the handed-back jobs did not finish"
echo "ok 2 - scancel drained the agent: attempts handed back, no job cancelled, all finished later"

# 3. A one-node allocation that names no TCP address: Redis listens only on a Unix socket in a
# private folder, which the head and the srun agent reach (unix://), and which goes at the end.
env -u BATON_REDIS_HOST -u BATON_REDIS_BIND BATON_STATE="$dir/run3" BATON_WORKDIR="$dir/work3" BATON_JOBS=2 \
  BATON_PREFIX=three TMPDIR="$dir" sbatch --wait -N1 --gres=gpu:2 -o "$dir/run3.log" -e "$dir/run3.log" \
  "$repo/scripts/slurm/baton.sbatch" "$dir/p.yaml" > /dev/null || fail "the one-node run on a Unix socket did not succeed"
reports=$(find "$dir/work3" -name report.md | wc -l)
[ "$reports" -eq 2 ] || fail "expected 2 reports on the Unix socket run, found $reports"
grep -q '^port 0$' "$dir/run3/redis.conf" || fail "one node: Redis listened on TCP"
grep -q "registered at unix://$dir/baton-redis\." "$dir/run3.log" || fail "the agent did not use the Unix socket"
if compgen -G "$dir/baton-redis.*" > /dev/null; then fail "the socket's folder outlived the allocation"; fi
echo "ok 3 - one node: Redis on a Unix socket in a private folder, reached by the head and the srun agent"
