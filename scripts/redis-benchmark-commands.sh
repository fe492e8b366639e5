#!/usr/bin/env bash
# redis-benchmark custom-command rows for the string, bit and keyspace commands that have no
# `-t` test (GETRANGE, SETRANGE, GETBIT, SETBIT, BITCOUNT, BITPOS, INCRBYFLOAT, EXPIRETIME,
# COPY), against kvcache and a real Redis on this machine in one run. Both servers are
# started here, targets alternate round by round (a shared 2-core machine is noisy), and the
# median requests/s of each (server, command) is printed.
#
#   scripts/redis-benchmark-commands.sh [ROUNDS] [REQUESTS] [KEYS]
#       (defaults: 5 rounds, 100000 requests per row, 100000 keys)
#
# Every round fills KEYS keys (key:000000000000 ... with 64-byte values, and a TTL so
# EXPIRETIME has one to report) through redis-cli --pipe, then runs each row with
# `redis-benchmark -c 50 -r KEYS -n REQUESTS`. There is no RENAME row: redis-benchmark exits on
# the first error reply, and renames between random keys soon meet a source already moved away
# (`no such key`); COPY ... REPLACE covers the same two-key read-and-write path. Needs
# target/release/kvcache-server, redis-server, redis-cli and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROUNDS=${1:-5}
N=${2:-100000}
KEYS=${3:-100000}
BIN=${KVCACHE_BIN:-target/release/kvcache-server}
WORK=$(mktemp -d)

KV_PORT=$(free_port)
"$BIN" --host 127.0.0.1 --port "$KV_PORT" >"$WORK/kvcache.log" 2>&1 &
KV_PID=$!
RD_PORT=$(free_port)
redis-server --port "$RD_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
RD_PID=$!
trap 'kill "$KV_PID" "$RD_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port "$KV_PORT"
wait_port "$RD_PORT"
echo "$("$BIN" --version) on :$KV_PORT, $(redis-server --version | cut -d' ' -f1-3) on :$RD_PORT"

ROWS=(
  "GETRANGE key:__rand_int__ 0 10"
  "SETRANGE key:__rand_int__ 5 abc"
  "GETBIT key:__rand_int__ 100"
  "SETBIT bits:__rand_int__ 1000 1"
  "BITCOUNT key:__rand_int__"
  "BITPOS key:__rand_int__ 1"
  "INCRBYFLOAT float:__rand_int__ 1.5"
  "EXPIRETIME key:__rand_int__"
  "COPY key:__rand_int__ copy:__rand_int__ REPLACE"
)

value=$(printf 'v%.0s' $(seq 1 64))
awk -v n="$KEYS" -v v="$value" 'BEGIN {
  printf "*1\r\n$8\r\nFLUSHALL\r\n"
  for (i = 0; i < n; i++) {
    k = sprintf("key:%012d", i)
    printf "*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$5\r\n86400\r\n", length(k), k, length(v), v
  }
}' >"$WORK/fill.resp"

for round in $(seq 1 "$ROUNDS"); do
  for target in kvcache:"$KV_PORT" redis:"$RD_PORT"; do
    name=${target%%:*}
    port=${target#*:}
    redis-cli -p "$port" --pipe <"$WORK/fill.resp" >/dev/null
    for row in "${ROWS[@]}"; do
      # shellcheck disable=SC2086 # the row is the command's words
      rps=$(redis-benchmark -p "$port" -c 50 -r "$KEYS" -n "$N" --csv $row \
        | tr -d '"' | awk -F, 'NR > 1 { print $2 }')
      printf '%s\t%s\t%s\t%s\n' "$name" "${row%% *}" "$round" "$rps" | tee -a "$WORK/all"
    done
  done
done

echo
echo "Medians over $ROUNDS rounds (redis-benchmark -c 50 -r $KEYS -n $N, one command per row):"
printf '%-12s %14s %14s\n' command 'kvcache req/s' 'redis req/s'
for row in "${ROWS[@]}"; do
  cmd=${row%% *}
  kv=$(awk -F'\t' -v c="$cmd" '$1 == "kvcache" && $2 == c { print $4 }' "$WORK/all" | median)
  rd=$(awk -F'\t' -v c="$cmd" '$1 == "redis" && $2 == c { print $4 }' "$WORK/all" | median)
  printf '%-12s %14.0f %14.0f\n' "$cmd" "$kv" "$rd"
done
