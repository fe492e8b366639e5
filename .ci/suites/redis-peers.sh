#!/usr/bin/env bash
# Real Redis peers against kvcache: redis-cli, redis-py, a byte-for-byte differential test
# against redis-server, redis-benchmark, and three nodes behind twemproxy (nutcracker).
# Expects target/release/kvcache-server; installs redis-server, redis-tools, nutcracker and a
# redis-py venv under /tmp if they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=target/release/kvcache-server
WORK=$(mktemp -d /tmp/kvcache-peers.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need=()
for p in redis-server redis-tools nutcracker; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ "${#need[@]}" -gt 0 ]; then
  ${SUDO:-} apt-get update -qq && DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq "${need[@]}" >/dev/null
fi
VENV=/tmp/kvcache-venv
if ! "$VENV/bin/python" -c 'import redis' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q redis
fi

# shellcheck source=scripts/lib.sh
source scripts/lib.sh
start_kv() { # port [extra args...]
  local port=$1; shift
  "$BIN" --host 127.0.0.1 --port "$port" "$@" >"$WORK/kv-$port.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port"
}
expect() { # expected actual what
  if [ "$1" != "$2" ]; then
    printf 'FAIL %s: expected %q, got %q\n' "$3" "$1" "$2" >&2
    exit 1
  fi
}

KV=$(free_port)
start_kv "$KV" --max-memory 0
RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_port "$RP"

echo "--- redis-cli one-shot commands"
expect OK "$(redis-cli -p "$KV" SET greeting hello EX 60)" "SET EX"
expect hello "$(redis-cli -p "$KV" GET greeting)" "GET"
expect 60 "$(redis-cli -p "$KV" TTL greeting)" "TTL"
expect 1 "$(redis-cli -p "$KV" EXISTS greeting)" "EXISTS"
expect 5 "$(redis-cli -p "$KV" INCRBY counter 5)" "INCRBY"
expect "$(printf 'hello\n\n5')" "$(redis-cli -p "$KV" MGET greeting missing counter)" "MGET"
expect "ERR unknown command 'NOPE', with args beginning with: 'x' " "$(redis-cli -p "$KV" NOPE x)" "unknown command"
expect PONG "$(redis-cli -p "$KV" PING)" "PING"
expect "OK hello" "$(printf 'GET greeting\n' | nc -q1 127.0.0.1 "$KV")" "line protocol reads RESP data"
printf 'PUT fromline v1\n' | nc -q1 127.0.0.1 "$KV" >/dev/null
expect v1 "$(redis-cli -p "$KV" GET fromline)" "RESP reads line-protocol data"
redis-cli -p "$KV" INFO keyspace | grep -q '^db0:keys=3,expires=1' || { echo "FAIL INFO keyspace" >&2; exit 1; }

echo "--- differential test against redis-server $(redis-server --version | awk '{print $3}')"
"$VENV/bin/python" tests/peers/differential.py "$RP" "$KV"

echo "--- redis-py"
KVCACHE_PORT=$KV "$VENV/bin/python" -m unittest tests/peers/test_redis_py.py
KVA=$(free_port)
start_kv "$KVA" --password s3cret-pw
KVCACHE_PORT=$KVA KVCACHE_PASSWORD=s3cret-pw "$VENV/bin/python" -m unittest tests.peers.test_redis_py.Authentication

echo "--- redis-benchmark"
out=$(redis-benchmark -p "$KV" -n 20000 -c 20 -t ping_mbulk,set,get,incr,mset --csv 2>&1)
echo "$out"
for t in PING_MBULK SET GET INCR "MSET (10 keys)"; do
  grep -q "^\"$t\"," <<<"$out" || { echo "FAIL redis-benchmark did not complete $t" >&2; exit 1; }
done
if grep -qi "error" <<<"$out"; then echo "FAIL redis-benchmark reported errors" >&2; exit 1; fi
redis-benchmark -p "$KV" -n 20000 -c 20 -P 16 -t set,get --csv >/dev/null

echo "--- three nodes behind nutcracker"
N1=$(free_port); N2=$(free_port); N3=$(free_port); PROXY=$(free_port); STATS=$(free_port)
start_kv "$N1"; start_kv "$N2"; start_kv "$N3"; N3_PID=${PIDS[-1]}
cat >"$WORK/nutcracker.yml" <<YML
kvcache:
  listen: 127.0.0.1:$PROXY
  redis: true
  hash: md5
  distribution: ketama
  auto_eject_hosts: true
  server_failure_limit: 1
  server_retry_timeout: 600000
  timeout: 1000
  preconnect: true
  servers:
    - 127.0.0.1:$N1:1 kv1
    - 127.0.0.1:$N2:1 kv2
    - 127.0.0.1:$N3:1 kv3
YML
nutcracker -t -c "$WORK/nutcracker.yml" >/dev/null 2>&1
nutcracker -c "$WORK/nutcracker.yml" -s "$STATS" -a 127.0.0.1 -o "$WORK/nutcracker.log" &
PIDS+=($!)
wait_port "$PROXY"
for i in $(seq 1 600); do echo "SET key:$i value-$i"; done | redis-cli -p "$PROXY" >"$WORK/set.out"
expect 600 "$(grep -c '^OK$' "$WORK/set.out")" "600 SETs through the proxy"
total=0
for p in "$N1" "$N2" "$N3"; do
  n=$(redis-cli -p "$p" DBSIZE)
  echo "node $p holds $n keys"
  [ "$n" -gt 50 ] || { echo "FAIL node $p holds only $n of 600 keys" >&2; exit 1; }
  total=$((total + n))
done
expect 600 "$total" "keys spread over the three nodes"
# Which keys live on the nodes that will survive?
survivors=()
for i in $(seq 1 600); do
  if [ "$(redis-cli -p "$N1" EXISTS "key:$i")" = 1 ] || [ "$(redis-cli -p "$N2" EXISTS "key:$i")" = 1 ]; then
    survivors+=("$i")
  fi
done
echo "stopping node 3; ${#survivors[@]} keys live on nodes 1 and 2"
kill "$N3_PID"
sleep 0.5
# Let the proxy notice the dead node (a few requests hashing to it fail and eject it).
for i in $(seq 1 50); do redis-cli -p "$PROXY" GET "key:$i" >/dev/null 2>&1 || true; done
ok=0
for i in "${survivors[@]}"; do
  [ "$(redis-cli -p "$PROXY" GET "key:$i")" = "value-$i" ] && ok=$((ok + 1))
done
expect "${#survivors[@]}" "$ok" "keys on the surviving nodes readable through the proxy"
echo "all ${ok} keys on surviving nodes readable through nutcracker after losing a node"
echo "redis peers: all passed"
