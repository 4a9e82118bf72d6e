#!/usr/bin/env bash
# baton.sbatch stops in order: agents (srun), then the head, then Redis, each after the one before
# has gone, on SIGUSR1 (Slurm's --signal=B:USR1@90 before the time limit) and on SIGTERM. Its Redis
# gets a fresh password per allocation and a random port (a Unix socket in a private folder on one
# node), no password on a command line, no password sent to a process that listens on the port
# before the redis-server it started, and the allocation stops when its Redis dies. Needs no
# Slurm: srun, redis-server and baton are stand-ins on PATH that log when they are signalled and
# when they are gone (the agents take a moment: they drain).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dir=$(mktemp -d)
pid=""
# A script still running after a failed check is stopped (it stops its stand-ins).
trap '[ -z "$pid" ] || { kill -TERM "$pid" 2> /dev/null && sleep 2; }; rm -rf "$dir"' EXIT
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
if [ "\${1:-}" = nodes ]; then echo "baton nodes" >> "$dir/order.log"; echo "\$BATON_REDIS" > "$dir/redis.url"; exit 0; fi
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
standin baton 0.3 baton
# Redis's stand-in listens on the port of the redis.conf it is given (the script checks that the
# listener is the process it started).
cat > "$dir/bin/redis-server" <<SCRIPT
#!/usr/bin/env python3
import signal, socket, sys, time
import os
conf = [l.split() for l in open(sys.argv[1])]
port = int([l[1] for l in conf if l and l[0] == "port"][0])
sock = [l[1] for l in conf if l and l[0] == "unixsocket"]
s = socket.socket(socket.AF_UNIX) if sock else socket.socket()
s.bind(sock[0] if sock else ("127.0.0.1", port))
s.listen()
with open("$dir/redis.pid", "w") as f:
    f.write(str(os.getpid()))
def log(line):
    with open("$dir/order.log", "a") as f:
        f.write(line + "\\n")
def term(*_):
    log("redis TERM")
    time.sleep(0.1)
    log("redis gone")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
log("redis up")
while True:
    time.sleep(0.05)
SCRIPT
chmod +x "$dir/bin/redis-server"
for sig in USR1 TERM; do
  : > "$dir/order.log"
  PATH="$dir/bin:$PATH" BATON="$dir/bin/baton" BATON_STATE="$dir/state" BATON_JOBS=1 \
    BATON_SLURM_DIR="$repo/scripts/slurm" BATON_REDIS_BIND=127.0.0.1 bash "$repo/scripts/slurm/baton.sbatch" "$dir/p.yaml" 2> "$dir/err.log" &
  pid=$!
  for _ in $(seq 100); do
    [ "$(grep -c ' up$' "$dir/order.log")" -ge 3 ] && break
    sleep 0.05
  done
  [ "$(grep -c ' up$' "$dir/order.log")" -ge 3 ] || fail "the stand-ins did not start"
  kill -"$sig" "$pid"
  wait "$pid" || true
  if [ -s "$dir/submit.pid" ]; then kill "$(cat "$dir/submit.pid")" 2> /dev/null || true; fi
  got=$(grep -v -e ' up$' -e '^baton nodes$' "$dir/order.log" | tr '\n' ,)
  [ "$got" = "agents TERM,agents gone,head TERM,head gone,redis TERM,redis gone," ] ||
    fail "on SIG$sig: stopped in the order $got"
  echo "ok - on SIG$sig: agents, then the head, then Redis"
  cat "$dir/state/redis.pass" >> "$dir/passwords"
  echo >> "$dir/passwords"
  grep '^port ' "$dir/state/redis.conf" >> "$dir/ports"
  grep -q '^port 20000$' "$dir/state/redis.conf" && fail "the port is the predictable 20000 + job id"
done
[ "$(sort -u "$dir/passwords" | grep -c .)" = 2 ] || fail "the two allocations shared a Redis password"
[ "$(sort -u "$dir/ports" | grep -c .)" = 2 ] || fail "the two allocations used one port: $(cat "$dir/ports")"
echo "ok - a fresh password and port per allocation"

# Another process listens on the port first: the script stops before it sends a password.
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' \
  > "$dir/impostor.port" &
