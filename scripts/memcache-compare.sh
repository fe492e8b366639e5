#!/usr/bin/env bash
# kvcache's memcache port against memcached 1.6 on this machine, in one run: both servers are
# started here (memcached as the issue asks: -t 2 -m 1024), targets alternate round by round (a
# shared 2-core machine is noisy), and the median of each (server, load) is printed.
#
#   scripts/memcache-compare.sh [ROUNDS] [SECONDS]        (defaults: 5 rounds of 10 s per load)
#
# Loads, each against each server every round:
#   memcaslap P=1      memcaslap (libmemcached-tools) -T 2 -c 64, 90% get / 10% set, 1 key per get
#   memcaslap mget10   the same with -d 10: multi-gets of 10 keys
#   bench P=1          kvcache-bench --protocol memcache -c 64 -P 1 (50% set, 64-byte values)
#   bench P=16         the same, 16 requests pipelined per connection
# Then RSS per item for 1M items (scripts/memory-compare.py, kvcache loaded over its memcache
# port) unless ITEMS=0. Needs target/release/kvcache-server and kvcache-bench, memcached,
# memcaslap. The smoke run: scripts/memcache-compare.sh 1 2 with ITEMS=100000.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ROUNDS=${1:-5}
SECS=${2:-10}
ITEMS=${ITEMS:-1000000}
BIN=${KVCACHE_BIN:-target/release/kvcache-server}
BENCH=${BENCH:-target/release/kvcache-bench}
WORK=$(mktemp -d)

wait_mc() {
  for _ in $(seq 1 100); do
    if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
      printf 'version\r\n' >&3
      if IFS= read -r -t 2 reply <&3 && [[ $reply == VERSION* ]]; then exec 3>&-; return 0; fi
      exec 3>&-
    fi
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2
  return 1
}

KV_PORT=$(free_port)
"$BIN" --host 127.0.0.1 --port 0 --memcache-port "$KV_PORT" --max-memory 1gb >"$WORK/kvcache.log" 2>&1 &
KV_PID=$!
MC_PORT=$(free_port)
memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -t 2 -m 1024 -u nobody >"$WORK/memcached.log" 2>&1 &
MC_PID=$!
trap 'kill "$KV_PID" "$MC_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_mc "$KV_PORT"
wait_mc "$MC_PORT"
echo "$("$BIN" --version) memcache port :$KV_PORT, memcached $(memcached -V | awk '{print $2}') :$MC_PORT"

field() { sed -n "s/^  \"$2\": \\([0-9.]*\\),\$/\\1/p" "$1"; }
run() { # name port load -> prints requests (or operations) per second
  local port=$2
  case $3 in
    slap1) memcaslap -s "127.0.0.1:$port" -t "${SECS}s" -T 2 -c 64 2>&1 | sed -n 's/.* TPS: \([0-9]*\) .*/\1/p' | tail -1 ;;
    mget10) memcaslap -s "127.0.0.1:$port" -t "${SECS}s" -T 2 -c 64 -d 10 2>&1 | sed -n 's/.* TPS: \([0-9]*\) .*/\1/p' | tail -1 ;;
    bench1 | bench16)
      local p=${3#bench}
      "$BENCH" --host 127.0.0.1 --port "$port" --protocol memcache -c 64 -P "$p" -d "$SECS" \
        --threads 2 --output "$WORK/b.json" >/dev/null 2>&1
      field "$WORK/b.json" requests_per_second ;;
  esac
}

LOADS="slap1 mget10 bench1 bench16"
for round in $(seq 1 "$ROUNDS"); do
  for load in $LOADS; do
    for target in kvcache:"$KV_PORT" memcached:"$MC_PORT"; do
      name=${target%%:*}
      r=$(run "$name" "${target#*:}" "$load")
      printf '%-9s %-7s round %d: %12.0f /s\n' "$name" "$load" "$round" "${r:-0}" | tee -a "$WORK/all"
    done
  done
done

echo
echo "Medians over $ROUNDS rounds of ${SECS}s (memcached -t 2 -m 1024):"
printf '%-9s %-40s %12s\n' server load 'ops/s'
for load in $LOADS; do
  case $load in
    slap1) what="memcaslap -T 2 -c 64 (get 90%, P=1)" ;;
    mget10) what="memcaslap -T 2 -c 64 -d 10 (multi-get)" ;;
    bench1) what="kvcache-bench memcache -c 64 -P 1" ;;
    bench16) what="kvcache-bench memcache -c 64 -P 16" ;;
  esac
  for name in kvcache memcached; do
    m=$(awk -v n="$name" -v l="$load" '$1 == n && $2 == l { print $5 }' "$WORK/all" | median)
    printf '%-9s %-40s %12.0f\n' "$name" "$what" "$m"
  done
done

if [ "$ITEMS" -gt 0 ]; then
  echo
  echo "RSS per item, $ITEMS items (16-byte keys, 64-byte values, 1 h TTL), fresh servers:"
  kill "$KV_PID" "$MC_PID" 2>/dev/null || true
  wait "$KV_PID" "$MC_PID" 2>/dev/null || true
  "$BIN" --host 127.0.0.1 --port 0 --memcache-port "$KV_PORT" --max-memory 0 >"$WORK/kvcache.log" 2>&1 &
  KV_PID=$!
  memcached -l 127.0.0.1 -p "$MC_PORT" -U 0 -t 2 -m 4096 -u nobody >"$WORK/memcached.log" 2>&1 &
  MC_PID=$!
  wait_mc "$KV_PORT"
  wait_mc "$MC_PORT"
  python3 scripts/memory-compare.py --items "$ITEMS" --kvcache-memcache "$KV_PORT" --memcached "$MC_PORT"
fi
