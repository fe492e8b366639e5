#!/usr/bin/env bash
# What atomic multi-key commands cost: `redis-benchmark -t mset` (MSET of 10 keys) and MGET of
# 10 keys, at pipeline 1 and 16, against kvcache, Redis and optionally an older kvcache build
# (OLD_BIN, e.g. one from before multi-key commands were made atomic), in one run, alternating
# servers round by round; medians of requests/s.
#
#   scripts/multikey-compare.sh [ROUNDS] [REQUESTS]     (defaults: 3 rounds, 200000)
#
# Each server is filled first (`redis-benchmark -t set -r 100000`), so MGET reads keys that
# exist. Needs target/release/kvcache-server, redis-server and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROUNDS=${1:-3}
N=${2:-200000}
BIN=${KVCACHE_BIN:-target/release/kvcache-server}
WORK=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

start() { # server port
  case $1 in
    kvcache) "$BIN" --host 127.0.0.1 --port "$2" >"$WORK/server.log" 2>&1 & ;;
    kvcache-old) "$OLD_BIN" --host 127.0.0.1 --port "$2" >"$WORK/server.log" 2>&1 & ;;
    redis) redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/server.log" 2>&1 & ;;
  esac
  PID=$!
  wait_port "$2"
}

rps() { awk -F'"' 'NR > 1 {print $4}' | tail -1; } # requests/s from redis-benchmark --csv

MGET=(MGET)
for _ in $(seq 1 10); do MGET+=("key:__rand_int__"); done
SERVERS=(kvcache redis)
[ -n "${OLD_BIN:-}" ] && SERVERS=(kvcache kvcache-old redis)
for round in $(seq 1 "$ROUNDS"); do
  for server in "${SERVERS[@]}"; do
    port=$(free_port)
    start "$server" "$port"
    redis-benchmark -p "$port" -c 50 -d 64 -r 100000 -n 300000 -P 16 -t set -q >/dev/null 2>&1
    for p in 1 16; do
      r=$(redis-benchmark -p "$port" -c 50 -d 64 -r 100000 -n "$N" -P "$p" -t mset --csv 2>/dev/null | rps)
      echo "$server mset $p $r" >>"$WORK/results"
      r=$(redis-benchmark -p "$port" -c 50 -r 100000 -n "$N" -P "$p" --csv "${MGET[@]}" 2>/dev/null | rps)
      echo "$server mget $p $r" >>"$WORK/results"
    done
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    echo "round $round $server done" >&2
  done
done

echo "requests/s, medians of $ROUNDS alternating rounds (10 keys per command):"
printf '| command | pipeline |'; for s in "${SERVERS[@]}"; do printf ' %s |' "$s"; done; echo ' kvcache / redis |'
printf '|---|---:|'; for _ in "${SERVERS[@]}"; do printf -- '---:|'; done; printf '%s\n' '---:|'
for t in mset mget; do
  for p in 1 16; do
    printf '| %s | %s |' "${t^^}" "$p"
    for s in "${SERVERS[@]}"; do
      printf ' %.0f |' "$(awk -v s="$s" -v t="$t" -v p="$p" '$1 == s && $2 == t && $3 == p {print $4}' "$WORK/results" | median)"
    done
    k=$(awk -v t="$t" -v p="$p" '$1 == "kvcache" && $2 == t && $3 == p {print $4}' "$WORK/results" | median)
    r=$(awk -v t="$t" -v p="$p" '$1 == "redis" && $2 == t && $3 == p {print $4}' "$WORK/results" | median)
    printf ' %.2f |\n' "$(echo "$k / $r" | bc -l)"
  done
done