impostor=$!
for _ in $(seq 50); do [ -s "$dir/impostor.port" ] && break; sleep 0.1; done
: > "$dir/order.log"
status=0
PATH="$dir/bin:$PATH" BATON="$dir/bin/baton" BATON_STATE="$dir/state" BATON_JOBS=1 BATON_REDIS_BIND=127.0.0.1 \
  BATON_REDIS_PORT="$(cat "$dir/impostor.port")" BATON_SLURM_DIR="$repo/scripts/slurm" \
  bash "$repo/scripts/slurm/baton.sbatch" "$dir/p.yaml" 2> "$dir/err.log" || status=$?
kill "$impostor"
[ "$status" = 1 ] || fail "with the port taken: exit status $status"
grep -q "did not come to listen on a port of its own" "$dir/err.log" || fail "no message: $(cat "$dir/err.log")"
if grep -q '^baton nodes$' "$dir/order.log"; then fail "baton talked to the process on the taken port"; fi
echo "ok - no password for a process that took the port first"

# Every process up, with a fresh password: none has it on its command line (/proc/PID/cmdline).
no_password_on_a_command_line() {
  local pass
  pass=$(cat "$dir/state/redis.pass")
  [ -n "$pass" ] || fail "no password"
  if grep -qsF -- "$pass" /proc/[0-9]*/cmdline; then fail "the Redis password is on a command line"; fi
}
up() {  # waits for the three stand-ins
  for _ in $(seq 100); do
    [ "$(grep -c ' up$' "$dir/order.log")" -ge 3 ] && return 0
    sleep 0.05
  done
  fail "the stand-ins did not start"
}

# A one-node allocation: Redis on a Unix socket in a private 0700 folder, no TCP port; the
# folder goes with the allocation.
: > "$dir/order.log"
PATH="$dir/bin:$PATH" BATON="$dir/bin/baton" BATON_STATE="$dir/state" BATON_JOBS=1 SLURM_JOB_NUM_NODES=1 \
  BATON_SLURM_DIR="$repo/scripts/slurm" TMPDIR="$dir" bash "$repo/scripts/slurm/baton.sbatch" "$dir/p.yaml" \
  2> "$dir/err.log" &
pid=$!
up
url=$(cat "$dir/redis.url")
case $url in unix://"$dir"/baton-redis.*/redis.sock) ;; *) fail "one node: BATON_REDIS is $url" ;; esac
sock=${url#unix://}
[ -S "$sock" ] || fail "no socket at $sock"
[ "$(stat -c %a "$(dirname "$sock")")" = 700 ] || fail "the socket's folder is not private"
grep -q '^port 0$' "$dir/state/redis.conf" || fail "one node: Redis listens on TCP too"
no_password_on_a_command_line
kill -USR1 "$pid"
wait "$pid" || true
if [ -s "$dir/submit.pid" ]; then kill "$(cat "$dir/submit.pid")" 2> /dev/null || true; fi
[ ! -e "$(dirname "$sock")" ] || fail "the socket's folder outlived the allocation"
echo "ok - one node: a Unix socket in a private folder, no TCP port, no password on a command line"

# Redis dies during the allocation: the script stops everything (agents that reconnected would
# send the password to whatever listens on the port next).
: > "$dir/order.log"
status=0
PATH="$dir/bin:$PATH" BATON="$dir/bin/baton" BATON_STATE="$dir/state" BATON_JOBS=1 BATON_REDIS_BIND=127.0.0.1 \
  BATON_SLURM_DIR="$repo/scripts/slurm" bash "$repo/scripts/slurm/baton.sbatch" "$dir/p.yaml" 2> "$dir/err.log" &
pid=$!
up
kill -KILL "$(cat "$dir/redis.pid")"
wait "$pid" || status=$?
if [ -s "$dir/submit.pid" ]; then kill "$(cat "$dir/submit.pid")" 2> /dev/null || true; fi
[ "$status" = 1 ] || fail "with Redis gone: exit status $status"
grep -q "redis-server exited before the end" "$dir/err.log" || fail "no message: $(cat "$dir/err.log")"
got=$(grep -v -e ' up$' -e '^baton nodes$' "$dir/order.log" | tr '\n' ,)
[ "$got" = "agents TERM,agents gone,head TERM,head gone," ] || fail "with Redis gone: stopped in the order $got"
echo "ok - Redis gone mid-allocation: the agents and the head stop"
