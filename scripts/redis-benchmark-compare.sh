#!/usr/bin/env bash
# redis-benchmark against kvcache and a real Redis on this machine, in one run: both servers
# are started here, targets alternate round by round (a shared 2-core machine is noisy), and
# the median requests/s of each (server, pipeline, test) is printed.
#
#   scripts/redis-benchmark-compare.sh [ROUNDS] [REQUESTS]     (defaults: 5 rounds, 200000)
#
# Each round runs `redis-benchmark -c 100 -d 64 -r 100000 -P {1,16} -t set,get` against each
# server. Needs target/release/kvcache-server, redis-server and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROUNDS=${1:-5}
N=${2:-200000}
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

for round in $(seq 1 "$ROUNDS"); do
  for p in 1 16; do
    for target in kvcache:"$KV_PORT" redis:"$RD_PORT"; do
      name=${target%%:*}
      port=${target#*:}
      redis-benchmark -p "$port" -c 100 -d 64 -r 100000 -n "$N" -P "$p" -t set,get --csv \
        | tr -d '"' | awk -F, -v n="$name" -v p="$p" -v r="$round" \
          'NR > 1 { printf "%s P%s %s round %s %s\n", n, p, $1, r, $2 }' \
        | tee -a "$WORK/all"
    done
  done
done

echo
echo "Medians over $ROUNDS rounds (redis-benchmark -c 100 -d 64 -r 100000 -n $N):"
printf '%-8s %-4s %-4s %12s\n' server P test 'req/s'
for p in 1 16; do
  for t in SET GET; do
    for name in kvcache redis; do
      m=$(awk -v n="$name" -v p="P$p" -v t="$t" '$1 == n && $2 == p && $3 == t { print $6 }' \
        "$WORK/all" | median)
      printf '%-8s %-4s %-4s %12.0f\n' "$name" "$p" "$t" "$m"
    done
  done
done
