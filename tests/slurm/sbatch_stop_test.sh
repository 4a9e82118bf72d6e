#!/usr/bin/env bash
# baton.sbatch stops in order: agents (srun), then the head, then Redis, each after the one before
# has gone, on SIGUSR1 (Slurm's --signal=B:USR1@90 before the time limit) and on SIGTERM. Needs no
# Slurm: srun, redis-server and baton are stand-ins on PATH that log when they are signalled and
# when they are gone (the agents take a moment: they drain).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() {
  echo "not ok - $*" >&2
  cat "$dir/order.log" >&2 || true
  exit 1
}
mkdir -p "$dir/bin"
# A stand-in that runs until SIGTERM, then (after $2 seconds) leaves; it logs both moments.
standin() {
  cat > "$dir/bin/$1" <<SCRIPT
#!/usr/bin/env bash
if [ "\${1:-}" = nodes ]; then exit 0; fi
if [ "\${1:-}" = submit ]; then echo \$\$ > "$dir/submit.pid"; exec sleep 1000; fi
name=$3
[ "\${1:-}" = head ] && name=head
trap 'echo "\$name TERM" >> "$dir/order.log"; sleep $2; echo "\$name gone" >> "$dir/order.log"; exit 0' TERM
echo "\$name up" >> "$dir/order.log"
while true; do sleep 0.05; done
SCRIPT
  chmod +x "$dir/bin/$1"
}
standin srun 0.6 agents
standin redis-server 0.1 redis
standin baton 0.3 baton
for sig in USR1 TERM; do
  : > "$dir/order.log"
  PATH="$dir/bin:$PATH" BATON="$dir/bin/baton" BATON_STATE="$dir/state" BATON_JOBS=1 \
    BATON_SLURM_DIR="$repo/scripts/slurm" bash "$repo/scripts/slurm/baton.sbatch" "$dir/p.yaml" 2> "$dir/err.log" &
  pid=$!
  for _ in $(seq 100); do
    [ "$(grep -c ' up$' "$dir/order.log")" -ge 3 ] && break
    sleep 0.05
  done
  [ "$(grep -c ' up$' "$dir/order.log")" -ge 3 ] || fail "the stand-ins did not start"
  kill -"$sig" "$pid"
  wait "$pid" || true
  if [ -s "$dir/submit.pid" ]; then kill "$(cat "$dir/submit.pid")" 2> /dev/null || true; fi
  got=$(grep -v ' up$' "$dir/order.log" | tr '\n' ,)
  [ "$got" = "agents TERM,agents gone,head TERM,head gone,redis TERM,redis gone," ] ||
    fail "on SIG$sig: stopped in the order $got"
  echo "ok - on SIG$sig: agents, then the head, then Redis"
done
